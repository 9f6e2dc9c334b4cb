"""Raw Polygon frames -> columnar batches: the ingest hot path (pure, no I/O).

`FrameDecoder.decode(frame, recv_ms)` turns one raw WebSocket frame (a JSON array of events)
into a `TradeBatch` for `T`, a `BarBatch` for `A`, a `BarBatch` for `AM` and the status
messages. Bad input never raises: every rejected frame or event is counted by reason in
`FrameDecoder.rejected`:

- frame level: `malformed_json`, `not_array`;
- event level: `unknown_ev`, `missing_field`, `wrong_type`;
- column level (trades and bars): `bad_symbol` (longer than the symbol column holds),
  `bad_time` (not a positive time).

Values (prices, sizes, bar shapes) are not judged here: the ingest's one validity check
(`actors/market/validity.py`) does that for every source alike, before routing.

The fast path decodes the whole frame with `schemas.polygon.frame_decoder`; only when that
fails is the frame split into `msgspec.Raw` elements so the good events are kept.

Timestamps are normalised to Unix ms by magnitude (Polygon documents ms for T/A/AM, but
other channels use µs or ns). `AM` bars are re-sent when late trades change them: a bar is
held until a newer minute of its symbol arrives or the event clock passes its end by
`am_hold_ms`; a re-send of a held bar replaces it, an identical re-send of a released bar is
dropped, a changed one is released again as a revision (the latest wins downstream).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from actors.market.conditions import flags_for
from schemas.batches import FLAGS_REGULAR, SYMBOL_DTYPE, BarBatch, TradeBatch
from schemas.polygon import (
    PolygonAgg,
    PolygonMinuteAgg,
    PolygonStatus,
    PolygonTrade,
    frame_decoder,
    message_decoder,
    raw_list_decoder,
)

MAX_SYMBOL_LEN = SYMBOL_DTYPE.itemsize // 4  # longer symbols would be silently truncated
US_THRESHOLD = 100_000_000_000_000  # 1e14: ms values stay below it until the year 5138
NS_THRESHOLD = 100_000_000_000_000_000  # 1e17: µs values stay below it until the year 5138
FLAG_CACHE_MAX = 65_536  # distinct condition tuples remembered
DEFAULT_AM_HOLD_MS = 2_000

_EMPTY: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    """What one frame carried. Absent kinds are `None` (no empty arrays on the hot path)."""

    trades: TradeBatch | None
    seconds: BarBatch | None  # `A` bars
    minutes: BarBatch | None  # `AM` bars released by this frame (deduplicated)
    statuses: list[PolygonStatus]
    rejected: int  # events (or whole frames) rejected in this frame
    lag_ms: int | None  # recv_ms - newest trade time in the frame


def to_ms(values: np.ndarray[Any, np.dtype[np.int64]]) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Normalise Unix timestamps in s/ms/µs/ns... to ms, element by element, by magnitude."""
    if not len(values) or values.max() < US_THRESHOLD:
        return values
    return np.where(
        values >= NS_THRESHOLD,
        values // 1_000_000,
        np.where(values >= US_THRESHOLD, values // 1_000, values),
    )


def scalar_ms(value: int) -> int:
    """`to_ms` for one value."""
    if value >= NS_THRESHOLD:
        return value // 1_000_000
    return value // 1_000 if value >= US_THRESHOLD else value


def classify_error(message: str) -> str:
    """The rejection reason of one event from msgspec's validation message."""
    if "missing required field" in message:
        return "missing_field"
    if "`$.ev`" in message or "Invalid value" in message:
        return "unknown_ev"
    return "wrong_type"


class _MinuteBars:
    """AM de-duplication: one held bar per symbol, bounded by the number of symbols."""

    __slots__ = ("_by_end", "_held", "_hold_ms", "_released", "counts")

    def __init__(self, hold_ms: int) -> None:
        self._hold_ms = hold_ms
        self._held: dict[str, PolygonAgg] = {}
        self._by_end: dict[int, set[str]] = {}
        self._released: dict[str, PolygonAgg] = {}  # the last released bar of each symbol
        self.counts: Counter[str] = Counter()

    def add(self, bar: PolygonAgg, out: list[PolygonAgg]) -> None:
        held = self._held.get(bar.sym)
        if held is not None:
            if held.s == bar.s:
                self.counts["am_resent"] += 1
                self._hold(bar)
                return
            if held.s < bar.s:
                self._release(bar.sym, out)
                self._hold(bar)
                return
        last = self._released.get(bar.sym)
        if last is not None and bar.s <= last.s:
            self._late(bar, last, out)
            return
        if held is None:
            self._hold(bar)
        else:  # an older minute than the held one: a late revision of a released bar
            self.counts["am_revised"] += 1
            out.append(bar)

    def _late(self, bar: PolygonAgg, last: PolygonAgg, out: list[PolygonAgg]) -> None:
        if bar == last:
            self.counts["am_duplicate"] += 1
            return
        self.counts["am_revised"] += 1
        out.append(bar)
        if bar.s == last.s:
            self._released[bar.sym] = bar

    def _hold(self, bar: PolygonAgg) -> None:
        self._held[bar.sym] = bar
        self._by_end.setdefault(scalar_ms(bar.e), set()).add(bar.sym)

    def _release(self, sym: str, out: list[PolygonAgg]) -> None:
        bar = self._held.pop(sym)
        end = scalar_ms(bar.e)
        syms = self._by_end.get(end)
        if syms is not None:
            syms.discard(sym)
            if not syms:
                del self._by_end[end]
        self._released[sym] = bar
        out.append(bar)

    def release_until(self, clock_ms: int, out: list[PolygonAgg]) -> None:
        """Release held bars whose end is at least `hold_ms` behind the event clock."""
        if not self._by_end:
            return
        due = [e for e in self._by_end if e + self._hold_ms <= clock_ms]
        for e in sorted(due):
            for sym in sorted(self._by_end.get(e, ())):
                held = self._held.get(sym)
                if held is not None and scalar_ms(held.e) == e:
                    self._release(sym, out)
            self._by_end.pop(e, None)

    def release_all(self, out: list[PolygonAgg]) -> None:
        for sym in sorted(self._held, key=lambda s: (self._held[s].s, s)):
            self._release(sym, out)

    def __len__(self) -> int:
        return len(self._held)


class FrameDecoder:
    """Decode raw Polygon frames into batches; count everything rejected by reason."""

    def __init__(self, *, am_hold_ms: int = DEFAULT_AM_HOLD_MS):
        self.rejected: Counter[str] = Counter()
        self.unknown_conditions: Counter[int] = Counter()
        self.frames = 0
        self.trades = 0
        self.bars = 0
        self.last_lag_ms: int | None = None
        self._seq = 0
        self._clock_ms = 0  # newest event time seen (trade t or bar end)
        self._flag_cache: dict[tuple[int, ...], int] = {_EMPTY: FLAGS_REGULAR}
        self._minutes = _MinuteBars(am_hold_ms)

    # -- public ---------------------------------------------------------------------------

    def decode(self, frame: str | bytes, recv_ms: int) -> DecodedFrame:
        """Turn one raw frame into batches; never raises on bad input."""
        self.frames += 1
        before = self.rejected.total()
        try:
            messages: Sequence[Any] = frame_decoder.decode(frame)
        except msgspec.DecodeError:
            messages = self._salvage(frame)
        trades: list[PolygonTrade] = []
        seconds: list[PolygonAgg] = []
        minutes: list[PolygonAgg] = []
        statuses: list[PolygonStatus] = []
        for m in messages:
            cls = m.__class__
            if cls is PolygonTrade:
                trades.append(m)
            elif cls is PolygonAgg:
                seconds.append(m)
            elif cls is PolygonMinuteAgg:
                minutes.append(m)
            else:
                statuses.append(m)
        trade_batch = self._trades(trades) if trades else None
        second_batch = self._bars(seconds) if seconds else None
        minute_batch = self._minute_bars(minutes)
        lag = None
        if trade_batch is not None and len(trade_batch):
            lag = self.last_lag_ms = recv_ms - int(trade_batch.t.max())
        return DecodedFrame(
            trade_batch, second_batch, minute_batch, statuses,
            self.rejected.total() - before, lag,
        )

    def flush(self) -> BarBatch | None:
        """Release every held `AM` bar (end of stream)."""
        out: list[PolygonAgg] = []
        self._minutes.release_all(out)
        return self._bar_batch(out) if out else None

    def stats(self) -> dict[str, Any]:
        """Counters for metrics (plain data)."""
        return {
            "frames": self.frames,
            "trades": self.trades,
            "bars": self.bars,
            "rejected": dict(self.rejected),
            "minute_bars": dict(self._minutes.counts),
            "minute_bars_held": len(self._minutes),
            "unknown_conditions": dict(self.unknown_conditions),
            "lag_ms": self.last_lag_ms,
            "seq": self._seq,
        }

    # -- slow path: salvage what can be salvaged ------------------------------------------

    def _salvage(self, frame: str | bytes) -> list[Any]:
        try:
            raws = raw_list_decoder.decode(frame)
        except msgspec.ValidationError:
            self.rejected["not_array"] += 1
            return []
        except msgspec.DecodeError:
            self.rejected["malformed_json"] += 1
            return []
        out: list[Any] = []
        for raw in raws:
            try:
                out.append(message_decoder.decode(raw))
            except msgspec.ValidationError as e:
                self.rejected[classify_error(str(e))] += 1
            except msgspec.DecodeError:
                self.rejected["malformed_json"] += 1
        return out

    # -- trades ---------------------------------------------------------------------------

    def _flags(self, conditions: list[int]) -> int:
        key = tuple(conditions)
        flags = self._flag_cache.get(key)
        if flags is None:
            unknown: list[int] = []
            flags = flags_for(key, unknown)
            self.unknown_conditions.update(unknown)
            if len(self._flag_cache) >= FLAG_CACHE_MAX:
                self._flag_cache = {_EMPTY: FLAGS_REGULAR}
            self._flag_cache[key] = flags
        return flags

    def _trades(self, trades: list[PolygonTrade]) -> TradeBatch:
        n = len(trades)
        syms = [m.sym for m in trades]
        t = to_ms(np.fromiter([m.t for m in trades], np.int64, n))
        p = np.fromiter([m.p for m in trades], np.float64, n)
        s = np.fromiter([m.s for m in trades], np.float64, n)
        cache = self._flag_cache
        regular = FLAGS_REGULAR
        flags = np.fromiter(
            [regular if not m.c else (cache.get(tuple(m.c)) or self._flags(m.c)) for m in trades],
            np.uint8, n,
        )
        ok = self._decodable(syms, t)
        sym = np.array(syms, dtype=SYMBOL_DTYPE)
        if ok is not None:
            sym, t, p, s, flags = sym[ok], t[ok], p[ok], s[ok], flags[ok]
            n = len(t)
        self.trades += n
        return TradeBatch(sym, t, p, s, flags, self._number(t))

    def _number(self, times: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """The decoder's running seq for rows at `times` (which also move its event clock)."""
        n = len(times)
        seq = np.arange(self._seq, self._seq + n, dtype=np.int64)
        self._seq += n
        if n:
            self._clock_ms = max(self._clock_ms, int(times.max()))
        return seq

    def _decodable(
        self, syms: list[str], t: np.ndarray[Any, Any]
    ) -> np.ndarray[Any, Any] | None:
        """A keep-mask of rows the columns can hold, or None when all can (the common case)."""
        bad_sym = np.fromiter([len(x) > MAX_SYMBOL_LEN for x in syms], np.bool_, len(syms))
        bad_time = t <= 0
        bad = bad_sym | bad_time
        if not bad.any():
            return None
        for reason, mask in (("bad_symbol", bad_sym), ("bad_time", bad_time & ~bad_sym)):
            if count := int(mask.sum()):
                self.rejected[reason] += count
        keep: np.ndarray[Any, Any] = ~bad
        return keep

    # -- bars -----------------------------------------------------------------------------

    def _bar_batch(self, bars: list[PolygonAgg]) -> BarBatch:
        n = len(bars)
        start = to_ms(np.fromiter([b.s for b in bars], np.int64, n))
        end = to_ms(np.fromiter([b.e for b in bars], np.int64, n))
        cols = {
            k: np.fromiter([getattr(b, k) for b in bars], np.float64, n)
            for k in ("o", "h", "l", "c", "v", "vw")
        }
        ok = self._decodable([b.sym for b in bars], start)
        sym = np.array([b.sym for b in bars], dtype=SYMBOL_DTYPE)
        if ok is not None:
            sym, start, end = sym[ok], start[ok], end[ok]
            cols = {k: v[ok] for k, v in cols.items()}
        self.bars += len(start)
        return BarBatch(
            sym, start, end, cols["o"], cols["h"], cols["l"], cols["c"], cols["v"],
            np.nan_to_num(cols["vw"]), self._number(end),
        )

    def _bars(self, bars: list[PolygonAgg]) -> BarBatch | None:
        batch = self._bar_batch(bars)
        return batch if len(batch) else None

    def _minute_bars(self, minutes: list[PolygonAgg]) -> BarBatch | None:
        out: list[PolygonAgg] = []
        for bar in minutes:
            self._minutes.add(bar, out)
            # A bar starting at s means every earlier minute of the feed is complete.
            self._clock_ms = max(self._clock_ms, scalar_ms(bar.s))
        self._minutes.release_until(self._clock_ms, out)
        if not out:
            return None
        return self._bars(out)
