"""Frozen copy (before the issue-6 many-ticker work) of actors/bars.py.

Per-second bars built from a ticker's eligible trades (the input of Surge and Trend).

A bar covers one second of event time, `[start, start + 1000)` with `start` aligned to the
second, like Polygon's `A` aggregates. The builder keeps the trades of each ticker's newest
second raw (that bar may still grow) and turns every earlier second into a `Bar` at once, with
numpy segment reductions. A bar is handed out by `drain` once the caller's watermark has
passed its end by `grace_ms`; a trade that arrives for a bar already handed out is rejected
as `late_bar_trade`. Each bar is aggregated exactly once from all of its trades, so the bars
do not depend on how the trades were split into calls.
"""

from __future__ import annotations

import heapq
from collections import deque
from itertools import pairwise
from operator import attrgetter
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
from msgspec.structs import astuple

from config.detection import BarConfig

BAR_MS = 1_000
NEVER = -(2**62)  # "no time yet" for event-time watermarks (Unix ms)

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Trades = tuple[I64, F64, F64]  # t (Unix ms), price ($), size (shares)


class Bar(msgspec.Struct, frozen=True):
    """One aggregate bar of a ticker; `end` is exclusive and is the bar's event time."""

    ticker: str
    start: int  # Unix ms
    end: int  # Unix ms
    o: float
    h: float
    l: float  # noqa: E741
    c: float
    v: float  # volume, shares
    vwap: float  # volume-weighted price (the close when the volume is 0)
    n: int  # trades


