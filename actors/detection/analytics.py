"""Session analytics: buy/sell pressure, tick activity and event counts (docs/behaviour.md §5, §6).

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
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from actors.market.analytics import BUY_T, BUY_V, KIND_INDEX, SELL_T, SELL_V, TICKS
from actors.market.sessions import SessionClock, SessionInfo, session_of
from config.detection import AnalyticsConfig
from schemas.events import Event

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
SMALL = 16  # up to this many rows, a Python loop beats numpy's per-call cost



class ShardAnalytics:
    """Per-shard buy/sell sums per event-time window and event counts, shipped as deltas."""

    def __init__(self, config: AnalyticsConfig, calendar: SessionClock | None = None) -> None:
        self.config = config
        self.rejected: dict[str, int] = {}
        self._clock = calendar or SessionClock()  # for events that come without a session
        self._last_price: dict[str, float] = {}
        self._last_side: dict[str, int] = {}  # +1 buy, -1 sell, 0 not known yet
        self._windows: dict[int, list[float]] = {}  # window start (Unix ms) -> sums
        self._counts: dict[tuple[int, str], list[int]] = {}  # (session start, ticker) -> counts

    def on_trades(
        self, ticker: str, t: I64, p: F64, s: F64, *, checked: bool = False
    ) -> None:
        """Classify one ticker's trades (time-ordered) and add them to their windows.

        `checked`: the rows passed the validity check (the engine's path): prices are not
        judged again.
        """
        if len(t) == 0:
            return
        if len(t) <= SMALL:
            self._on_few_trades(ticker, t.tolist(), p.tolist(), s.tolist(), checked)
            return
        ok = None if checked else (p > 0) & (p < np.inf)
        if ok is not None and not ok.all():
            self._count("bad_price", int((~ok).sum()))
            t, p, s = t[ok], p[ok], s[ok]
            if len(t) == 0:
                return
        side = self._sides(ticker, p)
        weight = np.where(s > 0, s, self.config.default_trade_weight)
        buy, sell = side > 0, side < 0
        window = t // self.config.window_ms
        if window[0] == window[-1] and (window == window[0]).all():
            self._add_window(int(window[0]), weight, buy, sell)
            return
        self._add_windows(window, weight, buy, sell)

    def on_trade_groups(
        self, groups: Sequence[tuple[str, I64, F64, F64]], *, checked: bool = False
    ) -> None:
        """`on_trades` for many tickers at once: (ticker, t, p, s) each, tickers distinct.

        One vectorised pass (the tick rule restarts at each ticker) instead of numpy calls
        per ticker; the same sums up to float rounding of non-integer sizes.
        """
        groups = [g for g in groups if len(g[1])]
        if len(groups) <= 1:
            for ticker, t, p, s in groups:
                self.on_trades(ticker, t, p, s, checked=checked)
            return
        self.on_trade_segments(
            [g[0] for g in groups],
            np.array([len(g[1]) for g in groups], dtype=np.int64),
            np.concatenate([g[1] for g in groups]),
            np.concatenate([g[2] for g in groups]),
            np.concatenate([g[3] for g in groups]),
            checked=checked,
        )

    def on_trade_segments(
        self, tickers: Sequence[str], lengths: I64, t: I64, p: F64, s: F64, *,
        checked: bool = False,
    ) -> None:
        """`on_trade_groups` on concatenated rows: ticker k owns the next `lengths[k]` rows
        (tickers distinct, lengths > 0, each ticker's rows time-ordered)."""
        if len(tickers) <= 1:
            if len(tickers) == 1:
                self.on_trades(tickers[0], t, p, s, checked=checked)
            return
        ok = None if checked else (p > 0) & (p < np.inf)
        if ok is not None and not ok.all():
            self._count("bad_price", int((~ok).sum()))
            group = np.repeat(np.arange(len(tickers)), lengths)[ok]
            t, p, s = t[ok], p[ok], s[ok]
            lengths = np.bincount(group, minlength=len(tickers))
            if len(t) == 0:
                return
        side = self._group_sides(list(tickers), lengths, p)
        weight = np.where(s > 0, s, self.config.default_trade_weight)
        self._add_windows(t // self.config.window_ms, weight, side > 0, side < 0)

    def on_events(self, events: Iterable[Event], sessions: Sequence[SessionInfo] = ()) -> None:
        """Count events per ticker and market session (`sessions`: the sessions the caller
        already knows them to fall in)."""
        for event in events:
            index = KIND_INDEX.get(event.kind)
            if index is None:
                self._count("unknown_kind")
                continue
            key = (session_of(event.time, sessions, self._clock).start_ms, event.ticker)
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
        self, ticker: str, t: list[int], p: list[float], s: list[float], checked: bool
    ) -> None:
        """`on_trades` as a plain loop: cheaper than numpy for a handful of rows."""
        prev = self._last_price.get(ticker)
        side = self._last_side.get(ticker, 0)
        window_ms = self.config.window_ms
        default = self.config.default_trade_weight
        for ti, pi, si in zip(t, p, s, strict=True):
            if not checked and not 0 < pi < math.inf:
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

    def _group_sides(
        self, tickers: list[str], lengths: I64, p: F64
    ) -> npt.NDArray[np.int64]:
        """`_sides` of consecutive ticker groups (`lengths` rows each; empty ones skipped)."""
        nonempty = lengths > 0
        ends = np.cumsum(lengths)[nonempty]
        firsts = ends - lengths[nonempty]
        names = [tk for tk, keep in zip(tickers, nonempty.tolist(), strict=True) if keep]
        prev = np.empty_like(p)
        prev[1:] = p[:-1]
        prev[firsts] = [self._last_price.get(tk, p0) for tk, p0 in
                        zip(names, p[firsts].tolist(), strict=True)]
        sign = np.sign(p - prev).astype(np.int64)
        # Each group starts from its own first move, else from the ticker's previous side.
        start_sign = sign[firsts]
        known = np.array([self._last_side.get(tk, 0) for tk in names], dtype=np.int64)
        sign[firsts] = np.where(start_sign != 0, start_sign, known)
        anchor = sign != 0
        anchor[firsts] = True
        if not anchor.all():
            last = np.where(anchor, np.arange(len(p)), 0)
            np.maximum.accumulate(last, out=last)
            sign = sign[last]
        for tk, price, side in zip(names, p[ends - 1].tolist(), sign[ends - 1].tolist(),
                                   strict=True):
            self._last_price[tk] = price
            self._last_side[tk] = side
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

    def _add_windows(
        self, window: I64, weight: F64, buy: npt.NDArray[np.bool_], sell: npt.NDArray[np.bool_]
    ) -> None:
        """`_add_window` for rows spanning many windows: one pass of bincounts over them all."""
        ids, inverse = np.unique(window, return_inverse=True)
        k = len(ids)
        columns = zip(
            (ids * self.config.window_ms).tolist(),
            np.bincount(inverse, weights=np.where(buy, weight, 0.0), minlength=k).tolist(),
            np.bincount(inverse, weights=np.where(sell, weight, 0.0), minlength=k).tolist(),
            np.bincount(inverse, minlength=k).tolist(),
            np.bincount(inverse[buy], minlength=k).tolist(),
            np.bincount(inverse[sell], minlength=k).tolist(),
            strict=True,
        )
        windows = self._windows
        for start, buy_v, sell_v, ticks, buy_t, sell_t in columns:
            sums = windows.get(start)
            if sums is None:
                windows[start] = [buy_v, sell_v, float(ticks), float(buy_t), float(sell_t)]
                continue
            sums[BUY_V] += buy_v
            sums[SELL_V] += sell_v
            sums[TICKS] += ticks
            sums[BUY_T] += buy_t
            sums[SELL_T] += sell_t

    def _count(self, reason: str, n: int = 1) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + n
