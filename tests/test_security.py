"""The rules of API.md's "Who may do what" that need a stack of their own, and property tests."""

from __future__ import annotations

import contextlib
import os
import string
import subprocess
import sys
from typing import Any

import httpx
import orjson
import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from services.gateway.models import PlayerDocument, count_values, surely_within
from services.gateway.saves import escape
from services.gateway.sessions import VERIFIED_TOKENS, CookieSigner, new_session_id
from shared.protocol import Event, EventType, PoisonEvent, Reply
from tests.conftest import ROOT, Player, StackFactory

LIMITS = {
    "RATE_LIMIT_ADDRESS_SESSIONS": "3/minute",
    "RATE_LIMIT_SESSION_WRITES": "4/minute",
    "RATE_LIMIT_ADDRESS_WRITES": "6/minute",
}


def test_secure_cookie_when_configured(make_stack: StackFactory) -> None:
    stack = make_stack(saves=0, leaderboard=0, COOKIE_SECURE="true")
    assert "; Secure" in httpx.get(f"{stack.url}/session").headers["set-cookie"]


def test_rate_limits(make_stack: StackFactory) -> None:
    stack = make_stack(**LIMITS)
    db = redis.Redis.from_url(stack.redis_url, protocol=3)
    first, second = Player(stack.url), Player(stack.url)
    Player(stack.url)
    too_many = httpx.get(f"{stack.url}/session")  # the fourth new session from this address in a minute
    assert too_many.status_code == 429 and too_many.json()["status"] == 429
    assert int(too_many.headers["retry-after"]) >= 1
    assert first.http.get("/session").json()["id"] == first.id  # an existing session is not a new one

    for level in range(1, 5):
        assert first.save("playerstate", {"level": level}, "POST" if level == 1 else "PATCH").status_code == 200
    limited = first.save("playerstate", {"level": 5})  # the session's fifth write
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert db.json().get(f"players:{first.id}") == {"id": first.id, "level": 4}

    assert second.save("playerstate", {"level": 1}, "POST").status_code == 200
    by_address = second.save("playerstate", {"level": 2})  # the address's seventh write
    assert by_address.status_code == 429 and by_address.json()["message"] == "Too many writes; slow down"
    assert db.json().get(f"players:{second.id}") == {"id": second.id, "level": 1}
    prefixes = (b"sessions:", b"players:", b"version:{players:", b"ratelimit:", b"stream:", b"metrics:")
    assert all(key.startswith(prefixes) for key in db.scan_iter())


@pytest.mark.parametrize("service", ["gateway", "saves", "leaderboard"])
def test_production_refuses_the_default_secret(service: str) -> None:
    env = {**os.environ, "ENVIRONMENT": "production"}
    env.pop("SESSION_SECRET", None)
    result = subprocess.run(
        [sys.executable, "-m", f"services.{service}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0
    assert "SESSION_SECRET must be set in production" in result.stderr


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@given(payload=json_values, session=st.text(min_size=1), timeout=st.integers(0, 10**9))
def test_envelope_round_trips(payload: object, session: str, timeout: int) -> None:
    event = Event.new(EventType.PLAYER_UPDATE, session, payload, timeout, 0)
    assert Event.decode(event.encode(), 0) == event


@given(
    fields=st.dictionaries(
        st.sampled_from([b"v", b"id", b"type", b"session", b"reply_to", b"deadline", b"payload", b"request_id"]),
        st.binary(),
    )
)
def test_any_malformed_envelope_is_poison_never_a_crash(fields: dict[bytes, bytes]) -> None:
    with contextlib.suppress(PoisonEvent):
        Event.decode(fields, 0)


@given(status=st.integers(100, 599), body=json_values)
def test_reply_round_trips(status: int, body: object) -> None:
    wire_status, wire_body = Reply(status, body).wire()
    decoded = Reply.decode({b"status": wire_status.encode(), b"body": wire_body.encode()})
    assert decoded == Reply(status, orjson.loads(orjson.dumps(body)))


@given(term=st.text())
def test_escaped_search_terms_have_no_bare_syntax(term: str) -> None:
    chars = iter(escape(term))
    unescaped = []
    for char in chars:
        if char == "\\":
            unescaped.append(next(chars))  # a backslash always has a character to escape
        else:
            assert char.isalnum(), f"{char!r} reaches the query parser bare"
            unescaped.append(char)
    assert "".join(unescaped) == term


@given(
    session=st.text(alphabet=string.hexdigits, min_size=1),
    stamp=st.integers(0, 2**40),
    secret=st.text(min_size=1),
    tamper=st.text(min_size=1),
)
def test_only_the_signed_session_id_comes_back(session: str, stamp: int, secret: str, tamper: str) -> None:
    signer = CookieSigner(secret)
    cookie = signer.sign(session, stamp)
    assert signer.unsign(cookie) == (session, stamp)
    assert signer.unsign(cookie + tamper) is None
    assert signer.unsign(tamper + cookie) is None
    assert signer.unsign(cookie.replace(f".{stamp}.", f".{stamp + 1}.")) is None  # a later stamp can't be forged
    assert CookieSigner(secret + "x").unsign(cookie) is None
    assert signer.unsign(cookie) == (session, stamp)  # verified once, then remembered: the same answer


def test_remembered_tokens_are_bounded_and_only_verified_ones() -> None:
    signer = CookieSigner("secret")
    genuine = signer.sign("ab", 1)
    forged = genuine[:-1] + ("A" if genuine[-1] != "A" else "B")
    for _ in range(3):
        assert signer.unsign(forged) is None
    tokens = [signer.sign(f"{n:032x}", n) for n in range(VERIFIED_TOKENS + 10)]
    assert [signer.unsign(token) for token in tokens] == [(f"{n:032x}", n) for n in range(VERIFIED_TOKENS + 10)]
    assert forged not in signer._verified and len(signer._verified) <= VERIFIED_TOKENS


def test_session_ids_are_128_random_bits() -> None:
    ids = {new_session_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) == 32 and set(i) <= set(string.hexdigits) for i in ids)


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6), st.integers(0, 6))
def test_a_documents_json_is_what_model_dump_gives(fields: dict[str, Any], at: int) -> None:
    # The save's JSON is built without model_dump's walk: the same keys, in the same order, the same values.
    items = [item for item in fields.items() if item[0] != "id"]
    sent = dict([*items[:at], ("id", "abc123"), *items[at:]])
    document = PlayerDocument.model_validate(sent)
    assert orjson.dumps(document.as_json()) == orjson.dumps(document.model_dump())


@given(json_values, st.integers(1, 40), st.integers(1, 200))
def test_a_body_surely_within_the_limits_is_within_them(value: Any, max_depth: int, max_values: int) -> None:
    # The byte counts that spare a save's walk never pass what the walk would refuse.
    document = {"id": "abc123", "value": value}
    if surely_within(orjson.dumps({"playerData": document}), max_depth, max_values):
        values = count_values(document, max_depth)
        assert values is not None and values <= max_values
