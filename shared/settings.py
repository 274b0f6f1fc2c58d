"""Every setting of every service, read once from the environment (and `.env`).

One class keeps the knobs in one place, as arq does: the README's configuration
table is this file, and a typo in a variable name is a start-up error rather
than a silent default.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared import seasons

# Once the default, and published with the code: a cookie signed with it is anyone's to forge.
PUBLISHED_SESSION_SECRET = "dev-only-insecure-secret-change-me"
MIN_SECRET_LENGTH = 32  # at least 128 bits in hex, more in any richer alphabet
MIN_ADMIN_TOKEN_LENGTH = 32
ADMIN_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
DATA_DIR = Path(__file__).resolve().parents[1] / ".data"  # git-ignored; `make run` keeps Redis here too
RATE = re.compile(r"\s*([1-9][0-9]*)\s*/\s*(second|minute|hour|day)\s*")
MAX_EXACT_INTEGER = 2**53
PERIOD_MS = {"second": 1000, "minute": 60_000, "hour": 3_600_000, "day": 86_400_000}


def parse_rate(text: str) -> tuple[int, int] | None:
    """`"240/minute"` as (240, 60000 ms); an empty text is no limit."""
    if not text:
        return None
    match = RATE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a rate such as 240/minute (N/second|minute|hour|day)")
    return int(match[1]), PERIOD_MS[match[2]]


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache
def parse_networks(text: str, setting: str) -> tuple[Network, ...]:
    """`"127.0.0.1, 10.0.0.0/8"` as networks (an address is a network of one); ValueError naming `setting`."""
    try:
        return tuple(ipaddress.ip_network(item.strip()) for item in text.split(",") if item.strip())
    except ValueError as error:
        raise ValueError(f"{setting}: {error} (want addresses and networks, comma-separated)") from None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    environment: Literal["development", "production"] = "development"
    redis_url: str = "redis://localhost:6379/0"
    host: str = "127.0.0.1"
    port: int = Field(3000, ge=1, le=65535)
    log_level: str = "INFO"
    # text: readable lines; json: one JSON object a line (time, level, logger, message, request_id), for a
    # log pipeline. Every service, uvicorn's own lines included (shared/logs.py).
    log_format: Literal["text", "json"] = "text"
    access_log: bool = False  # one line per HTTP request: useful when debugging, costly under load
    gateway_processes: int = Field(1, ge=1, le=64)
    # Count every HTTP request for GET /metrics (by route, method, status, and its latency). Off, /metrics
    # still shows the streams, groups and workers; `make bench`'s metrics phase measures what it costs.
    http_metrics: bool = True
    # /docs, /redoc (Swagger UI and ReDoc load from a CDN, on the game's origin) and /openapi.json;
    # unset: on in development, off in production.
    api_docs: bool | None = None

    # Sessions: the cookie and the Redis key share one clock (see services/gateway/sessions.py).
    # Empty: production refuses to start; development generates one into SESSION_SECRET_FILE.
    session_secret: str = ""
    session_secret_file: Path = DATA_DIR / "session-secret"
    session_max_age_s: int = Field(7 * 24 * 3600, gt=0)
    session_refresh_s: int = Field(60, ge=0)
    # How far in the future a cookie's stamp may be (gateways' clocks differ a little); beyond: no session.
    session_clock_skew_s: int = Field(5, ge=0, le=300)
    # The cookie's Secure attribute; unset: on in production, off in development (plain-HTTP localhost).
    # A Secure cookie is named `__Host-cq_session` (host-only, Path=/, HTTPS only: a sibling subdomain
    # or a plain-HTTP man in the middle cannot set it); COOKIE_SECURE=false in production says otherwise.
    cookie_secure: bool | None = None

    # Command round trip: the gateway waits this long for a reply; the event's deadline is the same.
    request_timeout_ms: int = Field(5000, gt=0)
    # A reply is read the moment it is written (the caller is already blocked on it), or a few ms later.
    reply_ttl_s: int = Field(10, gt=0)
    # Each write in flight blocks a Redis connection of its own on its reply: at most this many per
    # gateway process (more writes wait for one to free up), so bursts cannot exhaust Redis's clients
    # (maxclients, 10,000 by default); and each closes once idle this long, so none outlive a burst.
    reply_wait_connections: int = Field(256, ge=1, le=4096)
    reply_wait_idle_s: int = Field(5, ge=1, le=3600)

    # Workers.
    batch_size: int = Field(200, gt=0)
    block_ms: int = Field(1000, gt=0)
    claim_idle_ms: int = Field(15000, gt=0)
    max_deliveries: int = Field(5, gt=0)
    # Payload bytes one settle script applies: Redis runs a script alone, so this bounds how long one
    # batch of the largest saves makes everyone else wait (a batch larger than this settles in parts).
    batch_max_bytes: int = Field(512 * 1024, ge=1024)
    # Only long enough for a claim (CLAIM_IDLE_MS, then the next sweep): every entry kept costs
    # Redis memory and each AOF rewrite, at the rate the saves arrive.
    stream_retention_ms: int = Field(60 * 1000, gt=0)
    consumer_reap_ms: int = Field(5 * 60 * 1000, gt=0)
    # Each command stream is split into this many partitions (`stream:{N}:saves`, ...), whose keys
    # share the hash tag {N}: on a Redis Cluster a partition lives in one slot, the partitions spread
    # over the masters. Lowering it strands what the dropped partitions hold: drain them first.
    stream_partitions: int = Field(1, ge=1, le=1024)
    # What a write's 2xx promises (docs/reliability.md, "Durability"). local: it is applied on its
    # master, which replicates it a moment later (a failover in that moment loses it). replicated: it
    # is on its master and on DURABILITY_REPLICAS of that master's replicas (Redis WAIT) before anyone
    # is answered; a write whose replicas do not confirm within DURABILITY_TIMEOUT_MS is answered 503.
    durability: Literal["local", "replicated"] = "local"
    durability_replicas: int = Field(1, ge=1, le=16)
    durability_timeout_ms: int = Field(1000, ge=1, le=60_000)

    # Connections (services/gateway/server.py). A browser's head is under 2 KiB; 16 KiB, as in
    # Node and h11, leaves room for cookies of other apps on the same host, and bounds what a
    # held connection costs the process (431 above).
    max_head_bytes: int = Field(16 * 1024, ge=8 * 1024, le=1024 * 1024)
    # From a request's first byte (or the connection's opening) to the end of its head: a head
    # comes in one packet, so this only ends slowloris clients and idle unused connections (408).
    head_timeout_s: float = Field(10, ge=0.5, le=300)
    # From the end of the head to the end of the body: MAX_BODY_BYTES at 20 kbit/s (408 after).
    body_timeout_s: float = Field(30, ge=0.5, le=600)
    # An idle keep-alive connection is closed after this (uvicorn's default); behind a proxy, set it
    # above the proxy's own idle timeout so the proxy never reuses a connection being closed.
    keep_alive_s: int = Field(5, ge=1, le=3600)
    # Per gateway process. Each costs a descriptor and 5 KiB (20 with an unfinished 15 KiB head):
    # 4096 is at most about 85 MB. Lowered, with a warning, if the open-file limit leaves less room.
    max_connections: int = Field(4096, ge=16, le=1_000_000)
    # Per gateway process, connections one client address may hold (an IPv6 client: its /64), so one
    # address cannot take the slots of others; room for players behind one NAT. Not counted for peers
    # in FORWARDED_ALLOW_IPS: a proxy carries many players, and the proxy limits each of them.
    max_connections_per_address: int = Field(256, ge=1, le=1_000_000)
    # Requests a connection may have parsed and not yet answered (pipelined): past it, reading pauses.
    max_pipelined: int = Field(16, ge=1, le=1024)
    # A connection whose client reads none of its answers (the write buffer stays full) this long is cut.
    send_timeout_s: float = Field(30, ge=0.5, le=600)
    # On SIGTERM the gateway stops accepting, closes idle connections and unfinished requests at once,
    # and gives requests being answered this long (by default a command's own deadline, REQUEST_TIMEOUT_MS).
    graceful_shutdown_s: int = Field(5, ge=1, le=300)

    # Input limits.
    max_body_bytes: int = Field(64 * 1024, gt=0)
    max_json_depth: int = Field(32, gt=0)
    # Values (objects, arrays, strings, numbers, ...) in one save: RedisJSON spends several bytes on each,
    # so a body of tiny values took many times its size in Redis (docs/benchmarks.md). The game's saves
    # hold a few dozen.
    max_json_values: int = Field(1024, ge=16, le=100_000)
    # A save expires this long after its last write or its session's last refresh in Redis, so the saves
    # of a session that never comes back go too. Must outlive the session (SESSION_MAX_AGE_S).
    save_ttl_s: int = Field(30 * 24 * 3600, gt=0)
    # A recovery code (POST /session/recovery) is valid this long after it was issued or last used, unless
    # a newer one revoked it. Longer than SAVE_TTL_S, so it still leads to the saves of a player who
    # stopped playing the day they got it; after their saves expired it leads to their id and board entries.
    recovery_ttl_days: int = Field(365, ge=1, le=3650)
    search_limit: int = Field(20, gt=0, le=1000)
    leaderboard_maps: Annotated[tuple[str, ...], NoDecode] = ("Grassland", "Mountains", "Badlands")
    score_min: float = 0
    score_max: float = 1_000_000_000
    leaderboard_max_count: int = Field(100, gt=0)
    # none, daily, weekly or monthly (UTC); every:<N>s cuts N-second seasons, for tests and demos.
    leaderboard_season: str = "none"
    # Finished seasons whose archives are kept (readable with ?season=); older ones expire.
    leaderboard_seasons_kept: int = Field(12, ge=1, le=1000)
    # Verified runs (POST /api/leaderboard/{key}/runs): the boards that take a score only with a run
    # (maps, comma-separated, or `all`; empty: none, as the seed's client sends no run), and a run's
    # bounds: its shortest and longest duration, and the most it may score, per second played plus a
    # base. RUN_BOUNDS overrides them per map (RunBounds.parse).
    leaderboard_verified: Annotated[tuple[str, ...], NoDecode] = ()
    run_min_s: float = Field(1, ge=0)
    run_max_s: int = Field(3600, ge=1, le=7 * 86400)
    run_score_per_s: float = Field(2000, ge=0)
    run_score_base: float = Field(1000, ge=0)
    run_bounds: str = Field("", max_length=4096)

    # Live tops (GET /api/leaderboard/{key}/live, services/gateway/live.py), counted per gateway process:
    # event streams one address may hold open (429 past it; several browser tabs, or players behind one
    # NAT), and in all (503 past it), which leaves MAX_CONNECTIONS room for the other requests.
    live_max_per_address: int = Field(20, ge=1, le=100_000)
    live_max_listeners: int = Field(3000, ge=1, le=1_000_000)
    # A comment line this often on every stream, so proxies and browsers see a live connection.
    live_heartbeat_s: float = Field(15, ge=0.05, le=3600)

    # Rate limits ("N/second|minute|hour"; empty turns one off), counted in Redis.
    rate_limit_session_writes: str = "240/minute"
    rate_limit_address_writes: str = "2400/minute"
    rate_limit_address_sessions: str = "30/minute"
    # Recovery code attempts (POST /session/recover), per client address and per code prefix (its first
    # group, whatever the address): docs/reliability.md works out what they leave a guesser.
    rate_limit_address_recoveries: str = "20/hour"
    rate_limit_prefix_recoveries: str = "20/day"
    # Peers whose X-Forwarded-For names the client, as uvicorn reads it: comma-separated addresses or
    # networks (10.0.0.0/8), or * for any. Empty trusts none, so the client is the TCP peer: uvicorn's
    # own default, 127.0.0.1 and ::1, would let any process on the host choose the address it counts as.
    forwarded_allow_ips: str = Field("", max_length=4096)
    # Who may read GET /metrics (addresses or networks): the client as above, so a request forwarded by a
    # trusted proxy counts as its player's, not the proxy's. Others get a 403.
    metrics_allow: str = Field("127.0.0.1,::1", max_length=4096)

    # The operators' console (services/gateway/admin.py): `name:token` pairs, comma-separated. The name is
    # what the audit records; the token is sent as `Authorization: Bearer <token>`. Empty: every /admin
    # path is a 404. A token is a secret of MIN_ADMIN_TOKEN_LENGTH characters or more: guessing one is
    # hopeless, and the failure limit below keeps the attempts few.
    admin_tokens: Annotated[tuple[tuple[str, str], ...], NoDecode] = ()
    # Wrong or missing tokens one address may send (then 429); a right token is never refused by it.
    rate_limit_admin_failures: str = "10/minute"
    # The admin routes in /openapi.json (when API_DOCS serves it); off, the public API document omits them.
    admin_openapi: bool = False
    # Admin writes the audit keeps, newest first (a capped stream).
    admin_audit_kept: int = Field(10_000, ge=100, le=10_000_000)

    @field_validator(
        "rate_limit_session_writes",
        "rate_limit_address_writes",
        "rate_limit_address_sessions",
        "rate_limit_address_recoveries",
        "rate_limit_prefix_recoveries",
        "rate_limit_admin_failures",
    )
    @classmethod
    def _check_rate(cls, rate: str) -> str:
        parse_rate(rate)  # raises ValueError with the reason
        return rate

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _check_forwarded(cls, value: str) -> str:
        """Addresses and networks only: uvicorn would take a typo for a host name and never match it."""
        peers = [peer.strip() for peer in value.split(",") if peer.strip()]
        parse_networks(",".join(peer for peer in peers if peer != "*"), "FORWARDED_ALLOW_IPS")
        return ",".join(peers)

    @field_validator("metrics_allow")
    @classmethod
    def _check_metrics_allow(cls, value: str) -> str:
        parse_networks(value, "METRICS_ALLOW")
        return value

    @field_validator("admin_tokens", mode="before")
    @classmethod
    def _split_admin_tokens(cls, pairs: object) -> object:
        """`ADMIN_TOKENS=alice:<token>,bob:<token>` as ((name, token), ...); names and tokens are unique."""
        if not isinstance(pairs, str):
            return pairs
        found: list[tuple[str, str]] = []
        for pair in (item.strip() for item in pairs.split(",") if item.strip()):
            name, colon, token = (part.strip() for part in pair.partition(":"))
            if not colon or not ADMIN_NAME.fullmatch(name) or len(token) < MIN_ADMIN_TOKEN_LENGTH:
                raise ValueError(
                    f"ADMIN_TOKENS must be name:token pairs, comma-separated: each name 1 to 32 letters, digits, "
                    f"`_` or `-`, each token {MIN_ADMIN_TOKEN_LENGTH}+ characters (`openssl rand -hex 32`)"
                )
            found.append((name, token))
        names, tokens = [name for name, _ in found], [token for _, token in found]
        if len(set(names)) < len(names) or len(set(tokens)) < len(tokens):
            raise ValueError("ADMIN_TOKENS: each name and each token must be given once")
        return tuple(found)

    @field_validator("leaderboard_season")
    @classmethod
    def _check_season(cls, mode: str) -> str:
        return seasons.check_mode(mode)

    @field_validator("leaderboard_maps", mode="before")
    @classmethod
    def _split_maps(cls, maps: object) -> object:
        """`LEADERBOARD_MAPS=Grassland,Mountains` rather than JSON."""
        if isinstance(maps, str):
            maps = tuple(name.strip() for name in maps.split(",") if name.strip())
        return maps

    @field_validator("leaderboard_maps")
    @classmethod
    def _check_maps(cls, maps: tuple[str, ...]) -> tuple[str, ...]:
        if not maps or not all(name.isalnum() and name.isascii() for name in maps):
            raise ValueError("LEADERBOARD_MAPS must be a comma-separated list of letters-and-digits names")
        return maps

    @field_validator("leaderboard_verified", mode="before")
    @classmethod
    def _split_verified(cls, maps: object) -> object:
        """`LEADERBOARD_VERIFIED=Grassland,Badlands` or `all`, rather than JSON."""
        return cls._split_maps(maps)

    @cached_property
    def runs(self) -> dict[str, RunBounds]:
        """Each map's verified-run bounds."""
        default = RunBounds(self.run_min_s, self.run_max_s, self.run_score_per_s, self.run_score_base)
        return parse_run_bounds(self.run_bounds, self.leaderboard_maps, default)

    def verified(self, map_name: str) -> bool:
        """Whether the map's board takes a score only with a run (LEADERBOARD_VERIFIED)."""
        return "all" in self.leaderboard_verified or map_name in self.leaderboard_verified

    @property
    def secure_cookie(self) -> bool:
        """COOKIE_SECURE, or, unset, whether this is production."""
        return self.environment == "production" if self.cookie_secure is None else self.cookie_secure

    @model_validator(mode="after")
    def _check(self) -> Settings:
        # A claimed entry must already be past its deadline, so a claim never
        # races the slow-but-alive consumer that still holds it.
        if self.claim_idle_ms <= self.request_timeout_ms:
            raise ValueError("CLAIM_IDLE_MS must be greater than REQUEST_TIMEOUT_MS")
        # An abandoned entry is claimed by the first sweep (every CLAIM_IDLE_MS / 2) after it has
        # idled CLAIM_IDLE_MS: trimming must wait for that.
        if self.stream_retention_ms <= self.claim_idle_ms * 3 // 2:
            raise ValueError("STREAM_RETENTION_MS must be greater than 1.5 x CLAIM_IDLE_MS")
        if self.session_secret == PUBLISHED_SESSION_SECRET:
            raise ValueError("SESSION_SECRET is the published example value: anyone could forge a session")
        if self.environment == "production" and not self.session_secret:
            raise ValueError("SESSION_SECRET must be set in production (ENVIRONMENT=production)")
        if self.session_secret and len(self.session_secret) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"SESSION_SECRET must be at least {MIN_SECRET_LENGTH} random characters "
                "(for example the output of `openssl rand -hex 32`)"
            )
        # A save must outlive every session that may still come back to it.
        if self.save_ttl_s <= self.session_max_age_s + self.session_refresh_s:
            raise ValueError("SAVE_TTL_S must be greater than SESSION_MAX_AGE_S + SESSION_REFRESH_S")
        if self.recovery_ttl_days * 86400 <= self.save_ttl_s:
            raise ValueError("RECOVERY_TTL_DAYS must be longer than SAVE_TTL_S: a code outlives its saves")
        # A season's archive must outlast the latest score of that season a worker may still apply.
        every = seasons.EVERY.fullmatch(self.leaderboard_season)
        if every and int(every[1]) * 1000 * self.leaderboard_seasons_kept <= self.request_timeout_ms:
            raise ValueError("LEADERBOARD_SEASONS_KEPT seasons of LEADERBOARD_SEASON must outlast REQUEST_TIMEOUT_MS")
        # A write waits for its replicas within its caller's deadline, with time left to answer.
        if self.durability == "replicated" and self.durability_timeout_ms >= self.request_timeout_ms:
            raise ValueError("DURABILITY_TIMEOUT_MS must be below REQUEST_TIMEOUT_MS")
        if self.score_min >= self.score_max:
            raise ValueError("SCORE_MIN must be below SCORE_MAX")
        unknown = set(self.leaderboard_verified) - {*self.leaderboard_maps, "all"}
        if unknown:
            raise ValueError(f"LEADERBOARD_VERIFIED names no map of LEADERBOARD_MAPS: {', '.join(sorted(unknown))}")
        _ = self.runs  # RUN_BOUNDS parsed now: a mistake stops the start, with its reason
        # Past 2^53 a JSON integer can't be stored exactly as Redis's (and JavaScript's) double.
        if max(abs(self.score_min), abs(self.score_max)) > MAX_EXACT_INTEGER:
            raise ValueError(f"SCORE_MIN and SCORE_MAX must lie within +-{MAX_EXACT_INTEGER} (2^53)")
        return self


