"""Trend: window scoring, gates, one-sided retracement, weak suppression, cadence, sessions."""

from __future__ import annotations

import datetime as dt
import json
import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.detection.bars import Bar
from actors.detection.trend import Scores, TrendDetector, WindowTerms
from actors.market.periods import MarketPeriod, market_period
from actors.market.sessions import ET, SessionClock
from config.detection import TrendConfig
from schemas.events import Event
from tests.builders import feed_bars, flat_bar

CLOCK = SessionClock()
DAY = dt.date(2013, 10, 8)


def at(h: int, m: int, s: int = 0) -> int:
    return int(dt.datetime.combine(DAY, dt.time(h, m, s), tzinfo=ET).timestamp() * 1000)


def ramp(start: int, n: int, step: float, price: float = 100.0, every_s: int = 1) -> list[Bar]:
    """`n` bars of constant volume, `every_s` apart, moving by `step` $ each."""
    return [flat_bar(start + i * every_s * 1_000, price + i * step) for i in range(n)]


def same_periods(**fields: Any) -> TrendConfig:
    """Every period and price bucket with the same parameters (thresholds from buckets)."""
    period = {"direction": 10.0, "strength": 10.0, "sensitivity": 1.0, "emit_s": 60,
              "retracement": 0.5, "points_per_window": 4, "warmup_s": 30, **fields}
    names = ["opening", "midday", "closing", "afterhours", "premarket", "closed"]
    return TrendConfig().replace(
        high_volatility_mult=1.0, low_volatility_mult=1.0, **{name: period for name in names}
    )


def with_buckets(cfg: TrendConfig, direction: float, strength: float = 10.0) -> TrendConfig:
    return cfg.replace(buckets=[{"below": float("inf"), "direction": direction,
                                 "strength": strength}])


MIDDAY_T = at(11, 0)


# -- scoring --------------------------------------------------------------------------------------


def test_window_score_by_hand() -> None:
    det = TrendDetector(TrendConfig())
    points = np.array([[0, 1_000, 2_000], [100.0, 101.0, 102.0], [100.0] * 3, [1.0] * 3])
    terms = WindowTerms(points)
    price = 1.0 / (0.01 * 101.0)  # weighted step $1 over 1 % of the mean price
    vwap = 5 * (0.9 * 0.01 + 1.0 * 0.02) / 2.71 + 10 * 0.01
    volume = 1.0 / 3.0
    expected = 0.5 * price + 0.3 * vwap + 0.2 * volume
    assert det.window_score(terms, 0, 3) == pytest.approx(expected)
    assert det.window_score(terms, 0, 4) == 0.0  # too few points
    # From the second point: one step, weights (0.9, 1) / 1.9 on the two positions.
    later = (0.5 * 1.0 / (0.01 * 101.5) + 0.3 * (5 * (0.9 * 0.01 + 0.02) / 1.9 + 10 * 0.01)
             + 0.2 / 3)
    assert det.window_score(terms, 1, 2) == pytest.approx(later)


def test_components_are_clamped() -> None:
    det = TrendDetector(TrendConfig())
    points = np.array([[0, 1_000, 2_000], [100.0, 150.0, 200.0], [100.0] * 3, [1.0] * 3])
    assert det.window_score(WindowTerms(points), 0, 3) == pytest.approx(0.5 + 0.3 + 0.2 / 3)
    falling = points.copy()
    falling[1] = [200.0, 150.0, 100.0]
    falling[2] = [200.0] * 3
    assert det.window_score(WindowTerms(falling), 0, 3) == pytest.approx(-0.5 - 0.3 - 0.2 / 3)


def test_retracement_is_one_sided() -> None:
    r = TrendDetector.retraced
    assert r(0.10, 0.07, 0.02, 0.25) is True  # gave back 30 % of an up-trend
    assert r(0.10, 0.08, 0.02, 0.25) is False  # 20 %: below the limit
    assert r(-0.10, -0.07, 0.02, 0.25) is True  # the same against a down-trend
    assert r(0.10, 0.20, 0.02, 0.25) is False  # strengthening: the original zeroed this
    assert r(-0.10, -0.20, 0.02, 0.25) is False
    assert r(0.10, -0.05, 0.02, 0.25) is False  # a sign change is a reversal, not retracement
    assert r(0.01, 0.001, 0.02, 0.25) is False  # the prior score was not directional
    assert r(None, 0.05, 0.02, 0.25) is False


