"""Detector thresholds and rules, with units and defaults (docs/behaviour.md §1, §4, §5)."""

from __future__ import annotations

from typing import Literal

import msgspec

from config.base import Config, NonNegFloat, NonNegInt, PositiveFloat, PositiveInt


class PriceTier(Config):
    """A price tier: applies to prices strictly below `below` ($)."""

    below: float
    min_pct: float  # % move from the session base needed to fire


class HighLowConfig(Config):
    """Session high/low detection (DESIGN §5)."""

    tiers: tuple[PriceTier, ...] = (
        PriceTier(below=1.0, min_pct=0.2),
        PriceTier(below=5.0, min_pct=0.15),
        PriceTier(below=25.0, min_pct=0.1),
        PriceTier(below=100.0, min_pct=0.08),
        PriceTier(below=float("inf"), min_pct=0.05),
    )
    cooldown_ms: NonNegInt = 1_000  # event-time ms between two high/low events of a ticker
    reversal_window_s: PositiveFloat = 300.0  # opposite extreme within this -> V-top/V-bottom
    rapid_reversal_s: PositiveFloat = 60.0  # reversal faster than this is "rapid"
    history: PositiveInt = 10  # high/low events remembered per ticker for patterns
    volume_history: PositiveInt = 20  # volume-eligible sizes (current incl.) averaged: rel_volume
    min_volume_history: PositiveInt = 5  # sizes needed before rel_volume is reported


class ValidationConfig(Config):
    """What the engines reject (each counted by reason)."""

    max_jump_pct: PositiveFloat = 50.0  # % away from the ticker's last price -> rejected
    jump_window_ms: PositiveInt = 60_000  # the jump rule applies within this much event time
    out_of_order_tolerance_ms: NonNegInt = 0  # older than the ticker's latest trade by more: drop



# --- per-second bars, surge, trend, analytics (docs/behaviour.md §1, §5, §6) -------------


class BarConfig(Config):
    """Per-second bars built from eligible trades inside the shard."""

    grace_ms: NonNegInt = 1_000  # event-time ms a closed bar waits for late trades
    max_pending_bars: PositiveInt = 3_600  # undrained bars per ticker; older ones are dropped


class SurgePeriod(Config):
    """Surge parameters of one market period (docs/behaviour.md §1, Surge table, quality gates)."""

    period_mult: PositiveFloat  # multiplies the % and $ price thresholds
    volume_threshold: PositiveFloat  # volume multiplier (bar volume / mean earlier volume) needed
    min_points: PositiveInt  # sampled points needed before anything is measured
    interval_s: PositiveFloat  # event-time s between two sampled bars; also the baseline lag
    period_pct: PositiveFloat  # % cap of the price threshold in this period
    mode: Literal["STRICT", "OR", "ADAPTIVE"]  # how the price and volume tests combine
    min_score: NonNegFloat  # quality gate: surge score (0-100) needed
    cooldown_s: NonNegFloat  # quality gate: event-time s between two surges of a ticker
    max_per_window: PositiveInt  # quality gate: surges per cap window (SurgeConfig.cap_window_s)
    min_move_mult: PositiveFloat = 1.0  # multiplies the band's minimum |$ move| (0.7 at the open)


class SurgeBand(Config):
    """A surge price band: applies to prices strictly below `below` ($)."""

    below: float
    pct: PositiveFloat  # % move threshold before the period multiplier
    dollar: PositiveFloat  # $ move threshold before the period multiplier
    min_move: PositiveFloat  # quality gate: minimum |$ move| from the baseline


