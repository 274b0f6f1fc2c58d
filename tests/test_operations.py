"""Operating the services: behind a load balancer, their logs, their metrics."""

from __future__ import annotations

import os
import time

import httpx
import pytest

from services.gateway.sessions import CookieSigner
from shared.settings import Settings
from tests.conftest import StackFactory

# Two new sessions a minute per address: the third from one address is a 429.
TWO_SESSIONS = {"RATE_LIMIT_ADDRESS_SESSIONS": "2/minute"}


def from_peer(base_url: str, peer: str) -> httpx.Client:
    """A client whose connections come from `peer` (any 127.x address is this host's)."""
    return httpx.Client(base_url=base_url, transport=httpx.HTTPTransport(local_address=peer), timeout=30)


def new_session(client: httpx.Client, forwarded_for: str | None = None) -> int:
    headers = {} if forwarded_for is None else {"X-Forwarded-For": forwarded_for}
    client.cookies.clear()
    return client.get("/session", headers=headers).status_code


def test_behind_a_trusted_proxy_each_forwarded_address_is_counted_apart(make_stack: StackFactory) -> None:
    stack = make_stack(saves=0, leaderboard=0, FORWARDED_ALLOW_IPS="127.0.0.1", **TWO_SESSIONS)
    with from_peer(stack.url, "127.0.0.1") as proxy:
        assert [new_session(proxy, "203.0.113.1") for _ in range(3)] == [200, 200, 429]
        # Another player behind the same proxy, and a proxy chain ending in a third player.
        assert [new_session(proxy, "203.0.113.2") for _ in range(2)] == [200, 200]
        assert new_session(proxy, "198.51.100.7, 203.0.113.3") == 200
        assert new_session(proxy, "203.0.113.1") == 429  # still the first player's count


def test_a_forged_header_from_an_untrusted_peer_is_ignored(make_stack: StackFactory) -> None:
    stack = make_stack(saves=0, leaderboard=0, FORWARDED_ALLOW_IPS="127.0.0.1", **TWO_SESSIONS)
    with from_peer(stack.url, "127.0.0.2") as stranger:
        forged = [new_session(stranger, f"203.0.113.{n}") for n in range(1, 4)]
        assert forged == [200, 200, 429]  # every one counted as 127.0.0.2, whatever it claims


def test_with_no_trusted_peer_even_loopback_cannot_choose_its_address(make_stack: StackFactory) -> None:
    """The default trusts no one, not uvicorn's loopback: another process on the host is no proxy."""
    stack = make_stack(saves=0, leaderboard=0, **TWO_SESSIONS)
    with from_peer(stack.url, "127.0.0.1") as local:
        assert [new_session(local, f"203.0.113.{n}") for n in range(1, 4)] == [200, 200, 429]


# Each is what uvicorn takes for the client: the last entry that is not a trusted proxy.
MALFORMED = [b"garbage", b"203.0.113.1, not-an-address", b"1" * 10_000, b"203.0.113.1:99999:1", b"[::1", b"\xe9t\xe9"]


def test_a_malformed_forwarded_address_is_a_clear_400_never_a_500(make_stack: StackFactory) -> None:
    stack = make_stack(saves=0, leaderboard=0, FORWARDED_ALLOW_IPS="127.0.0.1")
    clear = {"status": 400, "message": "X-Forwarded-For does not end in a client IP address"}
    with from_peer(stack.url, "127.0.0.1") as proxy, from_peer(stack.url, "127.0.0.1") as newcomer:
        me = proxy.get("/session").json()["id"]  # a session of the proxy's own, for the writes
        proxy.cookies.clear()  # each write carries the cookie it is given
        signer, now = CookieSigner(os.environ["SESSION_SECRET"]), int(time.time())
        for forwarded_for in MALFORMED:
            headers = {b"x-forwarded-for": forwarded_for}
            new = newcomer.get("/session", headers=headers)
            assert (new.status_code, new.json()) == (400, clear), forwarded_for[:40]
            for confirmed_at in (now, now - 3600):  # the hot path; then FastAPI, which re-confirms an old cookie
                cookie = {b"cookie": f"cq_session={signer.sign(me, confirmed_at)}".encode()}
                write = proxy.post("/api/playerstate", json={"playerData": {"id": me}}, headers=headers | cookie)
                assert (write.status_code, write.json()) == (400, clear), forwarded_for[:40]


@pytest.mark.parametrize("value", ["proxy.internal", "10.0.0.1/8", "300.1.1.1"])
def test_forwarded_allow_ips_takes_only_addresses_and_networks(value: str) -> None:
    with pytest.raises(ValueError, match="FORWARDED_ALLOW_IPS"):
        Settings(forwarded_allow_ips=value)
    assert Settings(forwarded_allow_ips=" 10.0.0.0/8, ::1 ,*").forwarded_allow_ips == "10.0.0.0/8,::1,*"
