"""The many-ticker (grouped) detectors against the per-ticker ones they replaced.

`tests/reference/per_ticker/` is the engine, validator, HighLow detector and bar builder as
they were before the rework: one Python call per ticker per batch. The current ones process a
batch across all tickers at once; given the same input both must give exactly the same
output: events (every field, bit for bit), ticker states, rejects, analytics deltas, bars and
snapshots. Inputs: many tickers in random interleavings, session crossings, Form T, odd lots,
bad rows of every kind, random batch splits and snapshot/restore mid-stream.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import astuple

from actors.detection.bars import Bar, SecondBarBuilder
from actors.detection.engine import DetectorEngine, group_rows
from actors.detection.highlow import HighLowDetector
from actors.detection.ticker_table import Groups, TickerTable, seg_accumulate, shift_in
from actors.detection.validation import Validator
from actors.market.sessions import ET, SessionClock
from config.detection import BarConfig, DetectionConfig, HighLowConfig, ValidationConfig
from schemas.batches import (
    FLAG_FORM_T,
    FLAG_HIGH_LOW,
    FLAG_LAST,
    FLAG_VOLUME,
    FLAGS_REGULAR,
    BarBatch,
    TradeBatch,
)
from schemas.events import Event
from tests.reference.per_ticker import bars as old_bars
from tests.reference.per_ticker import highlow as old_highlow
from tests.reference.per_ticker import validation as old_validation
from tests.reference.per_ticker.detector_engine import DetectorEngine as PerTickerEngine

CLOCK = SessionClock()
DAY = dt.date(2013, 10, 8)  # a Tuesday


def et_ms(hh: int, mm: int, ss: float = 0.0, day: dt.date = DAY) -> int:
    base = dt.datetime.combine(day, dt.time(hh, mm), tzinfo=ET)
    return int(base.timestamp() * 1000 + ss * 1000)


# Stream starts just before every session boundary, mid-session, and on a Friday evening.
STARTS = [
    et_ms(3, 59, 40), et_ms(9, 29, 30), et_ms(11, 0), et_ms(15, 59, 30), et_ms(19, 59, 40),
    et_ms(19, 59, 50, dt.date(2013, 10, 11)),
]
FLAG_CHOICES = np.array(
    [FLAGS_REGULAR] * 10 + [FLAG_VOLUME, FLAG_FORM_T | FLAG_VOLUME,
                            FLAG_FORM_T | FLAGS_REGULAR, FLAG_HIGH_LOW,
                            FLAG_LAST | FLAG_VOLUME, 0],
    dtype=np.uint8,
)
NAMES = ["A", "AA", "AAPL", "B", "BRK.B", "IBM", "SPY", "Z", "ZZZZ", "a"]
BAD_KINDS = ("back", "jump", "zero", "nan_price", "neg_price", "nan_size", "empty", "dup",
             "stale", "far_back")


def ticker_names(n: int) -> list[str]:
    return (NAMES + [f"T{i:03d}" for i in range(n)])[:n]


def random_rows(
    seed: int, n_tickers: int, n: int, start: int, bad_rate: float, gap_ms: int = 400,
    gaps: tuple[int, ...] | None = None,
) -> list[tuple[str, int, float, float, int, int]]:
    """A mostly time-ordered stream of (sym, t, p, s, flags, seq) rows over many tickers."""
    steps = gaps or (0, 0, 1, 3, 20, 100, gap_ms, 1_500, 9_000)
    rng = np.random.default_rng(seed)
    names = ticker_names(n_tickers)
    level = rng.choice([0.5, 3.0, 20.0, 80.0, 400.0], n_tickers) * rng.uniform(0.8, 1.2,
                                                                               n_tickers)
    prices = dict(zip(names, level.tolist(), strict=True))
    weights = rng.pareto(1.0, n_tickers) + 1
    weights /= weights.sum()
    rows = []
    t, seq = start, 0
    for _ in range(n):
        t += int(rng.choice(steps))
        tk = names[int(rng.choice(n_tickers, p=weights))]
        prices[tk] = round(max(0.01, prices[tk] * (1 + rng.normal(0, 0.003))), 4)
        size = float(rng.choice([1.0, 50.0, 100.0, 300.0, 5_000.0, 0.5, 33.3]))
        row = [tk, t, prices[tk], size, int(rng.choice(FLAG_CHOICES)), seq]
        if rng.random() < bad_rate:
            _spoil(row, str(rng.choice(BAD_KINDS)), rng)
        rows.append((str(row[0]), int(row[1]), float(row[2]), float(row[3]), int(row[4]),
                     int(row[5])))
        seq += 1 if rng.random() < 0.999 else 3
    return rows


def _spoil(row: list[Any], kind: str, rng: np.random.Generator) -> None:
    if kind == "back":
        row[1] -= int(rng.integers(1, 3_000))
    elif kind == "far_back":
        row[1] -= 30 * 60_000
    elif kind == "stale":
        row[1] -= 6 * 3_600_000
    elif kind == "jump":
        row[2] *= float(rng.choice([3.0, 0.2]))
    elif kind == "zero":
        row[3] = 0.0
    elif kind == "nan_price":
        row[2] = float("nan")
    elif kind == "neg_price":
        row[2] = -1.0
    elif kind == "nan_size":
        row[3] = float("nan")
    elif kind == "empty":
        row[0] = ""
    elif kind == "dup":
        row[5] -= 1


def trade_batch(rows: list[tuple[str, int, float, float, int, int]]) -> TradeBatch:
    cols = list(zip(*rows, strict=True)) if rows else [[]] * 6
    return TradeBatch.from_columns(*cols[:5], seq=cols[5])


def cut(n: int, seed: int, pieces: int) -> list[tuple[int, int]]:
    rng = np.random.default_rng(seed)
    cuts = sorted({0, n, *rng.integers(0, n + 1, pieces).tolist()})
    return [(a, b) for a, b in itertools.pairwise(cuts) if b > a]


# -- segment operations ---------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_seg=st.integers(1, 60))
def test_seg_accumulate_is_the_per_segment_accumulate_exactly(seed: int, n_seg: int) -> None:
    rng = np.random.default_rng(seed)
    lengths = rng.choice([1, 1, 2, 3, 7, 32, 33, 90], n_seg)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    groups = Groups(rng.permutation(n_seg).astype(np.int64), starts, int(lengths.sum()))
    floats = rng.random(groups.n_rows) * rng.choice([1e-3, 1.0, 1e7], groups.n_rows)
    ints = rng.integers(-(10**12), 10**12, groups.n_rows)
    for values, init in ((floats, rng.random(n_seg) * 1e4), (ints, rng.integers(-9, 9, n_seg))):
        for ufunc in (np.add, np.maximum, np.minimum):
            got = seg_accumulate(ufunc, values, groups, init)
            prev = shift_in(got, groups, init)
            for k, (a, b) in enumerate(zip(groups.starts, groups.ends, strict=True)):
                expected = ufunc.accumulate(np.concatenate(([init[k]], values[a:b])))
                assert got[a:b].tolist() == expected[1:].tolist()
                assert prev[a:b].tolist() == expected[:-1].tolist()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(NAMES), min_size=1, max_size=40), st.data())
def test_table_groups_rows_as_group_rows_does(syms: list[str], data: st.DataObject) -> None:
    table = TickerTable()
    for name in data.draw(st.lists(st.sampled_from(NAMES), max_size=5)):
        table.add(name)  # ids in another order than the names'
    sym = np.array(syms, dtype="<U12")
    order, groups = table.group(sym)
    expected = group_rows(sym)
    assert [table.names[i] for i in groups.ids.tolist()] == [k for k, _ in expected]
    assert [order[a:b].tolist() for a, b in zip(groups.starts, groups.ends, strict=True)] == [
        v.tolist() for _, v in expected
    ]
    keep = np.array(data.draw(st.lists(st.booleans(), min_size=len(syms), max_size=len(syms))))
    kept = groups.take(keep)
    names = sym[order][keep]
    assert [table.names[i] for i in kept.ids.tolist()] == [k for k, _ in group_rows(names)]
    assert kept.lengths.tolist() == [len(v) for _, v in group_rows(names)]


# -- validation -----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_tickers=st.integers(1, 30),
       tolerance=st.sampled_from([0, 50]), pieces=st.integers(0, 6))
def test_validator_matches_the_per_ticker_validator(
    seed: int, n_tickers: int, tolerance: int, pieces: int
) -> None:
    cfg = ValidationConfig(out_of_order_tolerance_ms=tolerance, max_jump_pct=50,
                           jump_window_ms=5_000)
    rows = random_rows(seed, n_tickers, 300, et_ms(11, 0), bad_rate=0.15)
    new, old = Validator(cfg), old_validation.Validator(cfg)
    for a, b in cut(len(rows), seed, pieces):
        part = trade_batch(rows[a:b])
        assert list(new.validate(part).rows()) == list(old.validate(part).rows())
    assert new.rejected == old.rejected
    assert new.last_seq == old.last_seq
    for name in ticker_names(n_tickers):
        assert new.last_price(name) == old.last_price(name)
    restored = Validator(cfg)
    restored.restore(old.snapshot())  # the per-ticker snapshot format still loads
    assert restored.snapshot() == new.snapshot()


# -- HighLow --------------------------------------------------------------------------------


def highlow_calls(
    rows: list[tuple[str, int, float, float, int, int]],
) -> list[tuple[Any, TradeBatch]]:
    """The rows (all taken as valid) as per-session batches, the way the engine feeds them."""
    out = []
    for session_start, part in itertools.groupby(rows, key=lambda r: CLOCK.session_at(r[1])):
        out.append((session_start, trade_batch(list(part))))
    return out


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_tickers=st.integers(1, 30),
       start=st.sampled_from(STARTS), pieces=st.integers(0, 6),
       cooldown=st.sampled_from([0, 1_000]))
def test_highlow_groups_match_per_ticker_calls(
    seed: int, n_tickers: int, start: int, pieces: int, cooldown: int
) -> None:
    cfg = HighLowConfig(cooldown_ms=cooldown)
    rows = [r for r in random_rows(seed, n_tickers, 400, start, bad_rate=0.0) if r[0]]
    rows.sort(key=lambda r: r[1])
    table = TickerTable()
    new, old = HighLowDetector(cfg, table), old_highlow.HighLowDetector(cfg)
    for name in ticker_names(n_tickers)[::3]:
        for det in (new, old):
            det.set_official_open(name, 21.0, et_ms(9, 30))
    for a, b in cut(len(rows), seed, pieces):
        for session, batch in highlow_calls(rows[a:b]):
            expected: list[Event] = []
            for ticker, idx in group_rows(batch.sym):
                expected += old.process(ticker, session, batch.t[idx], batch.p[idx],
                                        batch.s[idx], batch.flags[idx])
            order, groups = table.group(batch.sym)
            got = new.process_groups(session, groups, batch.t[order], batch.p[order],
                                     batch.s[order], batch.flags[order])
            assert got == expected
    assert new.snapshot() == old.snapshot()
    for name in ticker_names(n_tickers):
        assert new.state(name) == old.state(name)
        for session_start in {CLOCK.session_at(r[1]).start_ms for r in rows} | {None}:
            assert new.base(name, session_start) == old.base(name, session_start)


def test_highlow_restores_the_per_ticker_snapshot_and_continues_identically() -> None:
    rows = sorted((r for r in random_rows(5, 12, 600, et_ms(9, 29, 30), 0.0) if r[0]),
                  key=lambda r: r[1])
    old = old_highlow.HighLowDetector()
    head, tail = highlow_calls(rows[:300]), highlow_calls(rows[300:])
    for session, batch in head:
        for ticker, idx in group_rows(batch.sym):
            old.process(ticker, session, batch.t[idx], batch.p[idx], batch.s[idx],
                        batch.flags[idx])
    new = HighLowDetector()
    new.restore(msgpack.unpackb(msgpack.packb(old.snapshot()), strict_map_key=False))
    expected: list[Event] = []
    got: list[Event] = []
    for session, batch in tail:
        for ticker, idx in group_rows(batch.sym):
            args = (session, batch.t[idx], batch.p[idx], batch.s[idx], batch.flags[idx])
            expected += old.process(ticker, *args)
            got += new.process(ticker, *args)
    assert got == expected
    assert len(expected) > 10
    assert new.snapshot() == old.snapshot()


# -- bars -----------------------------------------------------------------------------------


def bar_rows(bars: list[Any]) -> list[tuple[Any, ...]]:
    return [astuple(b) for b in bars]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_tickers=st.integers(1, 25),
       grace=st.sampled_from([0, 250, 1_000, 5_000]), max_pending=st.sampled_from([3, 3_600]),
       pieces=st.integers(0, 10), snap=st.booleans())
def test_bar_builder_matches_the_per_ticker_builder(
    seed: int, n_tickers: int, grace: int, max_pending: int, pieces: int, snap: bool
) -> None:
    cfg = BarConfig(grace_ms=grace, max_pending_bars=max_pending)
    rng = np.random.default_rng(seed)
    rows = random_rows(seed, n_tickers, 400, et_ms(11, 0), bad_rate=0.1, gap_ms=900)
    rows = [r for r in rows if r[0]]
    table = TickerTable()
    new, old = SecondBarBuilder(cfg, table), old_bars.SecondBarBuilder(cfg)
    got: list[Any] = []
    expected: list[Any] = []
    for k, (a, b) in enumerate(cut(len(rows), seed, pieces)):
        batch = trade_batch(rows[a:b])
        for ticker, idx in group_rows(batch.sym):
            old.add_trades(ticker, batch.t[idx], batch.p[idx], batch.s[idx])
        order, groups = table.group(batch.sym)
        new.add_groups(groups, batch.t[order], batch.p[order], batch.s[order])
        if rng.random() < 0.2:  # feed bars for one ticker: pooled trades are queued first
            feed = _feed_bar(str(rng.choice(batch.sym)), int(batch.t.max()), rng)
            old.add_bars(feed.ticker, [old_bars.Bar(*astuple(feed))])
            new.add_bars(feed.ticker, [feed])
        if rng.random() < 0.6:
            watermark = int(batch.t.max()) - int(rng.integers(0, 3_000))
            expected += old.drain(watermark)
            got += new.drain(watermark)
        assert new.pending() == old.pending()
        assert new.rejected == old.rejected
        if snap and k == 1:
            assert new.snapshot() == old.snapshot()
            table = TickerTable()
            new = SecondBarBuilder(cfg, table)
            new.restore(msgpack.unpackb(msgpack.packb(old.snapshot()), strict_map_key=False))
    expected += old.drain_all()
    got += new.drain_all()
    assert bar_rows(got) == bar_rows(expected)
    assert new.rejected == old.rejected
    assert new.snapshot() == old.snapshot()


def _feed_bar(ticker: str, t: int, rng: np.random.Generator) -> Bar:
    start = (t // 1_000 + int(rng.integers(-1, 3))) * 1_000
    return Bar(ticker, start, start + 1_000, 10.0, 10.5, 9.5, 10.2, 300.0, 10.1, 0)


# -- the whole engine -----------------------------------------------------------------------


CONFIGS = {
    "default": DetectionConfig(),
    "tolerant": DetectionConfig(validation=ValidationConfig(out_of_order_tolerance_ms=2_000)),
    "small_bars": DetectionConfig(bars=BarConfig(max_pending_bars=4, grace_ms=0)),
    "highlow_only": DetectionConfig(enable_surge=False, enable_trend=False,
                                    highlow=HighLowConfig(cooldown_ms=0)),
}


def bar_batch(rng: np.random.Generator, t: int, seq: int, n: int) -> BarBatch:
    """Second bars of feed-bar tickers (distinct from the trade tickers), around time `t`."""
    sym = rng.choice(["BAR1", "BAR2", "BAR3"], n)
    start = (t // 1_000 - rng.integers(0, 3, n)) * 1_000
    o = np.round(rng.uniform(9.0, 11.0, n), 2)
    c = np.round(o * (1 + rng.normal(0, 0.01, n)), 2)
    h = np.maximum(o, c) + rng.choice([0.0, 0.05], n)
    lo = np.minimum(o, c) - rng.choice([0.0, 0.05], n)
    return BarBatch.from_columns(sym=sym, start=start, end=start + 1_000, o=o, h=h, l=lo, c=c,
                                 v=rng.choice([0.0, 100.0, 2_500.0], n),
                                 seq=np.arange(seq, seq + n))


class Pair:
    """The current engine and the per-ticker one, fed the same input, compared as they go."""

    def __init__(self, config: DetectionConfig) -> None:
        self.config = config
        self.new = DetectorEngine(config, shard=1)
        self.old = PerTickerEngine(config, shard=1)
        self.tickers: set[str] = set()

    def trades(self, batch: TradeBatch) -> None:
        self.tickers |= set(batch.sym.tolist())
        assert self.new.process_trades(batch) == self.old.process_trades(batch)
        self.check_outputs()

    def bars(self, batch: BarBatch) -> None:
        self.tickers |= set(batch.sym.tolist())
        assert self.new.process_bars(batch) == self.old.process_bars(batch)
        self.check_outputs()

    def flush(self) -> None:
        assert self.new.flush() == self.old.flush()
        self.check_outputs()
        self.check_state()

    def check_outputs(self) -> None:
        assert self.new.take_analytics() == self.old.take_analytics()
        assert self.new.rejected() == self.old.rejected()
        assert (self.new.watermark, self.new.last_seq) == (self.old.watermark, self.old.last_seq)

    def check_state(self) -> None:
        for ticker in sorted(self.tickers):
            assert self.new.ticker_state(ticker) == self.old.ticker_state(ticker), ticker

    def restart(self, from_old: bool) -> None:
        """Restore the current engine from a snapshot (its own, or the per-ticker engine's)."""
        self.check_state()
        blob = (self.old if from_old else self.new).snapshot()
        self.new = DetectorEngine.restore(self.config, 1, blob)
        self.check_state()


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_tickers=st.integers(1, 40),
       start=st.sampled_from(STARTS), config=st.sampled_from(sorted(CONFIGS)),
       pieces=st.integers(0, 8), restart=st.sampled_from([None, "own", "per_ticker"]))
