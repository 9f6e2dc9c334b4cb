"""The one judgement of a row's values: is this a trade (or bar) the system may use at all?

Stateless rules, checked in this order (a row is counted once, under its first failing rule):

- ``bad_ticker``: empty symbol;
- ``bad_price``: a price that is NaN, infinite, ≤ 0 or above `max_price`;
- ``bad_size``: a size (bar volume) that is NaN, infinite or negative;
- ``zero_size`` (trades only): a size of exactly 0 — a print that traded nothing;
- ``bad_bar`` (bars only): low above the open or close, high below them, or end ≤ start.

The ingest runs these checks once, before routing, and the verdict travels with the batch
(`TradeBatch.valid`, `BarBatch.valid`), so no later hop checks a price again. A batch that did
not come through the ingest (offline detection, tests) arrives unchecked (`valid is None`) and
the shard's validator runs the same functions. What a source could not even decode (a symbol
too long for the columns, a time that is not a time, a CSV field that is not a number) is
dropped and counted by the source; the rules that need a ticker's history (duplicates, out of
order, price jumps) are the validator's (`actors/detection/validation.py`).
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import numpy.typing as npt

from schemas.batches import F64, BarBatch, TradeBatch

Mask = npt.NDArray[np.bool_]


def check_trades(
    batch: TradeBatch, counts: Counter[str], *, max_price: float = math.inf,
    ok: Mask | None = None,
) -> Mask:
    """The rows of `batch` that pass every trade rule; failures are added to `counts`.

    `ok`: the rows to judge (the others are neither passed nor counted), narrowed in place
    and returned; by default every row.
    """
    ok = np.ones(len(batch), dtype=bool) if ok is None else ok
    _reject(ok, batch.sym == "", "bad_ticker", counts)
    _reject(ok, ~_good_prices(batch.p, max_price), "bad_price", counts)
    s = batch.s
    _reject(ok, ~(np.isfinite(s) & (s >= 0)), "bad_size", counts)
    _reject(ok, s == 0, "zero_size", counts)
    return ok


def check_bars(
    batch: BarBatch, counts: Counter[str], *, max_price: float = math.inf,
    ok: Mask | None = None,
) -> Mask:
    """The bars of `batch` that pass every bar rule; failures are added to `counts` (`ok` as
    for `check_trades`)."""
    ok = np.ones(len(batch), dtype=bool) if ok is None else ok
    _reject(ok, batch.sym == "", "bad_ticker", counts)
    prices = (batch.o, batch.h, batch.l, batch.c)
    good = np.logical_and.reduce([_good_prices(p, max_price) for p in prices])
    _reject(ok, ~good, "bad_price", counts)
    _reject(ok, ~(np.isfinite(batch.v) & (batch.v >= 0)), "bad_size", counts)
    lo, hi = np.minimum(batch.o, batch.c), np.maximum(batch.o, batch.c)
    inside = (batch.l <= lo) & (batch.h >= hi)
    _reject(ok, ~inside | (batch.end <= batch.start), "bad_bar", counts)
    return ok


def _good_prices(p: F64, max_price: float) -> Mask:
    good: Mask = np.isfinite(p) & (p > 0)
    if max_price < math.inf:
        good &= p <= max_price
    return good


def _reject(ok: Mask, bad: Mask, reason: str, counts: Counter[str]) -> None:
    hit = bad & ok
    count = int(np.count_nonzero(hit))
    if count:
        counts[reason] += count
        ok &= ~hit
