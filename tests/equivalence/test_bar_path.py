"""Surge, the bar builder and the shard analytics against their frozen references.

Each current component and its frozen copy (`tests/reference/`) get the same
inputs and must give the same outputs: Surge events and suppressions; the bars handed out and
the rejects of the builder (feed bars added per ticker in one go); the analytics deltas
(windows summed with one bincount pass instead of a loop per window).
"""

from __future__ import annotations

import datetime as dt
import json
import random
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.detection.analytics import ShardAnalytics
from actors.detection.bars import Bar, SecondBarBuilder
from actors.detection.surge import SurgeDetector
from actors.market.sessions import ET, SessionClock
from config.detection import AnalyticsConfig, BarConfig, SurgeConfig
from schemas.events import Event
from tests.reference import bars as reference_bars
from tests.reference.analytics import ShardAnalytics as ReferenceAnalytics
from tests.reference.equivalence import close, event_diffs
from tests.reference.surge import SurgeDetector as ReferenceSurge

CLOCK = SessionClock()
DAY = dt.date(2013, 10, 8)
EAGER = SurgeConfig().replace(  # every mode, low gates: many triggers, cooldowns and caps
    midday=SurgeConfig().midday.replace(mode="OR", min_score=20, cooldown_s=10, interval_s=3),
    opening=SurgeConfig().opening.replace(mode="ADAPTIVE", min_score=20, cooldown_s=5),
    closing=SurgeConfig().closing.replace(min_score=10, cooldown_s=5, volume_threshold=1.2),
    volatility_window_s=120.0,
)


def at(h: int, m: int, day: dt.date = DAY) -> int:
    return int(dt.datetime.combine(day, dt.time(h, m), tzinfo=ET).timestamp() * 1000)


STARTS = [at(7, 0), at(9, 29), at(11, 0), at(15, 29), at(15, 59), at(19, 58),
          at(11, 0, dt.date(2013, 10, 12))]  # a Saturday: CLOSED


def jumpy(seed: int, n: int, start: int, price: float) -> list[Bar]:
    """Two tickers: calm stretches, jumps up to 8 %, volume spikes, flat closes."""
    rng = random.Random(seed)
    clock = {"A": start, "B": start + 300}
    last = {"A": price, "B": price * 3.1}
    out = []
    for _ in range(n):
        tk = rng.choice("AB")
        clock[tk] += rng.choice([1, 1, 2, 3, 5, 12, 20, 40]) * 1_000
        if rng.random() < 0.1:
            last[tk] = round(max(0.05, last[tk] * (1 + rng.uniform(-8, 8) / 100)), 2)
        elif rng.random() < 0.7:
            last[tk] = round(max(0.05, last[tk] * (1 + rng.uniform(-0.3, 0.3) / 100)), 2)
        # Runs of 100 then 300 put the volume multiplier exactly on the 3x threshold.
        v = float(rng.choice([0, 100, 100, 100, 100, 300, 500, 1_000, 30_000, 10**6]))
        c = last[tk]
        out.append(Bar(tk, clock[tk] - 1_000, clock[tk], c, c, c, c, v, c, 1))
    return sorted(out, key=lambda b: (b.end, b.ticker))


def feed(det: SurgeDetector | ReferenceSurge, bars: list[Bar]) -> list[Event]:
    out = []
    for b in bars:
        event = det.on_bar(b, CLOCK.session_at(b.start), 100.0)
        if event is not None:
            out.append(event)
    return out


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(30, 500), start=st.sampled_from(STARTS),
       price=st.sampled_from([0.5, 8.0, 40.0, 150.0, 400.0, 900.0]), eager=st.booleans())
def test_surge_emits_what_the_reference_emits(
    seed: int, n: int, start: int, price: float, eager: bool
) -> None:
    cfg = EAGER if eager else SurgeConfig()
    bars = jumpy(seed, n, start, price)
    reference, current = ReferenceSurge(cfg), SurgeDetector(cfg)
    assert event_diffs(feed(reference, bars), feed(current, bars)) == []
    assert current.suppressed == reference.suppressed
    snapshot = json.loads(json.dumps(current.snapshot()))
    assert snapshot == json.loads(json.dumps(reference.snapshot()))


