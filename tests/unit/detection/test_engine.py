"""DetectorEngine: validation, sessions, Form T, bars, determinism, snapshots."""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.detection.engine import (
    DetectorEngine,
    bars_as_trades,
    effective_flags_array,
    event_order,
    group_rows,
    time_slices,
)
from actors.market.conditions import effective_flags, flags_for
from actors.market.sessions import ET
from config.detection import BarConfig, DetectionConfig, ValidationConfig
from schemas.batches import FLAGS_REGULAR, BarBatch, TradeBatch
from schemas.events import Event

HIGHLOW_ONLY = DetectionConfig(enable_surge=False, enable_trend=False)
FORM_T = flags_for([12])
ODD_LOT = flags_for([37])


def et_ms(hh: int, mm: int, ss: float = 0.0, day: dt.date = dt.date(2013, 10, 8)) -> int:
    base = dt.datetime.combine(day, dt.time(hh, mm), tzinfo=ET)
    return int(base.timestamp() * 1000 + ss * 1000)


def batch(rows: list[tuple[str, int, float, float, int]], first_seq: int = 0) -> TradeBatch:
    return TradeBatch.from_columns(
        [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows],
        [r[4] for r in rows], seq=list(range(first_seq, first_seq + len(rows))),
    )


def walk(tickers: list[str], start: int, n: int, seed: int, step_ms: int = 250) -> list[
    tuple[str, int, float, float, int]
]:
    """A time-ordered random walk over several tickers (some odd lots and Form T prints)."""
    rng = np.random.default_rng(seed)
    prices = {tk: 20.0 + 40 * i for i, tk in enumerate(tickers)}
    t = start
    rows = []
    for _ in range(n):
        t += int(rng.integers(0, step_ms))
        tk = tickers[int(rng.integers(0, len(tickers)))]
        prices[tk] = round(prices[tk] * (1 + rng.normal(0, 0.0015)), 4)
        flag = [FLAGS_REGULAR] * 8 + [ODD_LOT, FORM_T]
        rows.append((tk, t, prices[tk], float(rng.integers(1, 20) * 100),
                     flag[int(rng.integers(0, 10))]))
    return rows


def run_split(engine: DetectorEngine, rows: list[tuple[str, int, float, float, int]],
              cuts: list[int]) -> list[Event]:
    out: list[Event] = []
    bounds = [0, *sorted(c for c in cuts if 0 < c < len(rows)), len(rows)]
    for a, b in itertools.pairwise(bounds):
        if b > a:
            events = engine.process_trades(batch(rows[a:b], first_seq=a))
            assert events == sorted(events, key=event_order)
            out.extend(events)
    return out + engine.flush()


# -- helpers -----------------------------------------------------------------------------


@pytest.mark.parametrize("extended", [False, True])
def test_effective_flags_array_matches_conditions(extended: bool) -> None:
    flags = np.arange(16, dtype=np.uint8)
    expected = [effective_flags(int(f), extended) for f in flags]
    assert effective_flags_array(flags, extended).tolist() == expected


def test_group_rows_keeps_arrival_order_and_sorts_tickers() -> None:
    sym = np.array(["B", "A", "B", "C", "A"], dtype="<U12")
    assert [(k, v.tolist()) for k, v in group_rows(sym)] == [
        ("A", [1, 4]), ("B", [0, 2]), ("C", [3])
    ]
    assert [(k, v.tolist()) for k, v in group_rows(sym[:1])] == [("B", [0])]


def test_time_slices() -> None:
    t = np.array([0, 10, 20, 35, 36, 90], dtype=np.int64)
    assert time_slices(t, 100) == [slice(0, 6)]
    assert time_slices(t, 15) == [slice(0, 2), slice(2, 3), slice(3, 5), slice(5, 6)]
    assert time_slices(t[::-1].copy(), 15) == [slice(0, 6)]  # unordered: one slice


