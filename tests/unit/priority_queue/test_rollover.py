"""Session roll-over: the deployment's session follows the newest watermark of any shard."""

from __future__ import annotations

import datetime as dt

from actors.market.sessions import ET, SessionClock
from actors.priority_queue.rollover import SessionRollover

CALENDAR = SessionClock()


def ms(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=ET).timestamp() * 1000)


def observe(r: SessionRollover, shard: int, text: str) -> tuple[str, str] | None:
    t = ms(text)
    return r.observe(shard, t, CALENDAR.session_at(t))


def test_a_new_session_reports_the_one_that_ended() -> None:
    r = SessionRollover()
    assert observe(r, 0, "2013-10-07 15:59") is None  # the first session ends nothing
    assert r.key == ("2013-10-07", "REGULAR")
    assert observe(r, 0, "2013-10-07 15:59:30") is None
    assert observe(r, 0, "2013-10-07 16:00") == ("2013-10-07", "REGULAR")
    assert r.key == ("2013-10-07", "AFTER")
    assert r.watermark == ms("2013-10-07 16:00")


def test_a_slower_shard_does_not_move_the_session_back() -> None:
    r = SessionRollover()
    observe(r, 0, "2013-10-07 16:01")
    assert observe(r, 1, "2013-10-07 15:58") is None
    assert r.key == ("2013-10-07", "AFTER")
    assert r.watermark == ms("2013-10-07 16:01")


def test_no_session_before_any_data() -> None:
    r = SessionRollover()
    assert r.key is None
    assert r.observe(0, 0, None) is None
    assert r.watermark == 0
