"""Persistence forwarding: changed counts only, one analytics record per gauge window."""

from __future__ import annotations

from actors.priority_queue.forwarding import PersistenceForwarder
from schemas.events import Event

KEY = ("2013-10-07", "REGULAR")


def counts(highs: int) -> dict[str, int]:
    return {"highs": highs, "lows": 0, "surges": 0, "trends": 1}


def test_only_changed_counts_are_sent_again() -> None:
    f = PersistenceForwarder()
    f.add_counts(KEY, {"AAPL": counts(1), "MSFT": counts(2)}, updated_ms=10)
    f.add_counts(KEY, {"AAPL": counts(1), "MSFT": counts(3)}, updated_ms=20)
    _, rows, _ = f.take()
    assert [(r.ticker, r.high_count, r.updated_ms) for r in rows] == [
        ("AAPL", 1, 10), ("MSFT", 2, 10), ("MSFT", 3, 20)]
    assert f.take() == ([], [], [])


def test_one_analytics_record_per_completed_window() -> None:
    f = PersistenceForwarder()
    snapshot = {"gauge": {"window_start": 1_000, "net_score": 2.5, "buy_volume": 10.0,
                          "sell_volume": 5.0, "activity_level": "High", "ema": 1.0},
                "activity": {"ticks_60sec": 7}}
    f.add_analytics(snapshot, "REGULAR")
    f.add_analytics(snapshot, "REGULAR")  # the same window, asked again
    f.add_analytics({"gauge": {"window_start": None}}, "REGULAR")  # no window yet
    _, _, rows = f.take()
    assert len(rows) == 1
    row = rows[0]
    assert (row.time, row.session, row.net_score, row.activity_level) == (
        1_000, "REGULAR", 2.5, "High")
    assert row.extras == {"window_start": 1_000, "ema": 1.0, "activity": {"ticks_60sec": 7}}


def test_events_wait_until_taken() -> None:
    f = PersistenceForwarder()
    e = Event(id="A:high:1:1", ticker="A", kind="high", direction="up", price=1.0, time=1)
    f.add_events([e, e])
    assert f.pending() == 2
    events, _, _ = f.take()
    assert events == [e, e]
    assert f.pending() == 0