def test_bars_as_trades_visits_the_nearer_extreme_first() -> None:
    bars = BarBatch.from_columns(
        sym=["A", "B"], start=[0, 60_000], end=[60_000, 120_000], o=[10.0, 10.0],
        h=[10.5, 10.1], l=[9.9, 9.0], c=[10.2, 9.5], v=[600.0, 50.0], seq=[7, 8],
    )
    trades = bars_as_trades(bars)
    assert trades.p.tolist() == [10.0, 9.9, 10.5, 10.2, 10.0, 10.1, 9.0, 9.5]
    assert trades.t.tolist() == [0, 20_000, 40_000, 59_999, 60_000, 80_000, 100_000, 119_999]
    assert trades.s.tolist() == [600.0] * 4 + [50.0] * 4
    assert trades.sym.tolist() == ["A"] * 4 + ["B"] * 4


# -- sessions and conditions ------------------------------------------------------------------


def test_form_t_moves_extremes_only_in_extended_hours() -> None:
    engine = DetectorEngine(HIGHLOW_ONLY)
    rows = [
        ("X", et_ms(8, 0), 50.0, 100.0, FORM_T),
        ("X", et_ms(8, 1), 51.0, 100.0, FORM_T),  # PRE: Form T counts -> high
        ("X", et_ms(9, 30, 1), 50.0, 100.0, FLAGS_REGULAR),
        ("X", et_ms(9, 31), 52.0, 100.0, FORM_T),  # late report inside REGULAR: no
        ("X", et_ms(9, 32), 49.0, 100.0, ODD_LOT),  # odd lot: never
    ]
    events = engine.process_trades(batch(rows))
    assert [(e.session, e.kind, e.price) for e in events] == [("PRE", "high", 51.0)]
    state = engine.ticker_state("X")
    assert (state["session"], state["high"], state["low"]) == ("REGULAR", 50.0, 50.0)
    assert state["last_price"] == 49.0


def test_sessions_split_at_the_open_and_close_inside_one_batch() -> None:
    engine = DetectorEngine(HIGHLOW_ONLY)
    rows = [
        ("X", et_ms(9, 29, 58), 50.0, 100.0, FLAGS_REGULAR),
        ("X", et_ms(9, 29, 59.999), 50.5, 100.0, FLAGS_REGULAR),  # PRE high
        ("X", et_ms(9, 30), 49.0, 100.0, FLAGS_REGULAR),  # REGULAR base, no event
        ("X", et_ms(9, 30, 2), 49.5, 100.0, FLAGS_REGULAR),  # REGULAR high #1
        ("X", et_ms(15, 59, 59.999), 50.5, 100.0, FLAGS_REGULAR),  # REGULAR high #2
        ("X", et_ms(16, 0), 40.0, 100.0, FLAGS_REGULAR),  # AFTER base, no event
        ("X", et_ms(16, 0, 2), 39.0, 100.0, FLAGS_REGULAR),  # AFTER low #1
    ]
    events = engine.process_trades(batch(rows))
    assert [(e.session, e.label) for e in events] == [
        ("PRE", "HIGH #1"), ("REGULAR", "HIGH #1"), ("REGULAR", "HIGH #2"), ("AFTER", "LOW #1")
    ]
    assert events[1].pct_change == pytest.approx((49.5 - 49) / 49 * 100, abs=1e-4)


def test_a_call_reports_the_sessions_it_met_once_for_the_output() -> None:
    engine = DetectorEngine(HIGHLOW_ONLY)
    rows = [("X", et_ms(15, 59, 58), 50.0, 100.0, FLAGS_REGULAR),
            ("X", et_ms(16, 0, 1), 50.5, 100.0, FLAGS_REGULAR)]
    engine.process_trades(batch(rows))
    assert [s.session.value for s in engine.sessions] == ["REGULAR", "AFTER"]
    assert engine.sessions[-1].holds(engine.watermark)
    engine.process_trades(batch([("X", et_ms(16, 5), 51.0, 100.0, FLAGS_REGULAR)], first_seq=2))
    assert [s.session.value for s in engine.sessions] == ["AFTER"]  # this call's only


def test_an_empty_call_still_reports_the_watermark_session() -> None:
    engine = DetectorEngine(HIGHLOW_ONLY)
    engine.process_trades(batch([("X", et_ms(10, 0), 50.0, 100.0, FLAGS_REGULAR)]))
    engine.flush()
    assert [s.session.value for s in engine.sessions] == ["REGULAR"]


