"""SessionClock: boundaries, early closes, weekends, holidays, DST; the calendar vs XNYS."""

from __future__ import annotations

import csv
import datetime as dt
from importlib import resources

import pytest

from actors.market.sessions import ET, SessionClock, day_hours, last_session_open, session_at
from schemas.events import MarketSession

PRE, REGULAR, AFTER, CLOSED = (
    MarketSession.PRE, MarketSession.REGULAR, MarketSession.AFTER, MarketSession.CLOSED
)


def ms(day: dt.date, hh: int, mm: int, ss: int = 0, micro: int = 0) -> int:
    return int(dt.datetime.combine(day, dt.time(hh, mm, ss, micro), tzinfo=ET).timestamp() * 1000)


def utc_ms(y: int, mo: int, d: int, hh: int, mm: int) -> int:
    return int(dt.datetime(y, mo, d, hh, mm, tzinfo=dt.UTC).timestamp() * 1000)


TUESDAY = dt.date(2013, 10, 8)


@pytest.mark.parametrize(
    ("hh", "mm", "ss", "micro", "expected"),
    [
        (0, 0, 0, 0, CLOSED), (3, 59, 59, 999_000, CLOSED), (4, 0, 0, 0, PRE),
        (9, 29, 59, 999_000, PRE), (9, 30, 0, 0, REGULAR), (15, 59, 59, 999_000, REGULAR),
        (16, 0, 0, 0, AFTER), (19, 59, 59, 999_000, AFTER), (20, 0, 0, 0, CLOSED),
        (23, 59, 59, 999_000, CLOSED),
    ],
)
def test_regular_day_boundaries(hh: int, mm: int, ss: int, micro: int, expected: str) -> None:
    assert session_at(ms(TUESDAY, hh, mm, ss, micro)).session == expected


def test_session_spans_and_keys() -> None:
    info = session_at(ms(TUESDAY, 11, 0))
    assert (info.start_ms, info.end_ms) == (ms(TUESDAY, 9, 30), ms(TUESDAY, 16, 0))
    assert (info.open_ms, info.close_ms) == (ms(TUESDAY, 9, 30), ms(TUESDAY, 16, 0))
    assert info.key == ("2013-10-08", "REGULAR")
    pre = session_at(ms(TUESDAY, 5, 0))
    assert (pre.start_ms, pre.end_ms) == (ms(TUESDAY, 4, 0), ms(TUESDAY, 9, 30))
    night = session_at(ms(TUESDAY, 21, 0))
    assert (night.start_ms, night.end_ms) == (ms(TUESDAY, 20, 0), ms(TUESDAY, 0, 0) + 86_400_000)
    assert SessionClock().session_end(ms(TUESDAY, 17, 0)) == ms(TUESDAY, 20, 0)


def test_early_close_2015_12_24() -> None:
    day = dt.date(2015, 12, 24)
    assert session_at(ms(day, 12, 59, 59, 999_000)).session == REGULAR
    after = session_at(ms(day, 13, 0))
    assert after.session == AFTER
    assert (after.start_ms, after.end_ms) == (ms(day, 13, 0), ms(day, 20, 0))
    regular = session_at(ms(day, 10, 0))
    assert regular.end_ms == regular.close_ms == ms(day, 13, 0)
    assert day_hours(day).early_close


@pytest.mark.parametrize(
    ("day", "why"),
    [
        (dt.date(2013, 10, 5), "Saturday"), (dt.date(2013, 10, 6), "Sunday"),
        (dt.date(2015, 12, 25), "Christmas"), (dt.date(2013, 3, 29), "Good Friday"),
        (dt.date(2012, 10, 30), "Hurricane Sandy"), (dt.date(2018, 2, 19), "Presidents' Day"),
    ],
)
def test_closed_days_are_closed_all_day(day: dt.date, why: str) -> None:
    for hh in (3, 5, 10, 17, 21):
        info = session_at(ms(day, hh, 0))
        assert info.session == CLOSED, why
        assert (info.start_ms, info.end_ms) == (ms(day, 0, 0), day_hours(day).end_ms)
        assert info.open_ms == info.close_ms == 0


