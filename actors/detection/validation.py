"""Input validation for a detector shard: bad rows are dropped and counted by reason.

Rules, in the order they are checked (a row is counted once, under its first failing rule):

- ``duplicate``: the row's `seq` is not above every `seq` this validator has already seen
  (a batch re-sent after a shard restart, or a row repeated inside a batch). `seq` is the
  ingest's sequence number, unique and increasing, so it is the only identity that tells a
  re-sent row from a genuine second trade with the same time, price and size (those happen:
  one order filling against several resting orders prints several identical trades).
- the value rules of `actors/market/validity.py` (``bad_ticker``, ``bad_price``, ``bad_size``,
  ``zero_size``; for bars ``bad_bar``), only for a batch that was not judged yet: a batch from
  the ingest carries the verdict (`valid`) and is not checked again.
- ``out_of_order``: event time older than the ticker's latest accepted time minus
  `out_of_order_tolerance_ms`.
- ``price_jump``: |p / last − 1| × 100 > `max_jump_pct` while the ticker's last accepted
  price is at most `jump_window_ms` old. The rejected price does not become `last`, so one
  absurd print cannot drag the reference with it; after the window a new level is accepted.

Row checks are vectorised over the whole batch; the per-ticker checks over all tickers at once
(`accept_groups`: rows grouped by ticker, state in arrays indexed by `TickerTable` id), with a
row-by-row loop only for a ticker whose rows suggest a price jump (jumps are rare). A rejected
row changes no state: neither the ticker's latest time nor its reference price.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import numpy.typing as npt

from actors.detection.ticker_table import Groups, TickerTable, grow, seg_accumulate, shift_in
from actors.market.validity import check_bars, check_trades
from config.detection import ValidationConfig
from schemas.batches import F64, I64, BarBatch, TradeBatch

Mask = npt.NDArray[np.bool_]

NO_SEQ = -(2**62)
NO_TIME = -(2**62)


class Validator:
    """Stateful validation of trade batches; counts every rejected row by reason."""

    def __init__(self, config: ValidationConfig | None = None, table: TickerTable | None = None):
        self.config = config or ValidationConfig()
        self.last_seq = NO_SEQ
        self.rejected: Counter[str] = Counter()
        self._table = table if table is not None else TickerTable()
        # Per ticker id: latest accepted event time; price and time of the latest accepted
        # trade (price 0: none yet).
        self._last_t = np.full(0, NO_TIME, np.int64)
        self._last_p = np.zeros(0, np.float64)
        self._last_p_t = np.full(0, NO_TIME, np.int64)

    # -- row rules (whole batch) -------------------------------------------------------

    def accept_rows(self, batch: TradeBatch) -> Mask:
        """Mask of rows that pass the row rules; advances `last_seq` past the batch."""
        if len(batch) == 0:
            return np.ones(0, dtype=bool)
        ok = self._fresh_seq(batch.seq)
        if batch.valid is not None:  # judged upstream, and counted there
            return ok & batch.valid
        return check_trades(batch, self.rejected, ok=ok)

    def accept_bars(self, batch: BarBatch) -> Mask:
        """Mask of bars that pass the row rules (seq, ticker, prices, volume, shape)."""
        if len(batch) == 0:
            return np.ones(0, dtype=bool)
        ok = self._fresh_seq(batch.seq)
        if batch.valid is not None:
            return ok & batch.valid
        return check_bars(batch, self.rejected, ok=ok)

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

    # -- ticker rules (each ticker's rows, in arrival order) ---------------------------

    def accept_ticker(self, ticker: str, t: I64, p: F64) -> Mask:
        """Mask of a ticker's rows (arrival order) that are in time order and not absurd jumps."""
        return self.accept_groups(Groups.single(self._table.add(ticker), len(t)), t, p)

    def accept_groups(self, groups: Groups, t: I64, p: F64) -> Mask:
        """`accept_ticker` for many tickers at once: `groups` segments the rows by ticker.

        Vectorised when no jump is suspected (the usual case); a ticker whose rows suggest one
        is checked row by row, since a rejected print must not become the reference.
        """
        if len(t) == 0:
            return np.ones(0, dtype=bool)
        self._ensure()
        ids = groups.ids
        running = seg_accumulate(np.maximum, t, groups, self._last_t[ids])
        ok: Mask = t >= shift_in(running, groups, self._last_t[ids]) - (
            self.config.out_of_order_tolerance_ms
        )
        # Rejected rows are older than the running max, so including them in the max is
        # harmless: the running max over all rows equals the max over accepted rows.
        jumpy = self._jump_suspected(groups, ok, t, p)
        if jumpy.any():
            self._row_by_row(groups, jumpy, ok, t, p)
            calm = ~jumpy[groups.row_seg]
            late = int(np.count_nonzero(calm & ~ok))
        else:
            calm = None
            late = len(t) - int(np.count_nonzero(ok))
        if late:
            self.rejected["out_of_order"] += late
        self._advance(groups, ~jumpy, ok if calm is None else ok & calm, running, t, p)
        return ok

    def _jump_suspected(self, groups: Groups, ok: Mask, t: I64, p: F64) -> Mask:
        """Per segment: whether any in-order row jumps from its predecessor (all rows in order
        taken as accepted)."""
        cfg = self.config
        rows = np.flatnonzero(ok)
        if len(rows) == 0:
            return np.zeros(len(groups), dtype=bool)
        sub = groups if len(rows) == len(t) else groups.take(ok)
        ids = sub.ids
        ts, ps = t[rows], p[rows]
        prev_p = shift_in(ps, sub, self._last_p[ids])
        prev_t = shift_in(ts, sub, self._last_p_t[ids])
        known = prev_p > 0
        ratio = ps / np.where(known, prev_p, 1.0)
        jump = known & (ts - prev_t <= cfg.jump_window_ms)
        jump &= np.abs(ratio - 1.0) * 100.0 > cfg.max_jump_pct
        out = np.zeros(len(groups), dtype=bool)
        if jump.any():
            hit = np.isin(groups.ids, sub.ids[sub.row_seg[jump]])
            out |= hit
        return out

    def _advance(
        self, groups: Groups, segs: Mask, ok: Mask, running: I64, t: I64, p: F64
    ) -> None:
        """The state after the accepted rows of the segments `segs` (vectorised path)."""
        ids = groups.ids[segs]
        self._last_t[ids] = groups.last(running)[segs]
        rows = np.flatnonzero(ok)
        if len(rows) == 0:
            return
        seg = groups.row_seg[rows] if len(groups) > 1 else np.zeros(len(rows), np.int64)
        last = np.flatnonzero(np.append(seg[1:] != seg[:-1], True))  # last accepted per segment
        tickers = groups.ids[seg[last]]
        self._last_p[tickers] = p[rows[last]]
        self._last_p_t[tickers] = t[rows[last]]

    def _row_by_row(self, groups: Groups, segs: Mask, ok: Mask, t: I64, p: F64) -> None:
        """Check the segments `segs` one row at a time; sets their rows of `ok`."""
        cfg = self.config
        for k in np.flatnonzero(segs).tolist():
            i = int(groups.ids[k])
            a, b = int(groups.starts[k]), int(groups.ends[k])
            last_t, last_p = int(self._last_t[i]), float(self._last_p[i])
            last_p_t = int(self._last_p_t[i])
            rows = zip(range(a, b), t[a:b].tolist(), p[a:b].tolist(), strict=True)
            for row, ti, pi in rows:
                ok[row] = False
                if ti < last_t - cfg.out_of_order_tolerance_ms:
                    self.rejected["out_of_order"] += 1
                    continue
                recent = last_p > 0 and ti - last_p_t <= cfg.jump_window_ms
                if recent and abs(pi / last_p - 1.0) * 100.0 > cfg.max_jump_pct:
                    self.rejected["price_jump"] += 1
                    continue
                ok[row] = True
                last_t, last_p, last_p_t = max(last_t, ti), pi, ti
            self._last_t[i], self._last_p[i], self._last_p_t[i] = last_t, last_p, last_p_t

    def _ensure(self) -> None:
        n = len(self._table)
        if len(self._last_t) < n:
            self._last_t = grow(self._last_t, n, NO_TIME)
            self._last_p = grow(self._last_p, n, 0.0)
            self._last_p_t = grow(self._last_p_t, n, NO_TIME)

    # -- convenience and state ---------------------------------------------------------

    def validate(self, batch: TradeBatch) -> TradeBatch:
        """The accepted rows of `batch`, in arrival order (both rule sets applied)."""
        ok = self.accept_rows(batch)
        if not ok.any():
            return batch.take(ok)
        idx = np.flatnonzero(ok)
        order, groups = self._table.group(batch.sym[idx])
        rows = idx[order]
        ok[rows] = self.accept_groups(groups, batch.t[rows], batch.p[rows])
        return batch.take(ok)

    def last_price(self, ticker: str) -> float | None:
        """The ticker's latest accepted price, if any."""
        i = self._table.get(ticker)
        if i is None or i >= len(self._last_p) or not self._last_p[i] > 0:
            return None
        return float(self._last_p[i])

    def snapshot(self) -> dict[str, Any]:
        """Plain-data state (msgpack-able)."""
        names = self._table.names
        seen = np.flatnonzero(self._last_t != NO_TIME).tolist()
        return {
            "last_seq": self.last_seq,
            "rejected": dict(self.rejected),
            "tickers": {
                names[i]: [int(self._last_t[i]), float(self._last_p[i]), int(self._last_p_t[i])]
                for i in seen
            },
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Load a `snapshot()`."""
        self.last_seq = int(data["last_seq"])
        self.rejected = Counter({str(k): int(v) for k, v in data["rejected"].items()})
        ids = [self._table.add(str(k)) for k in data["tickers"]]
        self._ensure()
        self._last_t[:] = NO_TIME
        self._last_p[:] = 0.0
        self._last_p_t[:] = NO_TIME
        for i, (last_t, last_p, last_p_t) in zip(ids, data["tickers"].values(), strict=True):
            self._last_t[i], self._last_p[i], self._last_p_t[i] = last_t, last_p, last_p_t
