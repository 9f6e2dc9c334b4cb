"""Frozen copy (before the issue-6 many-ticker work) of actors/validation.py.

Input validation for a detector shard: bad rows are dropped and counted by reason.

Rules, in the order they are checked (a row is counted once, under its first failing rule):

- ``duplicate``: the row's `seq` is not above every `seq` this validator has already seen
  (a batch re-sent after a shard restart, or a row repeated inside a batch). `seq` is the
  ingest's sequence number, unique and increasing, so it is the only identity that tells a
  re-sent row from a genuine second trade with the same time, price and size (those happen:
  one order filling against several resting orders prints several identical trades).
- ``bad_ticker``: empty symbol.
- ``bad_price``: price ≤ 0, NaN or infinite.
- ``bad_size``: size NaN or infinite; ``zero_size``: size ≤ 0.
- ``out_of_order``: event time older than the ticker's latest accepted time minus
  `out_of_order_tolerance_ms`.
- ``price_jump``: |p / last − 1| × 100 > `max_jump_pct` while the ticker's last accepted
  price is at most `jump_window_ms` old. The rejected price does not become `last`, so one
  absurd print cannot drag the reference with it; after the window a new level is accepted.

Bars (`accept_bars`) share the `seq` rule; a bar also needs finite prices > 0, a volume ≥ 0
(else ``bad_size``), low ≤ open, close ≤ high and end > start (else ``bad_bar``).

Row checks are vectorised over the whole batch; per-ticker checks over a ticker's rows, with a
row-by-row loop only for a segment where a price jump is suspected (jumps are rare). A rejected
row changes no state: neither the ticker's latest time nor its reference price.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import numpy.typing as npt

from config.detection import ValidationConfig
from schemas.batches import F64, I64, BarBatch, TradeBatch

Mask = npt.NDArray[np.bool_]

NO_SEQ = -(2**62)
NO_TIME = -(2**62)


class TickerValidity:
    """What the validator remembers of one ticker."""

    __slots__ = ("last_p", "last_p_t", "last_t")

    def __init__(self, last_t: int = NO_TIME, last_p: float = 0.0, last_p_t: int = NO_TIME):
        self.last_t = last_t  # latest accepted event time
        self.last_p = last_p  # price of the latest accepted trade (0: none yet)
        self.last_p_t = last_p_t  # its event time


class Validator:
    """Stateful validation of trade batches; counts every rejected row by reason."""

    def __init__(self, config: ValidationConfig | None = None) -> None:
        self.config = config or ValidationConfig()
        self.last_seq = NO_SEQ
        self.rejected: Counter[str] = Counter()
        self._tickers: dict[str, TickerValidity] = {}

    # -- row rules (whole batch) -------------------------------------------------------

    def accept_rows(self, batch: TradeBatch) -> Mask:
        """Mask of rows that pass the row rules; advances `last_seq` past the batch."""
        n = len(batch)
        if n == 0:
            return np.ones(0, dtype=bool)
        ok = self._fresh_seq(batch.seq)
        self._reject(ok, batch.sym == "", "bad_ticker")
        p = batch.p
        self._reject(ok, ~(np.isfinite(p) & (p > 0)), "bad_price")
        s = batch.s
        self._reject(ok, ~np.isfinite(s), "bad_size")
        self._reject(ok, ~(s > 0), "zero_size")
        return ok

    def accept_bars(self, batch: BarBatch) -> Mask:
        """Mask of bars that pass the row rules (seq, ticker, prices, volume, shape)."""
        if len(batch) == 0:
            return np.ones(0, dtype=bool)
        ok = self._fresh_seq(batch.seq)
        self._reject(ok, batch.sym == "", "bad_ticker")
        prices = np.stack([batch.o, batch.h, batch.l, batch.c])
        good_prices = np.all(np.isfinite(prices) & (prices > 0), axis=0)
        self._reject(ok, np.logical_not(good_prices), "bad_price")
        self._reject(ok, ~(np.isfinite(batch.v) & (batch.v >= 0)), "bad_size")
        lo, hi = np.minimum(batch.o, batch.c), np.maximum(batch.o, batch.c)
        inside = (batch.l <= lo) & (batch.h >= hi)
        self._reject(ok, ~inside | (batch.end <= batch.start), "bad_bar")
        return ok

    def _fresh_seq(self, seq: I64) -> Mask:
        """Rows whose seq exceeds the last seen one and every earlier seq in the batch."""
        seen = np.empty(len(seq), dtype=np.int64)
        seen[0] = self.last_seq
        if len(seq) > 1:
            np.maximum.accumulate(seq[:-1], out=seen[1:])
            np.maximum(seen[1:], self.last_seq, out=seen[1:])
        ok = seq > seen
        self.last_seq = max(self.last_seq, int(seq.max()))
        dup = int(len(seq) - np.count_nonzero(ok))
        if dup:
            self.rejected["duplicate"] += dup
        return ok

    def _reject(self, ok: Mask, bad: Mask, reason: str) -> None:
        hit = bad & ok
        count = int(np.count_nonzero(hit))
        if count:
            self.rejected[reason] += count
            ok &= ~hit

    # -- ticker rules (one ticker's rows, in arrival order) ---------------------------

    def accept_ticker(self, ticker: str, t: I64, p: F64) -> Mask:
        """Mask of a ticker's rows (arrival order) that are in time order and not absurd jumps.

        Vectorised when no jump is suspected (the usual case); otherwise the segment is
        checked row by row, since a rejected print must not become the reference.
        """
        state = self._tickers.get(ticker)
        if state is None:
            state = self._tickers[ticker] = TickerValidity()
        if len(t) == 0:
            return np.ones(0, dtype=bool)
        ok = self._in_order(state.last_t, t)
        idx = np.flatnonzero(ok)
        if len(idx) and self._jump_suspected(state, t[idx], p[idx]):
            return self._row_by_row(state, t, p)
        late = len(t) - len(idx)
        if late:
            self.rejected["out_of_order"] += late
        if len(idx):
            state.last_t = max(state.last_t, int(t[idx].max()))
            state.last_p, state.last_p_t = float(p[idx[-1]]), int(t[idx[-1]])
        return ok

    def _in_order(self, last_t: int, t: I64) -> Mask:
        # Rejected rows are older than the running max, so including them in the max is
        # harmless: the running max over all rows equals the max over accepted rows.
        prev = np.empty(len(t), dtype=np.int64)
        prev[0] = last_t
        if len(t) > 1:
            np.maximum.accumulate(t[:-1], out=prev[1:])
            np.maximum(prev[1:], last_t, out=prev[1:])
        ok: Mask = t >= prev - self.config.out_of_order_tolerance_ms
        return ok

    def _jump_suspected(self, state: TickerValidity, t: I64, p: F64) -> bool:
        """Whether any row jumps from its predecessor (all rows taken as accepted)."""
        cfg = self.config
        prev_p = np.empty(len(p))
        prev_p[0] = state.last_p
        prev_p[1:] = p[:-1]
        prev_t = np.empty(len(t), dtype=np.int64)
        prev_t[0] = state.last_p_t
        prev_t[1:] = t[:-1]
        known = prev_p > 0
        ratio = p / np.where(known, prev_p, 1.0)
        jump = known & (t - prev_t <= cfg.jump_window_ms)
        jump &= np.abs(ratio - 1.0) * 100.0 > cfg.max_jump_pct
        return bool(jump.any())

    def _row_by_row(self, state: TickerValidity, t: I64, p: F64) -> Mask:
        cfg = self.config
        ok = np.ones(len(t), dtype=bool)
        last_t, last_p, last_p_t = state.last_t, state.last_p, state.last_p_t
        for i, (ti, pi) in enumerate(zip(t.tolist(), p.tolist(), strict=True)):
            if ti < last_t - cfg.out_of_order_tolerance_ms:
                ok[i] = False
                self.rejected["out_of_order"] += 1
                continue
            recent = last_p > 0 and ti - last_p_t <= cfg.jump_window_ms
            if recent and abs(pi / last_p - 1.0) * 100.0 > cfg.max_jump_pct:
                ok[i] = False
                self.rejected["price_jump"] += 1
                continue
            last_t, last_p, last_p_t = max(last_t, ti), pi, ti
        state.last_t, state.last_p, state.last_p_t = last_t, last_p, last_p_t
        return ok

    # -- convenience and state ---------------------------------------------------------

    def validate(self, batch: TradeBatch) -> TradeBatch:
        """The accepted rows of `batch`, in arrival order (both rule sets applied)."""
        ok = self.accept_rows(batch)
        if not ok.any():
            return batch.take(ok)
        idx = np.flatnonzero(ok)
        sym = batch.sym[idx]
        for ticker in dict.fromkeys(sym.tolist()):
            rows = idx[sym == ticker]
            ok[rows] = self.accept_ticker(ticker, batch.t[rows], batch.p[rows])
        return batch.take(ok)

    def last_price(self, ticker: str) -> float | None:
        """The ticker's latest accepted price, if any."""
        state = self._tickers.get(ticker)
        return state.last_p if state is not None and state.last_p > 0 else None

    def snapshot(self) -> dict[str, Any]:
        """Plain-data state (msgpack-able)."""
        return {
            "last_seq": self.last_seq,
            "rejected": dict(self.rejected),
            "tickers": {k: [v.last_t, v.last_p, v.last_p_t] for k, v in self._tickers.items()},
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Load a `snapshot()`."""
        self.last_seq = int(data["last_seq"])
        self.rejected = Counter({str(k): int(v) for k, v in data["rejected"].items()})
        self._tickers = {
            str(k): TickerValidity(int(v[0]), float(v[1]), int(v[2]))
            for k, v in data["tickers"].items()
        }