def test_classification_thresholds() -> None:
    det = TrendDetector(TrendConfig())

    def scores(x: float) -> Scores:
        return Scores(windows=(x, x, x), combined=x, direction_thr=0.02, strong_thr=0.05)

    assert [det.classify(scores(x)) for x in (0.021, 0.02, -0.02, -0.021, 0.0)] == [
        "up", None, None, "down", None]
    assert [det.strength(scores(x)) for x in (0.051, 0.05, 0.041, 0.04, -0.041, -0.03)] == [
        "strong", "moderate", "moderate", "weak", "moderate", "weak"]


def test_thresholds_are_the_smaller_of_period_and_bucket_times_volatility() -> None:
    cfg = TrendConfig()
    det = TrendDetector(cfg)
    bars = ramp(MIDDAY_T, 100, 0.0)  # flat: LOW volatility (x1.3)
    feed_bars(det, bars[:-1])
    state = det._states["X"]
    s = det.score(state, bars[-1], cfg.midday)
    assert s.volatility == "LOW"
    # MIDDAY 0.025 / 0.05 vs bucket MID 0.015 / 0.035, sensitivity 1.5.
    assert s.direction_thr == pytest.approx(0.015 * 1.3 * 1.5)
    assert s.strong_thr == pytest.approx(0.035 * 1.3 * 1.5)
    wild = TrendDetector(cfg)  # ULTRA price, HIGH volatility (x0.7)
    swings = [flat_bar(MIDDAY_T + i * 1_000, 600.0 + 40 * (i % 2)) for i in range(30)]
    feed_bars(wild, swings[:-1])
    s = wild.score(wild._states["X"], swings[-1], cfg.opening)
    assert s.volatility == "HIGH"
    assert s.direction_thr == pytest.approx(0.006 * 0.7 * 1.0)
    assert s.strong_thr == pytest.approx(0.02 * 0.7 * 1.0)


# -- gates and cadence ----------------------------------------------------------------------------


def test_first_trend_waits_for_the_warm_up_and_enough_history() -> None:
    det = TrendDetector(TrendConfig())  # MIDDAY: 8 points per window, 24 in history, 90 s
    events = feed_bars(det, ramp(MIDDAY_T, 200, 0.01))
    assert events[0].time - MIDDAY_T == 90_000
    sparse = TrendDetector(TrendConfig())
    events = feed_bars(sparse, ramp(MIDDAY_T, 40, 0.1, every_s=10))
    assert events[0].time - MIDDAY_T == 230_000  # the 24th bar, well after the warm-up


def test_same_direction_is_re_emitted_only_after_the_emit_interval() -> None:
    det = TrendDetector(TrendConfig())
    events = feed_bars(det, ramp(MIDDAY_T, 400, 0.01))
    assert [e.time - MIDDAY_T for e in events] == [90_000, 180_000, 270_000, 360_000]
    assert [e.count for e in events] == [1, 2, 3, 4]
    assert all(e.direction == "up" and e.reversal is None for e in events)
    assert det.suppressed["emit_interval"] > 200


def test_a_direction_change_is_emitted_at_once_as_a_reversal() -> None:
    det = TrendDetector(TrendConfig())
    up = ramp(MIDDAY_T, 120, 0.01)
    down = ramp(MIDDAY_T + 120_000, 120, -0.02, price=up[-1].c - 0.02)
    events = feed_bars(det, up + down)
    assert [e.direction for e in events][:2] == ["up", "down"]
    flip = events[1]
    assert flip.reversal == "up-now-down"
    assert flip.time - events[0].time < 90_000
    assert (flip.count, flip.count_up, flip.count_down) == (2, 1, 1)
    assert flip.id == f"X:trend:{flip.time}:2"