def test_early_close_ends_regular_at_13_00() -> None:
    day = dt.date(2015, 12, 24)
    engine = DetectorEngine(HIGHLOW_ONLY)
    rows = [
        ("G", et_ms(12, 59, 0, day), 750.0, 100.0, FLAGS_REGULAR),
        ("G", et_ms(13, 0, 0, day), 749.0, 100.0, FLAGS_REGULAR),
        ("G", et_ms(13, 0, 5, day), 751.0, 100.0, FLAGS_REGULAR),
    ]
    events = engine.process_trades(batch(rows))
    assert [(e.session, e.kind) for e in events] == [("AFTER", "high")]


def test_late_row_of_a_finished_session_is_counted() -> None:
    cfg = HIGHLOW_ONLY.replace(validation=ValidationConfig(out_of_order_tolerance_ms=60_000))
    engine = DetectorEngine(cfg)
    engine.process_trades(batch([("X", et_ms(9, 30, 10), 50.0, 100.0, FLAGS_REGULAR)]))
    engine.process_trades(batch([("X", et_ms(9, 29, 50), 60.0, 100.0, FLAGS_REGULAR)], 1))
    assert engine.rejected() == {"stale_session": 1}
    assert engine.ticker_state("X")["session"] == "REGULAR"


# -- bad input ---------------------------------------------------------------------------------


def test_bad_input_is_dropped_and_counted() -> None:
    engine = DetectorEngine(HIGHLOW_ONLY)
    t = et_ms(10, 0)
    rows = [
        ("X", t, 50.0, 100.0, FLAGS_REGULAR),
        ("X", t + 10, -1.0, 100.0, FLAGS_REGULAR),
        ("X", t + 20, float("nan"), 100.0, FLAGS_REGULAR),
        ("X", t + 30, 51.0, 0.0, FLAGS_REGULAR),
        ("X", t - 5, 51.0, 100.0, FLAGS_REGULAR),  # out of order
        ("X", t + 40, 500.0, 100.0, FLAGS_REGULAR),  # absurd jump
        ("X", t + 2_000, 50.5, 100.0, FLAGS_REGULAR),  # a real high
    ]
    events = engine.process_trades(batch(rows))
    assert [(e.kind, e.price) for e in events] == [("high", 50.5)]
    again = engine.process_trades(batch(rows[-2:], first_seq=5))  # re-sent after a restart
    assert again == []
    assert engine.rejected() == {
        "bad_price": 2, "zero_size": 1, "out_of_order": 1, "price_jump": 1, "duplicate": 2,
    }
    assert engine.last_seq == 6
    assert engine.ticker_state("X")["high"] == 50.5


def test_empty_and_all_rejected_batches() -> None:
    engine = DetectorEngine()
    assert engine.process_trades(TradeBatch.empty()) == []
    assert engine.process_bars(BarBatch.empty()) == []
    assert engine.process_trades(batch([("X", et_ms(10, 0), 0.0, 1.0, FLAGS_REGULAR)])) == []
    assert engine.watermark == 0
    assert engine.last_seq == 0
    assert engine.ticker_state("X") == {}


# -- bars input --------------------------------------------------------------------------------


def test_minute_bars_drive_highlow_through_their_extremes() -> None:
    engine = DetectorEngine(HIGHLOW_ONLY)
    start = et_ms(9, 30)
    bars = BarBatch.from_columns(
        sym=["A", "A"], start=[start, start + 60_000], end=[start + 60_000, start + 120_000],
        o=[10.0, 10.2], h=[10.5, 10.6], l=[9.9, 10.1], c=[10.2, 10.5], v=[600.0, 300.0],
    )
    events = engine.process_bars(bars)
    assert [(e.kind, e.price, e.time - start) for e in events] == [
        ("low", 9.9, 20_000), ("high", 10.5, 40_000), ("high", 10.6, 100_000)
    ]
    assert events[0].volume == 600.0
    assert events[0].session == "REGULAR"
    assert engine.watermark == start + 120_000
    assert engine.ticker_state("A")["base"] == 10.0


