"""Columnar batches that travel between actors (one Ray call per batch, never per tick).

A batch is a set of equal-length numpy arrays: Ray pickles them with protocol 5, so a batch
crosses a process boundary as a handful of buffers, not as millions of Python objects.

`valid` is the verdict of the one validity check (`actors/market/validity.py`): None until
the ingest has judged the rows, then a mask (True = the row may be used) that every later hop
trusts instead of checking prices again. `take` and `concat` carry it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

# Trade eligibility flags, computed at ingest from the sale conditions
# (docs/trade-conditions.md §2-3). FORM_T is kept apart: whether a Form T print may move
# high/low depends on the session, which only the engine knows.
FLAG_HIGH_LOW = 1
FLAG_LAST = 2
FLAG_VOLUME = 4
FLAG_FORM_T = 8  # condition 12 present
FLAGS_REGULAR = FLAG_HIGH_LOW | FLAG_LAST | FLAG_VOLUME

SYMBOL_DTYPE = np.dtype("<U12")

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]
Str = npt.NDArray[np.str_]
Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class TradeBatch:
    """Trades in arrival order. `seq` is the ingest's sequence number (unique, increasing)."""

    sym: Str
    t: I64  # event time, Unix ms
    p: F64  # price, $
    s: F64  # size, shares
    flags: U8
    seq: I64
    valid: Mask | None = None  # the validity verdict; None = not judged yet

    def __len__(self) -> int:
        return len(self.t)

    @classmethod
    def empty(cls) -> TradeBatch:
        return cls.from_columns([], [], [], [], [], [])

    @classmethod
    def from_columns(
        cls,
        sym: Sequence[str] | Str,
        t: Sequence[int] | I64,
        p: Sequence[float] | F64,
        s: Sequence[float] | F64,
        flags: Sequence[int] | U8 | None = None,
        seq: Sequence[int] | I64 | None = None,
    ) -> TradeBatch:
        n = len(t)
        return cls(
            sym=np.asarray(sym, dtype=SYMBOL_DTYPE),
            t=np.asarray(t, dtype=np.int64),
            p=np.asarray(p, dtype=np.float64),
            s=np.asarray(s, dtype=np.float64),
            flags=(
                np.full(n, FLAGS_REGULAR, np.uint8)
                if flags is None
                else np.asarray(flags, dtype=np.uint8)
            ),
            seq=np.arange(n, dtype=np.int64) if seq is None else np.asarray(seq, dtype=np.int64),
        )

    def take(self, index: npt.NDArray[Any] | slice) -> TradeBatch:
        """Rows selected by a boolean mask, an index array or a slice."""
        return TradeBatch(
            self.sym[index], self.t[index], self.p[index], self.s[index],
            self.flags[index], self.seq[index], None if self.valid is None else self.valid[index],
        )

    @staticmethod
    def concat(batches: Iterable[TradeBatch]) -> TradeBatch:
        items = [b for b in batches if len(b)]
        if not items:
            return TradeBatch.empty()
        if len(items) == 1:
            return items[0]
        return TradeBatch(
            np.concatenate([b.sym for b in items]),
            np.concatenate([b.t for b in items]),
            np.concatenate([b.p for b in items]),
            np.concatenate([b.s for b in items]),
            np.concatenate([b.flags for b in items]),
            np.concatenate([b.seq for b in items]),
            _concat_valid(items),
        )

    def rows(self) -> Iterator[tuple[str, int, float, float, int, int]]:
        """Row tuples (slow path: tests and debugging)."""
        return zip(
            self.sym.tolist(), self.t.tolist(), self.p.tolist(), self.s.tolist(),
            self.flags.tolist(), self.seq.tolist(), strict=True,
        )


@dataclass(frozen=True, slots=True)
class BarBatch:
    """Aggregate bars (Polygon `A` per-second or `AM` per-minute), columnar."""

    sym: Str
    start: I64  # bar start, Unix ms
    end: I64  # bar end, Unix ms
    o: F64
    h: F64
    l: F64  # noqa: E741
    c: F64
    v: F64  # bar volume
    vw: F64  # bar VWAP (0 when unknown)
    seq: I64
    valid: Mask | None = None  # the validity verdict; None = not judged yet

    def __len__(self) -> int:
        return len(self.start)

    @classmethod
    def from_columns(cls, **cols: Any) -> BarBatch:
        n = len(cols["start"])
        vw = cols.get("vw")
        seq = cols.get("seq")
        return cls(
            sym=np.asarray(cols["sym"], dtype=SYMBOL_DTYPE),
            start=np.asarray(cols["start"], dtype=np.int64),
            end=np.asarray(cols["end"], dtype=np.int64),
            o=np.asarray(cols["o"], dtype=np.float64),
            h=np.asarray(cols["h"], dtype=np.float64),
            l=np.asarray(cols["l"], dtype=np.float64),
            c=np.asarray(cols["c"], dtype=np.float64),
            v=np.asarray(cols["v"], dtype=np.float64),
            vw=np.zeros(n) if vw is None else np.asarray(vw, dtype=np.float64),
            seq=np.arange(n, dtype=np.int64) if seq is None else np.asarray(seq, dtype=np.int64),
        )

    @classmethod
    def empty(cls) -> BarBatch:
        return cls.from_columns(sym=[], start=[], end=[], o=[], h=[], l=[], c=[], v=[])

    def take(self, index: npt.NDArray[Any] | slice) -> BarBatch:
        return BarBatch(
            self.sym[index], self.start[index], self.end[index], self.o[index], self.h[index],
            self.l[index], self.c[index], self.v[index], self.vw[index], self.seq[index],
            None if self.valid is None else self.valid[index],
        )

    @staticmethod
    def concat(batches: Iterable[BarBatch]) -> BarBatch:
        items = [b for b in batches if len(b)]
        if not items:
            return BarBatch.empty()
        if len(items) == 1:
            return items[0]
        sym, start, end, o, h, low, c, v, vw, seq = (
            np.concatenate([getattr(b, f) for b in items]) for f in _BAR_COLUMNS
        )
        return BarBatch(sym, start, end, o, h, low, c, v, vw, seq, _concat_valid(items))


Batch = TradeBatch | BarBatch  # what sources hand over and shards take
_BAR_COLUMNS = tuple(f for f in BarBatch.__slots__ if f != "valid")


def _concat_valid(items: Sequence[TradeBatch] | Sequence[BarBatch]) -> Mask | None:
    """The joined verdict: judged only if every part was."""
    masks = [b.valid for b in items]
    if any(m is None for m in masks):
        return None
    return np.concatenate(masks)  # type: ignore[arg-type]