@pytest.mark.parametrize(
    ("day", "open_utc_hour"),
    [
        (dt.date(2018, 3, 9), 14),  # EST (UTC-5), Friday before the change
        (dt.date(2018, 3, 12), 13),  # EDT (UTC-4), Monday after 2018-03-11
        (dt.date(2013, 11, 1), 13),  # EDT, Friday before the change back
        (dt.date(2013, 11, 4), 14),  # EST, Monday after 2013-11-03
    ],
)
def test_dst_moves_the_open_in_utc(day: dt.date, open_utc_hour: int) -> None:
    open_ms = utc_ms(day.year, day.month, day.day, open_utc_hour, 30)
    assert session_at(open_ms).session == REGULAR
    assert session_at(open_ms - 1).session == PRE


def test_dst_change_days_are_23_and_25_hours() -> None:
    spring, fall = day_hours(dt.date(2018, 3, 11)), day_hours(dt.date(2013, 11, 3))
    assert spring.end_ms - spring.start_ms == 23 * 3_600_000
    assert fall.end_ms - fall.start_ms == 25 * 3_600_000


def test_clock_follows_time_across_days() -> None:
    clock = SessionClock()
    seen = []
    for day in (TUESDAY, TUESDAY + dt.timedelta(days=1), TUESDAY):
        info = clock.session_at(ms(day, 12, 0))
        seen.append((info.date, info.session))
    assert seen == [(TUESDAY, REGULAR), (TUESDAY + dt.timedelta(days=1), REGULAR),
                    (TUESDAY, REGULAR)]


def test_last_session_open() -> None:
    monday = dt.date(2013, 10, 7)
    assert last_session_open(ms(monday, 8, 0)) == ms(dt.date(2013, 10, 4), 9, 30)
    assert last_session_open(ms(monday, 10, 0)) == ms(monday, 9, 30)
    assert last_session_open(ms(dt.date(2015, 12, 26), 12, 0)) == ms(dt.date(2015, 12, 24), 9, 30)


def _shipped_calendar() -> dict[dt.date, dict[str, str]]:
    text = resources.files("config").joinpath(
        "data/nyse_closures_early_closes_2000_2030.csv"
    ).read_text()
    return {dt.date.fromisoformat(r["date"]): r for r in csv.DictReader(text.splitlines())}


def test_calendar_matches_exchange_calendars_xnys_2000_2030() -> None:
    """Every day 2000-2030: trading or not, and the regular open/close, as XNYS says.

    Rows the CSV marks `xcals_xnys_agrees=0` (late opens after 9/11 and other disruptions,
    the 2005-06-01 15:56 close) are NYSE facts that exchange_calendars does not model; for
    them the shipped hours are checked instead.
    """
    import exchange_calendars as xcals
    import pandas as pd

    cal = xcals.get_calendar("XNYS", start="2000-01-01", end="2030-12-31")
    sessions = {d.date() for d in cal.sessions}
    opens = {d.date(): int(t.value // 1_000_000) for d, t in cal.schedule["open"].items()}
    closes = {d.date(): int(t.value // 1_000_000) for d, t in cal.schedule["close"].items()}
    shipped = _shipped_calendar()
    day, mismatches = dt.date(2000, 1, 1), []
    while day <= dt.date(2030, 12, 31):
        hours = day_hours(day)
        row = shipped.get(day)
        if row is not None and row["xcals_xnys_agrees"] == "0":
            hh, mm = (int(x) for x in row["open_et"].split(":"))
            ch, cm = (int(x) for x in row["close_et"].split(":"))
            assert (hours.open_ms, hours.close_ms) == (ms(day, hh, mm), ms(day, ch, cm))
        elif (not hours.closed) != (day in sessions):
            mismatches.append((day, "trading day"))
        elif day in sessions and (hours.open_ms, hours.close_ms) != (opens[day], closes[day]):
            mismatches.append((day, "hours"))
        day += dt.timedelta(days=1)
    assert mismatches == []
    assert len(sessions) == 7794
    assert pd.Timestamp("2015-12-24").date() in sessions