@dataclass(frozen=True, slots=True)
class RunBounds:
    """A board's verified-run bounds: a run shorter than `min_s` or scoring more than
    `per_s * seconds + base` is refused, and a run expires after `max_s`."""

    min_s: float
    max_s: int
    per_s: float
    base: float

    def most(self, seconds: float) -> float:
        return self.per_s * seconds + self.base


def parse_run_bounds(text: str, maps: tuple[str, ...], default: RunBounds) -> dict[str, RunBounds]:
    """Every map's bounds: `default`, with RUN_BOUNDS's overrides, `map:min_s:max_s:per_s:base` separated
    by commas, a field left empty keeping the default (`Badlands:10::50:` changes two)."""
    bounds = dict.fromkeys(maps, default)
    for part in filter(None, (part.strip() for part in text.split(","))):
        fields = part.split(":")
        if len(fields) != 5 or fields[0] not in bounds:
            raise ValueError(f"RUN_BOUNDS: {part!r} is not `map:min_s:max_s:per_s:base` for a map of LEADERBOARD_MAPS")
        name, *values = fields
        min_s, max_s, per_s, base = values
        try:
            found = RunBounds(
                float(min_s) if min_s else default.min_s,
                int(max_s) if max_s else default.max_s,
                float(per_s) if per_s else default.per_s,
                float(base) if base else default.base,
            )
        except ValueError:
            raise ValueError(f"RUN_BOUNDS: {part!r} holds something that is not a number") from None
        if min(found.min_s, found.per_s, found.base) < 0 or not 0 < found.max_s > found.min_s:
            raise ValueError(f"RUN_BOUNDS: {part!r} must be positive, with max_s above min_s")
        bounds[name] = found
    return bounds


@lru_cache
def get_settings() -> Settings:
    return Settings()