def test_a_volume_exactly_at_the_threshold_still_triggers() -> None:
    """STRICT skips bars without the volume test; a multiplier of exactly 3.0 passes it."""
    t0 = at(11, 0)
    calm = [Bar("X", t0 + i * 20_000, t0 + i * 20_000 + 1_000, 100.0, 100.0, 100.0, 100.0,
                100.0, 100.0, 1) for i in range(10)]
    jump = Bar("X", t0 + 200_000, t0 + 201_000, 102.0, 102.0, 102.0, 102.0, 300.0, 102.0, 1)
    expected = feed(ReferenceSurge(SurgeConfig()), [*calm, jump])
    assert [e.trigger for e in expected] == ["price_and_volume"]
    assert event_diffs(expected, feed(SurgeDetector(SurgeConfig()), [*calm, jump])) == []


def test_the_surge_streams_do_fire() -> None:
    kinds = set()
    for seed in range(30):
        for start in STARTS:
            events = feed(SurgeDetector(EAGER), jumpy(seed, 300, start, 40.0))
            kinds |= {(e.trigger, e.direction) for e in events}
    assert len(kinds) >= 6


# -- the bar builder ----------------------------------------------------------------------------


def feed_bars(seed: int, n: int) -> list[Bar]:
    """Feed bars of three tickers, mostly in order, some bad, late or out of order."""
    rng = random.Random(seed)
    t0 = at(11, 0)
    clock = dict.fromkeys("XYZ", t0)
    out = []
    for _ in range(n):
        tk = rng.choice("XYZ")
        step = rng.choice([1_000, 1_000, 60_000, 0, -3_000])
        clock[tk] = max(t0, clock[tk] + step)
        start = clock[tk]
        end = start + rng.choice([1_000, 1_000, 60_000, 0])
        low = rng.choice([10.0, 10.0, 0.0])
        out.append(Bar(tk, start, end, 10.5, rng.choice([11.0, 9.0]), low, 10.2,
                       rng.choice([100.0, 0.0, -1.0]), 10.3, 0))
    return out


def as_rows(bars: list[Any]) -> list[tuple[Any, ...]]:
    return [(b.ticker, b.start, b.end, b.o, b.h, b.l, b.c, b.v, b.vwap, b.n) for b in bars]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 200), chunk=st.integers(1, 40))
def test_bars_added_per_ticker_are_handed_out_as_one_by_one(
    seed: int, n: int, chunk: int
) -> None:
    cfg = BarConfig(max_pending_bars=50)
    reference, current = reference_bars.SecondBarBuilder(cfg), SecondBarBuilder(cfg)
    bars = feed_bars(seed, n)
    expected: list[Any] = []
    got: list[Bar] = []
    for i in range(0, n, chunk):
        part = bars[i : i + chunk]
        for b in part:
            reference.add_bar(reference_bars.Bar(*as_rows([b])[0]))
        for ticker in sorted({b.ticker for b in part}):
            current.add_bars(ticker, [b for b in part if b.ticker == ticker])
        watermark = max(b.end for b in part)
        expected += reference.drain(watermark)
        got += current.drain(watermark)
    expected += reference.drain_all()
    got += current.drain_all()
    assert as_rows(got) == as_rows(expected)
    assert current.rejected == reference.rejected


# -- the shard analytics ------------------------------------------------------------------------


def random_trades(
    rng: np.random.Generator, t: int, span_s: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = int(rng.choice([1, 5, 17, 200, 3_000]))
    times = t + np.sort(rng.integers(0, span_s * 1_000, n))
    prices = np.round(20 + np.cumsum(rng.choice([-0.01, 0, 0, 0.01], n)), 2)
    prices[rng.random(n) < 0.01] = np.nan
    sizes = rng.choice([0.0, 100.0, 250.0, 1e4], n)
    return times, prices, sizes


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), calls=st.integers(1, 12), span_s=st.integers(1, 120),
       grouped=st.booleans())
def test_analytics_deltas_match_the_reference(
    seed: int, calls: int, span_s: int, grouped: bool
) -> None:
    """Per ticker (`on_trades`) or several tickers in one call (`on_trade_groups`)."""
    rng = np.random.default_rng(seed)
    cfg = AnalyticsConfig()
    reference, current = ReferenceAnalytics(cfg), ShardAnalytics(cfg)
    t = at(11, 0)
    for _ in range(calls):
        tickers = sorted(set(rng.choice(["A", "B", "C", "D"], int(rng.integers(1, 5)))))
        groups = [(str(tk), *random_trades(rng, t, span_s)) for tk in tickers]
        t = max(int(g[1][-1]) for g in groups)
        for group in groups:
            reference.on_trades(*group)
        if grouped:
            current.on_trade_groups(groups)
        else:
            for group in groups:
                current.on_trades(*group)
    assert close(current.take_delta(), reference.take_delta())
    assert current.snapshot() == reference.snapshot()
