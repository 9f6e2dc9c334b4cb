"""Frozen reference copy (before issue 6) of actors/analytics.py (see tests/reference).

Session analytics: buy/sell pressure, tick activity and event counts (docs/behaviour.md §5, §6).

Two halves, both pure and on event time:
- `ShardAnalytics` (inside each detector shard) classifies trades with the tick rule (an uptick
  is a buy, a downtick a sell, an unchanged price keeps the previous side), weights them by
  volume and sums them per 10 s event-time window; it also counts events per ticker and session.
  `take_delta` hands the sums over as plain data and starts afresh.
- `MarketAnalytics` (one per deployment) merges the deltas of every shard, in any order, and
  computes the gauge once per completed window (net score clamped to +-10, activity level,
  rolling averages, EMAs) and the activity block (ticks over 10/30/60/300 s, ticks per minute,
  level, market phase). A new market session, seen in the data or announced, starts afresh.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from actors.market.sessions import SessionClock, SessionInfo
from config.detection import AnalyticsConfig
from schemas.events import Event, EventKind, MarketSession

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
NEVER = -(2**62)
SMALL = 16  # up to this many rows, a Python loop beats numpy's per-call cost

# Per window: buy volume, sell volume, ticks, buy ticks, sell ticks.
BUY_V, SELL_V, TICKS, BUY_T, SELL_T = range(5)
# Per ticker and session: highs, lows, surges, trends.
KIND_INDEX = {kind.value: i for i, kind in enumerate(
    (EventKind.HIGH, EventKind.LOW, EventKind.SURGE, EventKind.TREND)
)}
COUNT_NAMES = ("highs", "lows", "surges", "trends")


class ShardAnalytics:
    """Per-shard buy/sell sums per event-time window and event counts, shipped as deltas."""

    def __init__(self, config: AnalyticsConfig) -> None:
        self.config = config
        self.rejected: dict[str, int] = {}
        self._clock = SessionClock()
        self._last_price: dict[str, float] = {}
        self._last_side: dict[str, int] = {}  # +1 buy, -1 sell, 0 not known yet
        self._windows: dict[int, list[float]] = {}  # window start (Unix ms) -> sums
        self._counts: dict[tuple[int, str], list[int]] = {}  # (session start, ticker) -> counts

    def on_trades(self, ticker: str, t: I64, p: F64, s: F64) -> None:
        """Classify one ticker's trades (time-ordered) and add them to their windows."""
        if len(t) == 0:
            return
        if len(t) <= SMALL:
            self._on_few_trades(ticker, t.tolist(), p.tolist(), s.tolist())
            return
        ok = (p > 0) & (p < np.inf)
        if not ok.all():
            self._count("bad_price", int((~ok).sum()))
            t, p, s = t[ok], p[ok], s[ok]
            if len(t) == 0:
                return
        side = self._sides(ticker, p)
        weight = np.where(s > 0, s, self.config.default_trade_weight)
        buy, sell = side > 0, side < 0
        window = t // self.config.window_ms
        if window.min() == window.max():
            self._add_window(int(window[0]), weight, buy, sell)
            return
        starts, inverse = np.unique(window, return_inverse=True)
        for i, start in enumerate(starts.tolist()):
            rows = inverse == i
            self._add_window(start, weight[rows], buy[rows], sell[rows])

    def on_events(self, events: Iterable[Event]) -> None:
        """Count events per ticker and market session."""
        for event in events:
            index = KIND_INDEX.get(event.kind)
            if index is None:
                self._count("unknown_kind")
                continue
            key = (self._clock.session_at(event.time).start_ms, event.ticker)
            counts = self._counts.get(key)
            if counts is None:
                counts = self._counts[key] = [0, 0, 0, 0]
            counts[index] += 1

    def take_delta(self) -> dict[str, Any]:
        """Return the sums and counts gathered since the last call, as plain data, and reset.

        `windows` rows: [start ms, buy volume, sell volume, ticks, buy ticks, sell ticks];
        `counts` rows: [session start ms, ticker, highs, lows, surges, trends].
        """
        delta = {
            "window_ms": self.config.window_ms,
            "windows": [[start, *sums] for start, sums in sorted(self._windows.items())],
            "counts": [[start, tk, *c] for (start, tk), c in sorted(self._counts.items())],
        }
        self._windows, self._counts = {}, {}
        return delta

    def reset_session(self) -> None:
        """Start the tick rule afresh (sums not yet taken keep their own windows)."""
        self._last_price.clear()
        self._last_side.clear()

    def snapshot(self) -> dict[str, Any]:
        """Plain data from which `restore` rebuilds this object."""
        return {
            "rejected": dict(self.rejected),
            "last_price": dict(self._last_price),
            "last_side": dict(self._last_side),
            "windows": [[start, *sums] for start, sums in sorted(self._windows.items())],
            "counts": [[start, tk, *c] for (start, tk), c in sorted(self._counts.items())],
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Replace this object's state with a `snapshot`."""
        self.rejected = {str(k): int(v) for k, v in data["rejected"].items()}
        self._last_price = {str(k): float(v) for k, v in data["last_price"].items()}
        self._last_side = {str(k): int(v) for k, v in data["last_side"].items()}
        self._windows = {int(r[0]): [float(x) for x in r[1:]] for r in data["windows"]}
        self._counts = {(int(r[0]), str(r[1])): [int(x) for x in r[2:]] for r in data["counts"]}

    def _on_few_trades(
        self, ticker: str, t: list[int], p: list[float], s: list[float]
    ) -> None:
        """`on_trades` as a plain loop: cheaper than numpy for a handful of rows."""
        prev = self._last_price.get(ticker)
        side = self._last_side.get(ticker, 0)
        window_ms = self.config.window_ms
        default = self.config.default_trade_weight
        for ti, pi, si in zip(t, p, s, strict=True):
            if not 0 < pi < math.inf:
                self._count("bad_price")
                continue
            if prev is not None and pi != prev:
                side = 1 if pi > prev else -1
            prev = pi
            start = (ti // window_ms) * window_ms
            sums = self._windows.get(start)
            if sums is None:
                sums = self._windows[start] = [0.0, 0.0, 0.0, 0.0, 0.0]
            sums[TICKS] += 1
            if side:
                weight = si if si > 0 else default
                sums[BUY_V if side > 0 else SELL_V] += weight
                sums[BUY_T if side > 0 else SELL_T] += 1
        if prev is not None:
            self._last_price[ticker] = prev
            self._last_side[ticker] = side

    def _sides(self, ticker: str, p: F64) -> npt.NDArray[np.int64]:
        """Tick rule: +1 buy, -1 sell; an unchanged price keeps the previous side."""
        prev = self._last_price.get(ticker, float(p[0]))
        sign = np.sign(np.diff(p, prepend=prev)).astype(np.int64)
        moved = sign != 0
        if not moved.all():
            last = np.where(moved, np.arange(len(p)), -1)
            np.maximum.accumulate(last, out=last)
            sign = np.where(last >= 0, sign[last], self._last_side.get(ticker, 0))
        self._last_price[ticker] = float(p[-1])
        self._last_side[ticker] = int(sign[-1])
        return sign

    def _add_window(
        self, window: int, weight: F64, buy: npt.NDArray[np.bool_], sell: npt.NDArray[np.bool_]
    ) -> None:
        start = window * self.config.window_ms
        sums = self._windows.get(start)
        if sums is None:
            sums = self._windows[start] = [0.0, 0.0, 0.0, 0.0, 0.0]
        sums[BUY_V] += float(weight[buy].sum())
        sums[SELL_V] += float(weight[sell].sum())
        sums[TICKS] += len(weight)
        sums[BUY_T] += int(buy.sum())
        sums[SELL_T] += int(sell.sum())

    def _count(self, reason: str, n: int = 1) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + n


@dataclass(frozen=True, slots=True)
class GaugeCalc:
    """One gauge calculation over a completed window."""

    start: int  # window start, Unix ms
    buy: float  # buy volume, shares
    sell: float  # sell volume, shares
    net_score: float  # clamped to +-net_score_limit
    level: str


class MarketAnalytics:
    """The market-wide view: merged shard deltas -> `stock_data.activity` and `.gauge`."""

    def __init__(self, config: AnalyticsConfig) -> None:
        self.config = config
        self.rejected: dict[str, int] = {}
        self._clock = SessionClock()
        self._session: SessionInfo | None = None
        self._floor = NEVER  # data of sessions starting at or before this is stale
        self._clear()

    @property
    def session(self) -> SessionInfo | None:
        """The market session the current figures belong to."""
        return self._session

    # -- input -------------------------------------------------------------------------------

    def merge(self, delta: dict[str, Any]) -> None:
        """Add one shard's delta (windows and per-ticker count increments)."""
        for row in delta.get("windows", ()):
            start = int(row[0])
            if not self._admit(self._clock.session_at(start)):
                self._count("stale_window")
                continue
            if start < self._calculated_to:
                self._count("late_window")  # ticks still count; the gauge was already computed
            sums = self._windows.get(start)
            if sums is None:
                sums = self._windows[start] = [0.0, 0.0, 0.0, 0.0, 0.0]
            for i, value in enumerate(row[1:6]):
                sums[i] += float(value)
        for row in delta.get("counts", ()):
            if not self._admit(self._clock.session_at(int(row[0]))):
                self._count("stale_counts")
                continue
            self._add_counts(str(row[1]), [int(x) for x in row[2:6]])

    def on_events(self, events: Iterable[Event]) -> None:
        """Count events directly (for a caller that sees events rather than shard deltas).

        Use either this or the counts inside the deltas, not both: each would count them.
        """
        for event in events:
            index = KIND_INDEX.get(event.kind)
            if index is None:
                self._count("unknown_kind")
                continue
            if not self._admit(self._clock.session_at(event.time)):
                self._count("stale_event")
                continue
            counts = [0, 0, 0, 0]
            counts[index] = 1
            self._add_counts(event.ticker, counts)

    def reset_session(self, session_key: tuple[str, str] | None = None) -> None:
        """Start afresh for a new session (`SessionInfo.key`); a no-op for the current one."""
        if self._session is not None and session_key == self._session.key:
            return
        if self._session is not None:
            self._floor = self._session.start_ms
        self._session = None
        self._clear()

    # -- output ------------------------------------------------------------------------------

    def snapshot(self, watermark_ms: int) -> dict[str, Any]:
        """Compute the windows completed by `watermark_ms`; return the activity and gauge."""
        self._admit(self._clock.session_at(watermark_ms))
        complete_end = (watermark_ms // self.config.window_ms) * self.config.window_ms
        self._calculate(complete_end)
        self._prune(complete_end)
        return {
            "activity": self._activity(watermark_ms, complete_end),
            "gauge": self._gauge(),
        }

    def per_ticker_counts(self) -> dict[str, dict[str, int]]:
        """Event counts per ticker this session (for persistence)."""
        return {tk: dict(zip(COUNT_NAMES, c, strict=True)) for tk, c in self._counts.items()}

    # -- internals ---------------------------------------------------------------------------

    def _clear(self) -> None:
        c = self.config
        self._windows: dict[int, list[float]] = {}
        self._counts: dict[str, list[int]] = {}
        self._totals = [0, 0, 0, 0]
        self._calculated_to = NEVER  # windows starting before this have been calculated
        self._calcs: deque[GaugeCalc] = deque(
            maxlen=max(c.rolling_long, c.rolling_short, c.gauge_level_history)
        )
        self._session_sum = 0.0
        self._session_n = 0
        self._max_activity = 0.0
        self._ema: float | None = None
        self._vertical_ema: float | None = None
        self._buy_share_ema: float | None = None

    def _admit(self, info: SessionInfo) -> bool:
        """Whether data of session `info` belongs to the current figures (switching if newer)."""
        if self._session is not None and info.start_ms == self._session.start_ms:
            return True
        if info.start_ms <= self._floor or (
            self._session is not None and info.start_ms < self._session.start_ms
        ):
            return False
        if self._session is not None:
            self._floor = self._session.start_ms
            self._clear()
        self._session = info
        return True

    def _add_counts(self, ticker: str, counts: list[int]) -> None:
        mine = self._counts.get(ticker)
        if mine is None:
            mine = self._counts[ticker] = [0, 0, 0, 0]
        for i, n in enumerate(counts):
            mine[i] += n
            self._totals[i] += n

    def _calculate(self, complete_end: int) -> None:
        for start in sorted(s for s in self._windows if self._calculated_to <= s < complete_end):
            sums = self._windows[start]
            self._calcs.append(self._calc(start, sums[BUY_V], sums[SELL_V]))
        self._calculated_to = max(self._calculated_to, complete_end)

    def _calc(self, start: int, buy: float, sell: float) -> GaugeCalc:
        c = self.config
        activity = buy + sell
        net = (buy - sell) / activity * 100.0 if activity > 0 else 0.0
        net = max(-c.net_score_limit, min(c.net_score_limit, net))
        level = self._gauge_level(activity)
        self._session_sum += net
        self._session_n += 1
        self._max_activity = max(self._max_activity, activity)
        self._ema = _ema(self._ema, net, c.ema_alpha)
        ratio = activity / self._max_activity if self._max_activity > 0 else 0.0
        alpha = min(c.vertical_alpha * (1.0 + ratio), c.vertical_alpha_cap)
        self._vertical_ema = _ema(self._vertical_ema, net, alpha)
        share = buy / activity if activity > 0 else 0.5
        self._buy_share_ema = _ema(self._buy_share_ema, share, c.buy_share_alpha)
        return GaugeCalc(start, buy, sell, net, level)

    def _gauge_level(self, activity: float) -> str:
        """Low .. Very High against the recent mean volume (with absolute floors)."""
        c = self.config
        recent = list(self._calcs)[-c.gauge_level_history :]
        mean = sum(x.buy + x.sell for x in recent) / len(recent) if recent else 0.0
        for label, mult, floor in zip(
            c.gauge_level_labels, c.gauge_level_mults, c.gauge_level_floors, strict=False
        ):
            if activity < max(mult * mean, floor):
                return label
        return c.gauge_level_labels[-1]

    def _prune(self, complete_end: int) -> None:
        c = self.config
        keep_from = complete_end - max(c.tick_windows_s) * 1000 - c.window_ms
        for start in [s for s in self._windows if s < keep_from]:
            del self._windows[start]
        while len(self._windows) > c.max_windows:
            del self._windows[min(self._windows)]

    def _ticks(self, complete_end: int, seconds: int) -> int:
        since = complete_end - seconds * 1000
        return int(
            sum(w[TICKS] for s, w in self._windows.items() if since <= s < complete_end)
        )

    def _activity(self, watermark_ms: int, complete_end: int) -> dict[str, Any]:
        ticks = {f"ticks_{n}sec": self._ticks(complete_end, n) for n in self.config.tick_windows_s}
        per_minute = self._ticks(complete_end, 60)
        highs, lows, surges, trends = self._totals
        return {
            "session": self._session.session.value if self._session else "",
            "total_highs": highs,
            "total_lows": lows,
            "total_surges": surges,
            "total_trends": trends,
            "total_events": highs + lows + surges + trends,
            "active_tickers": len(self._counts),
            **ticks,
            "ticks_per_minute": per_minute,
            "activity_level": self._activity_level(per_minute),
            "market_phase": self._phase(watermark_ms),
            "time": watermark_ms,
        }

    def _activity_level(self, ticks_per_minute: int) -> str:
        for level in self.config.activity_levels:
            if ticks_per_minute >= level.at:
                return level.label
        return self.config.lowest_activity_label

    def _phase(self, ms: int) -> str:
        info = self._session
        if info is None or info.session is MarketSession.CLOSED:
            return "Market Closed"
        if info.session is MarketSession.PRE:
            return "Pre-Market"
        if info.session is MarketSession.AFTER:
            return "After Hours"
        if ms < info.open_ms + self.config.opening_bell_s * 1000:
            return "Opening Bell"
        if ms >= info.close_ms - self.config.closing_bell_s * 1000:
            return "Closing Bell"
        return "Market Open"

    def _gauge(self) -> dict[str, Any]:
        c = self.config
        calcs = list(self._calcs)
        last = calcs[-1] if calcs else None
        return {
            "net_score": last.net_score if last else 0.0,
            "buy_volume": last.buy if last else 0.0,
            "sell_volume": last.sell if last else 0.0,
            "activity_level": last.level if last else c.gauge_level_labels[0],
            "rolling_avg_short": _mean([x.net_score for x in calcs[-c.rolling_short :]]),
            "rolling_avg_long": _mean([x.net_score for x in calcs[-c.rolling_long :]]),
            "session_avg": self._session_sum / self._session_n if self._session_n else 0.0,
            "ema": self._ema if self._ema is not None else 0.0,
            "vertical_ema": self._vertical_ema if self._vertical_ema is not None else 0.0,
            "buy_share_ema": self._buy_share_ema if self._buy_share_ema is not None else 0.5,
            "calculations": self._session_n,
            "window_start": last.start if last else None,
            "window_ms": c.window_ms,
        }

    def _count(self, reason: str, n: int = 1) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + n


def _ema(prev: float | None, value: float, alpha: float) -> float:
    return value if prev is None else alpha * value + (1.0 - alpha) * prev


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0