def test_event_fields() -> None:
    det = TrendDetector(TrendConfig())
    bars = [flat_bar(MIDDAY_T + i * 1_000, 100 + i * 0.01, v=100.0 + i) for i in range(91)]
    (e,) = feed_bars(det, bars, base=99.0)
    vwap = sum(b.c * b.v for b in bars) / sum(b.v for b in bars)
    assert (e.kind, e.session, e.time, e.price) == ("trend", "REGULAR", bars[-1].end, bars[-1].c)
    assert e.vwap == pytest.approx(vwap)
    assert e.vwap_position == "above"
    assert e.pct_change == pytest.approx((bars[-1].c - 99.0) / 99.0 * 100)
    assert e.volume == bars[-1].v
    assert e.rel_volume == pytest.approx(bars[-1].v / np.mean([b.v for b in bars]))
    assert e.score == pytest.approx(0.3 * e.trend_short + 0.4 * e.trend_medium
                                    + 0.3 * e.trend_long)
    assert e.window_s in (180, 360, 600)
    # Only 91 s of bars: every window holds the same points, so the scores agree.
    assert e.trend_short == pytest.approx(e.trend_long)


# -- retracement in the detector ------------------------------------------------------------------


def test_a_pull_back_zeroes_the_trend_but_a_surge_forward_does_not() -> None:
    cfg = with_buckets(same_periods(emit_s=30, warmup_s=20, retracement=0.25), direction=0.01)
    no_rule = with_buckets(same_periods(emit_s=30, warmup_s=20, retracement=100), direction=0.01)
    rise = ramp(MIDDAY_T, 80, 0.01)  # trends at 20 s and 50 s; the next one is due at 80 s
    pull = flat_bar(MIDDAY_T + 80_000, rise[-1].c - 0.05, v=300.0)
    push = flat_bar(MIDDAY_T + 80_000, rise[-1].c + 0.5, v=5_000.0)
    det = TrendDetector(cfg)
    assert [e.time - MIDDAY_T for e in feed_bars(det, rise)] == [20_000, 50_000]
    prev = det.snapshot()["tickers"]["X"]["prev_score"]
    limit = 0.25 * det.factor(pull.c)
    assert feed_bars(det, [pull]) == []
    assert det.suppressed["retracement"] == 1

    without = TrendDetector(no_rule)
    feed_bars(without, rise)
    (e,) = feed_bars(without, [pull])
    assert 0 < e.score <= prev * (1 - limit)  # still up, but it gave back enough

    det = TrendDetector(cfg)
    feed_bars(det, rise)
    (e,) = feed_bars(det, [push])
    assert e.score >= prev * (1 + limit)  # the original's symmetric test zeroed this one
    assert "retracement" not in det.suppressed


# -- weak suppression -----------------------------------------------------------------------------


def probe_score(start: int, bars_fn: Any) -> float:
    det = TrendDetector(with_buckets(same_periods(), direction=1e-6))
    events = feed_bars(det, bars_fn(start))
    return float(events[0].score)


@pytest.mark.parametrize(
    ("start", "period", "emitted"),
    [(at(9, 31), MarketPeriod.OPENING, False), (at(11, 0), MarketPeriod.MIDDAY, True),
     (at(15, 31), MarketPeriod.CLOSING, False), (at(16, 30), MarketPeriod.AFTERHOURS, True)],
)
def test_weak_trends_are_not_emitted_at_the_opening_and_closing(
    start: int, period: MarketPeriod, emitted: bool
) -> None:
    def bars(s: int) -> list[Bar]:
        return ramp(s, 31, 0.002)

    assert market_period(start, CLOCK.session_at(start)) is period
    score = probe_score(start, bars)
    weak = TrendDetector(with_buckets(same_periods(), direction=score / 1.5))
    events = feed_bars(weak, bars(start))
    assert [e.strength for e in events] == (["weak"] if emitted else [])
    if not emitted:
        assert weak.suppressed == {"weak_in_period": 1}
    moderate = TrendDetector(with_buckets(same_periods(), direction=score / 2.5))
    assert [e.strength for e in feed_bars(moderate, bars(start))] == ["moderate"]


# -- sessions and bounds --------------------------------------------------------------------------


