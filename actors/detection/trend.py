"""Trend detection over per-second bars (docs/behaviour.md §1, Trend).

Each bar adds one point (time, close, session VWAP, volume) to the ticker's history. Three
windows (180/360/600 s) are scored from recency-weighted price steps, the position against the
session VWAP and volume-signed steps; the combined score is classified against thresholds that
depend on the market period, the price bucket and the volatility. Two rules of the original are
fixed here: the retracement test is one-sided (only a move back against the prior direction
zeroes the score; a strengthening trend is not suppressed) and weak trends are not emitted in
the OPENING and CLOSING periods. The period comes from event time, and a ticker's history
lives for its session (bounded by time and points), never wiped by a wall-clock cleanup.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from actors.detection.bar_detector import BarDetector, TickerState
from actors.detection.bars import Bar
from actors.detection.trend_windows import PointLog, SpanSums
from actors.market.periods import MarketPeriod, market_period
from actors.market.sessions import SessionInfo
from config.detection import TrendBucket, TrendConfig, TrendPeriod
from schemas.events import Direction, Event, EventKind

F64 = npt.NDArray[np.float64]
_TS, _PRICE, _VWAP, _VOLUME = range(4)
_TOL = 1e-9  # a running-sum score this close to a threshold it meets is recomputed exactly
_CV_TOL = 1e-7  # the same, relative, for the volatility thresholds
_TRIM_AT = 2_048  # points out of the history kept before a ticker's lists are cut
PrevAt = tuple[int, int, int, int]  # (time, points per window, head, end) of a scored bar


@dataclass(slots=True)
class _TickerState(TickerState):
    """What the detector remembers of one ticker in one session (bounded)."""

    log: PointLog  # the points and their running window sums
    first_ms: int  # the ticker's first bar this session (its age starts here)
    pv: float = 0.0  # session sum of price x volume
    volume: float = 0.0  # session volume
    prev_score: float | None = None  # the previous scored bar's combined score (before retracement)
    prev_exact: bool = True  # prev_score came from the exact scorer
    prev_at: PrevAt | None = None  # where to recompute prev_score exactly (when it is not)
    last_emit: int | None = None

    @property
    def vwap(self) -> float | None:
        return self.pv / self.volume if self.volume > 0 else None


class Scores(NamedTuple):
    """The three window scores, their combination and the thresholds applied to it."""

    windows: tuple[float, float, float]  # short, medium, long
    combined: float
    direction_thr: float  # |score| above -> up/down (sensitivity applied)
    strong_thr: float  # |score| above -> strong (sensitivity applied)
    volatility: str = "NORMAL"
    retraced: bool = False
    raw: float = 0.0  # the combined score before the retracement rule

    @classmethod
    def judged(
        cls, windows: tuple[float, float, float], raw: float, retraced: bool,
        direction_thr: float, strong_thr: float, volatility: str,
    ) -> Scores:
        """The scores after the retracement rule: a retraced combination counts as 0."""
        return cls(windows, 0.0 if retraced else raw, direction_thr, strong_thr, volatility,
                   retraced, raw)


class WindowTerms:
    """Per-point and per-step series of the longest window; shorter windows are suffixes."""

    __slots__ = ("price", "rel", "rel_step", "signed_volume", "step", "ts", "volume")

    def __init__(self, points: F64) -> None:
        self.ts = points[_TS]
        self.price = price = points[_PRICE]
        self.volume = points[_VOLUME]
        # Step j joins points j and j + 1, so the steps of a window from point `first` are
        # steps[first:] (one fewer than its points).
        self.step = price[1:] - price[:-1]
        self.rel = rel = price / points[_VWAP] - 1.0
        self.rel_step = rel[1:] - rel[:-1]
        self.signed_volume = np.sign(self.step) * self.volume[1:]

    def first_at(self, ts: float) -> int:
        """Index of the first point at or after `ts`."""
        return int(np.searchsorted(self.ts, ts, "left"))


class TrendDetector(BarDetector[TrendPeriod, _TickerState]):
    """Find trends in the per-second bars of many tickers (pure; clock = bar time).

    Each bar is scored from running window sums (`actors/detection/trend_windows.py`), O(1) per bar.
    They are rounded differently from the exact numpy formulation (`score`, `window_score`),
    so when a comparison that decides anything (volatility class, retracement, direction,
    strength, the best window) is within `_TOL` of its threshold, the bar is re-scored
    exactly: the decisions are those of the exact formulation.
    """

    def __init__(self, config: TrendConfig) -> None:
        super().__init__(config)
        self.config = c = config
        self._decay = c.recency_decay ** np.arange(c.max_history, dtype=np.float64)[::-1]
        self._weight_cache: dict[int, F64] = {}
        self._keep_ms = max(max(c.windows_s), c.volatility_window_s) * 1000
        # _weight_sums[n]: the sum of the n newest recency weights (before normalising).
        self._weight_sums = [0.0, *np.cumsum(self._decay[::-1]).tolist()]
        self.exact_rescores = 0  # bars re-scored exactly because a threshold was that close
        self._buckets = _Tiers([b.below for b in c.buckets])
        self._factors = _Tiers([f.below for f in c.retracement_factors])
        self._threshold_cache: dict[
            tuple[int, str, int], tuple[TrendPeriod, tuple[float, float]]
        ] = {}

    def on_bar(self, bar: Bar, session: SessionInfo, base_price: float) -> Event | None:
        """Add `bar` to the ticker's history and return a trend event if one is due."""
        if not (bar.c > 0 and math.isfinite(bar.c) and bar.v >= 0 and math.isfinite(bar.v)):
            self._suppress("bad_bar")
            return None
        state = self._state(bar, session)
        log = state.log
        if log.t and bar.end < log.t[-1]:
            self._suppress("out_of_order")  # the engine hands bars out in time order
            return None
        price = bar.vwap if bar.vwap > 0 and math.isfinite(bar.vwap) else bar.c
        state.pv += price * bar.v
        state.volume += bar.v
        vwap = state.vwap
        log.append(bar.end, bar.c, bar.c if vwap is None else vwap, bar.v)
        if log.head >= _TRIM_AT:
            self._trim(state)
        period = market_period(bar.start, session, self._opening_ms, self._closing_ms)
        params = self._periods[period]  # `period_params`, inlined: on_bar is the hot path
        if len(log) < self.config.history_factor * params.points_per_window:
            return None
        if (bar.end - state.first_ms) < params.warmup_s * 1000:
            return None
        log.sync()  # only now: a ticker that never passes the gates needs no sums
        scores = self._running_score(state, bar, params)
        direction = self.classify(scores)
        if direction is None:
            if scores.retraced:
                self._suppress("retracement")
            return None
        strength = self.strength(scores)
        blocked = self._gate(state, bar, period, params, direction, strength)
        if blocked is not None:
            self._suppress(blocked)
            return None
        return self._emit(state, bar, session, base_price, scores, direction, strength)

    # -- exact scoring (the reference formulation) -----------------------------------------------

    def score(self, state: _TickerState, bar: Bar, params: TrendPeriod) -> Scores:
        """Score the ticker's history at `bar.end` exactly (numpy) and apply the retracement rule.

        The raw combined score is remembered as the ticker's previous score: the next bar's
        retracement test compares against it.
        """
        c = self.config
        log = state.log
        points = self._points(log, log.head, len(log.t), bar.end)
        windows, raw = self._exact_windows(points, bar.end, params.points_per_window)
        first = int(np.searchsorted(points[_TS], bar.end - c.volatility_window_s * 1000, "left"))
        volatility = self.volatility(points[_PRICE, first:])
        direction_thr, strong_thr = self._thresholds(params, bar.c, volatility)
        prev = self._prev_score(state)
        state.prev_score, state.prev_exact, state.prev_at = raw, True, None
        retraced = self.retraced(prev, raw, direction_thr, params.retracement * self.factor(bar.c))
        return Scores.judged(windows, raw, retraced, direction_thr, strong_thr, volatility)

    def window_score(self, terms: WindowTerms, first: int, min_points: int) -> float:
        """The score in [-1, 1] of the points from index `first` on.

        0.5 x price (weighted step over 1 % of the mean price) + 0.3 x VWAP (weighted relative
        position, and its weighted step) + 0.2 x volume (weighted volume-signed step over the
        mean volume); weights decay with age and sum to 1.
        """
        n = len(terms.price) - first
        if n < max(min_points, 2):
            return 0.0
        c = self.config
        w_step = self._weights(n - 1)
        mean_price = float(terms.price[first:].sum()) / n
        price_c = _clamp(
            float(w_step @ terms.step[first:]) / (c.price_norm_pct / 100.0 * mean_price)
        )
        vwap_c = _clamp(
            c.vwap_level_gain * float(self._weights(n) @ terms.rel[first:])
            + c.vwap_change_gain * float(w_step @ terms.rel_step[first:])
        )
        volume_sum = float(terms.volume[first:].sum())
        volume_c = 0.0
        if volume_sum > 0:
            signed = float(w_step @ terms.signed_volume[first:]) * n / volume_sum
            volume_c = _clamp(signed / c.volume_norm)
        return c.price_weight * price_c + c.vwap_weight * vwap_c + c.volume_weight * volume_c

    def volatility(self, prices: F64) -> str:
        """HIGH, NORMAL or LOW from stdev/mean of the closes of the volatility window."""
        c = self.config
        if len(prices) < max(c.volatility_min_points, 2):
            return "NORMAL"
        cv = float(prices.std(ddof=1) / prices.mean() * 100.0)
        if cv > c.high_volatility_pct:
            return "HIGH"
        return "LOW" if cv < c.low_volatility_pct else "NORMAL"

    def _exact_windows(
        self, points: F64, now: int, min_points: int
    ) -> tuple[tuple[float, float, float], float]:
        terms = WindowTerms(points)
        s0, s1, s2 = (
            self.window_score(terms, terms.first_at(now - w * 1000), min_points)
            for w in self.config.windows_s
        )
        raw = sum(wt * s for wt, s in zip(self.config.window_weights, (s0, s1, s2), strict=True))
        return (s0, s1, s2), raw

    def _points(self, log: PointLog, head: int, end: int, now: int) -> F64:
        """The history as the exact scorer sees it at `now`: (4, n) from `now - keep` on."""
        points = log.arrays(head, end)
        return points[:, int(np.searchsorted(points[_TS], now - self._keep_ms, "left")) :]

    def _prev_score(self, state: _TickerState) -> float | None:
        """The previous score, exactly (recomputed from the points it was scored on)."""
        if state.prev_exact or state.prev_at is None:
            return state.prev_score
        now, min_points, head, end = state.prev_at
        return self._exact_windows(self._points(state.log, head, end, now), now, min_points)[1]

    # -- running scoring (the fast path) ---------------------------------------------------------

    def _running_score(self, state: _TickerState, bar: Bar, params: TrendPeriod) -> Scores:
        """`score` from the running sums, re-scored exactly in a close call."""
        log = state.log
        end = len(log.t)
        volatility = self._running_volatility(log, end)
        direction_thr, strong_thr = self._thresholds(params, bar.c, volatility)
        limit = params.retracement * self.factor(bar.c)
        windows = self._running_windows(log, end, params.points_per_window)
        w0, w1, w2 = self.config.window_weights
        raw = w0 * windows[0] + w1 * windows[1] + w2 * windows[2]
        prev = state.prev_score
        exact = self._close_call(prev, raw, windows, log, direction_thr, strong_thr, limit)
        if exact:
            self.exact_rescores += 1
            points = self._points(log, log.head, end, bar.end)
            windows, raw = self._exact_windows(points, bar.end, params.points_per_window)
            prev = self._prev_score(state)
        state.prev_score, state.prev_exact = raw, exact
        state.prev_at = None if exact else (bar.end, params.points_per_window, log.head, end)
        retraced = self.retraced(prev, raw, direction_thr, limit)
        return Scores.judged(windows, raw, retraced, direction_thr, strong_thr, volatility)

    def _running_volatility(self, log: PointLog, end: int) -> str:
        c = self.config
        spread = log.spread
        n = end - spread.start
        if n < max(c.volatility_min_points, 2):
            return "NORMAL"
        cv = spread.cv_pct(n)
        high, low = c.high_volatility_pct, c.low_volatility_pct
        if abs(cv - high) <= _CV_TOL * high or abs(cv - low) <= _CV_TOL * low:
            self.exact_rescores += 1
            return self.volatility(np.array(log.price[spread.start : end], dtype=np.float64))
        if cv > high:
            return "HIGH"
        return "LOW" if cv < low else "NORMAL"

    def _running_windows(
        self, log: PointLog, end: int, min_points: int
    ) -> tuple[float, float, float]:
        """The window scores from the span sums; spans holding the same points score the same."""
        a, b, c = log.spans
        sa = self._span_score(a, end - a.start, min_points)
        sb = sa if b.start == a.start else self._span_score(b, end - b.start, min_points)
        if c.start == b.start:
            return sa, sb, sb
        return sa, sb, sa if c.start == a.start else self._span_score(c, end - c.start, min_points)

    def _span_score(self, span: SpanSums, n: int, min_points: int) -> float:
        """`window_score` from running sums."""
        if n < max(min_points, 2):
            return 0.0
        c = self.config
        w_points, w_steps = self._weight_sums[n], self._weight_sums[n - 1]
        price_c = (span.step / w_steps) / (c.price_norm_pct / 100.0 * (span.price / n))
        price_c = -1.0 if price_c < -1.0 else 1.0 if price_c > 1.0 else price_c  # _clamp
        vwap_c = c.vwap_level_gain * (span.rel / w_points) + c.vwap_change_gain * (
            span.rel_step / w_steps
        )
        vwap_c = -1.0 if vwap_c < -1.0 else 1.0 if vwap_c > 1.0 else vwap_c
        volume_c = 0.0
        if span.positive:
            volume_c = (span.signed / w_steps) * n / span.volume / c.volume_norm
            volume_c = -1.0 if volume_c < -1.0 else 1.0 if volume_c > 1.0 else volume_c
        return c.price_weight * price_c + c.vwap_weight * vwap_c + c.volume_weight * volume_c

    @staticmethod
    def _close_call(
        prev: float | None,
        raw: float,
        windows: tuple[float, float, float],
        log: PointLog,
        direction_thr: float,
        strong_thr: float,
        limit: float,
    ) -> bool:
        """Whether a decision on these scores lies within `_TOL` of its threshold."""
        t = _TOL
        if prev is not None and abs(prev) >= direction_thr - t:  # retracement may apply
            if abs(abs(prev) - direction_thr) <= t or abs(raw) <= t:
                return True
            if prev * raw > 0:
                given_back = prev - raw if prev > 0 else raw - prev
                if abs(given_back) <= t or abs(given_back - limit * abs(prev)) <= t:
                    return True
                if given_back > 0 and given_back / abs(prev) >= limit:
                    return False  # retraced: the score is 0, nothing else to decide
        magnitude = abs(raw)
        if abs(magnitude - direction_thr) <= t:
            return True
        if magnitude < direction_thr:
            return False
        if abs(magnitude - strong_thr) <= t or abs(magnitude - 2 * direction_thr) <= t:
            return True
        spans = log.spans
        return any(
            abs(windows[i] - windows[j]) <= t and spans[i].start != spans[j].start
            for i, j in ((0, 1), (0, 2), (1, 2))
        )

    # -- decisions -------------------------------------------------------------------------------

    def _thresholds(
        self, params: TrendPeriod, price: float, volatility: str
    ) -> tuple[float, float]:
        """(direction, strong) thresholds: min(period, bucket) x volatility x sensitivity."""
        c = self.config
        key = (id(params), volatility, self._buckets.index(price))
        cached = self._threshold_cache.get(key)
        if cached is not None and cached[0] is params:
            return cached[1]
        mult = (
            c.high_volatility_mult if volatility == "HIGH"
            else c.low_volatility_mult if volatility == "LOW" else 1.0
        )
        bucket = c.buckets[key[2]]
        thresholds = (
            min(params.direction, bucket.direction) * mult * params.sensitivity,
            min(params.strength, bucket.strength) * mult * params.sensitivity,
        )
        self._threshold_cache[key] = (params, thresholds)  # params kept: its id stays unique
        return thresholds

    @staticmethod
    def retraced(prev: float | None, score: float, direction_thr: float, limit: float) -> bool:
        """Whether `score` gave back at least `limit` of a directional `prev` (same sign).

        Only a move against the prior direction counts: the original also zeroed a trend
        whose score grew by the same fraction.
        """
        if prev is None or abs(prev) < direction_thr or prev * score <= 0:
            return False
        given_back = prev - score if prev > 0 else score - prev
        return given_back > 0 and given_back / abs(prev) >= limit

    def classify(self, s: Scores) -> str | None:
        """up, down, or None when the combined score is inside the direction threshold."""
        if s.combined > s.direction_thr:
            return Direction.UP.value
        if s.combined < -s.direction_thr:
            return Direction.DOWN.value
        return None

    @staticmethod
    def strength(s: Scores) -> str:
        """strong, moderate or weak."""
        magnitude = abs(s.combined)
        if magnitude > s.strong_thr:
            return "strong"
        return "moderate" if magnitude > 2 * s.direction_thr else "weak"

    def bucket(self, price: float) -> TrendBucket:
        """The price bucket of `price`."""
        return self.config.buckets[self._buckets.index(price)]

    def factor(self, price: float) -> float:
        """The retracement multiplier of `price`."""
        return self.config.retracement_factors[self._factors.index(price)].factor

    # -- gates and emission ---------------------------------------------------------------------

    def _gate(
        self,
        state: _TickerState,
        bar: Bar,
        period: MarketPeriod,
        params: TrendPeriod,
        direction: str,
        strength: str,
    ) -> str | None:
        if (bar.end - state.first_ms) < (params.emit_s // 3) * 1000:
            return "young"
        if strength == "weak" and period.value in self.config.suppress_weak_in:
            return "weak_in_period"
        if state.last_emit is None or direction != state.last_direction:
            return None
        if bar.end - state.last_emit < params.emit_s * 1000:
            return "emit_interval"
        return None

    def _emit(
        self,
        state: _TickerState,
        bar: Bar,
        session: SessionInfo,
        base_price: float,
        s: Scores,
        direction: str,
        strength: str,
    ) -> Event:
        up = direction == Direction.UP.value
        state.last_emit = bar.end
        vwap = state.vwap
        sign = 1.0 if up else -1.0
        best = max(range(3), key=lambda i: (sign * s.windows[i], -i))
        longest = state.log.spans[-1]  # the points of windows_s[-1]
        n = len(state.log.t) - longest.start
        mean_volume = longest.volume / n if longest.positive else 0.0
        return self._event(
            EventKind.TREND, state, bar, session, base_price, direction,
            vwap=vwap,
            rel_volume=bar.v / mean_volume if mean_volume > 0 else None,
            label=f"TREND {'↑' if up else '↓'} {strength}",
            score=s.combined,
            strength=strength,
            trend_short=s.windows[0],
            trend_medium=s.windows[1],
            trend_long=s.windows[2],
            vwap_position="unknown" if vwap is None else "above" if bar.c >= vwap else "below",
            window_s=self.config.windows_s[best],
        )

    # -- state ---------------------------------------------------------------------------------

    def _new_state(self, bar: Bar, session: SessionInfo) -> _TickerState:
        return _TickerState(session.start_ms, self._new_log(), bar.end)

    def _trim(self, state: _TickerState) -> None:
        """Cut the points nothing needs (making the previous score exact if it needs them)."""
        cut = state.log.dead()
        if state.prev_at is not None:
            now, min_points, head, end = state.prev_at
            if head < cut:
                state.prev_score, state.prev_exact = self._prev_score(state), True
                state.prev_at = None
            else:
                state.prev_at = (now, min_points, head - cut, end - cut)
        state.log.trim(cut)

    def _new_log(self) -> PointLog:
        return PointLog(**self._log_params())

    def _log_params(self) -> dict[str, Any]:
        c = self.config
        return {
            "spans_ms": tuple(w * 1000 for w in c.windows_s),
            "spread_ms": c.volatility_window_s * 1000,
            "keep_ms": self._keep_ms,
            "cap": c.max_history,
            "decay": c.recency_decay,
        }

    def _weights(self, n: int) -> F64:
        """Recency weights of `n` items, oldest first, summing to 1."""
        w = self._weight_cache.get(n)
        if w is None:
            w = self._decay[len(self._decay) - n :]
            w = self._weight_cache[n] = w / w.sum()
        return w

    def _dump_state(self, state: _TickerState) -> dict[str, Any]:
        return {
            "session_start": state.session_start,
            "first_ms": state.first_ms,
            "history": state.log.rows(),
            "sums": state.log.sums(),
            "pv": state.pv,
            "volume": state.volume,
            "prev_score": self._prev_score(state),
            "last_emit": state.last_emit,
            "last_direction": state.last_direction,
            "count_up": state.count_up,
            "count_down": state.count_down,
        }

    def _load_state(self, data: dict[str, Any]) -> _TickerState:
        log = PointLog.from_rows(data["history"], data.get("sums"), **self._log_params())
        return _TickerState(
            session_start=int(data["session_start"]),
            log=log,
            first_ms=int(data["first_ms"]),
            pv=float(data["pv"]),
            volume=float(data["volume"]),
            prev_score=data["prev_score"],
            last_emit=data["last_emit"],
            last_direction=data["last_direction"],
            count_up=int(data["count_up"]),
            count_down=int(data["count_down"]),
        )


class _Tiers:
    """Price tiers by their `below` bounds: the first tier a price is below, else the last."""

    __slots__ = ("_bounds", "_ordered")

    def __init__(self, bounds: list[float]) -> None:
        self._bounds = bounds[:-1]
        self._ordered = all(a <= b for a, b in pairwise(self._bounds))

    def index(self, price: float) -> int:
        if self._ordered:
            return bisect_right(self._bounds, price)
        return next((i for i, b in enumerate(self._bounds) if price < b), len(self._bounds))


def _clamp(x: float, limit: float = 1.0) -> float:
    return max(-limit, min(limit, x))
