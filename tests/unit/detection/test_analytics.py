"""Shard analytics: the tick rule, 10 s event-time windows, event counts, deltas."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.detection.analytics import ShardAnalytics
from actors.market.sessions import ET, SessionClock
from config.detection import AnalyticsConfig
from schemas.events import Event

CLOCK = SessionClock()
DAY = dt.date(2013, 10, 8)


def at(h: int, m: int, s: int = 0, day: dt.date = DAY) -> int:
    return int(dt.datetime.combine(day, dt.time(h, m, s), tzinfo=ET).timestamp() * 1000)


T = at(11, 0)  # on a 10 s boundary


def trade(sa: ShardAnalytics, ticker: str, rows: list[tuple[int, float, float]]) -> None:
    sa.on_trades(
        ticker,
        np.array([r[0] for r in rows], dtype=np.int64),
        np.array([r[1] for r in rows], dtype=np.float64),
        np.array([r[2] for r in rows], dtype=np.float64),
    )


def event(kind: str, ticker: str, time: int, n: int = 1) -> Event:
    return Event(id=f"{ticker}:{kind}:{time}:{n}", ticker=ticker, kind=kind, direction="up",
                 price=10.0, time=time)



def test_tick_rule_volume_weighted_with_default_weight_for_size_zero() -> None:
    sa = ShardAnalytics(AnalyticsConfig())
    prices = [10.0, 10.1, 10.1, 10.0, 10.0, 10.2]
    sizes = [100, 200, 300, 400, 0, 600]
    trade(sa, "X", [(T + i, p, s) for i, (p, s) in enumerate(zip(prices, sizes, strict=True))])
    delta = sa.take_delta()
    # sides: first unknown, up, unchanged (= up), down, unchanged (= down), up
    assert delta["windows"] == [[T, 1_100.0, 400.0 + 100.0, 6.0, 3.0, 2.0]]
    assert delta["window_ms"] == 10_000


def test_the_previous_price_and_side_carry_across_calls_per_ticker() -> None:
    sa = ShardAnalytics(AnalyticsConfig())
    trade(sa, "X", [(T, 10.0, 1)])
    trade(sa, "Y", [(T, 50.0, 1)])
    trade(sa, "X", [(T + 1, 10.0, 2)])  # unchanged, side still unknown
    trade(sa, "X", [(T + 2, 9.9, 4)])  # down: sell
    trade(sa, "Y", [(T + 3, 50.5, 8)])  # up vs Y's own last price: buy
    trade(sa, "X", [(T + 4, 9.9, 16)])  # unchanged: still a sell
    (row,) = sa.take_delta()["windows"]
    assert row == [T, 8.0, 20.0, 6.0, 1.0, 2.0]


def test_reset_session_restarts_the_tick_rule() -> None:
    sa = ShardAnalytics(AnalyticsConfig())
    trade(sa, "X", [(T, 10.0, 1), (T + 1, 10.5, 1)])
    sa.reset_session()
    trade(sa, "X", [(T + 2, 11.0, 5)])  # no previous price: neither side
    assert sa.take_delta()["windows"] == [[T, 1.0, 0.0, 3.0, 1.0, 0.0]]


def test_trades_go_to_their_event_time_windows_and_take_resets() -> None:
    sa = ShardAnalytics(AnalyticsConfig())
    trade(sa, "X", [(T - 1, 10.0, 1), (T, 10.1, 2), (T + 9_999, 10.2, 3), (T + 25_000, 10.0, 4)])
    delta = sa.take_delta()
    assert [r[0] for r in delta["windows"]] == [T - 10_000, T, T + 20_000]
    assert [r[3] for r in delta["windows"]] == [1.0, 2.0, 1.0]
    assert json.loads(json.dumps(delta)) == delta
    assert sa.take_delta() == {"window_ms": 10_000, "windows": [], "counts": []}


def test_bad_prices_are_counted_and_skipped() -> None:
    sa = ShardAnalytics(AnalyticsConfig())
    trade(sa, "X", [(T, 0.0, 1), (T + 1, float("nan"), 1), (T + 2, 10.0, 1)])
    assert sa.rejected == {"bad_price": 2}
    assert sa.take_delta()["windows"][0][3] == 1.0


def test_event_counts_per_ticker_and_session() -> None:
    sa = ShardAnalytics(AnalyticsConfig())
    pre, regular = at(8, 0), at(10, 0)
    sa.on_events([event("high", "X", pre), event("high", "X", regular), event("low", "X", regular),
                  event("surge", "Y", regular), event("trend", "Y", regular),
                  event("trend", "Y", regular + 1), event("bogus", "Y", regular)])
    assert sa.rejected == {"unknown_kind": 1}
    pre_start = CLOCK.session_at(pre).start_ms
    reg_start = CLOCK.session_at(regular).start_ms
    assert sa.take_delta()["counts"] == [
        [pre_start, "X", 1, 0, 0, 0], [reg_start, "X", 1, 1, 0, 0], [reg_start, "Y", 0, 0, 1, 2]]


def test_shard_snapshot_round_trip() -> None:
    sa = ShardAnalytics(AnalyticsConfig())
    trade(sa, "X", [(T, 10.0, 1), (T + 1, 10.5, 1)])
    sa.on_events([event("high", "X", T)])
    other = ShardAnalytics(AnalyticsConfig())
    other.restore(json.loads(json.dumps(sa.snapshot())))
    trade(sa, "X", [(T + 2, 10.5, 7)])
    trade(other, "X", [(T + 2, 10.5, 7)])
    assert other.take_delta() == sa.take_delta()


rows = st.lists(
    st.tuples(st.sampled_from(["A", "B"]), st.integers(0, 4_000), st.integers(95, 105),
              st.integers(0, 500)),
    min_size=1, max_size=80,
)


@settings(max_examples=100, deadline=None)
@given(rows=rows, data=st.data())
def test_shard_deltas_do_not_depend_on_how_trades_are_split(
    rows: list[tuple[str, int, int, int]], data: st.DataObject
) -> None:
    timed, t = [], T
    for tk, gap, p, s in rows:
        t += gap
        timed.append((tk, t, p / 10, float(s)))

    def run(cuts: list[int]) -> dict[str, Any]:
        sa = ShardAnalytics(AnalyticsConfig())
        lo = 0
        for hi in [*cuts, len(timed)]:
            for tk in ("A", "B"):
                mine = [(r[1], r[2], r[3]) for r in timed[lo:hi] if r[0] == tk]
                if mine:
                    trade(sa, tk, mine)
            lo = hi
        return sa.take_delta()

    cuts = sorted(data.draw(st.sets(st.integers(1, len(timed)), max_size=10)))
    whole = run([])
    assert run(cuts) == whole
    assert sum(r[3] for r in whole["windows"]) == len(timed)
    assert sum(r[1] + r[2] for r in whole["windows"]) <= sum(max(r[3], 100) for r in timed)