def test_bars_feed_surge_and_trend_without_rejects() -> None:
    engine = DetectorEngine()
    start = et_ms(10, 0)
    n = 600
    rng = np.random.default_rng(3)
    close = 100 * np.exp(np.cumsum(rng.normal(0.0004, 0.001, n)))
    bars = BarBatch.from_columns(
        sym=["A"] * n, start=start + 1000 * np.arange(n), end=start + 1000 * np.arange(1, n + 1),
        o=close, h=close * 1.0005, l=close * 0.9995, c=close, v=rng.integers(100, 900, n) * 1.0,
    )
    events = engine.process_bars(bars) + engine.flush()
    assert engine.rejected() == {}
    assert any(e.kind == "trend" for e in events)  # a steady climb over 10 minutes


# -- determinism, snapshots --------------------------------------------------------------------


STREAM = walk(["AAA", "BBB", "CCC"], et_ms(9, 25), 4_000, seed=11)


@settings(max_examples=12, deadline=None)
@given(st.lists(st.integers(1, len(STREAM) - 1), max_size=8))
def test_same_rows_same_events_for_any_batch_split(cuts: list[int]) -> None:
    whole = DetectorEngine()
    expected = run_split(whole, STREAM, [])
    split = DetectorEngine()
    got = run_split(split, STREAM, cuts)
    assert sorted(got, key=event_order) == sorted(expected, key=event_order)
    assert split.rejected() == whole.rejected()
    assert {e.kind for e in expected} >= {"high", "low"}


def test_counts_are_monotonic_per_ticker_and_session() -> None:
    events = run_split(DetectorEngine(HIGHLOW_ONLY), STREAM, [500, 1700])
    last: dict[tuple[str, str], int] = {}
    for e in events:
        key = (e.ticker, e.session)
        assert e.count == last.get(key, 0) + 1
        last[key] = e.count
    assert {e.session for e in events} == {"PRE", "REGULAR"}


def test_snapshot_restore_gives_the_same_remaining_events() -> None:
    whole = run_split(DetectorEngine(), STREAM, [2_000])
    first = DetectorEngine(shard=3)
    head = first.process_trades(batch(STREAM[:2_000]))
    blob = first.snapshot()
    assert isinstance(blob, bytes)
    second = DetectorEngine.restore(DetectionConfig(), 3, blob)
    assert second.last_seq == 1_999
    assert second.watermark == first.watermark
    assert second.ticker_state("AAA") == first.ticker_state("AAA") != {}
    # The ingest re-sends from a little before the checkpoint: the overlap is dropped.
    tail = second.process_trades(batch(STREAM[1_900:], first_seq=1_900)) + second.flush()
    assert head + tail == whole
    assert second.rejected()["duplicate"] == 100


def test_restore_rejects_unknown_versions() -> None:
    import msgpack

    with pytest.raises(ValueError, match="version"):
        DetectorEngine.restore(None, 0, msgpack.packb({"version": 99}))


def test_long_batches_are_sliced_so_no_bar_is_dropped() -> None:
    cfg = DetectionConfig(bars=BarConfig(max_pending_bars=10))
    rows = [("A", et_ms(10, 0) + i * 1_000, 10.0 + i % 3 * 0.01, 100.0, FLAGS_REGULAR)
            for i in range(300)]
    engine = DetectorEngine(cfg)
    engine.process_trades(batch(rows))
    engine.flush()
    assert "bar_overflow" not in engine.rejected()


def test_analytics_delta_is_taken_once() -> None:
    engine = DetectorEngine(HIGHLOW_ONLY)
    engine.process_trades(batch(STREAM[:100]))
    delta = engine.take_analytics()
    assert delta["windows"]
    assert engine.take_analytics() == {}


def test_official_open_passthrough() -> None:
    engine = DetectorEngine(HIGHLOW_ONLY)
    engine.set_official_open("X", 49.0, et_ms(9, 30))
    engine.process_trades(batch([("X", et_ms(9, 30, 1), 50.0, 100.0, FLAGS_REGULAR)]))
    assert engine.ticker_state("X")["base"] == 49.0
