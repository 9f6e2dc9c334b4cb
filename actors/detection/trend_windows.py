"""Running window sums over one ticker's points: the O(1)-per-bar side of `trend.py` beside it.

A `PointLog` keeps a session's points (time, close, session VWAP, volume) in plain lists, with
the per-point terms Trend scores: the relative VWAP position `close / vwap - 1` and, for the
step that joins a point to the one before it, the price step, the VWAP-position step and the
volume signed by the price step. For each scoring span it keeps a `SpanSums`: plain sums of
the closes and volumes, and recency-weighted sums `sum(decay**age * x)` (age 0 = the newest
item) of the four terms; for the volatility span a `Spread`, the first two moments of the
closes about a reference price.

Adding a point is O(1) per span: each weighted sum becomes `decay * sum + x`, and a point that
leaves a span subtracts its decayed term. Decayed rounding errors fade, so the sums stay within
about 1e-13 of a from-scratch computation; a span that loses at least as many points as it
keeps, and every span every `REBUILD_EVERY` points, is recomputed from its points instead.
Trend re-decides with the exact numpy formulation whenever a threshold is that close.
"""

from __future__ import annotations

import math
from array import array
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
REBUILD_EVERY = 4_096  # points between from-scratch recomputations of every span's sums


@cache
def _powers(decay: float, n: int) -> tuple[float, ...]:
    """decay**age for ages 0 .. n - 1 (shared by every log with the same parameters)."""
    return tuple(decay**a for a in range(n))


class SpanSums:
    """The sums of one span: the points at or after `now - span_ms`, from index `start`."""

    __slots__ = (
        "positive", "price", "rel", "rel_step", "signed", "span_ms", "start", "step", "volume",
    )

    def __init__(self, span_ms: int) -> None:
        self.span_ms = span_ms
        self.start = 0
        self.clear()

    def clear(self) -> None:
        """Empty sums (exact zeros)."""
        self.price = self.volume = 0.0  # plain sums of closes and volumes
        self.positive = 0  # points with volume > 0 (exact: decides "volume_sum > 0")
        self.rel = 0.0  # weighted sum of close / vwap - 1 over the points
        self.step = self.rel_step = self.signed = 0.0  # weighted sums over the steps

    def values(self) -> list[float]:
        """The sums as plain numbers (snapshots)."""
        return [self.price, self.volume, self.positive, self.rel, self.step, self.rel_step,
                self.signed]

    def load(self, values: list[Any]) -> None:
        """Set the sums from `values()`."""
        price, volume, positive, rel, step, rel_step, signed = values
        self.price, self.volume, self.positive = float(price), float(volume), int(positive)
        self.rel, self.step = float(rel), float(step)
        self.rel_step, self.signed = float(rel_step), float(signed)


class Spread:
    """The closes of one span as moments about a nearby price `ref`: sum x - ref, (x - ref)^2."""

    __slots__ = ("dev", "ref", "span_ms", "sq", "start")

    def __init__(self, span_ms: float) -> None:
        self.span_ms = span_ms
        self.start = 0
        self.ref = self.dev = self.sq = 0.0

    def cv_pct(self, n: int) -> float:
        """stdev (ddof 1) / mean x 100 of the span's `n` closes (n >= 2)."""
        mean_dev = self.dev / n
        var = max((self.sq - self.dev * mean_dev) / (n - 1), 0.0)
        return math.sqrt(var) / (self.ref + mean_dev) * 100.0


