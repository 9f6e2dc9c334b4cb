"""Surge: market periods, thresholds, modes, quality gates, cooldowns, caps, session resets."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import time
from collections import deque
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.detection.bars import Bar
from actors.detection.surge import Measure, SurgeDetector
from actors.market.periods import MarketPeriod, market_period
from actors.market.sessions import ET, SessionClock
from config.detection import SurgeConfig
from schemas.events import Event
from tests.builders import feed_bars, flat_bar

CLOCK = SessionClock()
DAY = dt.date(2013, 10, 8)  # a Tuesday, regular hours


def at(h: int, m: int, s: int = 0, day: dt.date = DAY) -> int:
    return int(dt.datetime.combine(day, dt.time(h, m, s), tzinfo=ET).timestamp() * 1000)


def calm(start: int, n: int, step_s: int, price: float = 100.0, v: float = 1_000.0) -> list[Bar]:
    """`n` quiet bars, one every `step_s` seconds, the first ending at `start`."""
    return [flat_bar(start + i * step_s * 1_000, price, v) for i in range(n)]


def surge_config(**periods: dict[str, Any]) -> SurgeConfig:
    """The defaults with some period fields overridden (e.g. midday={"mode": "OR"})."""
    base = SurgeConfig()
    data = {name: {**json.loads(json.dumps(getattr(base, name).to_dict())), **changes}
            for name, changes in periods.items()}
    return base.replace(**data)


MIDDAY_T = at(11, 0)  # 20 s interval, 8 points, STRICT, 1.6 % / $0.60 / 3x at $100


# -- market periods -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "period"),
    [
        (at(3, 59, 59), MarketPeriod.CLOSED),
        (at(4, 0), MarketPeriod.PREMARKET),
        (at(9, 29, 59), MarketPeriod.PREMARKET),
        (at(9, 30), MarketPeriod.OPENING),
        (at(9, 44, 59), MarketPeriod.OPENING),
        (at(9, 45), MarketPeriod.MIDDAY),
        (at(15, 29, 59), MarketPeriod.MIDDAY),
        (at(15, 30), MarketPeriod.CLOSING),
        (at(15, 59, 59), MarketPeriod.CLOSING),
        (at(16, 0), MarketPeriod.AFTERHOURS),
        (at(19, 59, 59), MarketPeriod.AFTERHOURS),
        (at(20, 0), MarketPeriod.CLOSED),
        (at(11, 0, day=dt.date(2013, 10, 12)), MarketPeriod.CLOSED),  # Saturday
        (at(11, 0, day=dt.date(2013, 12, 25)), MarketPeriod.CLOSED),  # Christmas
        (at(12, 29, day=dt.date(2013, 11, 29)), MarketPeriod.MIDDAY),  # 13:00 early close
        (at(12, 30, day=dt.date(2013, 11, 29)), MarketPeriod.CLOSING),
        (at(13, 0, day=dt.date(2013, 11, 29)), MarketPeriod.AFTERHOURS),
        (at(15, 45, day=dt.date(2013, 11, 29)), MarketPeriod.AFTERHOURS),
    ],
)
def test_market_period_of_an_event_time(when: int, period: MarketPeriod) -> None:
    assert market_period(when, CLOCK.session_at(when)) is period


def test_market_period_ignores_the_server_time_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        when = at(9, 35)
        assert market_period(when, SessionClock().session_at(when)) is MarketPeriod.OPENING
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert "TZ" not in os.environ


# -- thresholds -----------------------------------------------------------------------------------


def points(*rows: tuple[int, float, float]) -> deque[tuple[int, float, float]]:
    return deque(rows)


def test_midday_thresholds_match_the_documented_example() -> None:
    det = SurgeDetector(SurgeConfig())
    m = det.measure(points((0, 100.0, 10.0), (20_000, 100.0, 10.0)), SurgeConfig().midday, 20_000)
    assert (m.thr_pct, m.thr_usd, m.thr_volume) == pytest.approx((1.6, 0.6, 3.0))


@pytest.mark.parametrize(
    ("price", "period", "pct", "usd"),
    [
        (5.0, "opening", 4.5 * 0.7, 0.15 * 0.7),  # PENNY: period % caps the band's 8 %
        (30.0, "premarket", 1.25 * 1.3, 0.75 * 1.3),  # LOW
        (300.0, "afterhours", 1.0 * 1.5, 3.0 * 1.5),  # HIGH
        (900.0, "closing", 2.0 * 0.9, 5.0 * 0.9),  # ULTRA: band 2 % below period 3.5 %
    ],
)
def test_thresholds_by_period_and_price_band(
    price: float, period: str, pct: float, usd: float
) -> None:
    cfg = SurgeConfig()
    m = SurgeDetector(cfg).measure(
        points((0, price, 1.0), (60_000, price, 1.0)), getattr(cfg, period), 1_000
    )
    assert (m.thr_pct, m.thr_usd) == pytest.approx((pct, usd))


def test_volatility_scales_the_percent_threshold() -> None:
    det = SurgeDetector(SurgeConfig())
    calm_pts = points((0, 100.0, 1.0), (10_000, 100.1, 1.0), (20_000, 100.0, 1.0))
    wild = points((0, 100.0, 1.0), (10_000, 106.0, 1.0), (20_000, 100.0, 1.0))
    normal = points((0, 100.0, 1.0), (10_000, 101.0, 1.0), (20_000, 100.0, 1.0))
    too_few = points((10_000, 106.0, 1.0), (20_000, 100.0, 1.0))
    too_old = points((0, 130.0, 1.0), (10_000, 106.0, 1.0), (40_000, 100.0, 1.0))
    assert det.volatility(calm_pts) == "LOW"
    assert det.volatility(wild) == "HIGH"
    assert det.volatility(normal) == "NORMAL"
    assert det.volatility(too_few) == "NORMAL"
    assert det.volatility(too_old) == "NORMAL"  # only 2 points in the last 30 s
    p = SurgeConfig().midday
    assert det.measure(calm_pts, p, 10_000).thr_pct == pytest.approx(1.6 * 1.2)
    assert det.measure(wild, p, 10_000).thr_pct == pytest.approx(1.6 * 0.8)


def test_baseline_is_the_newest_point_one_interval_old_and_volume_vs_earlier_mean() -> None:
    det = SurgeDetector(SurgeConfig())
    pts = points((0, 90.0, 100.0), (10_000, 100.0, 300.0), (15_000, 95.0, 200.0),
                 (20_000, 102.0, 1_200.0))
    m = det.measure(pts, SurgeConfig().midday, 10_000)
    assert m.move_usd == pytest.approx(2.0)  # baseline: the 10 s point, not the 15 s one
    assert m.move_pct == pytest.approx(2.0)
    assert m.volume_mult == pytest.approx(1_200 / 200)
    m = det.measure(pts, SurgeConfig().midday, 60_000)
    assert m.move_usd == pytest.approx(12.0)  # nothing old enough: the oldest point


# -- modes ----------------------------------------------------------------------------------------


def measure(pct: float, mult: float, usd: float | None = None) -> Measure:
    return Measure(move_pct=pct, move_usd=pct if usd is None else usd, volume_mult=mult,
                   volatility="NORMAL", thr_pct=1.0, thr_usd=1.0, thr_volume=3.0)


@pytest.mark.parametrize(
    ("mode", "pct", "mult", "trigger"),
    [
        ("STRICT", 1.0, 3.0, "price_and_volume"),
        ("STRICT", -1.2, 9.0, "price_and_volume"),
        ("STRICT", 5.0, 2.9, None),
        ("STRICT", 0.9, 50.0, None),
        ("OR", 1.0, 0.0, "price"),
        ("OR", -0.1, 3.0, "volume"),
        ("OR", 1.0, 3.0, "price_and_volume"),
        ("OR", 0.9, 2.9, None),
        ("ADAPTIVE", 1.0, 3.0, "price_and_volume"),
        ("ADAPTIVE", 1.5, 2.1, "price_driven"),
        ("ADAPTIVE", -1.5, 2.1, "price_driven"),
        ("ADAPTIVE", 1.49, 2.1, None),
        ("ADAPTIVE", 1.5, 2.09, None),
        ("ADAPTIVE", 0.5, 6.0, "volume_driven"),
        ("ADAPTIVE", 0.49, 6.0, None),
        ("ADAPTIVE", 0.5, 5.99, None),
    ],
)
def test_modes_combine_price_and_volume_tests(
    mode: str, pct: float, mult: float, trigger: str | None
) -> None:
    assert SurgeDetector(SurgeConfig()).trigger(measure(pct, mult), mode) == trigger


def test_price_test_needs_both_percent_and_dollar_thresholds() -> None:
    det = SurgeDetector(SurgeConfig())
    assert det.trigger(measure(2.0, 0.0, usd=0.99), "OR") is None
    assert det.trigger(measure(0.99, 0.0, usd=2.0), "OR") is None


def test_score_and_strength() -> None:
    det = SurgeDetector(SurgeConfig())
    assert det.score(measure(0.5, 0.0)) == pytest.approx(25.0)
    assert det.score(measure(3.0, 2.0)) == pytest.approx(50.0)  # volume test failed: no part
    assert det.score(measure(1.0, 4.5)) == pytest.approx(100.0)
    assert det.score(measure(0.8, 3.0)) == pytest.approx(90.0)
    assert [det.strength(x) for x in (80.0, 79.9, 60.0, 59.9)] == [
        "strong", "moderate", "moderate", "weak"]


# -- on_bar: sampling, points, STRICT in MIDDAY ---------------------------------------------------


def test_strict_midday_surge_event_fields() -> None:
    det = SurgeDetector(SurgeConfig())
    bars = [*calm(MIDDAY_T, 7, 20), flat_bar(MIDDAY_T + 140_000, 102.0, 5_000.0)]
    (e,) = feed_bars(det, bars, base=101.0)
    end = MIDDAY_T + 140_000
    assert (e.id, e.ticker, e.kind, e.direction, e.time, e.session) == (
        f"X:surge:{end}:1", "X", "surge", "up", end, "REGULAR")
    assert (e.count, e.count_up, e.count_down, e.reversal) == (1, 1, 0, None)
    assert e.price == 102.0
    assert e.pct_change == pytest.approx(100 * (102 - 101) / 101)
    assert e.magnitude == pytest.approx(2.0)
    assert e.volume_multiplier == pytest.approx(5.0)
    assert e.rel_volume == pytest.approx(5.0)
    assert (e.trigger, e.score, e.strength, e.label) == (
        "price_and_volume", pytest.approx(100.0), "strong", "↑ price & volume")
    assert (e.volume, e.vwap) == (5_000.0, 102.0)


@pytest.mark.parametrize(("price", "volume"), [(102.0, 2_900.0), (100.5, 50_000.0)])
def test_strict_needs_both_price_and_volume(price: float, volume: float) -> None:
    det = SurgeDetector(SurgeConfig())
    bars = [*calm(MIDDAY_T, 7, 20), flat_bar(MIDDAY_T + 140_000, price, volume)]
    assert feed_bars(det, bars) == []


def test_no_surge_before_the_period_minimum_of_points() -> None:
    det = SurgeDetector(SurgeConfig())
    assert feed_bars(det, [*calm(MIDDAY_T, 6, 20), flat_bar(MIDDAY_T + 120_000, 103.0, 9e6)]) == []


def test_bars_inside_the_sampling_interval_are_skipped() -> None:
    det = SurgeDetector(SurgeConfig())
    bars = calm(MIDDAY_T, 190, 1)  # one bar a second for 190 s
    bars.append(flat_bar(MIDDAY_T + 195_000, 103.0, 9e6))  # 15 s after the last sample: skipped
    assert feed_bars(det, bars) == []
    assert len(det.snapshot()["tickers"]["X"]["points"]) == 10  # 0, 20, ..., 180 s


def test_bars_without_volume_are_not_sampled() -> None:
    det = SurgeDetector(SurgeConfig())
    bars = [*calm(MIDDAY_T, 7, 20), flat_bar(MIDDAY_T + 140_000, 102.0, 0.0)]
    assert feed_bars(det, bars) == []
    assert det.suppressed == {"no_price_or_volume": 1}
    assert len(det.snapshot()["tickers"]["X"]["points"]) == 7


def test_down_surge_then_up_surge_is_a_reversal_with_counts() -> None:
    det = SurgeDetector(SurgeConfig())
    t = MIDDAY_T
    bars = [*calm(t, 7, 20), flat_bar(t + 140_000, 98.0, 5_000.0)]
    bars += calm(t + 160_000, 9, 20, price=98.0)
    bars.append(flat_bar(t + 340_000, 100.5, 60_000.0))  # 200 s later: past the 180 s cooldown
    first, second = feed_bars(det, bars)
    assert (first.direction, first.count_down, first.label) == ("down", 1, "↓ price & volume")
    assert (second.direction, second.reversal) == ("up", "down-now-up")
    assert (second.count, second.count_up, second.count_down) == (2, 1, 1)
    assert second.id.endswith(":2")


# -- quality gates --------------------------------------------------------------------------------


def test_min_dollar_move_of_the_band() -> None:
    det = SurgeDetector(SurgeConfig())
    # $20 (band LOW, min move $0.50): 2 % = $0.40 passes 1.6 % / $0.30 but not the gate.
    bars = [*calm(MIDDAY_T, 7, 20, price=20.0), flat_bar(MIDDAY_T + 140_000, 20.4, 9_000.0)]
    assert feed_bars(det, bars) == []
    assert det.suppressed == {"min_move": 1}


def test_min_dollar_move_is_relaxed_at_the_opening() -> None:
    # OPENING as ADAPTIVE at $20: a 9x volume-led surge needs only half the price thresholds,
    # so the band's minimum move (0.50 x 0.7 = $0.35 at the open) decides.
    t = at(9, 31)  # 5 s interval, 4 points
    for price, relax, expect in [(20.4, 0.7, 1), (20.3, 0.7, 0), (20.4, 1.0, 0)]:
        det = SurgeDetector(
            surge_config(opening={"period_pct": 1.0, "mode": "ADAPTIVE", "min_move_mult": relax})
        )
        bars = [*calm(t, 3, 5, price=20.0), flat_bar(t + 15_000, price, 9_000.0)]
        events = feed_bars(det, bars)
        assert len(events) == expect
        assert det.suppressed == ({} if expect else {"min_move": 1})
        if expect:
            assert events[0].trigger == "volume_driven"


def test_min_score_of_the_period() -> None:
    # MIDDAY as ADAPTIVE: a price-led surge scores 50 < 75.
    det = SurgeDetector(surge_config(midday={"mode": "ADAPTIVE"}))
    bars = [*calm(MIDDAY_T, 7, 20), flat_bar(MIDDAY_T + 140_000, 103.0, 2_500.0)]
    assert feed_bars(det, bars) == []
    assert det.suppressed == {"min_score": 1}


def test_midday_refuses_single_test_triggers() -> None:
    det = SurgeDetector(surge_config(midday={"mode": "OR", "min_score": 0}))
    bars = [*calm(MIDDAY_T, 7, 20), flat_bar(MIDDAY_T + 140_000, 103.0, 1_000.0)]
    assert feed_bars(det, bars) == []
    assert det.suppressed == {"midday_trigger": 1}


def test_or_mode_fires_on_price_alone_outside_midday() -> None:
    cfg = surge_config(closed={"mode": "OR", "min_score": 0}).replace(
        high_volatility_mult=1.0, low_volatility_mult=1.0
    )
    t = at(21, 0)  # CLOSED: 5 s interval, 3 points, 2 % x 1.0 / $1.50
    (e,) = feed_bars(SurgeDetector(cfg), [*calm(t, 2, 5), flat_bar(t + 10_000, 103.0, 1_000.0)])
    assert (e.trigger, e.label, e.session) == ("price", "↑ price", "CLOSED")
    assert e.score == pytest.approx(50.0)


def test_midday_low_volatility_needs_a_bigger_move() -> None:
    # A longer volatility window sees 20 flat points: LOW volatility, thresholds x1.2.
    cfg = SurgeConfig().replace(volatility_window_s=400.0)
    det = SurgeDetector(cfg)
    bars = [*calm(MIDDAY_T, 19, 20), flat_bar(MIDDAY_T + 380_000, 102.0, 9_000.0)]
    assert feed_bars(det, bars) == []
    assert det.suppressed == {"midday_low_volatility": 1}


def rising(start: int, n: int, step_s: int, price: float, volume: float) -> list[Bar]:
    """`n` bars each 3 % above the last with 100x the volume."""
    out = []
    for i in range(n):
        price *= 1.03
        volume *= 100
        out.append(flat_bar(start + i * step_s * 1_000, price, volume))
    return out


def test_per_ticker_cooldown() -> None:
    det = SurgeDetector(SurgeConfig())  # MIDDAY cooldown 180 s
    bars = [*calm(MIDDAY_T, 7, 20), *rising(MIDDAY_T + 140_000, 10, 20, 100.0, 1_000.0)]
    events = feed_bars(det, bars)
    assert [e.time - MIDDAY_T for e in events] == [140_000, 320_000]
    assert det.suppressed == {"cooldown": 8}


def test_event_cooldown_is_twice_the_interval() -> None:
    det = SurgeDetector(surge_config(midday={"cooldown_s": 0}))
    bars = [*calm(MIDDAY_T, 7, 20), *rising(MIDDAY_T + 140_000, 3, 20, 100.0, 1_000.0)]
    events = feed_bars(det, bars)
    assert [e.time - MIDDAY_T for e in events] == [140_000, 180_000]
    assert det.suppressed == {"event_cooldown": 1}


def test_surges_per_window_are_capped_until_a_quiet_half_hour() -> None:
    cfg = surge_config(midday={"cooldown_s": 0}).replace(cooldown_multiplier=0.0)
    det = SurgeDetector(cfg)
    t = at(10, 0)
    bars = [*calm(t, 7, 20), *rising(t + 140_000, 5, 20, 100.0, 1_000.0)]
    events = feed_bars(det, bars)
    assert [e.count for e in events] == [1, 2, 3]  # MIDDAY: at most 3
    assert det.suppressed == {"window_cap": 2}
    last = events[-1].time
    price, volume = bars[-1].c, bars[-1].v
    later = [flat_bar(last + 1_780_000, price * 1.03, volume * 100),  # 29:40 after: still capped
             flat_bar(last + 1_800_000, price * 1.07, volume * 10_000)]  # 30:00 after: reset
    events = feed_bars(det, later)
    assert [e.count for e in events] == [4]
    assert det.suppressed == {"window_cap": 3}


# -- sessions and state ---------------------------------------------------------------------------


def test_counts_and_tracking_restart_in_a_new_session() -> None:
    det = SurgeDetector(SurgeConfig())
    t = at(15, 40)  # CLOSING: 2 s interval, 3 points, 2.5x volume
    bars = [*calm(t, 2, 2), flat_bar(t + 4_000, 104.0, 9_000.0)]
    (first,) = feed_bars(det, bars)
    assert (first.count, first.session) == (1, "REGULAR")
    a = at(16, 0, 30)  # AFTER, a new session: fresh buffer, counts and cooldowns
    bars = [*calm(a, 4, 15), flat_bar(a + 60_000, 104.0, 9_000.0)]
    (second,) = feed_bars(det, bars)
    assert (second.count, second.session, second.reversal) == (1, "AFTER", None)
    assert second.id == f"X:surge:{a + 60_000}:1"


def test_reset_ticker_forgets_the_ticker() -> None:
    det = SurgeDetector(SurgeConfig())
    feed_bars(det, [*calm(MIDDAY_T, 7, 20), flat_bar(MIDDAY_T + 140_000, 102.0, 5_000.0)])
    det.reset_ticker("X")
    assert det.snapshot()["tickers"] == {}
    det.reset_ticker("never-seen")


def test_state_per_ticker_is_bounded() -> None:
    det = SurgeDetector(SurgeConfig())
    feed_bars(det, calm(MIDDAY_T, 500, 20))
    assert len(det.snapshot()["tickers"]["X"]["points"]) == SurgeConfig().buffer_points


# -- properties -----------------------------------------------------------------------------------


def make_bars(seed: int, n: int, start: int) -> list[Bar]:
    """A seeded jumpy walk of two tickers: moves up to 6 %, volumes 1 to 1 M."""
    rng = random.Random(seed)
    clock = {"A": start, "B": start}
    price = {"A": 50.0, "B": 300.0}
    out = []
    for _ in range(n):
        tk = rng.choice("AB")
        clock[tk] += rng.randint(1, 40) * 1_000
        price[tk] = round(max(0.5, price[tk] * (1 + rng.uniform(-6, 6) / 100)), 2)
        out.append(flat_bar(clock[tk], price[tk], float(10 ** rng.randint(0, 6)), ticker=tk))
    return sorted(out, key=lambda b: (b.end, b.ticker))


STARTS = [at(9, 29), at(11, 0), at(15, 29), at(15, 59), at(19, 58)]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(50, 300), start=st.sampled_from(STARTS),
       cut=st.integers(0, 300))
def test_surges_are_deterministic_gated_and_counted(
    seed: int, n: int, start: int, cut: int
) -> None:
    cfg = SurgeConfig()
    bars = make_bars(seed, n, start)
    events = feed_bars(SurgeDetector(cfg), bars)
    assert feed_bars(SurgeDetector(cfg), bars) == events

    det = SurgeDetector(cfg)
    resumed = feed_bars(det, bars[:cut])
    again = SurgeDetector(cfg)
    again.restore(json.loads(json.dumps(det.snapshot())))
    assert resumed + feed_bars(again, bars[cut:]) == events

    det = SurgeDetector(cfg)
    periods = det._periods
    last: dict[tuple[str, str], Event] = {}
    for e in events:
        bar = next(b for b in bars if b.ticker == e.ticker and b.end == e.time)
        session = CLOCK.session_at(bar.start)
        period = market_period(bar.start, session)
        params = periods[period]
        assert e.score is not None
        assert e.score >= params.min_score
        assert e.magnitude is not None
        base = e.price / (1 + e.magnitude / 100)
        min_move = det.band(e.price).min_move * params.min_move_mult
        assert abs(e.price - base) >= min_move - 1e-9
        assert (e.direction == "up") == (e.magnitude > 0)
        if period is MarketPeriod.MIDDAY:
            assert e.trigger in cfg.midday_triggers
        prev = last.get((e.ticker, e.session))
        if prev is None:
            assert e.count == 1
        else:
            assert e.count == prev.count + 1
            gap = e.time - prev.time
            assert gap >= params.cooldown_s * 1_000
            assert gap >= params.interval_s * 1_000 * cfg.cooldown_multiplier
        assert e.count == e.count_up + e.count_down
        last[(e.ticker, e.session)] = e


def test_the_property_generator_does_produce_surges() -> None:
    triggers = set()
    for seed in range(40):
        for start in STARTS:
            triggers |= {e.trigger for e in feed_bars(SurgeDetector(SurgeConfig()),
                                                 make_bars(seed, 300, start))}
    assert triggers >= {"price_and_volume", "price_driven", "volume_driven"}