def aggregate_seconds(ticker: str, trades: Trades, starts: I64) -> list[Bar]:
    """Turn the segments of `trades` that begin at the row indices `starts` into bars.

    Rows must be grouped by second in arrival order; segment i spans `starts[i]` up to
    `starts[i + 1]` (the last one up to the end of the arrays).
    """
    t, p, s = trades
    ends = np.append(starts[1:], len(t))
    v = np.add.reduceat(s, starts)
    pv = np.add.reduceat(p * s, starts)
    c = p[ends - 1]
    h = np.maximum.reduceat(p, starts)
    lo = np.minimum.reduceat(p, starts)
    # Clipped: rounding in sum(p*s)/sum(s) may land a hair outside the bar's range.
    vwap = np.clip(np.divide(pv, v, out=c.copy(), where=v > 0), lo, h)
    columns = zip(
        ((t[starts] // BAR_MS) * BAR_MS).tolist(),
        p[starts].tolist(),
        h.tolist(),
        lo.tolist(),
        c.tolist(),
        v.tolist(),
        vwap.tolist(),
        (ends - starts).tolist(),
        strict=True,
    )
    return [
        Bar(ticker, start, start + BAR_MS, o, h, lo, cl, vol, vw, n)
        for start, o, h, lo, cl, vol, vw, n in columns
    ]


class SecondBarBuilder:
    """Build, hold and hand out per-second bars of many tickers (pure, event time only)."""

    def __init__(self, config: BarConfig) -> None:
        self.config = config
        self.rejected: dict[str, int] = {}
        self._tails: dict[str, Trades] = {}  # raw trades of each ticker's newest second
        self._done: dict[str, deque[Bar]] = {}  # finished bars not yet drained
        self._last_t: dict[str, int] = {}  # newest accepted trade time per ticker
        self._heap: list[tuple[int, str]] = []  # (end of the oldest pending bar, ticker)
        self._scheduled: set[str] = set()
        self._drained_to = NEVER  # every bar ending at or before this was handed out

    # -- input -------------------------------------------------------------------------------

    def add_trades(self, ticker: str, t: I64, p: F64, s: F64) -> None:
        """Add eligible trades of one ticker (time-ordered); bad or late rows are counted."""
        n = len(t)
        if n == 0:
            return
        last = self._last_t.get(ticker, NEVER)
        trades: Trades = (t, p, s)
        first = int(t[0])
        if first >= last and first >= self._late_before() and _clean(t, p, s):
            newest = int(t[-1])
        else:
            accepted = self._accepted(ticker, trades)
            if accepted is None:
                return
            trades = accepted
            first = int(trades[0][0])
            newest = max(last, int(trades[0].max()))
        self._last_t[ticker] = newest
        tail = self._tails.get(ticker)
        if tail is not None:
            if newest < _bar_end(tail):  # common case: the trades extend the open bar only
                self._tails[ticker] = _concat(tail, trades)
                return
            trades = _concat(tail, trades)
        elif newest // BAR_MS == first // BAR_MS:  # accepted rows never go back a second
            self._tails[ticker] = trades
            self._schedule(ticker)
            return
        sec = trades[0] // BAR_MS
        cuts = np.flatnonzero(sec[1:] != sec[:-1]) + 1
        if len(cuts):
            last = int(cuts[-1])
            head = (trades[0][:last], trades[1][:last], trades[2][:last])
            self._append_done(ticker, aggregate_seconds(ticker, head, np.append(0, cuts[:-1])))
            trades = (trades[0][last:], trades[1][last:], trades[2][last:])
        self._tails[ticker] = trades
        self._schedule(ticker)

    def add_bar(self, bar: Bar) -> None:
        """Add a bar delivered by the feed (Polygon `A`); it is handed out like built ones."""
        self.add_bars(bar.ticker, [bar])

    def add_bars(self, ticker: str, bars: list[Bar]) -> None:
        """Add feed bars of one ticker in arrival order: `add_bar` for each, in one go."""
        last = self._last_t.get(ticker, NEVER)
        drained = self._drained_to
        kept: list[Bar] = []
        for bar in bars:
            if not (bar.end > bar.start and bar.l > 0 and bar.h >= bar.l and bar.v >= 0):
                self._count("bad_bar")
            elif bar.end <= drained:
                self._count("late_bar")
            elif bar.start <= last:
                self._count("out_of_order_bar")
            else:
                kept.append(bar)
                last = bar.end - 1
        if not kept:
            return
        self._finish_tail(ticker)
        self._last_t[ticker] = last
        self._append_done(ticker, kept)
        self._schedule(ticker)

    # -- output ------------------------------------------------------------------------------

    def drain(self, watermark_ms: int, ordered: bool = True) -> list[Bar]:
        """Return the bars with `end <= watermark_ms - grace_ms`, ordered by (end, ticker)
        (grouped by ticker instead when not `ordered`: cheaper, for callers that drop them)."""
        self._drained_to = max(self._drained_to, watermark_ms - self.config.grace_ms)
        return self._drain_to(self._drained_to, ordered)

    def drain_all(self, ordered: bool = True) -> list[Bar]:
        """Return every pending bar, the still-open ones included (end of a stream)."""
        ends = [b[-1].end for b in self._done.values() if b]
        ends += [_bar_end(tail) for tail in self._tails.values()]
        if ends:
            self._drained_to = max(self._drained_to, *ends)
        return self._drain_to(self._drained_to, ordered)

    def pending(self) -> int:
        """The number of bars held (finished or open)."""
        return sum(len(b) for b in self._done.values()) + len(self._tails)

    # -- state -------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Plain data (msgpack/JSON-able) from which `restore` rebuilds this builder."""
        return {
            "drained_to": self._drained_to,
            "rejected": dict(self.rejected),
            "last_t": dict(self._last_t),
            "tails": {k: [a.tolist() for a in v] for k, v in self._tails.items()},
            "done": {k: [list(astuple(b))[1:] for b in v] for k, v in self._done.items() if v},
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Replace this builder's state with a `snapshot`."""
        self.rejected = {str(k): int(v) for k, v in data["rejected"].items()}
        self._drained_to = int(data["drained_to"])
        self._last_t = {str(k): int(v) for k, v in data["last_t"].items()}
        self._tails = {
            str(k): (
                np.asarray(t, np.int64), np.asarray(p, np.float64), np.asarray(s, np.float64)
            )
            for k, (t, p, s) in data["tails"].items()
        }
        self._done = {
            str(k): deque(_bar_from_row(str(k), row) for row in rows)
            for k, rows in data["done"].items()
        }
        self._heap, self._scheduled = [], set()
        for ticker in sorted(set(self._tails) | set(self._done)):
            self._schedule(ticker)

    # -- internals ---------------------------------------------------------------------------

    def _accepted(self, ticker: str, trades: Trades) -> Trades | None:
        """The rows that may join a bar; the others are counted by reason."""
        t, p, s = trades
        keep = (p > 0) & (p < np.inf) & (s >= 0) & (s < np.inf)
        if not keep.all():
            bad_price = ~((p > 0) & (p < np.inf))
            self._count("bad_price", int(bad_price.sum()))
            self._count("bad_size", int((~keep & ~bad_price).sum()))
        late = t < self._late_before()
        if late.any():
            self._count("late_bar_trade", int((late & keep).sum()))
            keep &= ~late
        last = self._last_t.get(ticker, NEVER)
        running = np.maximum.accumulate(np.maximum(t, last))
        # A trade from an earlier second than one already seen cannot join its bar any more;
        # one from the same second joins it in arrival order.
        behind = (t // BAR_MS) < (running // BAR_MS)
        if behind.any():
            # Rows already rejected may have raised the running max; recompute on kept rows.
            running = np.maximum.accumulate(np.maximum(np.where(keep, t, NEVER), last))
            behind = keep & ((t // BAR_MS) < (running // BAR_MS))
            self._count("out_of_order", int(behind.sum()))
            keep &= ~behind
        if keep.all():
            return trades
        if not keep.any():
            return None
        return t[keep], p[keep], s[keep]

    def _late_before(self) -> int:
        """Trades before this instant belong to bars already handed out."""
        return (self._drained_to // BAR_MS) * BAR_MS

    def _append_done(self, ticker: str, bars: list[Bar]) -> None:
        done = self._done.get(ticker)
        if done is None:
            done = self._done[ticker] = deque(maxlen=self.config.max_pending_bars)
        overflow = len(done) + len(bars) - self.config.max_pending_bars
        if overflow > 0:
            self._count("bar_overflow", overflow)
        done.extend(bars)

    def _finish_tail(self, ticker: str) -> None:
        tail = self._tails.pop(ticker, None)
        if tail is not None:
            self._append_done(ticker, aggregate_seconds(ticker, tail, np.zeros(1, np.int64)))

    def _schedule(self, ticker: str) -> None:
        if ticker in self._scheduled:
            return
        end = self._first_end(ticker)
        if end is not None:
            heapq.heappush(self._heap, (end, ticker))
            self._scheduled.add(ticker)

    def _first_end(self, ticker: str) -> int | None:
        done = self._done.get(ticker)
        if done:
            return done[0].end
        tail = self._tails.get(ticker)
        return None if tail is None else _bar_end(tail)

    def _drain_to(self, cutoff: int, ordered: bool = True) -> list[Bar]:
        out: list[Bar] = []
        heap = self._heap
        while heap and heap[0][0] <= cutoff:
            _, ticker = heapq.heappop(heap)
            self._scheduled.discard(ticker)
            self._take_ready(ticker, cutoff, out)
            self._schedule(ticker)
        if ordered:
            out.sort(key=_ORDER)
        return out

    def _take_ready(self, ticker: str, cutoff: int, out: list[Bar]) -> None:
        done = self._done.get(ticker)
        if done:
            while done and done[0].end <= cutoff:
                out.append(done.popleft())
            if done:
                return
            del self._done[ticker]
        tail = self._tails.get(ticker)
        if tail is not None and _bar_end(tail) <= cutoff:
            del self._tails[ticker]
            out.extend(aggregate_seconds(ticker, tail, np.zeros(1, np.int64)))

    def _count(self, reason: str, n: int = 1) -> None:
        if n:
            self.rejected[reason] = self.rejected.get(reason, 0) + n


def _clean(t: I64, p: F64, s: F64) -> bool:
    """True when the trades are time-ordered with finite prices > 0 and sizes >= 0."""
    if len(t) <= 8:  # numpy reductions cost more than a loop on a handful of rows
        tl = t.tolist()
        return (
            all(0 < x < np.inf for x in p.tolist())
            and all(0 <= x < np.inf for x in s.tolist())
            and all(a <= b for a, b in pairwise(tl))
        )
    return bool(
        p.min() > 0 and p.max() < np.inf and s.min() >= 0 and s.max() < np.inf
        and (t[1:] >= t[:-1]).all()
    )


def _concat(a: Trades, b: Trades) -> Trades:
    return np.concatenate((a[0], b[0])), np.concatenate((a[1], b[1])), np.concatenate((a[2], b[2]))


def _bar_end(tail: Trades) -> int:
    return (int(tail[0][0]) // BAR_MS + 1) * BAR_MS


_ORDER = attrgetter("end", "ticker")  # the order bars are handed out in


def _bar_from_row(ticker: str, row: list[Any]) -> Bar:
    start, end, o, h, lo, c, v, vwap, n = row
    return Bar(ticker, int(start), int(end), o, h, lo, c, v, vwap, int(n))
