"""What the benchmark sends: realistic player documents and the request mix of each operation.

Every request carries the cookie of the session whose document it names, so the
gateway's ownership checks pass and each request does the full work of a real one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import cycle, islice

import orjson

BOARD = "leaderboards:survivor-Grassland"
TOP_PATH = f"/api/leaderboard/{BOARD}?count=10"
# Your rank and neighbours, and a page deep in the board: each within 20% of the top-10 read (issue 14).
ME_PATH = f"/api/leaderboard/{BOARD}/me?around=5"
PAGE_PATH = f"/api/leaderboard/{BOARD}?count=10&offset=50000"
OPERATIONS = ("save", "score", "top", "read", "mixed", "me", "page")
# The seed client's spelling (`PATCH /api/playerstate/`), which must cost what the bare one does.
SLASHED = ("save-slashed", "read-slashed")
# A game session: saves at checkpoints, looks at the boards between runs, posts a score after one.
MIX = {"save": 4, "read": 2, "top": 3, "score": 1}
SCORES_PER_SESSION = 4  # distinct scores per session, so ZADD GT both moves and keeps members


@dataclass(frozen=True)
class Session:
    id: str
    cookie: str  # "name=value", as a browser sends it back


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    cookie: str
    body: bytes = b""

    def line(self) -> bytes:
        """One line of the file bench/lua/replay.lua reads."""
        return b"\t".join((self.method.encode(), self.path.encode(), self.cookie.encode(), self.body)) + b"\n"


def player_document(session_id: str, seed: int = 0) -> dict[str, object]:
    """About 500 bytes of JSON, shaped like the game's save: stats, position, skills, kill counts."""
    rng = random.Random(f"{session_id}{seed}")
    return {
        "id": session_id,
        "name": f"Hero_{session_id[:6]}",
        "level": rng.randint(1, 60),
        "xp": rng.randint(0, 250_000),
        "gold": rng.randint(0, 99_999),
        "health": {"current": rng.randint(1, 100), "max": 100, "dungeon": rng.randint(0, 100)},
        "map": "Grassland",
        "position": {"x": round(rng.uniform(0, 2048), 2), "y": round(rng.uniform(0, 2048), 2)},
        "skillUnlocked": {"swordBeam": True, "dash": rng.random() > 0.5, "shield": False, "fireball": True},
        "inventory": [{"item": name, "count": rng.randint(1, 20)} for name in ("potion", "key", "arrow", "gem")],
        "kills": {"slime": rng.randint(0, 900), "bat": rng.randint(0, 500), "skeleton": rng.randint(0, 200)},
        "chapter": rng.randint(1, 3),
        "playTimeS": rng.randint(0, 360_000),
        "settings": {"music": 0.7, "sfx": 0.9, "language": "en"},
    }


def save_request(session: Session, slash: str = "") -> Request:
    body = orjson.dumps({"playerData": player_document(session.id)})
    return Request("PATCH", f"/api/playerstate{slash}", session.cookie, body)


def create_request(session: Session) -> Request:
    body = orjson.dumps({"playerData": player_document(session.id)})
    return Request("POST", "/api/playerstate", session.cookie, body)


def score_request(session: Session, score: int) -> Request:
    body = orjson.dumps({"key": BOARD, "score": score, "member": f"Bench-{session.id}"})
    return Request("POST", "/api/leaderboard", session.cookie, body)


def read_request(session: Session, slash: str = "") -> Request:
    return Request("GET", f"/api/playerstate/{session.id}{slash}", session.cookie)


def top_request(session: Session) -> Request:
    return Request("GET", TOP_PATH, session.cookie)


def me_request(session: Session) -> Request:
    return Request("GET", ME_PATH, session.cookie)


def page_request(session: Session) -> Request:
    return Request("GET", PAGE_PATH, session.cookie)


def requests_for(operation: str, sessions: list[Session], seed: int = 5) -> list[Request]:
    """The requests wrk cycles through for one operation (or for `ping`, the load generator's ceiling)."""
    rng = random.Random(seed)
    if operation == "ping":
        return [Request("GET", "/ping", "")]
    if operation == "mixed":
        mixed = [
            request
            for kind, weight in MIX.items()
            for request in islice(cycle(one_kind(kind, sessions, rng)), weight * len(sessions))
        ]
        rng.shuffle(mixed)
        return mixed
    return one_kind(operation, sessions, rng)


def one_kind(operation: str, sessions: list[Session], rng: random.Random) -> list[Request]:
    if operation == "save":
        return [save_request(session) for session in sessions]
    if operation == "read":
        return [read_request(session) for session in sessions]
    if operation == "save-slashed":
        return [save_request(session, "/") for session in sessions]
    if operation == "read-slashed":
        return [read_request(session, "/") for session in sessions]
    if operation == "top":
        return [top_request(session) for session in sessions]
    if operation == "me":
        return [me_request(session) for session in sessions]
    if operation == "page":
        return [page_request(session) for session in sessions]
    if operation == "score":
        return [
            score_request(session, rng.randint(1, 1_000_000)) for _ in range(SCORES_PER_SESSION) for session in sessions
        ]
    raise ValueError(f"unknown operation {operation!r}")
