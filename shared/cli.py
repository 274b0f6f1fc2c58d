"""The start of every service's command line: `--help`, settings, logging."""

from __future__ import annotations

import argparse
import logging.config
import sys

from pydantic import ValidationError

from shared.logs import logging_config
from shared.settings import Settings, get_settings

EPILOG = "Configured by environment variables (and a .env file); the README lists them all."


def start(prog: str, description: str) -> Settings:
    """Parse `--help`, load the settings or exit with what is wrong, and set up logging."""
    argparse.ArgumentParser(prog=prog, description=description, epilog=EPILOG).parse_args()
    settings = load_settings(prog)
    logging.config.dictConfig(logging_config(settings))
    return settings


def load_settings(prog: str) -> Settings:
    """The settings, or exit with one line naming each variable that is wrong."""
    try:
        return get_settings()
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])).upper() or 'settings'}: {e['msg']}" for e in error.errors()
        )
        sys.exit(f"{prog}: invalid configuration: {problems}")