def test_engine_matches_the_per_ticker_engine(
    seed: int, n_tickers: int, start: int, config: str, pieces: int, restart: str | None
) -> None:
    rng = np.random.default_rng(seed)
    rows = random_rows(seed, n_tickers, 500, start, bad_rate=0.08)
    pair = Pair(CONFIGS[config])
    seq = rows[-1][5] + 10
    for k, (a, b) in enumerate(cut(len(rows), seed, pieces)):
        pair.trades(trade_batch(rows[a:b]))
        if rng.random() < 0.3:
            pair.bars(bar_batch(rng, rows[b - 1][1], seq, int(rng.integers(1, 6))))
            seq += 10
        if restart and k == 0:
            pair.restart(from_old=restart == "per_ticker")
    pair.flush()


def test_sessions_and_a_day_boundary_inside_one_batch() -> None:
    next_day = DAY + dt.timedelta(days=1)
    rows = []
    for k, start in enumerate([et_ms(15, 59, 50), et_ms(19, 59, 55), et_ms(9, 29, 58, next_day)]):
        part = random_rows(3 + k, 20, 150, start, bad_rate=0.0)
        rows += [(r[0], r[1], r[2], r[3], r[4], r[5] + 1_000 * k) for r in part]
    assert len({CLOCK.session_at(r[1]).start_ms for r in rows}) >= 5
    pair = Pair(CONFIGS["default"])
    pair.trades(trade_batch(rows))
    pair.flush()


