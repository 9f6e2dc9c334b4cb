"""Ticker symbols as dense integer ids, and a batch's rows grouped by ticker (segments).

A shard sees thousands of tickers with a few rows each per batch, so its detectors keep
per-ticker state in numpy arrays indexed by an id from one shared `TickerTable` and process a
batch across all tickers at once: `TickerTable.group` orders the rows by (ticker, arrival)
once, after which each ticker's rows form one contiguous segment (`Groups`) and per-ticker
quantities come from segment-wise numpy operations instead of a Python loop per ticker.

`seg_accumulate` is an exact sequential fold inside each segment, from a per-segment initial
value: the very values a per-ticker `ufunc.accumulate` gives, so running sums of floats stay
bit-identical to a per-ticker computation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]
Array = npt.NDArray[Any]

SHORT_SEGMENT = 32  # segments up to this long are folded together, one position per step
FEW_SEGMENTS = 4  # up to this many segments are folded one by one
RADIX_MAX = 2**15  # sort keys below this sort as int16 (numpy's stable sort is then a radix sort)


class TickerTable:
    """Ticker symbol <-> dense id (0, 1, ... in order of first sight), shared by the detectors."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self.names: list[str] = []
        self._rank: I64 | None = None  # alphabetical rank of each id (None: to recompute)

    def __len__(self) -> int:
        return len(self.names)

    def get(self, name: str) -> int | None:
        """The id of `name`, or None when it was never seen."""
        return self._ids.get(name)

    def add(self, name: str) -> int:
        """The id of `name`, registering it first if new."""
        found = self._ids.get(name)
        if found is not None:
            return found
        self._ids[name] = len(self.names)
        self.names.append(name)
        self._rank = None
        return len(self.names) - 1

    def ids(self, sym: npt.NDArray[np.str_]) -> I64:
        """The id of every symbol of `sym`, registering new ones."""
        names = sym.tolist()
        try:
            return np.fromiter(map(self._ids.__getitem__, names), np.int64, len(names))
        except KeyError:  # new tickers: rare once the session is under way
            return np.fromiter(map(self.add, names), np.int64, len(names))

    def group(self, sym: npt.NDArray[np.str_]) -> tuple[I64, Groups]:
        """Rows of `sym` ordered by (ticker name, arrival), and their per-ticker segments.

        Returns `order` (row indices of `sym` in that order) and the groups of the ordered rows.
        The ticker order is alphabetical, as `np.unique` sorts: the order per-ticker code used.
        """
        n = len(sym)
        if n == 0:
            return np.zeros(0, np.int64), Groups.empty()
        if n == 1 or (sym == sym[0]).all():
            return np.arange(n, dtype=np.int64), Groups.single(self.add(str(sym[0])), n)
        ids = self.ids(sym)
        key = self.rank()[ids]
        if len(self.names) < RADIX_MAX:
            key = key.astype(np.int16)
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        starts = np.flatnonzero(sorted_key[1:] != sorted_key[:-1]) + 1
        starts = np.concatenate(([0], starts)).astype(np.int64)
        return order, Groups(ids[order[starts]], starts, n)

    def rank(self) -> I64:
        """Alphabetical rank of every id."""
        if self._rank is None or len(self._rank) != len(self.names):
            order = np.argsort(np.array(self.names, dtype=np.str_), kind="stable")
            rank = np.empty(len(self.names), dtype=np.int64)
            rank[order] = np.arange(len(self.names))
            self._rank = rank
        return self._rank


