"""Surge detection on per-second bars (docs/behaviour.md §1, Surge).

Per ticker, a bar is sampled at most once per period interval; the last sampled bars form a
short buffer. A surge is a price move from the baseline (the newest sampled point at least one
interval old) and/or a jump of the bar volume over the mean of the earlier sampled volumes,
with thresholds that adapt to the market period, the price band and the recent volatility,
combined according to the period's mode (STRICT, OR, ADAPTIVE), then filtered by quality
gates and cooldowns. Everything runs on event time. Unlike the original, a ticker's counts and
quality tracking start afresh in every market session (`reset_ticker`, or automatically when
the bar's session changes).
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass
from itertools import islice
from operator import itemgetter
from typing import Any, NamedTuple

from actors.detection.bar_detector import BarDetector, TickerState
from actors.detection.bars import Bar
from actors.market.periods import MarketPeriod, market_period
from actors.market.sessions import SessionInfo
from config.detection import SurgeBand, SurgeConfig, SurgePeriod
from schemas.events import Direction, Event, EventKind

_CV_TOL = 1e-7  # relative: a float volatility this close to a threshold is recomputed exactly
_TRIGGER_LABELS = {
    "price_and_volume": "price & volume",
    "price": "price",
    "volume": "volume",
    "price_driven": "price-led",
    "volume_driven": "volume-led",
}


@dataclass(slots=True)
class _TickerState(TickerState):
    """What the detector remembers of one ticker in one session (bounded)."""

    points: deque[tuple[int, float, float]]  # sampled (time ms, close $, volume shares)
    last_check: int | None = None  # time of the last sampled bar
    last_surge: int | None = None
    window_count: int = 0  # surges since the cap window last reset


class Measure(NamedTuple):
    """A sampled bar measured against its baseline, and the thresholds that apply."""

    move_pct: float  # signed % from the baseline close
    move_usd: float  # signed $ from the baseline close
    volume_mult: float  # bar volume / mean volume of the earlier points
    volatility: str  # HIGH, NORMAL or LOW
    thr_pct: float
    thr_usd: float
    thr_volume: float

    def price_ok(self, k: float = 1.0) -> bool:
        """Whether the move reaches `k` times both price thresholds."""
        return abs(self.move_pct) >= k * self.thr_pct and abs(self.move_usd) >= k * self.thr_usd

    def volume_ok(self, k: float = 1.0) -> bool:
        """Whether the volume multiplier reaches `k` times the volume threshold."""
        return self.volume_mult > 0 and self.volume_mult >= k * self.thr_volume


class _Moves(NamedTuple):
    price: float  # the newest close
    move_pct: float
    move_usd: float
    volume_mult: float


class SurgeDetector(BarDetector[SurgePeriod, _TickerState]):
    """Find surges in the per-second bars of many tickers (pure; clock = bar time)."""

    def __init__(self, config: SurgeConfig) -> None:
        super().__init__(config)
        self.config = c = config
        # % threshold multiplier by volatility, and the volatility with the smallest one
        self._mults = {"HIGH": c.high_volatility_mult, "LOW": c.low_volatility_mult, "NORMAL": 1.0}
        self._loosest = min(self._mults, key=self._mults.__getitem__)

    def on_bar(self, bar: Bar, session: SessionInfo, base_price: float) -> Event | None:
        """Sample `bar` and return a surge event if every test and gate passes."""
        if not (bar.c > 0 and bar.v > 0 and math.isfinite(bar.c) and math.isfinite(bar.v)):
            self._suppress("no_price_or_volume")
            return None
        state = self._state(bar, session)
        period = market_period(bar.start, session, self._opening_ms, self._closing_ms)
        params = self._periods[period]  # `period_params`, inlined: on_bar is the hot path
        interval_ms = params.interval_s * 1000
        if state.last_check is not None and bar.end - state.last_check < interval_ms:
            return None
        state.last_check = bar.end
        state.points.append((bar.end, bar.c, bar.v))
        if len(state.points) < params.min_points:
            return None
        volume_mult = self._volume_mult(state.points)
        if params.mode == "STRICT" and not (
            volume_mult > 0 and volume_mult >= params.volume_threshold
        ):
            return None  # STRICT needs the volume test (`trigger`): no price move can do
        moves = self._moves(state.points, interval_ms, volume_mult)
        # Triggers only get easier as the % threshold falls, so when none fires at the
        # loosest volatility none fires at the real one: skip measuring the volatility.
        if self.trigger(self._measured(moves, params, self._loosest), params.mode) is None:
            return None
        measure = self._measured(moves, params, self.volatility(state.points))
        trigger = self.trigger(measure, params.mode)
        if trigger is None:
            return None
        score = self.score(measure)
        blocked = self._gate(state, measure, trigger, score, period, params, bar)
        if blocked is not None:
            self._suppress(blocked)
            return None
        return self._emit(state, bar, session, base_price, measure, trigger, score)

    # -- measurement ---------------------------------------------------------------------------

    def measure(
        self, points: deque[tuple[int, float, float]], params: SurgePeriod, interval_ms: float
    ) -> Measure:
        """Measure the newest point against its baseline and derive the thresholds."""
        moves = self._moves(points, interval_ms, self._volume_mult(points))
        return self._measured(moves, params, self.volatility(points))

    @staticmethod
    def _volume_mult(points: deque[tuple[int, float, float]]) -> float:
        """The newest volume over the mean volume of the earlier points (0 if that is 0)."""
        n = len(points) - 1
        mean_volume = sum(map(itemgetter(2), islice(points, n))) / n
        return points[-1][2] / mean_volume if mean_volume > 0 else 0.0

    @staticmethod
    def _moves(
        points: deque[tuple[int, float, float]], interval_ms: float, volume_mult: float
    ) -> _Moves:
        """The newest point against its baseline (the newest point one interval old)."""
        now, price, _ = points[-1]
        base = points[0]
        for point in reversed(points):
            if point[0] <= now - interval_ms:
                base = point
                break
        return _Moves(
            price=price,
            move_pct=(price - base[1]) / base[1] * 100.0,
            move_usd=price - base[1],
            volume_mult=volume_mult,
        )

    def _measured(self, moves: _Moves, params: SurgePeriod, volatility: str) -> Measure:
        band = self.band(moves.price)
        return Measure(
            move_pct=moves.move_pct,
            move_usd=moves.move_usd,
            volume_mult=moves.volume_mult,
            volatility=volatility,
            thr_pct=min(params.period_pct, band.pct) * self._mults[volatility] * params.period_mult,
            thr_usd=band.dollar * params.period_mult,
            thr_volume=params.volume_threshold,
        )

    def volatility(self, points: deque[tuple[int, float, float]]) -> str:
        """HIGH, NORMAL or LOW from stdev/mean of the sampled closes of the recent span."""
        now = points[-1][0]
        since = now - self.config.volatility_window_s * 1000
        prices = [p for ts, p, _ in points if ts >= since]
        n = len(prices)
        if n < max(self.config.volatility_min_points, 2):
            return "NORMAL"
        high, low = self.config.high_volatility_pct, self.config.low_volatility_pct
        # Plain floats: `statistics` (exact, but slow) decides only the close calls.
        mean = sum(prices) / n
        cv = math.sqrt(sum((p - mean) * (p - mean) for p in prices) / (n - 1)) / mean * 100.0
        if abs(cv - high) <= _CV_TOL * high or abs(cv - low) <= _CV_TOL * low:
            cv = statistics.stdev(prices) / statistics.fmean(prices) * 100.0
        if cv > high:
            return "HIGH"
        if cv < low:
            return "LOW"
        return "NORMAL"

    def band(self, price: float) -> SurgeBand:
        """The price band of `price`."""
        for band in self.config.bands:
            if price < band.below:
                return band
        return self.config.bands[-1]

    def trigger(self, m: Measure, mode: str) -> str | None:
        """How the price and volume tests combine under `mode`; None when they do not."""
        price, volume = m.price_ok(), m.volume_ok()
        if price and volume:
            return "price_and_volume"
        if mode == "OR":
            return "price" if price else "volume" if volume else None
        if mode == "ADAPTIVE":
            c = self.config
            if m.price_ok(c.price_driven_mult) and m.volume_ok(c.price_driven_volume):
                return "price_driven"
            if m.volume_ok(c.volume_driven_mult) and m.price_ok(c.volume_driven_price):
                return "volume_driven"
        return None

    def score(self, m: Measure) -> float:
        """0-100: up to 50 for the price move, up to 50 more if the volume test passed."""
        price_part = min(abs(m.move_pct) / m.thr_pct * 50.0, 50.0)
        volume_part = min(m.volume_mult / m.thr_volume * 50.0, 50.0) if m.volume_ok() else 0.0
        return price_part + volume_part

    def strength(self, score: float) -> str:
        """strong, moderate or weak."""
        if score >= self.config.strong_score:
            return "strong"
        return "moderate" if score >= self.config.moderate_score else "weak"

    # -- gates and emission ---------------------------------------------------------------------

    def _gate(
        self,
        state: _TickerState,
        m: Measure,
        trigger: str,
        score: float,
        period: MarketPeriod,
        params: SurgePeriod,
        bar: Bar,
    ) -> str | None:
        """The first quality gate or cooldown that blocks this surge, or None."""
        c = self.config
        if abs(m.move_usd) < self.band(bar.c).min_move * params.min_move_mult:
            return "min_move"
        if score < params.min_score:
            return "min_score"
        midday = period is MarketPeriod.MIDDAY
        if midday and trigger not in c.midday_triggers:
            return "midday_trigger"
        if midday and m.volatility == "LOW" and abs(m.move_pct) < c.midday_low_volatility_min_pct:
            return "midday_low_volatility"
        if state.last_surge is None:
            return None
        since = bar.end - state.last_surge
        if since >= c.cap_window_s * 1000:
            state.window_count = 0
        if state.window_count >= params.max_per_window:
            return "window_cap"
        if since < params.cooldown_s * 1000:
            return "cooldown"
        if since < params.interval_s * 1000 * c.cooldown_multiplier:
            return "event_cooldown"
        return None

    def _emit(
        self,
        state: _TickerState,
        bar: Bar,
        session: SessionInfo,
        base_price: float,
        m: Measure,
        trigger: str,
        score: float,
    ) -> Event:
        up = m.move_usd > 0
        direction = Direction.UP if up else Direction.DOWN
        state.last_surge = bar.end
        state.window_count += 1
        return self._event(
            EventKind.SURGE, state, bar, session, base_price, direction.value,
            vwap=bar.vwap,
            rel_volume=m.volume_mult,
            label=f"{'↑' if up else '↓'} {_TRIGGER_LABELS[trigger]}",
            score=score,
            strength=self.strength(score),
            trigger=trigger,
            magnitude=m.move_pct,
            volume_multiplier=m.volume_mult,
        )

    # -- state ---------------------------------------------------------------------------------

    def _new_state(self, bar: Bar, session: SessionInfo) -> _TickerState:
        return _TickerState(session.start_ms, deque(maxlen=self.config.buffer_points))

    def _dump_state(self, state: _TickerState) -> dict[str, Any]:
        return {
            "session_start": state.session_start,
            "points": [list(p) for p in state.points],
            "last_check": state.last_check,
            "count_up": state.count_up,
            "count_down": state.count_down,
            "last_direction": state.last_direction,
            "last_surge": state.last_surge,
            "window_count": state.window_count,
        }

    def _load_state(self, data: dict[str, Any]) -> _TickerState:
        points = deque(
            ((int(t), float(p), float(v)) for t, p, v in data["points"]),
            maxlen=self.config.buffer_points,
        )
        return _TickerState(
            session_start=int(data["session_start"]),
            points=points,
            last_check=data["last_check"],
            count_up=int(data["count_up"]),
            count_down=int(data["count_down"]),
            last_direction=data["last_direction"],
            last_surge=data["last_surge"],
            window_count=int(data["window_count"]),
        )
