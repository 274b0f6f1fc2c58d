"""Schemathesis against the gateway's own OpenAPI schema: no 5xx, and every answer as documented."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok

from devtools.stack import Stack


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[requests.Session]:
    """A client with a session, so the fuzzing reaches past the 401s."""
    with requests.Session() as session:
        session.get(f"{stack.url}/session").raise_for_status()
        yield session


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_gateway_holds_under_fuzzing(stack: Stack, browser: requests.Session) -> None:
    # Each operation gets its own Hypothesis run (schemathesis' pytest plugin and pytest 9 disagree).
    schema = schemathesis.openapi.from_url(f"{stack.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations() if isinstance(result, Ok)]
    assert len(operations) >= 10

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def holds(case: Any) -> None:
            case.call_and_validate(session=browser, checks=CHECKS)

        holds()
