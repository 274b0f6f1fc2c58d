"""The gateway's OpenAPI document, as `/openapi.json` serves it, printed as JSON without starting
anything: `make sdk-types` generates the JavaScript client's types from it (clients/js/)."""

from __future__ import annotations

import json
import secrets

from fastapi import FastAPI

from services.gateway.app import create_app
from shared.settings import Settings


def document() -> dict[str, object]:
    app = create_app(Settings(api_docs=True, session_secret=secrets.token_urlsafe(32)))
    while not isinstance(app, FastAPI):  # inside the paths, metrics and fast-path layers
        app = app.app  # type: ignore[attr-defined]
    return app.openapi()


if __name__ == "__main__":
    print(json.dumps(document(), indent=2))
