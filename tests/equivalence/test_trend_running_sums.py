"""Trend from running sums against the frozen numpy reference: the same events.

The reference (`tests/reference/trend.py`) scores every bar from scratch with numpy; the
current detector keeps running window sums and re-scores exactly only in close calls. Both
see the same bar streams (random walks with flat runs, zero volumes, gaps that empty the
windows, every market period and price bucket, a small history cap) and must emit the same
events (`tests/reference/equivalence.py`: exact fields, floats within 1e-9) and suppress the
same bars for the same reasons.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from unittest.mock import patch

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.detection.bars import Bar
from actors.detection.trend import TrendDetector
from actors.market.sessions import ET, SessionClock
from config.detection import TrendConfig
from schemas.events import Event
from tests.reference.equivalence import event_diffs
from tests.reference.trend import TrendDetector as ReferenceTrend

CLOCK = SessionClock()
DAY = dt.date(2013, 10, 8)
STARTS = [(7, 50), (9, 29), (9, 40), (11, 0), (15, 25), (15, 55), (19, 45)]
PRICES = [0.9, 4.0, 20.0, 150.0, 600.0]
# Small enough that the streams below cut their lists and rebuild their sums several times.
SMALL_TRIM, SMALL_REBUILD = 60, 97
CONFIGS = {
    "default": TrendConfig(),
    "small_cap": TrendConfig(max_history=40),
    "eager": TrendConfig().replace(  # low thresholds: many events, retracements, reversals
        buckets=[{"below": float("inf"), "direction": 0.002, "strength": 0.01}],
        midday={"direction": 0.002, "strength": 0.01, "sensitivity": 1.0, "emit_s": 20,
                "retracement": 0.3, "points_per_window": 3, "warmup_s": 10},
    ),
}


def at(h: int, m: int) -> int:
    return int(dt.datetime.combine(DAY, dt.time(h, m), tzinfo=ET).timestamp() * 1000)


def walk(seed: int, n: int, start: int, price: float) -> list[Bar]:
    """Two tickers' bars: mostly 1 s apart, some gaps (up to 700 s), flat runs, zero volumes."""
    rng = random.Random(seed)
    clock = {"A": start, "B": start + 500}
    last = {"A": price, "B": price * 1.7}
    drift = {"A": rng.choice([-1, 0, 1]), "B": rng.choice([-1, 0, 1])}
    out = []
    for _ in range(n):
        tk = rng.choice("AAB")
        clock[tk] += rng.choices([1, 2, 5, 60, 200, 700], [80, 8, 6, 3, 2, 1])[0] * 1_000
        if rng.random() < 0.02:
            drift[tk] = rng.choice([-2, -1, 0, 1, 2])
        if rng.random() > 0.2:  # else a flat bar
            tick = max(0.0001, round(last[tk] * 0.0005, 4))
            last[tk] = max(0.01, round(last[tk] + (rng.randint(-3, 3) + drift[tk]) * tick, 4))
        c = last[tk]
        v = 0.0 if rng.random() < 0.05 else float(rng.randint(1, 80) * 100)
        vwap = c if rng.random() < 0.5 else round(c * (1 + rng.uniform(-5e-4, 5e-4)), 4)
        out.append(Bar(tk, clock[tk] - 1_000, clock[tk], c, c, c, c, v, vwap, 1))
    return sorted(out, key=lambda b: (b.end, b.ticker))


def feed(det: TrendDetector | ReferenceTrend, bars: list[Bar]) -> list[Event]:
    out = []
    for b in bars:
        event = det.on_bar(b, CLOCK.session_at(b.start), 100.0)
        if event is not None:
            out.append(event)
    return out


streams = st.builds(
    walk,
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(50, 900),
    start=st.sampled_from([at(h, m) for h, m in STARTS]),
    price=st.sampled_from(PRICES),
)


@settings(max_examples=60, deadline=None)
@given(bars=streams, config=st.sampled_from(sorted(CONFIGS)), small=st.booleans())
def test_running_sums_emit_what_the_reference_emits(
    bars: list[Bar], config: str, small: bool
) -> None:
    cfg = CONFIGS[config]
    reference, current = ReferenceTrend(cfg), TrendDetector(cfg)
    expected = feed(reference, bars)
    with often_trimmed_and_rebuilt(small):
        got = feed(current, bars)
    assert event_diffs(expected, got) == []
    assert current.suppressed == reference.suppressed


@contextmanager
def often_trimmed_and_rebuilt(small: bool) -> Iterator[None]:
    """Cut the point lists and rebuild the sums every few dozen points (when `small`)."""
    if not small:
        yield
        return
    with (patch("actors.detection.trend._TRIM_AT", SMALL_TRIM),
          patch("actors.detection.trend_windows.REBUILD_EVERY", SMALL_REBUILD)):
        yield


@settings(max_examples=25, deadline=None)
@given(bars=streams, cut=st.floats(0, 1))
def test_a_restored_detector_continues_like_the_reference(bars: list[Bar], cut: float) -> None:
    cfg = CONFIGS["eager"]
    expected = feed(ReferenceTrend(cfg), bars)
    k = int(cut * len(bars))
    first = TrendDetector(cfg)
    head = feed(first, bars[:k])
    again = TrendDetector(cfg)
    again.restore(json.loads(json.dumps(first.snapshot())))
    rest = feed(again, bars[k:])
    assert event_diffs(expected, head + rest) == []
    assert rest == feed(first, bars[k:])  # the snapshot keeps the running sums: bit for bit


def test_a_score_exactly_at_the_threshold_is_decided_exactly() -> None:
    """Put the direction threshold exactly on a reference score: no event may fire there."""
    bars = walk(7, 400, at(11, 0), 150.0)
    probe = ReferenceTrend(CONFIGS["eager"])
    scores = []
    for b in bars:
        probe.on_bar(b, CLOCK.session_at(b.start), 100.0)
        state = probe._states.get(b.ticker)
        if state is not None and state.prev_score is not None:
            scores.append(abs(state.prev_score))
    exact = sorted(s for s in scores if s > 0.003)[len(scores) // 3]
    cfg = CONFIGS["eager"].replace(  # threshold = min(period 1.0, bucket exact) x 1 x 1
        buckets=[{"below": float("inf"), "direction": exact, "strength": 1.0}],
        midday=CONFIGS["eager"].midday.replace(direction=1.0, strength=1.0),
        high_volatility_mult=1.0, low_volatility_mult=1.0,
    )
    current = TrendDetector(cfg)
    assert event_diffs(feed(ReferenceTrend(cfg), bars), feed(current, bars)) == []
    assert current.exact_rescores > 0
