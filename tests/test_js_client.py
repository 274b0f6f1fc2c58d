"""The JavaScript client (clients/js/): its own tests, run with Node's test runner against real
gateways; its types against the gateway's OpenAPI; its package as `npm pack` makes it."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devtools import openapi
from devtools.stack import Stack
from tests.conftest import ARTIFACTS, ROOT, fresh_redis, say, started

JS = ROOT / "clients/js"
# A gateway for what the shared one must not do: seasons of 2 s, one write a second per player (the
# client's 429 retries), two recovery attempts an hour per address (a 429 too long to wait), and
# runs that may end at once.
LIMITED = {
    "LEADERBOARD_SEASON": "every:2s",
    "RATE_LIMIT_SESSION_WRITES": "1/second",
    "RATE_LIMIT_ADDRESS_RECOVERIES": "2/hour",
    "RUN_MIN_S": "0",
}


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with (
        fresh_redis(tmp_path_factory.mktemp("js-limited")) as url,
        started(url, ARTIFACTS / "logs/js-client-limited.log", 1, 1, **LIMITED) as running,
    ):
        yield running


def node(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["node", *args], cwd=JS, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=600
    )


def test_the_client_passes_its_tests_against_the_real_stack(stack: Stack, limited: Stack) -> None:
    env = {"CACHE_QUEST_URL": stack.url, "CACHE_QUEST_LIMITED_URL": limited.url}
    run = node("--test", "--test-concurrency=1", *sorted(str(test) for test in JS.glob("test/*.test.js")), env=env)
    assert run.returncode == 0, f"node --test failed:\n{run.stdout}\n{run.stderr}"
    for skipped in re.findall(r"^ok \d+ - (.+ # SKIP .+)$", run.stdout, re.MULTILINE):
        say(f"clients/js: skipped {skipped}")


def test_the_client_types_match_the_gateways_openapi(stack: Stack, tmp_path: Path) -> None:
    """`make sdk-types` generates them from devtools/openapi.py's document: the one the gateway serves."""
    served = httpx.get(f"{stack.url}/openapi.json").json()
    assert served == openapi.document()
    (tmp_path / "openapi.json").write_text(json.dumps(served))
    generate = [str(JS / "node_modules/.bin/openapi-typescript"), "openapi.json", "--output", "openapi.d.ts"]
    subprocess.run(generate, cwd=tmp_path, check=True, capture_output=True, timeout=120)
    checked_in = (JS / "src/openapi.d.ts").read_text()
    assert (tmp_path / "openapi.d.ts").read_text() == checked_in, "the types drifted: run `make sdk-types`"
