"""Frozen reference copy (before issue 6) of actors/trend.py (see tests/reference).

Trend detection over per-second bars (docs/behaviour.md §1, Trend).

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
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from actors.market.periods import MarketPeriod, market_period
from actors.market.sessions import SessionInfo
from config.detection import TrendBucket, TrendConfig, TrendPeriod
from schemas.events import Direction, Event, EventKind
from tests.reference.bars import Bar

F64 = npt.NDArray[np.float64]
_TS, _PRICE, _VWAP, _VOLUME = range(4)
_INITIAL_WIDTH = 32


class History:
    """A bounded, append-only table of points (time, close, VWAP, volume), kept contiguous."""

    __slots__ = ("_buf", "_cap", "_hi", "_lo")

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._buf = np.empty((4, min(_INITIAL_WIDTH, 2 * cap)))
        self._lo = 0
        self._hi = 0

    def __len__(self) -> int:
        return self._hi - self._lo

    def append(self, ts: int, price: float, vwap: float, volume: float) -> None:
        """Add a point; beyond `cap` points the oldest goes."""
        if self._hi == self._buf.shape[1]:
            self._make_room()
        self._buf[:, self._hi] = (ts, price, vwap, volume)
        self._hi += 1
        if self._hi - self._lo > self._cap:
            self._lo += 1

    def drop_before(self, ts: float) -> None:
        """Forget the points older than `ts` (Unix ms)."""
        self._lo += int(np.searchsorted(self._buf[_TS, self._lo : self._hi], ts, "left"))

    def since(self, ts: float) -> npt.NDArray[np.float64]:
        """The points at or after `ts` as a (4, n) view."""
        view = self._buf[:, self._lo : self._hi]
        return view[:, int(np.searchsorted(view[_TS], ts, "left")) :]

    def rows(self) -> list[list[float]]:
        """The points as rows (for snapshots)."""
        return self._buf[:, self._lo : self._hi].T.tolist()  # type: ignore[no-any-return]

    def _make_room(self) -> None:
        live = self._buf[:, self._lo : self._hi]
        width = self._buf.shape[1]
        if 2 * live.shape[1] > width and width < 2 * self._cap:
            grown = np.empty((4, min(2 * width, 2 * self._cap)))
            grown[:, : live.shape[1]] = live
            self._buf = grown
        else:
            self._buf[:, : live.shape[1]] = live.copy()
        self._hi = live.shape[1]
        self._lo = 0


@dataclass(slots=True)
class _TickerState:
    """What the detector remembers of one ticker in one session (bounded)."""

    session_start: int
    history: History
    first_ms: int  # the ticker's first bar this session (its age starts here)
    pv: float = 0.0  # session sum of price x volume
    volume: float = 0.0  # session volume
    prev_score: float | None = None  # the previous bar's combined score (before retracement)
    last_emit: int | None = None
    last_direction: str | None = None
    count_up: int = 0
    count_down: int = 0

    @property
    def vwap(self) -> float | None:
        return self.pv / self.volume if self.volume > 0 else None


@dataclass(frozen=True, slots=True)
class Scores:
    """The three window scores, their combination and the thresholds applied to it."""

    windows: tuple[float, float, float]  # short, medium, long
    combined: float
    direction_thr: float  # |score| above -> up/down (sensitivity applied)
    strong_thr: float  # |score| above -> strong (sensitivity applied)
    volatility: str = "NORMAL"
    retraced: bool = False
    raw: float = 0.0  # the combined score before the retracement rule


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


class TrendDetector:
    """Find trends in the per-second bars of many tickers (pure; clock = bar time)."""

    def __init__(self, config: TrendConfig) -> None:
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
        self._decay = c.recency_decay ** np.arange(c.max_history, dtype=np.float64)[::-1]
        self._weight_cache: dict[int, F64] = {}
        self._keep_ms = max(max(c.windows_s), c.volatility_window_s) * 1000

    def on_bar(self, bar: Bar, session: SessionInfo, base_price: float) -> Event | None:
        """Add `bar` to the ticker's history and return a trend event if one is due."""
        if not (bar.c > 0 and math.isfinite(bar.c) and bar.v >= 0 and math.isfinite(bar.v)):
            self._suppress("bad_bar")
            return None
        state = self._record(bar, session)
        period = market_period(
            bar.start, session, self.config.opening_s * 1000, self.config.closing_s * 1000
        )
        params = self._periods[period]
        if len(state.history) < self.config.history_factor * params.points_per_window:
            return None
        if (bar.end - state.first_ms) < params.warmup_s * 1000:
            return None
        scores = self.score(state, bar, params)
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

    def reset_ticker(self, ticker: str) -> None:
        """Forget everything about `ticker` (its market session changed)."""
        self._states.pop(ticker, None)

    # -- scoring -------------------------------------------------------------------------------

    def score(self, state: _TickerState, bar: Bar, params: TrendPeriod) -> Scores:
        """Score the windows, combine them and apply the one-sided retracement rule.

        The raw combined score is remembered as the ticker's previous score: the next bar's
        retracement test compares against it.
        """
        c = self.config
        now = bar.end
        points = state.history.since(now - self._keep_ms)
        terms = WindowTerms(points)
        windows = tuple(
            self.window_score(terms, terms.first_at(now - w * 1000), params.points_per_window)
            for w in c.windows_s
        )
        raw = sum(wt * s for wt, s in zip(c.window_weights, windows, strict=True))
        volatility = self.volatility(
            points[_PRICE, terms.first_at(now - c.volatility_window_s * 1000) :]
        )
        mult = {"HIGH": c.high_volatility_mult, "LOW": c.low_volatility_mult}.get(volatility, 1.0)
        bucket = self.bucket(bar.c)
        direction_thr = min(params.direction, bucket.direction) * mult * params.sensitivity
        strong_thr = min(params.strength, bucket.strength) * mult * params.sensitivity
        prev, state.prev_score = state.prev_score, raw
        retraced = self.retraced(prev, raw, direction_thr, params.retracement * self.factor(bar.c))
        return Scores(
            windows=(windows[0], windows[1], windows[2]),
            combined=0.0 if retraced else raw,
            direction_thr=direction_thr,
            strong_thr=strong_thr,
            volatility=volatility,
            retraced=retraced,
            raw=raw,
        )

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
        for bucket in self.config.buckets:
            if price < bucket.below:
                return bucket
        return self.config.buckets[-1]

    def factor(self, price: float) -> float:
        """The retracement multiplier of `price`."""
        for tier in self.config.retracement_factors:
            if price < tier.below:
                return tier.factor
        return self.config.retracement_factors[-1].factor

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
        if up:
            state.count_up += 1
        else:
            state.count_down += 1
        reversal = None
        if state.last_direction is not None and state.last_direction != direction:
            reversal = f"{state.last_direction}-now-{direction}"
        state.last_direction = direction
        state.last_emit = bar.end
        count = state.count_up + state.count_down
        vwap = state.vwap
        sign = 1.0 if up else -1.0
        best = max(range(3), key=lambda i: (sign * s.windows[i], -i))
        long_points = state.history.since(bar.end - self.config.windows_s[-1] * 1000)
        mean_volume = float(long_points[_VOLUME].mean())
        return Event(
            id=f"{bar.ticker}:trend:{bar.end}:{count}",
            ticker=bar.ticker,
            kind=EventKind.TREND.value,
            direction=direction,
            price=bar.c,
            time=bar.end,
            session=session.session.value,
            count=count,
            count_up=state.count_up,
            count_down=state.count_down,
            pct_change=(bar.c - base_price) / base_price * 100.0 if base_price > 0 else 0.0,
            vwap=vwap,
            volume=bar.v,
            rel_volume=bar.v / mean_volume if mean_volume > 0 else None,
            label=f"TREND {'↑' if up else '↓'} {strength}",
            reversal=reversal,
            score=s.combined,
            strength=strength,
            trend_short=s.windows[0],
            trend_medium=s.windows[1],
            trend_long=s.windows[2],
            vwap_position="unknown" if vwap is None else "above" if bar.c >= vwap else "below",
            window_s=self.config.windows_s[best],
        )

    # -- state ---------------------------------------------------------------------------------

    def _record(self, bar: Bar, session: SessionInfo) -> _TickerState:
        state = self._states.get(bar.ticker)
        if state is None or state.session_start != session.start_ms:
            state = _TickerState(session.start_ms, History(self.config.max_history), bar.end)
            self._states[bar.ticker] = state
        price = bar.vwap if bar.vwap > 0 and math.isfinite(bar.vwap) else bar.c
        state.pv += price * bar.v
        state.volume += bar.v
        vwap = state.vwap
        state.history.drop_before(bar.end - self._keep_ms)
        state.history.append(bar.end, bar.c, bar.c if vwap is None else vwap, bar.v)
        return state

    def _weights(self, n: int) -> F64:
        """Recency weights of `n` items, oldest first, summing to 1."""
        w = self._weight_cache.get(n)
        if w is None:
            w = self._decay[len(self._decay) - n :]
            w = self._weight_cache[n] = w / w.sum()
        return w

    def _suppress(self, reason: str) -> None:
        self.suppressed[reason] = self.suppressed.get(reason, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        """Plain data (msgpack/JSON-able) from which `restore` rebuilds the detector."""
        return {
            "suppressed": dict(self.suppressed),
            "tickers": {
                ticker: {
                    "session_start": s.session_start,
                    "first_ms": s.first_ms,
                    "history": s.history.rows(),
                    "pv": s.pv,
                    "volume": s.volume,
                    "prev_score": s.prev_score,
                    "last_emit": s.last_emit,
                    "last_direction": s.last_direction,
                    "count_up": s.count_up,
                    "count_down": s.count_down,
                }
                for ticker, s in self._states.items()
            },
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Replace the detector's state with a `snapshot`."""
        self.suppressed = {str(k): int(v) for k, v in data.get("suppressed", {}).items()}
        self._states = {}
        for ticker, s in data["tickers"].items():
            history = History(self.config.max_history)
            for ts, price, vwap, volume in s["history"]:
                history.append(int(ts), price, vwap, volume)
            self._states[str(ticker)] = _TickerState(
                session_start=int(s["session_start"]),
                history=history,
                first_ms=int(s["first_ms"]),
                pv=float(s["pv"]),
                volume=float(s["volume"]),
                prev_score=s["prev_score"],
                last_emit=s["last_emit"],
                last_direction=s["last_direction"],
                count_up=int(s["count_up"]),
                count_down=int(s["count_down"]),
            )


def _clamp(x: float, limit: float = 1.0) -> float:
    return max(-limit, min(limit, x))
