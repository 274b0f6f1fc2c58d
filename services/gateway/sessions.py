"""Server-side sessions: `sessions:{id}` in Redis, a signed cookie in the browser.

The cookie and the key share one clock. Every response re-issues the cookie with
the full max age (rolling); the key is re-set with that max age plus
SESSION_REFRESH_S whenever the cookie says it was last confirmed in Redis longer
ago than SESSION_REFRESH_S. So the key outlives the cookie by less than that
interval and an abandoned session leaves Redis with its cookie (the seed's store
kept keys forever), while a busy player costs one Redis write a minute rather
than one per request. That write also keeps the player's saves for SAVE_TTL_S.

The cookie is only as good as its secret: no published one is ever accepted
(shared/settings.py), and development generates its own into SESSION_SECRET_FILE.
A cookie stamped in the future (past SESSION_CLOCK_SKEW_S) is no session, so
none can skip the re-confirmation; and a write still needs the Redis key
(admit.lua checks it while admitting it).

A request carrying two different values of the cookie is refused (400, no cookie set): a sibling subdomain or a
plain-HTTP man in the middle can plant a second one beside the player's, and which of the two is
the player's cannot be told. A Secure cookie (production's default) is named `__Host-cq_session`,
which browsers accept only over HTTPS, host-only and for Path=/, so none can be planted beside it;
a player's older `cq_session` is still read while they have no `__Host-` one, and the answer moves
it: the session under the new name, the old name expired.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import math
import os
import secrets
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path

import orjson
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Scope

from services.gateway.layers import Call
from services.gateway.store import RateLimit, Store
from shared import keys
from shared.protocol import SAVES, partition_of
from shared.settings import MIN_SECRET_LENGTH, Settings, parse_rate

log = logging.getLogger(__name__)

COOKIE_NAME = "cq_session"
HOST_COOKIE_NAME = "__Host-" + COOKIE_NAME  # the name of a Secure cookie
# Expires a player's cookie of the old name once the answer sets the new one.
EXPIRE_OLD_COOKIE = f"{COOKIE_NAME}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"
TWO_SESSIONS = "The request carries more than one session cookie"
VERIFIED_TOKENS = 8_192  # tokens a gateway process remembers as verified (their memory: docs/benchmarks.md)
SESSION_PATHS = ("/api/", "/session")
# The keys of a session's id that placed_session_id puts on its command partition's master, and the
# draws it makes at most: on three masters, enough for nearly every session. Not the game's document:
# CRC16 is linear, so `players:{id}` and `games:{id}` differ in slot by the same XOR for every id, and
# on three masters splitting the slots evenly the two never share the middle one.
PLACED_KEYS = (keys.session, keys.player)
PLACEMENT_DRAWS = 512


def new_session_id() -> str:
    """128 random bits as hex: URL-safe, and one token for Redis Search (no `-` or `_` to split on)."""
    return secrets.token_hex(16)


def placed_session_id(store: Store, partitions: int) -> str:
    """A new session id; on a Redis Cluster, one whose session, player's save and command partition
    share a master.

    The seed's key names carry no hash tag, so an id alone decides the slots of its session and saves,
    and (partition_of) its command streams'. The master is the one a first random id's session falls
    on, so sessions spread over the masters as their slots do; ids are then drawn until PLACED_KEYS
    and the partition are all there (about one draw in M**2 times the master's share of partitions,
    for M masters), at most PLACEMENT_DRAWS, else the first stands. Placed, admit.lua checks the
    session without a round trip of its own, and a worker writes the save in its partition's settle
    script, without a call to another master (docs/scaling.md, "Placed session ids"). An id placed
    otherwise (an older one, a recovered one, a slot moved since) works the same, at those calls' cost.
    """
    first = new_session_id()
    if not store.is_cluster:
        return first
    master = store.master_of(keys.session(first))
    if master is None or master not in {store.master_of(SAVES.key(partition)) for partition in range(partitions)}:
        return first  # no master serves its slot, or that master serves no partition
    for _ in range(PLACEMENT_DRAWS):
        candidate = new_session_id()
        if store.master_of(SAVES.key(partition_of(candidate, partitions))) == master and all(
            store.master_of(key(candidate)) == master for key in PLACED_KEYS
        ):
            return candidate
    return first


def stored_secret(path: Path) -> str:
    """The secret kept in `path`, made on first use: every gateway process and restart signs alike.

    Created under a temporary name and linked into place, so processes starting together agree on
    the one that lands first and none reads a half-written file.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        draft.write_text(secrets.token_urlsafe(32))
        draft.chmod(0o600)
        try:
            os.link(draft, path)
            log.info("generated a session secret into %s", path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    secret = path.read_text().strip()
    if len(secret) < MIN_SECRET_LENGTH:
        raise ValueError(f"{path} holds no session secret of {MIN_SECRET_LENGTH}+ characters; delete it")
    return secret


# The longest text of an IP address (IPv6 with an IPv4 tail and a zone), with room to spare.
MAX_ADDRESS_LENGTH = 64
NO_FORWARDED_ADDRESS = "X-Forwarded-For does not end in a client IP address"


def client_address(scope: Scope) -> str:
    """The caller's IP, which per-address limits count: the TCP peer, or, from a peer in
    FORWARDED_ALLOW_IPS, the address X-Forwarded-For names (uvicorn's ProxyHeadersMiddleware put it in
    the scope). That one is the proxy's word: anything but an IP is a 400, never a rate-limit key."""
    client = scope.get("client")
    if not client:
        return "unknown"
    host = str(client[0])
    if len(host) > MAX_ADDRESS_LENGTH or not is_ip_address(host):
        raise HTTPException(400, NO_FORWARDED_ADDRESS)
    return host


@lru_cache(maxsize=4096)
def is_ip_address(host: str) -> bool:
    """Cached: the same few addresses come again and again, and parsing one costs more than the lookup."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class CookieSigner:
    """`{session id}.{confirmed at}.{MAC}`: the id, and when Redis last confirmed it (epoch seconds).

    A token that verified is remembered (up to VERIFIED_TOKENS, then forgotten all at once): a
    session sends the same token on every request until it is re-confirmed, and the MAC was a
    visible share of a fast request's CPU (docs/benchmarks.md). Only tokens whose MAC matched are
    kept, so a forged one is checked in full every time and learns nothing from the cache.
    """

    def __init__(self, secret: str) -> None:
        # Keyed once: each MAC copies it rather than keying afresh, cheaper than hmac.new or hmac.digest.
        self._keyed = hmac.new(hashlib.sha256(secret.encode()).digest(), digestmod=hashlib.sha256)
        self._verified: dict[str, tuple[str, int]] = {}

    def _mac(self, claim: str) -> str:
        mac = self._keyed.copy()
        mac.update(claim.encode())
        digest = mac.digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def sign(self, session_id: str, confirmed_at: int) -> str:
        claim = f"{session_id}.{confirmed_at}"
        return f"{claim}.{self._mac(claim)}"

    def unsign(self, cookie: str | None) -> tuple[str, int] | None:
        if cookie is None:
            return None
        known = self._verified.get(cookie)
        if known is not None:
            return known
        if cookie.count(".") != 2:
            return None
        claim, mac = cookie.rsplit(".", 1)
        # Bytes, not str: compare_digest refuses non-ASCII text, and a cookie may carry any.
        if not hmac.compare_digest(mac.encode(), self._mac(claim).encode()):
            return None
        session_id, confirmed_at = claim.split(".")
        verified = session_id, int(confirmed_at)
        if len(self._verified) >= VERIFIED_TOKENS:
            self._verified.clear()
        self._verified[cookie] = verified
        return verified


class TwoSessions(HTTPException):
    """The session cookie came more than once: whose session the request is in cannot be told."""

    def __init__(self) -> None:
        super().__init__(400, TWO_SESSIONS)


def cookie_token(headers: Iterable[tuple[bytes, bytes]], cookie_name: str = COOKIE_NAME) -> str | None:
    """The cookie's value, straight from the raw headers; TwoSessions if it comes twice, with two values.

    The same value twice names one session: a client's jar may hold the cookie under two domains
    (httpx's, given a cookie for no domain, then sent it by the server)."""
    found = None
    for name, value in headers:
        if name == b"cookie":
            for pair in value.decode("latin-1").split(";"):
                key, _, token = pair.strip().partition("=")
                if key == cookie_name:
                    if found is not None and token != found:
                        raise TwoSessions
                    found = token
    return found


class SessionCookies:
    """Reads, checks and writes the session cookie; shared by the middleware and the hot path."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.signer = CookieSigner(settings.session_secret or stored_secret(settings.session_secret_file))
        self.secure = "; Secure" if settings.secure_cookie else ""
        self.name = HOST_COOKIE_NAME if settings.secure_cookie else COOKIE_NAME
        self.attributes = f"; Path=/; Max-Age={settings.session_max_age_s}; HttpOnly; SameSite=Lax{self.secure}"

    def read(self, scope: Scope, now: int, *, old_name: bool = False) -> tuple[str, int, str] | None:
        """The session id, when Redis last confirmed it, and the signed token; None if absent, forged
        or stamped in the future (no gateway could have confirmed it then). TwoSessions if the cookie
        came twice. `old_name`: a cookie named as before `__Host-` counts when the new one is absent."""
        token = cookie_token(scope["headers"], self.name)
        if token is None and old_name and self.name != COOKIE_NAME:
            token = cookie_token(scope["headers"], COOKIE_NAME)
        claim = self.signer.unsign(token)
        if claim is None or token is None or claim[1] > now + self.settings.session_clock_skew_s:
            return None
        return (*claim, token)

    def is_current(self, confirmed_at: int, now: int) -> bool:
        """Confirmed recently enough to trust without asking Redis again."""
        return now - confirmed_at < self.settings.session_refresh_s

    def set_cookie(self, token: str) -> str:
        """The rolling Set-Cookie header value: every response restarts the max age."""
        return f"{self.name}={token}{self.attributes}"

    def cleared(self) -> str:
        """The Set-Cookie header value that removes the session cookie (an erased account's)."""
        return f"{self.name}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{self.secure}"

    def moving(self, scope: Scope) -> bool:
        """Whether the request has the cookie under its old name only: the answer then expires that one."""
        headers = scope["headers"]
        if self.name == COOKIE_NAME or cookie_token(headers, self.name) is not None:
            return False
        return cookie_token(headers, COOKIE_NAME) is not None


class Sessions:
    """The layer that loads and refreshes the caller's session on API routes; `GET /session` creates one."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cookies = SessionCookies(settings)
        self.new_sessions = parse_rate(settings.rate_limit_address_sessions)

    async def enter(self, call: Call) -> Response | None:
        scope = call.scope
        if not scope["path"].startswith(SESSION_PATHS):
            return None
        now = int(time.time())
        session_id, confirmed_at, token = self.cookies.read(scope, now, old_name=True) or (None, 0, "")
        if session_id is not None and not self.cookies.is_current(confirmed_at, now):
            confirmed_at, token = now, ""  # signed anew below
            if not await write_session(call.state.store, self.settings, session_id, create=False):
                session_id = None  # expired, or Redis lost it
        if session_id is None and scope["path"] == "/session" and scope["method"] == "GET":
            limit = RateLimit.on(self.new_sessions, keys.rate_limit("address-sessions", client_address(scope)))
            store: Store = call.state.store
            await refuse_if_limited(store, limit, "Too many new sessions; slow down")
            session_id, confirmed_at, token = placed_session_id(store, self.settings.stream_partitions), now, ""
            await write_session(store, self.settings, session_id, create=True)
        if session_id is not None:
            call.caller = session_id
            # The token as sent while it is current (the same value, without computing its MAC again).
            call.cookie = self.cookies.set_cookie(token or self.cookies.signer.sign(session_id, confirmed_at))
            call.moving = self.cookies.moving(scope)
        return None

    def leave(self, call: Call, headers: list[tuple[bytes, bytes]]) -> None:
        if call.cookie:  # the caller's, or the one a route chose (recovery's)
            headers.append((b"set-cookie", call.cookie.encode("latin-1")))
        if call.moving:
            headers.append((b"set-cookie", EXPIRE_OLD_COOKIE.encode()))


async def write_session(store: Store, settings: Settings, session_id: str, *, create: bool) -> bool:
    """Write the session with a fresh expiry; only an existing one (and then its saves too) unless `create`."""
    max_age = settings.session_max_age_s
    expires = datetime.now(UTC) + timedelta(seconds=max_age)
    record = orjson.dumps({"cookie": {"expires": expires.isoformat(), "maxAge": max_age}})
    saves = [keys.player(session_id), keys.game(session_id)]
    ttl_s = max_age + settings.session_refresh_s
    return await store.write_session(
        keys.session(session_id), saves, record, ttl_s, create=create, saves_ttl_s=settings.save_ttl_s
    )


async def refuse_if_limited(store: Store, limits: list[RateLimit], message: str) -> None:
    """Count a hit on `limits` (keys of one slot); past them, a 429 with Retry-After."""
    wait_ms = await store.admit(limits)
    if wait_ms:
        raise HTTPException(429, message, {"Retry-After": str(math.ceil(wait_ms / 1000))})