class SurgeConfig(Config):
    """Surge detection on per-second bars (docs/behaviour.md §1, Surge)."""

    opening: SurgePeriod = SurgePeriod(
        period_mult=0.7, volume_threshold=3.0, min_points=4, interval_s=5, period_pct=4.5,
        mode="STRICT", min_score=50, cooldown_s=45, max_per_window=5, min_move_mult=0.7,
    )
    midday: SurgePeriod = SurgePeriod(
        period_mult=0.4, volume_threshold=3.0, min_points=8, interval_s=20, period_pct=4.0,
        mode="STRICT", min_score=75, cooldown_s=180, max_per_window=3,
    )
    closing: SurgePeriod = SurgePeriod(
        period_mult=0.9, volume_threshold=2.5, min_points=3, interval_s=2, period_pct=3.5,
        mode="STRICT", min_score=60, cooldown_s=60, max_per_window=4,
    )
    afterhours: SurgePeriod = SurgePeriod(
        period_mult=1.5, volume_threshold=1.0, min_points=5, interval_s=15, period_pct=1.0,
        mode="ADAPTIVE", min_score=45, cooldown_s=120, max_per_window=3,
    )
    premarket: SurgePeriod = SurgePeriod(
        period_mult=1.3, volume_threshold=1.2, min_points=4, interval_s=12, period_pct=1.25,
        mode="ADAPTIVE", min_score=45, cooldown_s=120, max_per_window=3,
    )
    closed: SurgePeriod = SurgePeriod(
        period_mult=1.0, volume_threshold=1.3, min_points=3, interval_s=5, period_pct=2.0,
        mode="STRICT", min_score=60, cooldown_s=90, max_per_window=3,
    )
    bands: tuple[SurgeBand, ...] = (
        SurgeBand(below=10.0, pct=8.0, dollar=0.15, min_move=0.10),
        SurgeBand(below=50.0, pct=5.0, dollar=0.75, min_move=0.50),
        SurgeBand(below=200.0, pct=4.0, dollar=1.50, min_move=1.50),
        SurgeBand(below=500.0, pct=3.0, dollar=3.00, min_move=3.00),
        SurgeBand(below=float("inf"), pct=2.0, dollar=5.00, min_move=5.00),
    )
    buffer_points: PositiveInt = 20  # sampled points kept per ticker
    volatility_window_s: PositiveFloat = 30.0  # stdev/mean of sampled prices over this span
    volatility_min_points: PositiveInt = 3  # fewer points -> NORMAL volatility
    high_volatility_pct: PositiveFloat = 2.0  # stdev/mean above this % -> HIGH
    low_volatility_pct: PositiveFloat = 0.5  # stdev/mean below this % -> LOW
    high_volatility_mult: PositiveFloat = 0.8  # % threshold multiplier at HIGH volatility
    low_volatility_mult: PositiveFloat = 1.2  # % threshold multiplier at LOW volatility
    price_driven_mult: PositiveFloat = 1.5  # ADAPTIVE: price thresholds x this ...
    price_driven_volume: PositiveFloat = 0.7  # ... with volume multiplier >= this x vol threshold
    volume_driven_mult: PositiveFloat = 2.0  # ADAPTIVE: volume threshold x this ...
    volume_driven_price: PositiveFloat = 0.5  # ... with price moves >= this x price thresholds
    strong_score: NonNegFloat = 80.0  # score at or above -> "strong"
    moderate_score: NonNegFloat = 60.0  # score at or above -> "moderate", else "weak"
    midday_triggers: tuple[str, ...] = ("price_and_volume", "price_driven", "volume_driven")
    midday_low_volatility_min_pct: NonNegFloat = 3.5  # MIDDAY + LOW volatility needs |move| >= %
    cap_window_s: PositiveFloat = 1_800.0  # the per-ticker surge cap resets after this idle span
    cooldown_multiplier: NonNegFloat = 2.0  # no surge within interval_s x this of the last one
    opening_s: NonNegInt = 900  # OPENING = the first s of the regular session
    closing_s: NonNegInt = 1_800  # CLOSING = the last s of the regular session


