"""The dead-letter tool, run as an operator runs it (`python -m devtools.deadletters`), on real dead letters.

The letters are made by the real workers: poison they refuse, and commands they claim from a
consumer that died holding them, past the deadline (dead-lettered as abandoned).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import cast

import orjson
import pytest
import redis

from devtools.deadletters import parser
from devtools.stack import Stack
from services.deadletters import clock
from shared import keys
from shared.protocol import SAVES, SCORES, STREAM_OF, Event, EventType
from shared.worker import Entry, stream_entries
from tests.conftest import ARTIFACTS, FAST, ROOT, Player, eventually, free_port, fresh_redis, started
from tests.test_workers import new_save

BOARD = keys.leaderboard("Scores")


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack on a Redis of this module's own, with clocks short enough for a claim within a test."""
    log_file = ARTIFACTS / "logs/test_deadletters.log"
    with fresh_redis(tmp_path_factory.mktemp("redis")) as url, started(url, log_file, 1, 1, **FAST) as running:
        yield running


@pytest.fixture
def db(workers: Stack) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(workers.redis_url, protocol=3)
    client.delete(keys.dead_letters(0))  # each test sees only the letters it makes
    yield client
    client.close()


def deadletters(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devtools.deadletters", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def strand(db: redis.Redis, event: Event) -> None:
    """Leave the event as a worker that dies holding it does: read by a consumer that never acknowledges.

    One transaction, so the running worker never sees it as new; it claims it once it has idled
    CLAIM_IDLE_MS, finds it past its deadline, and dead-letters it as abandoned.
    """
    stream = STREAM_OF[event.type]
    with db.pipeline(transaction=True) as pipe:
        pipe.xadd(stream.key(0), event.encode())  # type: ignore[arg-type]
        pipe.xreadgroup(stream.group, "died-holding-it", {stream.key(0): ">"})
        added, read = pipe.execute()
    assert [entry_id for entry_id, _ in stream_entries(read)] == [added]


def letters(db: redis.Redis) -> list[Entry]:
    return cast(list[Entry], db.xrange(keys.dead_letters(0)))


def letter_of(db: redis.Redis, event: Event) -> str:
    """The id of the event's dead letter, once a worker has written it."""
    found: list[str] = []

    def written() -> bool:
        found[:] = [entry_id.decode() for entry_id, fields in letters(db) if fields.get(b"id") == event.id.encode()]
        return bool(found)

    eventually(written, 10, f"event {event.id} is dead-lettered")
    return found[0]


def poison(db: redis.Redis, fields: dict[bytes, bytes]) -> str:
    """Put an entry the saves worker refuses on its stream; the id of the dead letter it becomes."""
    before = len(letters(db))
    db.xadd(SAVES.key(0), fields)  # type: ignore[arg-type]
    eventually(lambda: len(letters(db)) > before, 5, "the poison is dead-lettered")
    return letters(db)[-1][0].decode()


def score(session: str, points: int) -> Event:
    payload = {"key": BOARD, "score": points, "member": f"Hero-{session}"}
    return Event.new(EventType.SCORE_SUBMIT, session, payload, 100, 0)  # past its deadline when it is claimed


def exists(db: redis.Redis, letter_id: str) -> bool:
    return bool(db.xrange(keys.dead_letters(0), letter_id, letter_id))


def test_list_shows_the_newest_first_and_show_prints_everything(workers: Stack, db: redis.Redis) -> None:
    junk = poison(db, {b"garbage": b"1"})
    save = new_save(timeout_ms=100, name="Hero", inventory=["sword", "map"])
    strand(db, save)
    abandoned = letter_of(db, save)

    listed = deadletters(workers.env, "list")
    assert listed.returncode == 0, listed.stderr
    newest, oldest = listed.stdout.splitlines()
    reason = "abandoned past its deadline after 2 deliveries"
    assert newest == f"{abandoned}  {clock(abandoned)}  {SAVES.key(0)}  player.create  {save.session}  {reason}"
    assert oldest == f"{junk}  {clock(junk)}  {SAVES.key(0)}  -  -  missing field 'v'"
    one = deadletters(workers.env, "list", "--count", "1")
    assert one.stdout.splitlines() == [newest] and "1 older" in one.stderr

    shown = deadletters(workers.env, "show", abandoned)
    assert shown.returncode == 0, shown.stderr
    assert "reason       abandoned past its deadline after 2 deliveries\n" in shown.stdout
    assert f"session      {save.session}\n" in shown.stdout
    assert f"replay       players:{save.session} does not exist: there is nothing newer to overwrite\n" in shown.stdout
    assert shown.stdout.endswith(f"payload\n{orjson.dumps(save.payload, option=orjson.OPT_INDENT_2).decode()}\n")


def test_replaying_a_score_records_it_and_removes_the_letter(workers: Stack, db: redis.Redis) -> None:
    event = score("c" * 32, 4242)
    strand(db, event)
    letter = letter_of(db, event)
    assert db.zscore(BOARD, f"Hero-{event.session}") is None

    replayed = deadletters(workers.env, "replay", letter)
    assert replayed.returncode == 0, replayed.stderr
    assert "a score only ever raises its board (ZADD GT): it replays freely" in replayed.stdout
    assert "the leaderboard worker answered 200 Score recorded" in replayed.stdout
    assert replayed.stdout.endswith(f"removed dead letter {letter}\n")
    assert db.zscore(BOARD, f"Hero-{event.session}") == 4242
    assert not exists(db, letter)


def test_replaying_a_save_over_an_existing_document_needs_force(workers: Stack, db: redis.Redis) -> None:
    player = Player(workers.url)
    older = new_save(player.id, timeout_ms=100, name="Hero", level=1)
    lost = new_save(timeout_ms=100, name="Nobody saved since", level=7)
    strand(db, older)
    strand(db, lost)
    assert player.save("playerstate", {"name": "Hero", "level": 9}, "POST").status_code == 200  # newer than the letter
    player.http.close()
    over, fresh = letter_of(db, older), letter_of(db, lost)

    refused = deadletters(workers.env, "replay", over)
    assert refused.returncode == 1
    assert refused.stderr == (
        f"deadletters: refused: players:{player.id} exists and may be newer than dead letter {over}: a replay would "
        f"replace the whole document; compare with `show {over}`, then `replay {over} --force` to do it\n"
    )
    assert db.json().get(keys.player(player.id)) == {"id": player.id, "name": "Hero", "level": 9}
    assert exists(db, over)

    forced = deadletters(workers.env, "replay", over, "--force")
    assert forced.returncode == 0, forced.stderr
    assert "a replay would replace the whole document: replacing it (--force)" in forced.stdout
    assert "the saves worker answered 200 Player created" in forced.stdout
    assert db.json().get(keys.player(player.id)) == older.payload
    assert not exists(db, over)

    applied = deadletters(workers.env, "replay", fresh)
    assert applied.returncode == 0, applied.stderr
    assert f"players:{lost.session} does not exist: there is nothing newer to overwrite" in applied.stdout
    assert db.json().get(keys.player(lost.session)) == lost.payload
    assert not exists(db, fresh)


def test_a_letter_that_does_not_exist_is_named(workers: Stack, db: redis.Redis) -> None:
    letter = poison(db, {b"garbage": b"1"})
    bare_time = letter.partition("-")[0]  # a range to Redis, which holds the letter: not its id
    for command, missing in [
        ("replay", "1-0"),
        ("replay", "not-an-id"),
        ("replay", bare_time),
        ("show", "1-0"),
        ("drop", "1-0"),
    ]:
        answer = deadletters(workers.env, command, missing)
        assert (answer.returncode, answer.stdout) == (1, "")
        assert answer.stderr == f"deadletters: no dead letter {missing}\n"
    assert exists(db, letter)


def test_drop_deletes_the_letter(workers: Stack, db: redis.Redis) -> None:
    letter = poison(db, {b"garbage": b"1"})
    dropped = deadletters(workers.env, "drop", letter)
    assert (dropped.returncode, dropped.stdout) == (0, f"dropped dead letter {letter} (missing field 'v')\n")
    assert letters(db) == []
    again = deadletters(workers.env, "drop", letter)
    assert (again.returncode, again.stderr) == (1, f"deadletters: no dead letter {letter}\n")


def test_what_cannot_be_replayed_is_shown_raw_and_refused(workers: Stack, db: redis.Redis) -> None:
    undecodable = poison(db, {b"garbage": b"\xff\x00", b"payload": b"{not json"})
    wrong_stream = poison(db, Event.new(EventType.SCORE_SUBMIT, "a" * 32, {}, 30_000, 0).encode())
    not_owner = new_save()
    not_theirs = poison(db, {**not_owner.encode(), b"session": b"b" * 32})
    published = db.xlen(SAVES.key(0))

    shown = deadletters(workers.env, "show", undecodable)
    assert shown.returncode == 0, shown.stderr
    refusal = f"dead letter {undecodable} cannot be replayed: it is not a decodable envelope (missing field 'v')"
    assert f"replay       refused: {refusal}\n" in shown.stdout
    assert "garbage      b'\\xff\\x00'\n" in shown.stdout  # not UTF-8: shown as its bytes literal
    assert "payload      {not json\n" in shown.stdout  # not JSON: shown as stored

    reasons = {
        undecodable: "it is not a decodable envelope (missing field 'v')",
        wrong_stream: f"score.submit does not belong on {SAVES.key(0)}",
        not_theirs: "the saves worker refuses it (player document must be an object whose id is the caller's "
        "session id)",
    }
    for letter, reason in reasons.items():
        refused = deadletters(workers.env, "replay", letter, "--force")
        assert refused.returncode == 1
        assert refused.stderr == f"deadletters: dead letter {letter} cannot be replayed: {reason}\n"
        assert exists(db, letter)
    assert db.xlen(SAVES.key(0)) == published  # nothing was published


def test_help_on_the_command_and_each_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    helped = deadletters(dict(os.environ), "--help")
    assert helped.returncode == 0 and "{list,show,replay,drop}" in helped.stdout
    for command in ("list", "show", "replay", "drop"):
        with pytest.raises(SystemExit) as stopped:
            parser().parse_args([command, "--help"])
        assert stopped.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: python -m devtools.deadletters {command}")


def test_an_unreachable_redis_is_one_line() -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    answer = deadletters({**os.environ, "REDIS_URL": nowhere}, "list")
    assert answer.returncode == 1
    assert answer.stderr.startswith(f"deadletters: cannot reach Redis at {nowhere} (")
    assert len(answer.stderr.splitlines()) == 1


def test_a_replay_no_worker_answers_keeps_the_letter_and_is_never_applied_late(workers: Stack, db: redis.Redis) -> None:
    event = score("d" * 32, 7)
    strand(db, event)
    letter = letter_of(db, event)
    workers.stop("leaderboard-1")
    try:
        replayed = deadletters(workers.env, "replay", letter)
        assert replayed.returncode == 1
        assert replayed.stderr == (
            "deadletters: no leaderboard worker answered by the deadline; the event will not be applied late: "
            f"dead letter {letter} stays\n"
        )
        assert exists(db, letter)
    finally:
        workers.spawn("leaderboard")

    def settled() -> bool:
        group = next(g for g in db.xinfo_groups(SCORES.key(0)) if g["name"] == keys.LEADERBOARD_GROUP.encode())
        return bool(group["lag"] == 0 and group["pending"] == 0)

    eventually(settled, 20, "the late replay is read and acknowledged")
    assert db.zscore(BOARD, f"Hero-{event.session}") is None
