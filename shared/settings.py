"""Every setting of every service, read once from the environment (and `.env`).

One class keeps the knobs in one place, as arq does: the README's configuration
table is this file, and a typo in a variable name is a start-up error rather
than a silent default.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_SESSION_SECRET = "dev-only-insecure-secret-change-me"
RATE = re.compile(r"\s*([1-9][0-9]*)\s*/\s*(second|minute|hour|day)\s*")
PERIOD_MS = {"second": 1000, "minute": 60_000, "hour": 3_600_000, "day": 86_400_000}


def parse_rate(text: str) -> tuple[int, int] | None:
    """`"240/minute"` as (240, 60000 ms); an empty text is no limit."""
    if not text:
        return None
    match = RATE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a rate such as 240/minute (N/second|minute|hour|day)")
    return int(match[1]), PERIOD_MS[match[2]]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    environment: Literal["development", "production"] = "development"
    redis_url: str = "redis://localhost:6379/0"
    host: str = "127.0.0.1"
    port: int = Field(3000, ge=1, le=65535)
    log_level: str = "INFO"
    access_log: bool = False  # one line per HTTP request: useful when debugging, costly under load
    gateway_processes: int = Field(1, ge=1, le=64)
    hot_path: bool = True  # the hot routes answered before FastAPI (services/gateway/hotpath.py)

    # Sessions: the cookie and the Redis key share one clock (see services/gateway/sessions.py).
    session_secret: str = DEFAULT_SESSION_SECRET
    session_max_age_s: int = Field(7 * 24 * 3600, gt=0)
    session_refresh_s: int = Field(60, ge=0)
    cookie_secure: bool = False

    # Command round trip: the gateway waits this long for a reply; the event's deadline is the same.
    request_timeout_ms: int = Field(5000, gt=0)
    # A reply is read the moment it is written (the caller is already blocked on it), or a few ms later.
    reply_ttl_s: int = Field(10, gt=0)

    # Workers.
    batch_size: int = Field(200, gt=0)
    block_ms: int = Field(1000, gt=0)
    claim_idle_ms: int = Field(15000, gt=0)
    max_deliveries: int = Field(5, gt=0)
    # Only long enough for a claim (CLAIM_IDLE_MS, then the next sweep): at 4,000 saves/s, every
    # minute kept is about 240,000 entries in Redis memory and in each AOF rewrite.
    stream_retention_ms: int = Field(60 * 1000, gt=0)
    consumer_reap_ms: int = Field(5 * 60 * 1000, gt=0)

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
    # On SIGTERM the gateway stops accepting, closes idle connections and unfinished requests at once,
    # and gives requests being answered this long (by default a command's own deadline, REQUEST_TIMEOUT_MS).
    graceful_shutdown_s: int = Field(5, ge=1, le=300)

    # Input limits.
    max_body_bytes: int = Field(64 * 1024, gt=0)
    max_json_depth: int = Field(32, gt=0)
    search_limit: int = Field(20, gt=0, le=1000)
    leaderboard_maps: Annotated[tuple[str, ...], NoDecode] = ("Grassland", "Mountains", "Badlands")
    score_min: float = 0
    score_max: float = 1_000_000_000
    leaderboard_max_count: int = Field(100, gt=0)

    # Rate limits ("N/second|minute|hour"; empty turns one off), counted in Redis.
    rate_limit_session_writes: str = "240/minute"
    rate_limit_address_writes: str = "2400/minute"
    rate_limit_address_sessions: str = "30/minute"

    @field_validator("rate_limit_session_writes", "rate_limit_address_writes", "rate_limit_address_sessions")
    @classmethod
    def _check_rate(cls, rate: str) -> str:
        parse_rate(rate)  # raises ValueError with the reason
        return rate

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
        if self.environment == "production" and self.session_secret == DEFAULT_SESSION_SECRET:
            raise ValueError("SESSION_SECRET must be set in production (ENVIRONMENT=production)")
        if self.score_min >= self.score_max:
            raise ValueError("SCORE_MIN must be below SCORE_MAX")
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