def test_synthetic_3000_tickers_match() -> None:
    """The live shape: 8,192-row batches over 3,000 tickers (random walks, a few odd lots)."""
    rng = np.random.default_rng(11)
    n, tickers = 3 * 8_192, 3_000
    names = np.array([f"X{i:04d}" for i in range(tickers)], dtype="<U12")
    idx = rng.integers(0, tickers, n)
    level = np.exp(rng.uniform(np.log(0.5), np.log(500.0), tickers))
    walk = np.zeros(n)
    for i in range(tickers):  # each ticker's own walk, in its row order
        mine = np.flatnonzero(idx == i)
        walk[mine] = np.cumsum(rng.normal(0, 0.002, len(mine)))
    p = np.round(level[idx] * np.exp(walk), 4)
    t = et_ms(10, 0) + np.arange(n) // 200 * 1  # 200k trades/s of event time
    flags = rng.choice(FLAG_CHOICES, n)
    s = rng.choice([100.0, 200.0, 37.0, 5_000.0], n)
    pair = Pair(CONFIGS["default"])
    for a in range(0, n, 8_192):
        pair.trades(TradeBatch(names[idx[a:a + 8_192]], t[a:a + 8_192], p[a:a + 8_192],
                               s[a:a + 8_192], flags[a:a + 8_192],
                               np.arange(a, min(a + 8_192, n), dtype=np.int64)))
    pair.flush()
    assert pair.new.highlow.tickers()
    assert sum(pair.new.ticker_state(n)["count"] for n in names[:300].tolist()) > 0


@pytest.mark.parametrize(
    ("kind", "config", "reason"),
    [("back", "default", "out_of_order"), ("jump", "default", "price_jump"),
     ("back", "tolerant", "stale_session"), ("far_back", "small_bars", "out_of_order")],
)
def test_each_bad_row_kind_alone(kind: str, config: str, reason: str) -> None:
    rows = random_rows(9, 8, 300, et_ms(9, 29, 59), bad_rate=0.0, gaps=(0, 1, 5, 20))
    rng = np.random.default_rng(1)
    spoiled = []
    for row in rows:
        r = list(row)
        if rng.random() < 0.2:
            _spoil(r, kind, rng)
        spoiled.append((str(r[0]), int(r[1]), float(r[2]), float(r[3]), int(r[4]), int(r[5])))
    pair = Pair(CONFIGS[config])
    for a, b in cut(len(spoiled), 2, 4):
        pair.trades(trade_batch(spoiled[a:b]))
    pair.flush()
    assert pair.new.rejected()[reason] > 0
