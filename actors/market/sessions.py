"""US market sessions on event time (America/New_York), with NYSE holidays and early closes.

PRE 04:00-09:30, REGULAR 09:30-16:00 (13:00 on early closes), AFTER to 20:00, else CLOSED;
weekends and NYSE holidays are CLOSED all day. The calendar ships as data
(`config/data/nyse_closures_early_closes_2000_2030.csv`) and is checked against
`exchange_calendars` in the tests.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from zoneinfo import ZoneInfo

from schemas.events import MarketSession, SessionInfo

__all__ = [
    "AFTER_CLOSE", "DAY_MS", "ET", "PRE_OPEN", "REGULAR_CLOSE", "REGULAR_OPEN", "CalendarDay",
    "DayHours", "SessionClock", "SessionInfo", "day_hours", "last_session_open", "local_date",
    "session_at", "session_of",
]

ET = ZoneInfo("America/New_York")
PRE_OPEN = dt.time(4, 0)
REGULAR_OPEN = dt.time(9, 30)
REGULAR_CLOSE = dt.time(16, 0)
AFTER_CLOSE = dt.time(20, 0)
DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class DayHours:
    """Boundaries of one calendar day in Unix ms (`closed` days have no sessions)."""

    date: dt.date
    start_ms: int  # local midnight
    end_ms: int  # next local midnight
    pre_ms: int
    open_ms: int
    close_ms: int
    after_ms: int
    closed: bool
    early_close: bool
    holiday: str


@dataclass(frozen=True, slots=True)
class CalendarDay:
    status: str  # closed | early_close | late_open
    name: str
    open_et: str
    close_et: str


@cache
def _calendar() -> dict[dt.date, CalendarDay]:
    text = (
        resources.files("config")
        .joinpath("data/nyse_closures_early_closes_2000_2030.csv")
        .read_text()
    )
    out: dict[dt.date, CalendarDay] = {}
    for row in csv.DictReader(text.splitlines()):
        out[dt.date.fromisoformat(row["date"])] = CalendarDay(
            row["status"], row["name"], row["open_et"], row["close_et"]
        )
    return out


def _ms(day: dt.date, at: dt.time) -> int:
    return int(dt.datetime.combine(day, at, tzinfo=ET).timestamp() * 1000)


def _parse_hhmm(text: str, default: dt.time) -> dt.time:
    if not text:
        return default
    hh, mm = text.split(":")
    return dt.time(int(hh), int(mm))


@cache
def day_hours(day: dt.date) -> DayHours:
    """Session boundaries of `day` (cached: days are few, lookups are many)."""
    entry = _calendar().get(day)
    closed = day.weekday() >= 5 or (entry is not None and entry.status == "closed")
    open_t = REGULAR_OPEN
    close_t = REGULAR_CLOSE
    if entry is not None and not closed:
        open_t = _parse_hhmm(entry.open_et, REGULAR_OPEN)
        close_t = _parse_hhmm(entry.close_et, REGULAR_CLOSE)
    return DayHours(
        date=day,
        start_ms=_ms(day, dt.time(0, 0)),
        end_ms=_ms(day + dt.timedelta(days=1), dt.time(0, 0)),
        pre_ms=_ms(day, PRE_OPEN),
        open_ms=_ms(day, open_t),
        close_ms=_ms(day, close_t),
        after_ms=_ms(day, AFTER_CLOSE),
        closed=closed,
        early_close=entry is not None and entry.status == "early_close",
        holiday=entry.name if entry is not None and closed else "",
    )


def local_date(ms: int) -> dt.date:
    """The America/New_York calendar date of a Unix-ms instant."""
    return dt.datetime.fromtimestamp(ms / 1000, tz=ET).date()


class SessionClock:
    """Maps event times to sessions; remembers the current day so lookups are O(1)."""

    __slots__ = ("_hours",)

    def __init__(self) -> None:
        self._hours: DayHours | None = None

    def hours(self, ms: int) -> DayHours:
        h = self._hours
        if h is None or not h.start_ms <= ms < h.end_ms:
            h = self._hours = day_hours(local_date(ms))
        return h

    def session_at(self, ms: int) -> SessionInfo:
        """The session containing `ms` (CLOSED spans are split at midnight)."""
        h = self.hours(ms)
        if h.closed:
            return SessionInfo(MarketSession.CLOSED, h.date, h.start_ms, h.end_ms, 0, 0)
        bounds = (
            (h.start_ms, h.pre_ms, MarketSession.CLOSED),
            (h.pre_ms, h.open_ms, MarketSession.PRE),
            (h.open_ms, h.close_ms, MarketSession.REGULAR),
            (h.close_ms, h.after_ms, MarketSession.AFTER),
            (h.after_ms, h.end_ms, MarketSession.CLOSED),
        )
        for lo, hi, session in bounds:
            if lo <= ms < hi:
                return SessionInfo(session, h.date, lo, hi, h.open_ms, h.close_ms)
        raise AssertionError("unreachable: bounds cover the day")

    def session_end(self, ms: int) -> int:
        """The first instant after the session containing `ms` (Unix ms)."""
        return self.session_at(ms).end_ms


def session_of(ms: int, known: Sequence[SessionInfo], clock: SessionClock) -> SessionInfo:
    """The session of `ms`: one of `known` (computed once, carried with a batch) when it holds
    `ms`, else the clock's answer."""
    for info in known:
        if info.holds(ms):
            return info
    return clock.session_at(ms)


def session_at(ms: int) -> SessionInfo:
    """Convenience: the session of one instant."""
    return SessionClock().session_at(ms)


def last_session_open(now_ms: int) -> int:
    """The regular open (Unix ms) of the latest trading day at or before `now_ms`'s date."""
    day = local_date(now_ms)
    for _ in range(10):
        h = day_hours(day)
        if not h.closed and h.open_ms <= now_ms:
            return h.open_ms
        day -= dt.timedelta(days=1)
    raise ValueError("no trading day in the last 10 days")
