"""Per-second bars built from a ticker's eligible trades (the input of Surge and Trend).

A bar covers one second of event time, `[start, start + 1000)` with `start` aligned to the
second, like Polygon's `A` aggregates. The builder pools the accepted trades of all tickers
raw, in arrival order, one chunk per call, and turns the seconds into `Bar`s when `drain`
hands them out: once the caller's watermark has passed a bar's end by `grace_ms`, every due
second of every ticker is aggregated in one pass of numpy segment reductions. A trade that
arrives for a bar already handed out is rejected as `late_bar_trade`. Each bar is aggregated
exactly once from all of its trades, so the bars do not depend on how the trades were split
into calls (nor on how many tickers a call carries: `add_groups` takes a whole batch).

At most `max_pending_bars` finished bars wait per ticker (the oldest are dropped and counted
as `bar_overflow`). Feed bars (`add_bars`) wait in a per-ticker queue; a ticker's pooled
trades join that queue as bars first, so its bars keep their order.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
from msgspec.structs import astuple

from actors.detection.ticker_table import RADIX_MAX, Groups, TickerTable, grow, seg_accumulate
from config.detection import BarConfig

BAR_MS = 1_000
NEVER = -(2**62)  # "no time yet" for event-time watermarks (Unix ms); also "no second"
NO_SECOND = 2**62  # the oldest second of an empty pool: after every real one

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]
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
    return aggregate([ticker] * len(starts), trades, starts)


def aggregate(tickers: Sequence[str], trades: Trades, starts: I64) -> list[Bar]:
    """`aggregate_seconds` of segments of several tickers: segment i is of `tickers[i]`."""
    if len(starts) == 0:
        return []
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
        tickers,
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
        for ticker, start, o, h, lo, cl, vol, vw, n in columns
    ]


class _Chunk:
    """Pooled trades of one call: rows in arrival order, each with its ticker id and second."""

    __slots__ = ("first", "ids", "last", "p", "s", "sec", "t")

    def __init__(self, ids: I64, t: I64, p: F64, s: F64, sec: I64) -> None:
        self.ids, self.t, self.p, self.s, self.sec = ids, t, p, s, sec
        self.first, self.last = int(sec.min()), int(sec.max())

    def take(self, keep: Mask) -> _Chunk:
        return _Chunk(self.ids[keep], self.t[keep], self.p[keep], self.s[keep], self.sec[keep])


class SecondBarBuilder:
    """Build, hold and hand out per-second bars of many tickers (pure, event time only)."""

    def __init__(self, config: BarConfig, table: TickerTable | None = None) -> None:
        self.config = config
        self.rejected: dict[str, int] = {}
        self._table = table if table is not None else TickerTable()
        self._pool: list[_Chunk] = []  # accepted trades not yet aggregated, oldest call first
        self._pool_first = NO_SECOND  # the oldest second in the pool (NO_SECOND: empty)
        self._queue: dict[int, deque[Bar]] = {}  # ticker id -> finished bars not yet drained
        self._heap: list[tuple[int, int]] = []  # (end of the oldest queued bar, ticker id)
        self._scheduled: set[int] = set()
        self._drained_to = NEVER  # every bar ending at or before this was handed out
        self._allocate()

    def _allocate(self) -> None:
        self._last_t = np.full(0, NEVER, np.int64)  # newest accepted trade time per ticker id
        self._open = np.full(0, NEVER, np.int64)  # newest pooled second (NEVER: none pooled)
        self._seconds = np.zeros(0, np.int64)  # pooled seconds (each a pending bar)
        self._queued = np.zeros(0, np.int64)  # bars in the ticker's queue

    def _ensure(self) -> None:
        n = len(self._table)
        if len(self._last_t) < n:
            self._last_t = grow(self._last_t, n, NEVER)
            self._open = grow(self._open, n, NEVER)
            self._seconds = grow(self._seconds, n, 0)
            self._queued = grow(self._queued, n, 0)

    # -- input -------------------------------------------------------------------------------

    def add_trades(self, ticker: str, t: I64, p: F64, s: F64) -> None:
        """Add eligible trades of one ticker (time-ordered); bad or late rows are counted."""
        if len(t):
            self.add_groups(Groups.single(self._table.add(ticker), len(t)), t, p, s)

    def add_groups(
        self, groups: Groups, t: I64, p: F64, s: F64, *, checked: bool = False
    ) -> None:
        """`add_trades` for many tickers at once: `groups` segments the rows by ticker.

        `checked`: the rows passed the validity check (the engine's path), so prices and
        sizes are not judged again; only lateness is.
        """
        if len(t) == 0:
            return
        self._ensure()
        ids = groups.ids
        keep = self._valid(t, p, s, checked)
        times = t if keep is None else np.where(keep, t, NEVER)
        running = seg_accumulate(np.maximum, times, groups, self._last_t[ids])
        # A trade from an earlier second than one already seen cannot join its bar any more;
        # one from the same second joins it in arrival order.
        behind = (t // BAR_MS) < (running // BAR_MS)
        if behind.any():
            if keep is not None:
                behind &= keep
            self._count("out_of_order", int(np.count_nonzero(behind)))
            keep = ~behind if keep is None else keep & ~behind
        self._last_t[ids] = groups.last(running)
        if keep is not None:
            groups, t, p, s = groups.take(keep), t[keep], p[keep], s[keep]
        if len(t):
            self._pool_rows(groups, t, p, s)

    def _valid(self, t: I64, p: F64, s: F64, checked: bool) -> Mask | None:
        """The rows that may join a bar (None: all); the others are counted by reason."""
        keep = None if checked else self._good_values(p, s)
        late = t < self._late_before()
        if late.any():
            self._count("late_bar_trade", int(np.count_nonzero(late if keep is None
                                                               else late & keep)))
            keep = ~late if keep is None else keep & ~late
        return keep

    def _good_values(self, p: F64, s: F64) -> Mask | None:
        """Rows with a usable price and size (None: all), for input that was not judged."""
        good_price = (p > 0) & (p < np.inf)
        good = good_price & (s >= 0) & (s < np.inf)
        if good.all():
            return None
        self._count("bad_price", int(np.count_nonzero(~good_price)))
        self._count("bad_size", int(np.count_nonzero(~good & good_price)))
        return good

    def _pool_rows(self, groups: Groups, t: I64, p: F64, s: F64) -> None:
        ids = groups.ids
        sec = t // BAR_MS
        opens = np.ones(len(t), dtype=bool)  # rows that open a new second of their ticker
        opens[1:] = sec[1:] != sec[:-1]
        opens[groups.starts] = groups.first(sec) != self._open[ids]
        self._seconds[ids] += groups.count(opens)
        self._open[ids] = groups.last(sec)
        chunk = _Chunk(np.repeat(ids, groups.lengths), t, p, s, sec)
        self._pool.append(chunk)
        self._pool_first = min(self._pool_first, chunk.first)
        finished = self._seconds[ids] - 1 + self._queued[ids]
        for i in ids[finished > self.config.max_pending_bars].tolist():
            self._queue_pooled(i, keep_open=True)

    def add_bar(self, bar: Bar) -> None:
        """Add a bar delivered by the feed (Polygon `A`); it is handed out like built ones."""
        self.add_bars(bar.ticker, [bar])

    def add_bars(self, ticker: str, bars: list[Bar]) -> None:
        """Add feed bars of one ticker in arrival order: `add_bar` for each, in one go."""
        i = self._table.add(ticker)
        self._ensure()
        last = int(self._last_t[i])
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
        self._queue_pooled(i, keep_open=False)
        self._last_t[i] = last
        self._append_queue(i, kept)

    # -- output ------------------------------------------------------------------------------

    def drain(self, watermark_ms: int, ordered: bool = True) -> list[Bar]:
        """Return the bars with `end <= watermark_ms - grace_ms`, ordered by (end, ticker)
        (unordered when not `ordered`: cheaper, for callers that drop them)."""
        self._drained_to = max(self._drained_to, watermark_ms - self.config.grace_ms)
        return self._drain_to(self._drained_to, ordered)

    def drain_all(self, ordered: bool = True) -> list[Bar]:
        """Return every pending bar, the still-open ones included (end of a stream)."""
        ends = [b[-1].end for b in self._queue.values() if b]
        ends += [(chunk.last + 1) * BAR_MS for chunk in self._pool]
        if ends:
            self._drained_to = max(self._drained_to, *ends)
        return self._drain_to(self._drained_to, ordered)

    def pending(self) -> int:
        """The number of bars held (finished or open)."""
        return sum(len(b) for b in self._queue.values()) + int(self._seconds.sum())

    # -- state -------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Plain data (msgpack/JSON-able) from which `restore` rebuilds this builder."""
        names = self._table.names
        done = {i: [list(astuple(b))[1:] for b in q] for i, q in self._queue.items() if q}
        tails: dict[str, list[list[Any]]] = {}
        ids, (t, p, s), starts = self._seconds_of(self._pool)
        bars = aggregate([names[i] for i in ids[starts].tolist()], (t, p, s), starts)
        ends = np.append(starts[1:], len(t))
        for k, (i, bar) in enumerate(zip(ids[starts].tolist(), bars, strict=True)):
            if int(t[starts[k]] // BAR_MS) != int(self._open[i]):
                done.setdefault(i, []).append(list(astuple(bar))[1:])
            else:
                a, b = int(starts[k]), int(ends[k])
                tails[names[i]] = [t[a:b].tolist(), p[a:b].tolist(), s[a:b].tolist()]
        seen = np.flatnonzero(self._last_t != NEVER).tolist()
        return {
            "drained_to": self._drained_to,
            "rejected": dict(self.rejected),
            "last_t": {names[i]: int(self._last_t[i]) for i in seen},
            "tails": tails,
            "done": {names[i]: rows for i, rows in done.items()},
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Replace this builder's state with a `snapshot`."""
        self.rejected = {str(k): int(v) for k, v in data["rejected"].items()}
        self._drained_to = int(data["drained_to"])
        self._pool, self._queue, self._heap, self._scheduled = [], {}, [], set()
        self._pool_first = NO_SECOND
        self._allocate()
        for name, last_t in data["last_t"].items():
            i = self._table.add(str(name))
            self._ensure()
            self._last_t[i] = int(last_t)
        for name, rows in data["done"].items():
            i = self._table.add(str(name))
            self._ensure()
            self._append_queue(i, [_bar_from_row(str(name), row) for row in rows])
        for name, (t, p, s) in data["tails"].items():
            if t:
                i = self._table.add(str(name))
                self._ensure()
                self._pool_rows(Groups.single(i, len(t)), np.asarray(t, np.int64),
                                np.asarray(p, np.float64), np.asarray(s, np.float64))

    # -- internals ---------------------------------------------------------------------------

    def _late_before(self) -> int:
        """Trades before this instant belong to bars already handed out."""
        return (self._drained_to // BAR_MS) * BAR_MS

    def _take_pool(self, select: Callable[[_Chunk], Mask | bool]) -> list[_Chunk]:
        """Remove the pooled rows `select` picks (True: a whole chunk); return them in order."""
        taken: list[_Chunk] = []
        kept: list[_Chunk] = []
        for chunk in self._pool:
            mask = select(chunk)
            if isinstance(mask, bool):
                (taken if mask else kept).append(chunk)
            elif not mask.any():
                kept.append(chunk)
            elif mask.all():
                taken.append(chunk)
            else:
                taken.append(chunk.take(mask))
                kept.append(chunk.take(~mask))
        self._pool = kept
        self._pool_first = min((c.first for c in kept), default=NO_SECOND)
        return taken

    def _seconds_of(self, chunks: list[_Chunk]) -> tuple[I64, Trades, I64]:
        """The rows of `chunks` ordered by (ticker id, arrival), and where each (ticker,
        second) starts: (ticker id per row, trades, starts)."""
        if not chunks:
            empty = np.zeros(0, np.int64)
            return empty, (empty, np.zeros(0), np.zeros(0)), empty
        ids = np.concatenate([c.ids for c in chunks])
        key = ids.astype(np.int16) if len(self._table) < RADIX_MAX else ids
        order = np.argsort(key, kind="stable")
        ids = ids[order]
        t, p, s = (np.concatenate([getattr(c, f) for c in chunks])[order] for f in "tps")
        sec = np.concatenate([c.sec for c in chunks])[order]
        new = np.ones(len(ids), dtype=bool)
        new[1:] = (ids[1:] != ids[:-1]) | (sec[1:] != sec[:-1])
        return ids, (t, p, s), np.flatnonzero(new)

    def _pooled_bars(self, chunks: list[_Chunk]) -> list[Bar]:
        """Aggregate whole pooled seconds (all of a ticker's rows of each second are in
        `chunks`) and take them off the per-ticker counts."""
        ids, trades, starts = self._seconds_of(chunks)
        if len(starts) == 0:
            return []
        owners = ids[starts]
        np.subtract.at(self._seconds, owners, 1)
        emptied = owners[self._seconds[owners] == 0]
        self._open[emptied] = NEVER
        names = self._table.names
        return aggregate([names[i] for i in owners.tolist()], trades, starts)

    def _queue_pooled(self, i: int, keep_open: bool) -> None:
        """Turn ticker `i`'s pooled seconds (but its newest with `keep_open`) into queued bars."""
        if self._seconds[i] <= (1 if keep_open else 0):
            return
        newest = int(self._open[i])

        def mine(chunk: _Chunk) -> Mask:
            hit: Mask = np.equal(chunk.ids, i)
            return hit & (chunk.sec != newest) if keep_open else hit

        self._append_queue(i, self._pooled_bars(self._take_pool(mine)))
        if keep_open:
            self._open[i] = newest  # `_pooled_bars` forgets it when its count reaches 0

    def _append_queue(self, i: int, bars: list[Bar]) -> None:
        queue = self._queue.get(i)
        if queue is None:
            queue = self._queue[i] = deque(maxlen=self.config.max_pending_bars)
        overflow = len(queue) + len(bars) - self.config.max_pending_bars
        if overflow > 0:
            self._count("bar_overflow", overflow)
        queue.extend(bars)
        self._queued[i] = len(queue)
        self._schedule(i)

    def _schedule(self, i: int) -> None:
        queue = self._queue.get(i)
        if queue and i not in self._scheduled:
            heapq.heappush(self._heap, (queue[0].end, i))
            self._scheduled.add(i)

    def _drain_to(self, cutoff: int, ordered: bool = True) -> list[Bar]:
        out: list[Bar] = []
        heap = self._heap
        while heap and heap[0][0] <= cutoff:
            _, i = heapq.heappop(heap)
            self._scheduled.discard(i)
            queue = self._queue[i]
            while queue and queue[0].end <= cutoff:
                out.append(queue.popleft())
            self._queued[i] = len(queue)
            if queue:
                self._schedule(i)
            else:
                del self._queue[i]
        due = cutoff // BAR_MS  # a second ends by the cutoff when it is below this one
        if self._pool_first >= due:  # nothing pooled is due (the usual case between seconds)
            if ordered:
                out.sort(key=_ORDER)
            return out

        def ready(chunk: _Chunk) -> Mask | bool:
            if chunk.last < due or chunk.first >= due:
                return chunk.last < due
            return chunk.sec < due

        out.extend(self._pooled_bars(self._take_pool(ready)))
        if ordered:
            out.sort(key=_ORDER)
        return out

    def _count(self, reason: str, n: int = 1) -> None:
        if n:
            self.rejected[reason] = self.rejected.get(reason, 0) + n


_ORDER = attrgetter("end", "ticker")  # the order bars are handed out in


def _bar_from_row(ticker: str, row: list[Any]) -> Bar:
    start, end, o, h, lo, c, v, vwap, n = row
    return Bar(ticker, int(start), int(end), o, h, lo, c, v, vwap, int(n))