class Groups:
    """Rows grouped by ticker: segment k is rows `starts[k]:ends[k]`, of ticker id `ids[k]`.

    Segments are non-empty, contiguous and cover all rows; a ticker has at most one segment.
    """

    __slots__ = ("_plan", "_row_seg", "ends", "ids", "lengths", "starts")

    def __init__(self, ids: I64, starts: I64, n_rows: int) -> None:
        self.ids = ids
        self.starts = starts
        self.ends = np.empty_like(starts)
        self.ends[:-1] = starts[1:]
        if len(starts):
            self.ends[-1] = n_rows
        self.lengths = self.ends - starts
        self._row_seg: I64 | None = None
        self._plan: tuple[I64, I64, I64] | None = None

    @classmethod
    def empty(cls) -> Groups:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), 0)

    @classmethod
    def single(cls, ticker_id: int, n_rows: int) -> Groups:
        """All `n_rows` rows belong to one ticker."""
        if n_rows == 0:
            return cls.empty()
        return cls(np.array([ticker_id], np.int64), np.zeros(1, np.int64), n_rows)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_rows(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    @property
    def row_seg(self) -> I64:
        """The segment index of every row."""
        if self._row_seg is None:
            self._row_seg = np.repeat(np.arange(len(self.ids), dtype=np.int64), self.lengths)
        return self._row_seg

    def plan(self) -> tuple[I64, I64, I64]:
        """The short segments longest first, their starts, and how many are longer than each
        position (for `seg_accumulate`)."""
        if self._plan is None:
            short = np.flatnonzero(self.lengths <= SHORT_SEGMENT)
            short = short[np.argsort(-self.lengths[short], kind="stable")]
            lengths = self.lengths[short]
            width = int(lengths[0]) if len(lengths) else 0
            positions = np.arange(1, width + 1)
            active = np.searchsorted(-lengths, -positions, side="right").astype(np.int64)
            self._plan = (short, self.starts[short], active)
        return self._plan

    def long_segments(self) -> I64:
        """Segments too long for the stepwise pass of `seg_accumulate`."""
        return np.flatnonzero(self.lengths > SHORT_SEGMENT)

    def take(self, keep: Mask) -> Groups:
        """The groups of the rows in `keep` (segments left empty are dropped)."""
        if len(self.ids) == 1:
            return Groups.single(int(self.ids[0]), int(np.count_nonzero(keep)))
        counts = np.bincount(self.row_seg[keep], minlength=len(self.ids))
        live = counts > 0
        counts = counts[live]
        starts = np.zeros(len(counts), dtype=np.int64)
        np.cumsum(counts[:-1], out=starts[1:])
        return Groups(self.ids[live], starts, int(counts.sum()))

    def first(self, values: Array) -> Array:
        """Each segment's first row of `values`."""
        return values[self.starts]

    def last(self, values: Array) -> Array:
        """Each segment's last row of `values`."""
        return values[self.ends - 1]

    def any(self, mask: Mask) -> Mask:
        """Whether each segment has a row in `mask`."""
        if len(self.ids) == 1:
            return np.array([bool(mask.any())])
        return np.bincount(self.row_seg[mask], minlength=len(self.ids)) > 0

    def count(self, mask: Mask) -> I64:
        """How many rows of each segment are in `mask`."""
        return np.bincount(self.row_seg[mask], minlength=len(self.ids)).astype(np.int64)


def shift_in(values: Array, groups: Groups, first: Array) -> Array:
    """Each row's predecessor in its segment; segment k's first row gets `first[k]`."""
    out = np.empty_like(values, dtype=np.result_type(values, first))
    out[1:] = values[:-1]
    out[groups.starts] = first
    return out


def seg_accumulate(ufunc: np.ufunc, values: Array, groups: Groups, init: Array) -> Array:
    """Inclusive running `ufunc` inside each segment, starting from `init[k]`: exact.

    Row i of segment k gets ufunc(...ufunc(init[k], values[start]), ..., values[i]), folded
    left to right as `ufunc.accumulate` does, whatever the segment lengths.
    """
    dtype = np.result_type(values, init)
    out = np.empty(len(values), dtype=dtype)
    if len(groups) == 0:
        return out
    if len(groups) <= FEW_SEGMENTS:  # one accumulate per segment is then cheapest
        for k in range(len(groups)):
            _fold_one(ufunc, values, int(groups.starts[k]), int(groups.ends[k]), init[k], out)
        return out
    short, starts, active = groups.plan()
    for k in groups.long_segments().tolist():
        _fold_one(ufunc, values, int(groups.starts[k]), int(groups.ends[k]), init[k], out)
    if len(short):
        # One step per position: the running value of every segment still that long.
        acc = init[short].astype(dtype)
        for position, n in enumerate(active.tolist()):
            rows = starts[:n] + position
            acc_n = acc[:n]
            ufunc(acc_n, values[rows], out=acc_n)
            out[rows] = acc_n
    return out


def _fold_one(ufunc: np.ufunc, values: Array, a: int, b: int, init: Any, out: Array) -> None:
    """`seg_accumulate` of the one segment `a:b`."""
    buf = np.empty(b - a + 1, dtype=out.dtype)
    buf[0] = init
    buf[1:] = values[a:b]
    ufunc.accumulate(buf, out=buf)
    out[a:b] = buf[1:]


def grow(array: Array, n: int, fill: Any) -> Array:
    """`array` with at least `n` rows (new rows set to `fill`), reallocated by doubling."""
    if len(array) >= n:
        return array
    out = np.full((max(n, 2 * len(array), 64), *array.shape[1:]), fill, dtype=array.dtype)
    out[: len(array)] = array
    return out
