"""PriorityEventQueue: ordering, bounds, drop counts and sessions served in order."""

from __future__ import annotations

import dataclasses
import datetime as dt

from actors.market.sessions import ET, SessionClock
from actors.priority_queue.ranking import PriorityEventQueue
from config.settings import QueueConfig
from schemas.events import Event


def ms(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=ET).timestamp() * 1000)


def ev(ticker: str, kind: str, time: int, n: int = 1) -> Event:
    return Event(id=f"{ticker}:{kind}:{time}:{n}", ticker=ticker, kind=kind,
                 direction="up", price=10.0, time=time)


CALENDAR = SessionClock()


def priority(q: PriorityEventQueue, event: Event) -> int:
    return q.priority(event, CALENDAR.session_at(event.time))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_kind_priority_then_fifo() -> None:
    q = PriorityEventQueue(QueueConfig())
    t = ms("2013-10-07 11:00")
    q.put([ev("AAPL", "trend", t), ev("AAPL", "high", t + 1), ev("MSFT", "surge", t + 2),
           ev("MSFT", "low", t + 3), ev("AAPL", "high", t + 4, 2)])
    out = [(e.ticker, e.kind, e.time - t) for e in q.pop(10)]
    assert out == [("AAPL", "high", 1), ("MSFT", "low", 3), ("AAPL", "high", 4),
                   ("AAPL", "trend", 0), ("MSFT", "surge", 2)]


def test_index_etfs_first_thirty_minutes_of_regular_only() -> None:
    q = PriorityEventQueue(QueueConfig())
    early, late = ms("2013-10-07 09:45"), ms("2013-10-07 10:15")
    assert priority(q, ev("SPY", "trend", early)) == 1
    assert priority(q, ev("SPY", "trend", late)) == 3
    assert priority(q, ev("SPY", "high", ms("2013-10-07 09:00"))) == 2  # PRE
    assert priority(q, ev("AAPL", "high", early)) == 2


def test_bounds_and_drop_reasons_counted() -> None:
    q = PriorityEventQueue(QueueConfig(max_size=10, near_full_ratio=0.5))
    t = ms("2013-10-07 11:00")
    accepted = q.put([ev("AAPL", "high", t + i, i) for i in range(8)])
    assert accepted == 5  # 5 = near-full threshold; highs are priority 2
    assert q.dropped["near_full"] == 3
    assert q.put([ev("SPY", "high", ms("2013-10-07 09:31") + i, i) for i in range(8)]) == 5
    assert q.dropped["full"] == 3
    assert len(q) == 10


def test_duplicate_ids_dropped() -> None:
    q = PriorityEventQueue(QueueConfig())
    e = ev("AAPL", "high", ms("2013-10-07 11:00"))
    assert q.put([e, e]) == 1
    assert q.put([e]) == 0
    assert q.dropped["duplicate"] == 2


def test_stale_events_dropped_at_pop() -> None:
    clock = Clock()
    q = PriorityEventQueue(QueueConfig(max_event_age_ms=1000), clock=clock)
    q.put([ev("AAPL", "high", ms("2013-10-07 11:00"))])
    clock.now = 0.5
    q.put([ev("AAPL", "low", ms("2013-10-07 11:01"))])
    clock.now = 1.2
    out = q.pop(10)
    assert [e.kind for e in out] == ["low"]
    assert q.dropped["stale"] == 1


def test_invalid_items_counted_not_raised() -> None:
    q = PriorityEventQueue(QueueConfig())
    assert q.put(["not an event", None]) == 0  # type: ignore[list-item]
    assert q.dropped["invalid"] == 2


def test_sessions_served_in_order_one_per_pop() -> None:
    q = PriorityEventQueue(QueueConfig())
    pre, reg, after = ms("2013-10-07 09:00"), ms("2013-10-07 10:00"), ms("2013-10-07 16:30")
    q.put([ev("IBM", "high", after), ev("IBM", "high", reg), ev("IBM", "low", pre)])
    q.note_session(CALENDAR.session_at(after))
    served = []
    while len(q):
        session = q.current_session()
        served.append((session, [e.time for e in q.pop(10)]))
    assert served == [(("2013-10-07", "PRE"), [pre]), (("2013-10-07", "REGULAR"), [reg]),
                      (("2013-10-07", "AFTER"), [after])]


def test_late_event_of_a_passed_session_is_delivered_not_reannounced() -> None:
    q = PriorityEventQueue(QueueConfig())
    reg, after = ms("2013-10-07 15:59"), ms("2013-10-07 16:01")
    q.put([ev("IBM", "high", reg)])
    q.note_session(CALENDAR.session_at(after))
    assert [e.time for e in q.pop(10)] == [reg]
    q.put([ev("IBM", "high", after)])
    assert q.current_session() == ("2013-10-07", "AFTER")
    q.pop(10)
    q.put([ev("SPY", "low", reg + 1)])  # a slower shard's REGULAR event
    assert q.current_session() == ("2013-10-07", "AFTER")
    assert [e.ticker for e in q.pop(10)] == ["SPY"]
    assert q.late_session == 1


def test_the_sessions_a_shard_gives_are_used_for_its_events() -> None:
    q = PriorityEventQueue(QueueConfig())
    at = ms("2013-10-07 10:30")  # by the calendar, past the index-ETF window: priority 3
    real = CALENDAR.session_at(at)
    given = dataclasses.replace(real, open_ms=ms("2013-10-07 10:15"))  # as the shard saw it
    assert priority(q, ev("SPY", "trend", at)) == 3
    q.put([ev("SPY", "trend", at), ev("SPY", "high", at + 1)], [given])
    assert [e.kind for e in q.pop(10)] == ["trend", "high"]  # the trend ranked 1 first


def test_an_event_outside_the_given_sessions_is_looked_up_by_its_time() -> None:
    q = PriorityEventQueue(QueueConfig())
    pre = ms("2013-10-07 09:00")
    given = CALENDAR.session_at(ms("2013-10-07 11:00"))
    q.put([ev("IBM", "high", pre)], [given])
    assert q.current_session() == ("2013-10-07", "PRE")
