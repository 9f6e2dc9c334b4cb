"""Frozen reference copy (before issue 6) of actors/surge.py (see tests/reference).

Surge detection on per-second bars (docs/behaviour.md §1, Surge).

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
from typing import Any

from actors.market.periods import MarketPeriod, market_period
from actors.market.sessions import SessionInfo
from config.detection import SurgeBand, SurgeConfig, SurgePeriod
from schemas.events import Direction, Event, EventKind
from tests.reference.bars import Bar

_TRIGGER_LABELS = {
    "price_and_volume": "price & volume",
    "price": "price",
    "volume": "volume",
    "price_driven": "price-led",
    "volume_driven": "volume-led",
}


@dataclass(slots=True)
class _TickerState:
    """What the detector remembers of one ticker in one session (bounded)."""

    session_start: int
    points: deque[tuple[int, float, float]]  # sampled (time ms, close $, volume shares)
    last_check: int | None = None  # time of the last sampled bar
    count_up: int = 0
    count_down: int = 0
    last_direction: str | None = None
    last_surge: int | None = None
    window_count: int = 0  # surges since the cap window last reset


@dataclass(frozen=True, slots=True)
class Measure:
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


class SurgeDetector:
    """Find surges in the per-second bars of many tickers (pure; clock = bar time)."""

    def __init__(self, config: SurgeConfig) -> None:
        self.config = c = config
        self.suppressed: dict[str, int] = {}  # gate or reason -> bars it stopped
        self._states: dict[str, _TickerState] = {}
        self._periods = {
            MarketPeriod.OPENING: c.opening,
            MarketPeriod.MIDDAY: c.midday,
            MarketPeriod.CLOSING: c.closing,
            MarketPeriod.AFTERHOURS: c.afterhours,
            MarketPeriod.PREMARKET: c.premarket,
            MarketPeriod.CLOSED: c.closed,
        }

    def on_bar(self, bar: Bar, session: SessionInfo, base_price: float) -> Event | None:
        """Sample `bar` and return a surge event if every test and gate passes."""
        if not (bar.c > 0 and bar.v > 0 and math.isfinite(bar.c) and math.isfinite(bar.v)):
            self._suppress("no_price_or_volume")
            return None
        state = self._state(bar.ticker, session)
        period = market_period(
            bar.start, session, self.config.opening_s * 1000, self.config.closing_s * 1000
        )
        params = self._periods[period]
        interval_ms = params.interval_s * 1000
        if state.last_check is not None and bar.end - state.last_check < interval_ms:
            return None
        state.last_check = bar.end
        state.points.append((bar.end, bar.c, bar.v))
        if len(state.points) < params.min_points:
            return None
        measure = self.measure(state.points, params, interval_ms)
        trigger = self.trigger(measure, params.mode)
        if trigger is None:
            return None
        score = self.score(measure)
        blocked = self._gate(state, measure, trigger, score, period, params, bar)
        if blocked is not None:
            self._suppress(blocked)
            return None
        return self._emit(state, bar, session, base_price, measure, trigger, score)

    def reset_ticker(self, ticker: str) -> None:
        """Forget everything about `ticker` (its market session changed)."""
        self._states.pop(ticker, None)

    # -- measurement ---------------------------------------------------------------------------

    def measure(
        self, points: deque[tuple[int, float, float]], params: SurgePeriod, interval_ms: float
    ) -> Measure:
        """Measure the newest point against its baseline and derive the thresholds."""
        now, price, volume = points[-1]
        base = points[0]
        for point in reversed(points):
            if point[0] <= now - interval_ms:
                base = point
                break
        earlier = [v for _, _, v in list(points)[:-1]]
        mean_volume = sum(earlier) / len(earlier)
        volatility = self.volatility(points)
        band = self.band(price)
        c = self.config
        vol_mult = {"HIGH": c.high_volatility_mult, "LOW": c.low_volatility_mult}
        return Measure(
            move_pct=(price - base[1]) / base[1] * 100.0,
            move_usd=price - base[1],
            volume_mult=volume / mean_volume if mean_volume > 0 else 0.0,
            volatility=volatility,
            thr_pct=min(params.period_pct, band.pct)
            * vol_mult.get(volatility, 1.0)
            * params.period_mult,
            thr_usd=band.dollar * params.period_mult,
            thr_volume=params.volume_threshold,
        )

    def volatility(self, points: deque[tuple[int, float, float]]) -> str:
        """HIGH, NORMAL or LOW from stdev/mean of the sampled closes of the recent span."""
        now = points[-1][0]
        since = now - self.config.volatility_window_s * 1000
        prices = [p for ts, p, _ in points if ts >= since]
        if len(prices) < max(self.config.volatility_min_points, 2):
            return "NORMAL"
        cv = statistics.stdev(prices) / statistics.fmean(prices) * 100.0
        if cv > self.config.high_volatility_pct:
            return "HIGH"
        if cv < self.config.low_volatility_pct:
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
        if up:
            state.count_up += 1
        else:
            state.count_down += 1
        reversal = None
        if state.last_direction is not None and state.last_direction != direction:
            reversal = f"{state.last_direction}-now-{direction.value}"
        state.last_direction = direction.value
        state.last_surge = bar.end
        state.window_count += 1
        count = state.count_up + state.count_down
        return Event(
            id=f"{bar.ticker}:surge:{bar.end}:{count}",
            ticker=bar.ticker,
            kind=EventKind.SURGE.value,
            direction=direction.value,
            price=bar.c,
            time=bar.end,
            session=session.session.value,
            count=count,
            count_up=state.count_up,
            count_down=state.count_down,
            pct_change=(bar.c - base_price) / base_price * 100.0 if base_price > 0 else 0.0,
            vwap=bar.vwap,
            volume=bar.v,
            rel_volume=m.volume_mult,
            label=f"{'↑' if up else '↓'} {_TRIGGER_LABELS[trigger]}",
            reversal=reversal,
            score=score,
            strength=self.strength(score),
            trigger=trigger,
            magnitude=m.move_pct,
            volume_multiplier=m.volume_mult,
        )

    def _state(self, ticker: str, session: SessionInfo) -> _TickerState:
        state = self._states.get(ticker)
        if state is None or state.session_start != session.start_ms:
            state = _TickerState(session.start_ms, deque(maxlen=self.config.buffer_points))
            self._states[ticker] = state
        return state

    def _suppress(self, reason: str) -> None:
        self.suppressed[reason] = self.suppressed.get(reason, 0) + 1

    # -- state ---------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Plain data (msgpack/JSON-able) from which `restore` rebuilds the detector."""
        return {
            "suppressed": dict(self.suppressed),
            "tickers": {
                ticker: {
                    "session_start": s.session_start,
                    "points": [list(p) for p in s.points],
                    "last_check": s.last_check,
                    "count_up": s.count_up,
                    "count_down": s.count_down,
                    "last_direction": s.last_direction,
                    "last_surge": s.last_surge,
                    "window_count": s.window_count,
                }
                for ticker, s in self._states.items()
            },
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Replace the detector's state with a `snapshot`."""
        self.suppressed = {str(k): int(v) for k, v in data.get("suppressed", {}).items()}
        self._states = {}
        for ticker, s in data["tickers"].items():
            points = deque(
                ((int(t), float(p), float(v)) for t, p, v in s["points"]),
                maxlen=self.config.buffer_points,
            )
            self._states[str(ticker)] = _TickerState(
                session_start=int(s["session_start"]),
                points=points,
                last_check=s["last_check"],
                count_up=int(s["count_up"]),
                count_down=int(s["count_down"]),
                last_direction=s["last_direction"],
                last_surge=s["last_surge"],
                window_count=int(s["window_count"]),
            )
