"""Leaderboard seasons (LEADERBOARD_SEASON): which season a moment belongs to, and its label.

A score's season is fixed by its stream entry id, Redis's clock when the gateway admitted it, so
every worker and gateway puts one score in the same season however late it is applied. Seasons
are UTC: `daily` (2026-12-02), `weekly` (ISO weeks, 2026-W49, from Monday), `monthly` (2026-12);
`every:<N>s`, for tests and demos only, cuts time into N-second seasons labelled by their start
in epoch seconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MODES = ("none", "daily", "weekly", "monthly")
EVERY = re.compile(r"every:([1-9][0-9]{0,6})s")
LABELS = {
    "daily": re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}"),
    "weekly": re.compile(r"[0-9]{4}-W[0-9]{2}"),
    "monthly": re.compile(r"[0-9]{4}-[0-9]{2}"),
    "every": re.compile(r"[0-9]{1,12}"),
}


@dataclass(frozen=True, slots=True)
class Season:
    label: str
    start_ms: int
    end_ms: int  # the next season's start


def check_mode(mode: str) -> str:
    if mode not in MODES and not EVERY.fullmatch(mode):
        raise ValueError(f"LEADERBOARD_SEASON must be one of {', '.join(MODES)} (or every:<N>s, for tests)")
    return mode


def season_at(mode: str, ms: int) -> Season:
    """The season of the moment `ms` (epoch milliseconds) under `mode` (not `none`)."""
    every = EVERY.fullmatch(mode)
    if every:
        period_ms = int(every[1]) * 1000
        start_ms = ms - ms % period_ms
        return Season(str(start_ms // 1000), start_ms, start_ms + period_ms)
    day = datetime.fromtimestamp(ms // 1000, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if mode == "daily":
        start, end, label = day, day + timedelta(days=1), day.strftime("%Y-%m-%d")
    elif mode == "weekly":
        start = day - timedelta(days=day.weekday())
        year, week, _ = start.isocalendar()
        end, label = start + timedelta(weeks=1), f"{year}-W{week:02d}"
    elif mode == "monthly":
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
        label = start.strftime("%Y-%m")
    else:
        raise ValueError(f"no seasons under LEADERBOARD_SEASON={mode}")
    return Season(label, epoch_ms(start), epoch_ms(end))


def seasons_before(mode: str, season: Season, count: int) -> Season:
    """The season `count` seasons before `season`."""
    for _ in range(count):
        season = season_at(mode, season.start_ms - 1)
    return season


def seasons_after(mode: str, season: Season, count: int) -> Season:
    for _ in range(count):
        season = season_at(mode, season.end_ms)
    return season


def kept(mode: str, season: Season, count: int) -> list[Season]:
    """`season` and the `count` seasons before it, whose archives may still be kept, newest first."""
    found = [season]
    for _ in range(count):
        found.append(season_at(mode, found[-1].start_ms - 1))
    return found


def parse_label(mode: str, label: str) -> Season | None:
    """The season a label names, or None when it is no label of `mode` (malformed, or no such date)."""
    if not LABELS["every" if EVERY.fullmatch(mode) else mode].fullmatch(label):
        return None
    try:
        if EVERY.fullmatch(mode):
            start_ms = int(label) * 1000
        elif mode == "weekly":
            start_ms = epoch_ms(datetime.strptime(label + "-1", "%G-W%V-%u").replace(tzinfo=UTC))
        else:
            layout = "%Y-%m-%d" if mode == "daily" else "%Y-%m"
            start_ms = epoch_ms(datetime.strptime(label, layout).replace(tzinfo=UTC))
    except ValueError:
        return None
    season = season_at(mode, start_ms)
    return season if season.label == label else None


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp()) * 1000
