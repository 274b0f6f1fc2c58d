"""The consumer loop with real worker processes: sharing, crashes, poison, deadlines, draining."""

from __future__ import annotations

import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

import redis

from devtools.stack import Stack
from shared import keys
from shared.connection import TRANSPORT_LEAKS, unavailable
from shared.protocol import SAVES, SCORES, Event, EventType, Reply
from tests.conftest import ARTIFACTS, FAST, Player, StackFactory, eventually, fresh_redis, run_python


def client(stack: Stack) -> redis.Redis:
    return redis.Redis.from_url(stack.redis_url, protocol=3)


def push(db: redis.Redis, event: Event) -> None:
    stream = SCORES.key(0) if event.type is EventType.SCORE_SUBMIT else SAVES.key(0)
    db.xadd(stream, event.encode())  # type: ignore[arg-type]


def push_all(db: redis.Redis, saves: list[Event]) -> None:
    with db.pipeline(transaction=False) as pipe:
        for event in saves:
            pipe.xadd(SAVES.key(0), event.encode())  # type: ignore[arg-type]
        pipe.execute()


def new_save(session: str | None = None, timeout_ms: int = 30_000, **fields: Any) -> Event:
    session = session or Event.new(EventType.PLAYER_CREATE, "", None, 0, 0).id  # any fresh 32-hex id
    return Event.new(EventType.PLAYER_CREATE, session, {"id": session, **fields}, timeout_ms, 0)


def reply_of(db: redis.Redis, event: Event, timeout_s: float = 10) -> Reply | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        entries = db.xrange(event.reply_to)
        if entries:
            return Reply.decode(entries[0][1])  # type: ignore[arg-type]
        time.sleep(0.02)
    return None


def pending(db: redis.Redis, consumer_pid: int | None = None) -> int:
    consumers = db.xinfo_consumers(SAVES.key(0), keys.SAVES_GROUP)
    return sum(c["pending"] for c in consumers if consumer_pid is None or f"-{consumer_pid}-" in c["name"].decode())


def dead_letters(db: redis.Redis) -> list[dict[bytes, bytes]]:
    return [fields for _id, fields in db.xrange(keys.dead_letters(0))]  # type: ignore[union-attr, misc]


def applied_counts(log_file: Path, service: str) -> list[int]:
    return [int(n) for n in re.findall(rf"\[{service}-\d+\] .*stopped: applied (\d+)", log_file.read_text())]


def test_two_workers_share_a_burst_and_apply_each_event_once(make_stack: StackFactory, request: Any) -> None:
    stack = make_stack(saves=2, BATCH_SIZE="10")
    db = client(stack)
    events = [new_save(level=n) for n in range(600)]
    push_all(db, events)
    replies = [reply_of(db, event) for event in events]
    assert all(reply == Reply.message(200, "Player created") for reply in replies)
    assert all(db.json().get(keys.player(e.session)) == e.payload for e in events)
    for name in ("saves-1", "saves-2"):
        assert stack.stop(name) == 0
    counts = applied_counts(ARTIFACTS / "logs" / f"{request.node.name}.log", "saves")
    assert len(counts) == 2 and all(counts), f"both workers took a share: {counts}"
    assert sum(counts) == len(events)  # nothing applied twice
    assert pending(db) == 0


def test_entries_of_a_killed_worker_are_claimed_and_retries_succeed(make_stack: StackFactory) -> None:
    stack = make_stack(saves=2, **{**FAST, "BLOCK_MS": "10000"})
    db = client(stack)
    players = [Player(stack.url) for _ in range(8)]
    victim = stack.processes["saves-1"]
    victim.send_signal(signal.SIGSTOP)  # blocked in XREADGROUP: Redis still hands it entries
    answers: dict[str, int] = {}

    def first_try(p: Player) -> None:
        answers[p.id] = p.save_with_fallback("playerstate", {"name": "Hero", "hp": 1}).status_code

    threads = [threading.Thread(target=first_try, args=(p,)) for p in players]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    stranded = pending(db, victim.pid)
    assert stranded > 0, "the stopped worker holds entries"
    stack.stop("saves-1", signal.SIGKILL)
    for thread in threads:
        thread.join()
    assert 504 in answers.values()  # its callers gave up after REQUEST_TIMEOUT_MS...
    for p in players:  # ...and their retries, as the game makes them, succeed on the live worker
        if answers[p.id] != 200:
            assert p.save_with_fallback("playerstate", {"name": "Hero", "hp": 1}).status_code == 200
        assert db.json().get(keys.player(p.id)) == {"id": p.id, "name": "Hero", "hp": 1}
    eventually(lambda: pending(db) == 0, 10, "the dead worker's entries are claimed and settled")
    reasons = [letter[b"dead_reason"].decode() for letter in dead_letters(db)]
    assert len(reasons) == stranded and all("abandoned past its deadline" in r for r in reasons)


def test_poison_goes_to_the_dead_letter_stream_and_the_worker_keeps_going(make_stack: StackFactory) -> None:
    stack = make_stack(**FAST)
    db = client(stack)
    wrong_stream = Event.new(EventType.SCORE_SUBMIT, "a" * 32, {}, 30_000, 0)
    not_owner = new_save()
    not_owner = Event(
        not_owner.id, not_owner.type, "b" * 32, not_owner.payload, not_owner.reply_to, not_owner.deadline_ms
    )
    db.xadd(SAVES.key(0), {"garbage": "1"})
    db.xadd(SAVES.key(0), {**wrong_stream.encode(), b"payload": b"{not json"})  # type: ignore[dict-item]
    db.xadd(SAVES.key(0), wrong_stream.encode())  # type: ignore[arg-type]
    push(db, not_owner)
    good = new_save(name="Hero")
    push(db, good)
    assert reply_of(db, good) == Reply.message(200, "Player created")
    assert reply_of(db, not_owner) == Reply.message(500, "The request could not be processed")
    eventually(lambda: len(dead_letters(db)) == 4, 5, "four dead letters")
    reasons = [letter[b"dead_reason"].decode() for letter in dead_letters(db)]
    assert reasons[0] == "missing field 'v'"
    assert reasons[1].startswith("malformed envelope")
    assert reasons[2] == f"event type score.submit does not belong on {SAVES.key(0)}"
    assert "session id" in reasons[3]
    assert pending(db) == 0


