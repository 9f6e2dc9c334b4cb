"""Per-second bars: aggregation, draining, lateness, split independence, a real day."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.detection.bars import Bar, SecondBarBuilder
from actors.market.conditions import algoseek_flags, effective_flags
from actors.market.sessions import ET
from config.detection import BarConfig
from schemas.batches import FLAG_HIGH_LOW

T0 = 1_381_239_000_000  # 2013-10-08 09:30:00 ET, aligned to the second


def add(b: SecondBarBuilder, ticker: str, rows: list[tuple[int, float, float]]) -> None:
    """Add (ms after T0, price, size) rows of one ticker."""
    b.add_trades(
        ticker,
        np.array([T0 + r[0] for r in rows], dtype=np.int64),
        np.array([r[1] for r in rows], dtype=np.float64),
        np.array([r[2] for r in rows], dtype=np.float64),
    )


def builder(grace_ms: int = 0, **kw: int) -> SecondBarBuilder:
    return SecondBarBuilder(BarConfig(grace_ms=grace_ms, **kw))


def test_trades_become_one_bar_per_second_with_ohlc_volume_vwap_and_count() -> None:
    b = builder()
    add(b, "IBM", [(10, 10.0, 100), (400, 10.5, 300), (999, 9.5, 100), (1_000, 11.0, 50)])
    add(b, "IBM", [(1_500, 10.0, 50), (3_250, 12.0, 10)])
    bars = b.drain_all()
    assert bars == [
        Bar("IBM", T0, T0 + 1_000, 10.0, 10.5, 9.5, 9.5, 500.0, 10.2, 3),
        Bar("IBM", T0 + 1_000, T0 + 2_000, 11.0, 11.0, 10.0, 10.0, 100.0, 10.5, 2),
        Bar("IBM", T0 + 3_000, T0 + 4_000, 12.0, 12.0, 12.0, 12.0, 10.0, 12.0, 1),
    ]


def test_a_bar_of_zero_volume_takes_its_close_as_vwap() -> None:
    b = builder()
    add(b, "X", [(0, 5.0, 0), (10, 6.0, 0)])
    (bar,) = b.drain_all()
    assert (bar.v, bar.vwap, bar.n) == (0.0, 6.0, 2)


def test_drain_waits_for_the_grace_and_orders_by_end_then_ticker() -> None:
    b = builder(grace_ms=500)
    add(b, "MSFT", [(100, 30.0, 1), (1_100, 31.0, 1)])
    add(b, "AAPL", [(200, 500.0, 1), (2_100, 501.0, 1)])
    assert b.drain(T0 + 1_499) == []
    assert [(x.ticker, x.start - T0) for x in b.drain(T0 + 1_500)] == [("AAPL", 0), ("MSFT", 0)]
    # MSFT's second bar is still open (its second has not ended + grace) until 2_500.
    assert b.drain(T0 + 2_499) == []
    assert [(x.ticker, x.start - T0) for x in b.drain(T0 + 2_500)] == [("MSFT", 1_000)]
    assert [(x.ticker, x.start - T0) for x in b.drain_all()] == [("AAPL", 2_000)]
    assert b.pending() == 0


def test_a_trade_for_a_drained_bar_is_counted_late_and_left_out() -> None:
    b = builder()
    add(b, "X", [(100, 10.0, 1)])
    assert len(b.drain(T0 + 1_000)) == 1
    add(b, "X", [(900, 99.0, 1), (1_200, 11.0, 2)])
    assert b.rejected == {"late_bar_trade": 1}
    (bar,) = b.drain_all()
    assert (bar.start, bar.o, bar.v) == (T0 + 1_000, 11.0, 2.0)


def test_the_open_bar_is_final_once_drained_even_without_a_later_trade() -> None:
    b = builder()
    add(b, "X", [(100, 10.0, 1)])
    assert b.drain(T0 + 999) == []
    assert [x.n for x in b.drain(T0 + 1_000)] == [1]
    add(b, "X", [(999, 10.0, 1)])
    assert b.rejected == {"late_bar_trade": 1}


def test_drain_all_closes_the_stream_for_the_seconds_it_returned() -> None:
    b = builder()
    add(b, "X", [(100, 10.0, 1)])
    assert len(b.drain_all()) == 1
    add(b, "X", [(200, 10.0, 1)])
    assert b.rejected == {"late_bar_trade": 1}


def test_bad_prices_and_sizes_are_counted_and_skipped() -> None:
    b = builder()
    add(b, "X", [(0, 0.0, 1), (1, float("nan"), 1), (2, -1.0, 1), (3, float("inf"), 1),
                 (4, 10.0, -5), (5, 10.0, float("nan")), (6, 10.0, 7)])
    assert b.rejected == {"bad_price": 4, "bad_size": 2}
    (bar,) = b.drain_all()
    assert (bar.o, bar.v, bar.n) == (10.0, 7.0, 1)


def test_an_older_second_is_out_of_order_but_the_same_second_joins_in_arrival_order() -> None:
    b = builder()
    add(b, "X", [(1_500, 10.0, 1), (1_200, 11.0, 1), (800, 99.0, 1), (1_900, 12.0, 1)])
    add(b, "X", [(1_100, 13.0, 1), (700, 98.0, 1)])
    assert b.rejected == {"out_of_order": 2}
    (bar,) = b.drain_all()
    assert (bar.start, bar.o, bar.h, bar.l, bar.c, bar.n) == (T0 + 1_000, 10.0, 13.0, 10.0, 13.0, 4)


def test_rejected_rows_do_not_move_the_running_time() -> None:
    b = builder()
    add(b, "X", [(5_000, -1.0, 1), (1_000, 10.0, 1)])  # bad row far ahead, then a good one
    assert b.rejected == {"bad_price": 1}
    assert [x.start - T0 for x in b.drain_all()] == [1_000]


def test_feed_bars_are_handed_out_in_order_with_built_ones() -> None:
    b = builder()
    add(b, "X", [(100, 10.0, 1)])
    b.add_bar(Bar("X", T0 + 1_000, T0 + 2_000, 10.0, 10.5, 9.9, 10.2, 300.0, 10.1, 0))
    b.add_bar(Bar("Y", T0, T0 + 1_000, 5.0, 5.0, 5.0, 5.0, 10.0, 5.0, 0))
    b.add_bar(Bar("X", T0 + 1_000, T0 + 2_000, 10.0, 10.5, 9.9, 10.2, 300.0, 10.1, 0))
    b.add_bar(Bar("Z", T0, T0 + 1_000, 5.0, 4.0, 5.0, 5.0, 10.0, 5.0, 0))  # h < l
    assert b.rejected == {"out_of_order_bar": 1, "bad_bar": 1}
    out = b.drain(T0 + 2_000)
    assert [(x.ticker, x.start - T0, x.n) for x in out] == [
        ("X", 0, 1), ("Y", 0, 0), ("X", 1_000, 0)]
    b.add_bar(Bar("Y", T0 + 1_000, T0 + 2_000, 5.0, 5.0, 5.0, 5.0, 10.0, 5.0, 0))
    assert b.rejected["late_bar"] == 1


def test_pending_bars_are_bounded_and_overflow_is_counted() -> None:
    b = builder(max_pending_bars=3)
    add(b, "X", [(i * 1_000, 10.0 + i, 1) for i in range(6)])
    assert b.rejected == {"bar_overflow": 2}
    assert [x.start - T0 for x in b.drain_all()] == [2_000, 3_000, 4_000, 5_000]


def test_snapshot_is_plain_data_and_restore_continues_identically() -> None:
    rows = [(i * 137, 10.0 + (i % 7) * 0.01, float(i % 5)) for i in range(100)]
    whole = builder()
    add(whole, "X", rows)
    add(whole, "Y", rows)
    expected = whole.drain(T0 + 20_000) + whole.drain_all()

    first = builder()
    add(first, "X", rows[:40])
    add(first, "Y", rows[:55])
    got = first.drain(T0 + 5_000)
    blob = json.dumps(first.snapshot())
    second = builder()
    second.restore(json.loads(blob))
    add(second, "X", rows[40:])
    add(second, "Y", rows[55:])
    got += second.drain(T0 + 20_000) + second.drain_all()
    assert got == expected


def reference_bars(rows: list[tuple[str, int, float, float]]) -> list[Bar]:
    """Bars by a straightforward per-trade loop (rows time-ordered)."""
    acc: dict[tuple[str, int], list[float]] = {}
    for tk, t, p, s in rows:
        sec = t // 1_000
        a = acc.get((tk, sec))
        if a is None:
            acc[(tk, sec)] = [p, p, p, p, s, p * s, 1]
        else:
            a[1], a[2], a[3] = max(a[1], p), min(a[2], p), p
            a[4] += s
            a[5] += p * s
            a[6] += 1
    out = [
        Bar(tk, sec * 1000, sec * 1000 + 1000, a[0], a[1], a[2], a[3], a[4],
            a[5] / a[4] if a[4] > 0 else a[3], int(a[6]))
        for (tk, sec), a in acc.items()
    ]
    return sorted(out, key=lambda b: (b.end, b.ticker))


trade_rows = st.lists(
    st.tuples(
        st.sampled_from(["A", "B", "C"]),
        st.integers(0, 700),  # ms gap to the previous trade (globally time-ordered)
        st.one_of(st.just(0.0), st.integers(1, 400).map(lambda x: x / 100)),  # 0: a bad price
        st.integers(0, 1_000).map(float),
    ),
    min_size=1,
    max_size=120,
)


@settings(max_examples=150, deadline=None)
@given(rows=trade_rows, data=st.data())
def test_bars_do_not_depend_on_how_trades_are_split_or_when_drained(
    rows: list[tuple[str, int, float, float]], data: st.DataObject
) -> None:
    timed, t = [], T0
    for tk, gap, p, s in rows:
        t += gap
        timed.append((tk, t, p, s))
    cuts = sorted(data.draw(st.sets(st.integers(1, len(timed)), max_size=12)) | {len(timed)})
    drains = data.draw(st.lists(st.booleans(), min_size=len(cuts), max_size=len(cuts)))
    grace = data.draw(st.sampled_from([0, 1, 250, 1_000, 5_000]))
    b = builder(grace_ms=grace)
    got: list[Bar] = []
    lo = 0
    for hi, drain in zip(cuts, drains, strict=True):
        chunk = timed[lo:hi]
        for tk in sorted({r[0] for r in chunk}):
            mine = [r for r in chunk if r[0] == tk]
            b.add_trades(
                tk,
                np.array([r[1] for r in mine], dtype=np.int64),
                np.array([r[2] for r in mine]),
                np.array([r[3] for r in mine]),
            )
        if drain:
            batch = b.drain(chunk[-1][1])
            assert all(x.end <= chunk[-1][1] - grace for x in batch)
            got += batch
        lo = hi
    got += b.drain_all()
    bad = sum(1 for r in timed if r[2] <= 0)
    assert b.rejected == ({"bad_price": bad} if bad else {})
    timed = [r for r in timed if r[2] > 0]
    whole = builder(grace_ms=grace)
    for tk in ["A", "B", "C"]:
        mine = [r for r in timed if r[0] == tk]
        if mine:
            whole.add_trades(
                tk,
                np.array([r[1] for r in mine], dtype=np.int64),
                np.array([r[2] for r in mine]),
                np.array([r[3] for r in mine]),
            )
    assert got == whole.drain_all()  # exactly: every bar is aggregated once from all its trades
    ref = reference_bars(timed)
    assert [(x.ticker, x.start, x.o, x.h, x.l, x.c, x.v, x.n) for x in got] == [
        (x.ticker, x.start, x.o, x.h, x.l, x.c, x.v, x.n) for x in ref
    ]
    assert [x.vwap for x in got] == pytest.approx([x.vwap for x in ref], rel=1e-12)


@pytest.mark.slow
def test_a_real_algoseek_day_matches_an_independent_pandas_aggregation(
    real_data_dir: Path,
) -> None:
    path = real_data_dir / "algoseek_lean/tick/ibm/20131007_ibm_Trade_Tick.csv.gz"
    df = pd.read_csv(path, header=None, names=["ms", "p", "s", "ex", "cond", "susp"],
                     dtype={"cond": str})
    midnight = int(dt.datetime(2013, 10, 7, tzinfo=ET).timestamp() * 1000)
    df["t"] = df["ms"].astype("int64") + midnight
    df["price"] = df["p"] / 10_000
    extended = (df["ms"] < 34_200_000) | (df["ms"] >= 57_600_000)
    flags = [
        effective_flags(algoseek_flags(c), bool(x))
        for c, x in zip(df["cond"], extended, strict=True)
    ]
    eligible = df[(np.array(flags) & FLAG_HIGH_LOW).astype(bool) & (df["susp"] == 0)]
    assert 15_000 < len(eligible) < len(df)

    b = SecondBarBuilder(BarConfig())
    t = eligible["t"].to_numpy(np.int64)
    p = eligible["price"].to_numpy(np.float64)
    s = eligible["s"].to_numpy(np.float64)
    rng = np.random.default_rng(7)
    bars: list[Bar] = []
    lo = 0
    while lo < len(t):
        hi = min(len(t), lo + int(rng.integers(1, 400)))
        b.add_trades("IBM", t[lo:hi], p[lo:hi], s[lo:hi])
        bars += b.drain(int(t[hi - 1]))
        lo = hi
    bars += b.drain_all()
    assert b.rejected == {}

    sec = eligible.groupby(eligible["t"] // 1000)
    expected = pd.DataFrame({
        "h": sec["price"].max(), "l": sec["price"].min(), "o": sec["price"].first(),
        "c": sec["price"].last(), "v": sec["s"].sum(), "n": sec["price"].size(),
    })
    got = pd.DataFrame(
        [(x.start // 1000, x.h, x.l, x.o, x.c, x.v, x.n) for x in bars],
        columns=["sec", "h", "l", "o", "c", "v", "n"],
    ).set_index("sec")
    assert got.index.is_monotonic_increasing
    assert got.index.tolist() == expected.index.tolist()
    assert sum(x.v for x in bars) == eligible["s"].sum()
    for col in ["h", "l", "o", "c", "v", "n"]:
        assert got[col].tolist() == expected[col].tolist(), col
    assert all(x.l <= x.vwap <= x.h for x in bars)
    assert msgspec.json.decode(msgspec.json.encode(b.snapshot()))["rejected"] == {}


def test_a_rejected_first_row_does_not_merge_two_seconds_into_one_bar() -> None:
    b = builder()
    add(b, "X", [(1_005, -1.0, 1), (500, 10.0, 1), (1_200, 11.0, 1)])
    assert b.rejected == {"bad_price": 1}
    assert [(x.start - T0, x.n) for x in b.drain_all()] == [(0, 1), (1_000, 1)]