class PointLog:
    """One ticker's points this session, with running sums for each span (see module doc).

    Points before `head` are out of the history (older than `keep_ms` or beyond `cap`
    points) but stay in the lists until `trim`, so an earlier score can still be recomputed.
    """

    __slots__ = (
        "_decay", "_powers", "_since_rebuild", "_synced", "cap", "d_price", "d_rel", "head",
        "keep_ms", "price", "rel", "signed", "spans", "spread", "t", "volume", "vwap",
    )

    def __init__(
        self, spans_ms: tuple[int, ...], spread_ms: float, keep_ms: float, cap: int, decay: float
    ) -> None:
        self.keep_ms, self.cap, self._decay = keep_ms, cap, decay
        self._powers = _powers(decay, cap + 2)
        # Typed arrays, not lists: 8 bytes a point instead of a pointer plus a float object
        # (Trend's history is most of a shard's memory per ticker); the values are the same
        # IEEE doubles, so every sum and score is unchanged.
        self.t: array[int] = array("q")
        self.price: array[float] = array("d")
        self.vwap: array[float] = array("d")
        self.volume: array[float] = array("d")
        self.rel: array[float] = array("d")  # close / vwap - 1
        self.d_price: array[float] = array("d")  # close step from the point before (0 first)
        self.d_rel: array[float] = array("d")  # the same for `rel`
        self.signed: array[float] = array("d")  # volume signed by the price step
        self.head = 0
        self.spans = [SpanSums(ms) for ms in spans_ms]
        self.spread = Spread(spread_ms)
        self._since_rebuild = 0  # incremental updates since the last rebuild
        self._synced = 0  # the sums cover the points before this index

    def __len__(self) -> int:
        """The points in the history."""
        return len(self.t) - self.head

    # -- input ---------------------------------------------------------------------------------

    def append(self, ts: int, price: float, vwap: float, volume: float) -> None:
        """Add the newest point (`ts` not before the previous one); `sync` updates the sums."""
        rel = price / vwap - 1.0
        if self.t:
            d_price = price - self.price[-1]
            d_rel = rel - self.rel[-1]
            signed = volume if d_price > 0 else -volume if d_price < 0 else 0.0
        else:
            d_price = d_rel = signed = 0.0
        self.t.append(ts)
        self.price.append(price)
        self.vwap.append(vwap)
        self.volume.append(volume)
        self.rel.append(rel)
        self.d_price.append(d_price)
        self.d_rel.append(d_rel)
        self.signed.append(signed)
        self._advance_head(ts)

    def sync(self) -> None:
        """Bring every span's sums up to the newest point: O(1) when they were one behind.

        Sums left further behind (the caller had no use for them) are rebuilt from the points,
        as they are every `REBUILD_EVERY` points.
        """
        end = len(self.t)
        if self._synced == end:
            return
        n0 = end - 1
        if self._synced != n0 or self._since_rebuild >= REBUILD_EVERY:
            self._rebuild_all()
            return
        self._synced = end
        self._since_rebuild += 1
        ts, price, volume, rel = self.t[n0], self.price[n0], self.volume[n0], self.rel[n0]
        d_price, d_rel, signed = self.d_price[n0], self.d_rel[n0], self.signed[n0]
        d, t, head, powers = self._decay, self.t, self.head, self._powers
        for span in self.spans:
            start = span.start
            if start == n0:  # it was empty
                span.clear()
            else:  # it holds the point before: the new step joins it
                span.step = d * span.step + d_price
                span.rel_step = d * span.rel_step + d_rel
                span.signed = d * span.signed + signed
            span.rel = d * span.rel + rel
            span.price += price
            span.volume += volume
            if volume > 0:
                span.positive += 1
            first = start if start > head else head
            cutoff = ts - span.span_ms
            while t[first] < cutoff:
                first += 1
            if first == start:
                continue
            if first == start + 1 and first < n0:  # the usual one point out: inlined
                age = n0 - start
                span.start = first
                span.price -= self.price[start]
                v = self.volume[start]
                span.volume -= v
                if v > 0:
                    span.positive -= 1
                    if not span.positive:
                        span.volume = 0.0
                w = powers[age]
                span.rel -= w * self.rel[start]
                w = powers[age - 1]
                span.step -= w * self.d_price[first]
                span.rel_step -= w * self.d_rel[first]
                span.signed -= w * self.signed[first]
            else:
                self._expire(span, first, end)
        self._add_spread(price, n0, ts)

    def _rebuild_all(self) -> None:
        now = self.t[-1]
        for span in self.spans:
            self._first(span, now)
            self._rebuild(span)
        self._first(self.spread, now)
        self._rebuild_spread()
        self._synced = len(self.t)
        self._since_rebuild = 0

    def _advance_head(self, now: int) -> None:
        t, head, end = self.t, self.head, len(self.t)
        cutoff = now - self.keep_ms
        while t[head] < cutoff:
            head += 1
        self.head = max(head, end - self.cap)

    def _first(self, span: SpanSums | Spread, now: int) -> bool:
        """Move `span.start` to its first point at `now`; return whether it moved."""
        t, start = self.t, max(span.start, self.head)
        cutoff = now - span.span_ms
        while t[start] < cutoff:
            start += 1
        moved = start != span.start
        span.start = start
        return moved

    def _expire(self, span: SpanSums, first: int, end: int) -> None:
        """Take the points before `first` (the span's new start) out of its sums."""
        old, span.start = span.start, first
        if first - old >= end - first:  # most of it left: subtracting would cancel
            self._rebuild(span)
            return
        powers, last = self._powers, end - 1
        price, volume, rel = self.price, self.volume, self.rel
        d_price, d_rel, signed = self.d_price, self.d_rel, self.signed
        for i in range(old, first):
            age = last - i
            span.price -= price[i]
            span.volume -= volume[i]
            if volume[i] > 0:
                span.positive -= 1
            span.rel -= powers[age] * rel[i]
            # The step from point i to i + 1 (one younger) leaves with point i.
            w = powers[age - 1]
            span.step -= w * d_price[i + 1]
            span.rel_step -= w * d_rel[i + 1]
            span.signed -= w * signed[i + 1]
        if span.positive == 0:
            span.volume = 0.0

    def _rebuild(self, span: SpanSums) -> None:
        """Recompute `span`'s sums from its points, oldest first."""
        span.clear()
        d, start = self._decay, span.start
        for i in range(start, len(self.t)):
            span.price += self.price[i]
            v = self.volume[i]
            span.volume += v
            if v > 0:
                span.positive += 1
            span.rel = d * span.rel + self.rel[i]
            if i > start:
                span.step = d * span.step + self.d_price[i]
                span.rel_step = d * span.rel_step + self.d_rel[i]
                span.signed = d * span.signed + self.signed[i]

    def _add_spread(self, price: float, n0: int, now: int) -> None:
        s = self.spread
        if s.start == n0:  # it was empty: measure about this price
            s.ref, s.dev, s.sq = price, 0.0, 0.0
        x = price - s.ref
        s.dev += x
        s.sq += x * x
        old = s.start
        if not self._first(s, now):
            return
        if s.start - old >= len(self.t) - s.start:
            self._rebuild_spread()
            return
        for p in self.price[old : s.start]:
            x = p - s.ref
            s.dev -= x
            s.sq -= x * x

    def _rebuild_spread(self) -> None:
        s = self.spread
        prices = self.price[s.start :]
        s.ref = prices[-1]
        s.dev = s.sq = 0.0
        for p in prices:
            x = p - s.ref
            s.dev += x
            s.sq += x * x

    # -- output --------------------------------------------------------------------------------

    def arrays(self, head: int, end: int) -> F64:
        """Points `head:end` as a (4, n) array of time, close, VWAP, volume (exact scoring)."""
        return np.array(
            [self.t[head:end], self.price[head:end], self.vwap[head:end], self.volume[head:end]],
            dtype=np.float64,
        ).reshape(4, end - head)

    def rows(self) -> list[list[float]]:
        """The history's points as [time, close, VWAP, volume] rows."""
        h = self.head
        return [list(r) for r in zip(self.t[h:], self.price[h:], self.vwap[h:], self.volume[h:],
                                     strict=True)]

    def dead(self) -> int:
        """How many leading points neither the history nor the running sums still need."""
        if self._synced < len(self.t) - 1:  # behind: the next sync rebuilds from the history
            return self.head
        return min(self.head, self.spread.start, *(span.start for span in self.spans))

    def trim(self, cut: int) -> None:
        """Drop the first `cut` points (at most `dead()`; callers first save what needs them)."""
        if cut <= 0:
            return
        for column in (self.t, self.price, self.vwap, self.volume, self.rel, self.d_price,
                       self.d_rel, self.signed):
            del column[:cut]
        self.head -= cut
        self._synced -= cut
        for span in self.spans:
            span.start = max(span.start - cut, 0)
        self.spread.start = max(self.spread.start - cut, 0)

    # -- state ---------------------------------------------------------------------------------

    def sums(self) -> dict[str, Any] | None:
        """The running sums as plain data (a restore then continues bit for bit); None when
        they are behind the points (the next `sync` rebuilds them anyway)."""
        if self._synced != len(self.t):
            return None
        s = self.spread
        return {
            "since_rebuild": self._since_rebuild,
            "spans": [span.values() for span in self.spans],
            "spread": [s.ref, s.dev, s.sq],
        }

    @classmethod
    def from_rows(
        cls, rows: list[list[Any]], sums: dict[str, Any] | None, **params: Any
    ) -> PointLog:
        """A log holding `rows` (from `rows()`), with `sums` (from `sums()`) or rebuilt ones."""
        log = cls(**params)
        for ts, price, vwap, volume in rows:
            log._append_raw(int(ts), float(price), float(vwap), float(volume))
        if not log.t:
            return log
        log._advance_head(log.t[-1])
        now = log.t[-1]
        for span in log.spans:
            log._first(span, now)
        log._first(log.spread, now)
        if sums is None or len(sums["spans"]) != len(log.spans):
            log._synced = -1  # rebuilt at the next sync
            return log
        log._synced = len(log.t)
        log._since_rebuild = int(sums["since_rebuild"])
        for span, values in zip(log.spans, sums["spans"], strict=True):
            span.load(values)
        log.spread.ref, log.spread.dev, log.spread.sq = (float(x) for x in sums["spread"])
        return log

    def _append_raw(self, ts: int, price: float, vwap: float, volume: float) -> None:
        """Add a point without touching the sums (restore)."""
        rel = price / vwap - 1.0
        first = not self.t
        d_price = 0.0 if first else price - self.price[-1]
        self.d_rel.append(0.0 if first else rel - self.rel[-1])
        self.d_price.append(d_price)
        self.signed.append(volume if d_price > 0 else -volume if d_price < 0 else 0.0)
        self.t.append(ts)
        self.price.append(price)
        self.vwap.append(vwap)
        self.volume.append(volume)
        self.rel.append(rel)