def test_an_entry_delivered_too_often_is_dead_lettered_with_an_error_reply(make_stack: StackFactory) -> None:
    stack = make_stack(**FAST)
    db = client(stack)
    stack.stop("saves-1")
    event = new_save(timeout_ms=60_000)
    push(db, event)
    for start in (">", "0", "0", "0", "0", "0"):  # a consumer that crashes on it, again and again
        db.xreadgroup(keys.SAVES_GROUP, "crashing-ghost", {SAVES.key(0): start})
    stack.spawn("saves")
    assert reply_of(db, event) == Reply.message(500, "The request could not be processed")
    letters = dead_letters(db)
    assert [letter[b"dead_reason"] for letter in letters] == [b"delivered 7 times"]
    assert not db.exists(keys.player(event.session))


def test_with_no_worker_the_caller_gets_a_json_504_in_time_and_nothing_late_is_applied(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(saves=0, leaderboard=0, **FAST)
    player = Player(stack.url)
    started = time.monotonic()
    answer = player.save("playerstate", {"name": "Late"}, "POST")
    elapsed = time.monotonic() - started
    assert answer.status_code == 504 and answer.json()["status"] == 504
    assert "did not answer in time" in answer.json()["message"]
    assert elapsed < 3  # the configured 1 s, plus the reply grace, plus slack for a busy machine
    stack.spawn("saves")  # the worker comes back: the caller gave up, so the save must not land
    db = client(stack)

    def settled() -> bool:
        groups = db.xinfo_groups(SAVES.key(0))
        return bool(groups) and groups[0]["lag"] == 0 and groups[0]["pending"] == 0

    eventually(settled, 10, "the stale event is read and acknowledged")
    assert not db.exists(keys.player(player.id))


def test_sigterm_finishes_and_acknowledges_the_batch_in_hand(make_stack: StackFactory) -> None:
    stack = make_stack(BATCH_SIZE="500")
    db = client(stack)
    events = [new_save(level=n) for n in range(3000)]
    push_all(db, events)
    eventually(lambda: db.exists(keys.player(events[0].session)) == 1, 10, "work has begun")
    assert stack.stop("saves-1", signal.SIGTERM) == 0
    assert pending(db) == 0  # everything it had read was applied and acknowledged
    applied = sum(1 for e in events if db.exists(keys.reply(0, e.id)))
    assert 0 < applied < len(events)  # it stopped reading part-way...
    assert applied == sum(1 for e in events if db.exists(keys.player(e.session)))  # ...and replied to all it applied


def test_indexes_created_by_racing_processes(tmp_path: Path) -> None:
    code = (
        "import asyncio, os\n"
        "from shared.connection import connect, ensure_indexes\n"
        "asyncio.run(ensure_indexes(connect(os.environ['REDIS_URL']).execute_command))\n"
    )
    with fresh_redis(tmp_path) as url:
        results: list[int] = []
        threads = [
            threading.Thread(target=lambda: results.append(run_python(code, {"REDIS_URL": url}).returncode))
            for _ in range(6)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results == [0] * 6
        indexes = redis.Redis.from_url(url).execute_command("FT._LIST")
        assert sorted(indexes) == [b"game-idx", b"player-idx"]


def test_a_command_redis_refuses_gets_an_error_reply_and_is_acknowledged(make_stack: StackFactory) -> None:
    stack = make_stack(**FAST)
    db = client(stack)
    broken, fine = new_save(update=1), new_save(update=2)
    db.set(keys.player(broken.session), "not a JSON document")  # JSON.SET on it fails: WRONGTYPE
    push_all(db, [broken, fine])
    assert reply_of(db, broken) == Reply.message(500, "The save could not be stored")
    assert reply_of(db, fine) == Reply.message(200, "Player created")
    assert db.get(keys.player(broken.session)) == b"not a JSON document"
    eventually(lambda: pending(db) == 0, 5, "both acknowledged")
    assert dead_letters(db) == []


def raised_in(filename: str, error: Exception) -> Exception:
    """`error`, raised by code that claims to live in `filename`."""
    try:
        exec(compile("raise error", filename, "exec"), {"error": error})
    except Exception as raised:
        return raised
    raise AssertionError("nothing was raised")


def test_a_closed_transport_inside_redis_py_is_a_lost_connection_and_nothing_else_is() -> None:
    """uvloop raises RuntimeError for a write to a closed transport, where asyncio's loop does not: raised
    inside redis-py's connection code as a master came back, it killed a worker (the retry loops catch
    what unavailable() calls unreachable)."""
    closed = "unable to perform operation on <TCPTransport closed=True>; the handler is closed"
    inside = raised_in("/venv/site-packages/redis/asyncio/connection.py", RuntimeError(closed))
    assert isinstance(inside, TRANSPORT_LEAKS) and unavailable(inside) == "unreachable"
    assert unavailable(raised_in("/work/shared/worker.py", RuntimeError(closed))) is None