def test_a_new_session_starts_a_fresh_history_and_counts() -> None:
    det = TrendDetector(TrendConfig())
    regular = ramp(at(15, 50), 600, 0.01)  # 15:50-16:00 REGULAR, then AFTER from 16:00
    events = feed_bars(det, regular)
    sessions = [(e.session, e.count) for e in events]
    assert ("REGULAR", 1) in sessions
    after = [e for e in events if e.session == "AFTER"]
    assert all(e.time >= at(16, 0) + 240_000 for e in after)  # AFTERHOURS warm-up restarts
    assert not after or after[0].count == 1


def test_reset_ticker_forgets_the_ticker() -> None:
    det = TrendDetector(TrendConfig())
    feed_bars(det, ramp(MIDDAY_T, 100, 0.01))
    det.reset_ticker("X")
    assert det.snapshot()["tickers"] == {}


def test_history_is_bounded_by_time_and_points() -> None:
    det = TrendDetector(TrendConfig())
    feed_bars(det, ramp(MIDDAY_T, 2_000, 0.0001))
    assert len(det.snapshot()["tickers"]["X"]["history"]) == 601  # the last 600 s
    small = TrendDetector(TrendConfig().replace(max_history=50))
    feed_bars(small, ramp(MIDDAY_T, 500, 0.0001))
    assert len(small.snapshot()["tickers"]["X"]["history"]) == 50


def test_bad_bars_are_counted() -> None:
    det = TrendDetector(TrendConfig())
    assert feed_bars(det, [flat_bar(MIDDAY_T, float("nan")), flat_bar(MIDDAY_T, 0.0)]) == []
    assert det.suppressed == {"bad_bar": 2}


# -- properties -----------------------------------------------------------------------------------


def walk_bars(seed: int, n: int, drift: int, start: int) -> list[Bar]:
    """A seeded random walk of two tickers' bars; `drift` biases the ticks of each step."""
    rng = random.Random(seed)
    clock = {"A": start, "B": start}
    price = {"A": 20.0, "B": 150.0}
    out = []
    for _ in range(n):
        tk = rng.choice("AB")
        clock[tk] += rng.randint(1, 5) * 1_000
        price[tk] = max(1.0, round(price[tk] + (rng.randint(-3, 3) + drift) * 0.01, 2))
        out.append(flat_bar(clock[tk], price[tk], float(rng.randint(1, 50) * 100), ticker=tk))
    return sorted(out, key=lambda b: (b.end, b.ticker))


def test_the_property_walks_do_produce_trends() -> None:
    strengths = set()
    for seed in range(6):
        bars = walk_bars(seed, 400, seed % 3 - 1, at(11, 0))
        for e in feed_bars(TrendDetector(TrendConfig()), bars):
            strengths.add((e.direction, e.strength))
    assert len(strengths) >= 4


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(100, 600), drift=st.integers(-2, 2),
       start=st.sampled_from([at(9, 30), at(11, 0), at(15, 40)]), cut=st.integers(0, 600))
def test_trends_are_deterministic_gated_and_counted(
    seed: int, n: int, drift: int, start: int, cut: int
) -> None:
    cfg = TrendConfig()
    bars = walk_bars(seed, n, drift, start)
    events = feed_bars(TrendDetector(cfg), bars)
    assert feed_bars(TrendDetector(cfg), bars) == events
    det = TrendDetector(cfg)
    first = feed_bars(det, bars[:cut])
    again = TrendDetector(cfg)
    again.restore(json.loads(json.dumps(det.snapshot())))
    assert first + feed_bars(again, bars[cut:]) == events

    last: dict[str, Event] = {}
    for e in events:
        session = CLOCK.session_at(e.time - 1_000)
        period = market_period(e.time - 1_000, session)
        params = TrendDetector(cfg)._periods[period]
        assert e.strength in ("strong", "moderate", "weak")
        if period.value in cfg.suppress_weak_in:
            assert e.strength != "weak"
        assert (e.score > 0) == (e.direction == "up")
        assert e.score != 0
        assert e.count == e.count_up + e.count_down
        prev = last.get(e.ticker)
        if prev is None or prev.session != e.session:
            assert e.count == 1
            assert e.reversal is None
        else:
            assert e.count == prev.count + 1
            if prev.direction == e.direction:
                assert e.time - prev.time >= params.emit_s * 1_000
                assert e.reversal is None
            else:
                assert e.reversal == f"{prev.direction}-now-{e.direction}"
        last[e.ticker] = e