class TrendPeriod(Config):
    """Trend parameters of one market period (docs/behaviour.md §1, Trend table)."""

    direction: PositiveFloat  # score magnitude (before sensitivity) for up/down
    strength: PositiveFloat  # score magnitude (before sensitivity) for "strong"
    sensitivity: PositiveFloat  # multiplies both thresholds
    emit_s: PositiveFloat  # event-time s between two emissions of an unchanged direction
    retracement: PositiveFloat  # fraction of the previous score given back that zeroes the score
    points_per_window: PositiveInt  # bars needed in a window for it to score
    warmup_s: NonNegFloat  # event-time s since the ticker's first bar this session


class TrendBucket(Config):
    """A trend price bucket: applies to prices strictly below `below` ($)."""

    below: float
    direction: PositiveFloat
    strength: PositiveFloat


class PriceFactor(Config):
    """A multiplier that applies to prices strictly below `below` ($)."""

    below: float
    factor: PositiveFloat


class TrendConfig(Config):
    """Trend detection over per-second bars (docs/behaviour.md §1, Trend)."""

    opening: TrendPeriod = TrendPeriod(
        direction=0.25, strength=0.45, sensitivity=1.0, emit_s=45, retracement=0.5,
        points_per_window=4, warmup_s=45,
    )
    midday: TrendPeriod = TrendPeriod(
        direction=0.025, strength=0.05, sensitivity=1.5, emit_s=90, retracement=0.25,
        points_per_window=8, warmup_s=90,
    )
    closing: TrendPeriod = TrendPeriod(
        direction=0.25, strength=0.5, sensitivity=1.0, emit_s=30, retracement=0.6,
        points_per_window=4, warmup_s=30,
    )
    afterhours: TrendPeriod = TrendPeriod(
        direction=0.015, strength=0.04, sensitivity=2.5, emit_s=150, retracement=0.15,
        points_per_window=12, warmup_s=240,
    )
    premarket: TrendPeriod = TrendPeriod(
        direction=0.02, strength=0.05, sensitivity=2.0, emit_s=120, retracement=0.2,
        points_per_window=10, warmup_s=180,
    )
    closed: TrendPeriod = TrendPeriod(
        direction=0.3, strength=0.6, sensitivity=1.0, emit_s=60, retracement=0.4,
        points_per_window=10, warmup_s=180,
    )
    buckets: tuple[TrendBucket, ...] = (
        TrendBucket(below=10.0, direction=0.04, strength=0.08),
        TrendBucket(below=50.0, direction=0.02, strength=0.05),
        TrendBucket(below=200.0, direction=0.015, strength=0.035),
        TrendBucket(below=500.0, direction=0.01, strength=0.025),
        TrendBucket(below=float("inf"), direction=0.006, strength=0.02),
    )
    retracement_factors: tuple[PriceFactor, ...] = (
        PriceFactor(below=1.0, factor=1.25),
        PriceFactor(below=5.0, factor=1.125),
        PriceFactor(below=25.0, factor=1.0),
        PriceFactor(below=100.0, factor=0.875),
        PriceFactor(below=float("inf"), factor=0.75),
    )
    windows_s: tuple[PositiveInt, PositiveInt, PositiveInt] = (180, 360, 600)  # short/medium/long
    window_weights: tuple[float, float, float] = (0.3, 0.4, 0.3)  # combined score weights
    price_weight: float = 0.5  # window score = price, vwap and volume components weighted so
    vwap_weight: float = 0.3
    volume_weight: float = 0.2
    recency_decay: PositiveFloat = 0.9  # weight of the i-th newest step = decay**i (normalised)
    price_norm_pct: PositiveFloat = 1.0  # price component: weighted step / (this % of avg price)
    vwap_level_gain: float = 5.0  # vwap component: gain on the weighted (p - vwap) / vwap
    vwap_change_gain: float = 10.0  # ... plus gain on its weighted step
    volume_norm: PositiveFloat = 3.0  # volume component: weighted signed rel. volume / this
    history_factor: PositiveInt = 3  # bars in history needed: this x points_per_window
    max_history: PositiveInt = 900  # bars kept per ticker (at most windows_s[-1] s are used)
    volatility_window_s: PositiveFloat = 300.0  # stdev/mean of bar closes over this span
    volatility_min_points: PositiveInt = 10  # fewer points -> NORMAL volatility
    high_volatility_pct: PositiveFloat = 2.0  # stdev/mean above this % -> HIGH
    low_volatility_pct: PositiveFloat = 0.5  # stdev/mean below this % -> LOW
    high_volatility_mult: PositiveFloat = 0.7  # threshold multiplier at HIGH volatility
    low_volatility_mult: PositiveFloat = 1.3  # threshold multiplier at LOW volatility
    # periods in which weak trends are not emitted (the original ignored this rule)
    suppress_weak_in: tuple[str, ...] = ("OPENING", "CLOSING")
    opening_s: NonNegInt = 900  # OPENING = the first s of the regular session
    closing_s: NonNegInt = 1_800  # CLOSING = the last s of the regular session


class ActivityLevel(Config):
    """A named level reached at or above `at` (unit given by the table that holds it)."""

    at: float
    label: str


class AnalyticsConfig(Config):
    """Buy/sell pressure gauge and tick activity (docs/behaviour.md §5, §6)."""

    window_ms: PositiveInt = 10_000  # event-time window of one gauge calculation
    tick_windows_s: tuple[PositiveInt, ...] = (10, 30, 60, 300)  # ticks_<n>sec in the activity
    activity_levels: tuple[ActivityLevel, ...] = (  # ticks per minute, highest first
        ActivityLevel(at=480, label="Extreme"),
        ActivityLevel(at=240, label="Very High"),
        ActivityLevel(at=120, label="High"),
        ActivityLevel(at=60, label="Medium"),
        ActivityLevel(at=30, label="Low"),
    )
    lowest_activity_label: str = "Very Low"
    default_trade_weight: PositiveFloat = 100.0  # shares counted for a trade of size 0
    net_score_limit: PositiveFloat = 10.0  # net score is clamped to +-this
    gauge_level_mults: tuple[float, float, float] = (0.5, 1.0, 2.0)  # x mean recent volume ...
    gauge_level_floors: tuple[float, float, float] = (5e6, 10e6, 20e6)  # ... but at least (shares)
    gauge_level_labels: tuple[str, str, str, str] = ("Low", "Moderate", "High", "Very High")
    gauge_level_history: PositiveInt = 4  # calculations averaged for the gauge level thresholds
    rolling_short: PositiveInt = 10  # calculations in the short rolling net-score average
    rolling_long: PositiveInt = 30  # calculations in the long rolling net-score average
    ema_alpha: PositiveFloat = 0.3  # gauge EMA of the net score
    vertical_alpha: PositiveFloat = 0.2  # vertical EMA: alpha x (1 + volume / session max) ...
    vertical_alpha_cap: PositiveFloat = 0.8  # ... capped at this
    buy_share_alpha: PositiveFloat = 0.3  # EMA of the buying share of volume
    opening_bell_s: NonNegInt = 900  # "Opening Bell" for the first s of the regular session
    closing_bell_s: NonNegInt = 900  # "Closing Bell" for the last s of the regular session
    max_windows: PositiveInt = 64  # 10 s windows kept by the market view (>= 300 s of them)


class DetectionConfig(Config):
    """All detector parameters."""

    highlow: HighLowConfig = msgspec.field(default_factory=HighLowConfig)
    validation: ValidationConfig = msgspec.field(default_factory=ValidationConfig)
    enable_surge: bool = True
    enable_trend: bool = True
    bars: BarConfig = msgspec.field(default_factory=BarConfig)
    surge: SurgeConfig = msgspec.field(default_factory=SurgeConfig)
    trend: TrendConfig = msgspec.field(default_factory=TrendConfig)
    analytics: AnalyticsConfig = msgspec.field(default_factory=AnalyticsConfig)
