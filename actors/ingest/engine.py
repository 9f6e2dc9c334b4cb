"""IngestActor: source -> validated, sequenced, per-shard columnar batches -> detector shards.

The data path never makes a Ray call per tick: rows are grouped by shard and shipped as one
`TradeBatch` per shard every `batch_max_ms` or `batch_max_rows`; while a shard is busy (all of
its `max_inflight_per_shard` batches unacknowledged) its rows keep collecting up to
`batch_max_rows`, so batches grow with the load. Backpressure reaches the source through a
bounded queue.

Error policy: bad rows are dropped with a counted reason (`unknown_symbol`, `bad_price`);
a crashed shard is waited for, asked for the last ingest `seq` its restored checkpoint covers,
and sent every retained row after it, so nothing it would have seen is lost. Rows that had to
be evicted from the retention window before the shard's checkpoint covered them are counted as
`lost_on_restart`. `CancelledError` always propagates.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import ray

from actors.ingest.routing import shard_of
from actors.sources.base import Batch
from config.settings import Settings
from schemas.batches import BarBatch, TradeBatch

log = logging.getLogger(__name__)
PENDING_POLL_S = 0.005  # how often held rows are offered to a busy shard again
MAX_ROUTED_SYMBOLS = 200_000  # distinct symbols remembered for routing before starting over


@dataclass
class ShardLane:
    """Per-shard send state: pending rows, refs in flight, retained batches for recovery."""

    handle: Any
    pending: list[Batch] = field(default_factory=list)
    pending_rows: int = 0
    pending_since: float = 0.0
    in_flight: deque[tuple[Any, Batch]] = field(default_factory=deque)
    retained: deque[Batch] = field(default_factory=deque)
    retained_rows: int = 0
    checkpoint_seq: int = -1
    evicted: deque[np.ndarray] = field(default_factory=deque)  # seqs pushed out, uncovered
    last_ack: dict[str, Any] = field(default_factory=dict)
    restarts: int = 0


def _seqs(batch: Batch) -> np.ndarray:
    return batch.seq


class IngestEngine:
    """The batching/routing/recovery logic; shard handles are injected (fakes in unit tests)."""

    def __init__(self, settings: Settings, shards: Sequence[Any], universe: Any = None) -> None:
        self._cfg = settings.ingest
        self._lanes = [ShardLane(h) for h in shards]
        self._universe = universe
        self._allowed: np.ndarray | None = None
        self._allowed_version = -1
        self._codes: dict[str, int] = {}  # symbol -> shard, -1 when not subscribed
        self._codes_for: np.ndarray | None = None  # the subscription set `_codes` follows
        self._seq = 0
        self.rejected: Counter[str] = Counter()
        self.rows_in = 0
        self.rows_sent = 0
        self.batches_sent = 0
        self.events = 0
        self.last_event_ms = 0
        self.lost_on_restart = 0

    # -- filtering ---------------------------------------------------------------------------

    async def refresh_universe(self) -> None:
        """Fetch the subscription set when its version changed."""
        if self._universe is None or self._cfg.accept_unknown_symbols:
            return
        version, tickers = await self._universe.subscription_set()
        if version != self._allowed_version:
            self._allowed = np.asarray(sorted(tickers), dtype="<U12")
            self._allowed_version = version

    def _route(self, sym: np.ndarray) -> np.ndarray:
        """The shard of each row, or -1 for a symbol outside the subscription set.

        One dict lookup per row: symbols repeat, so each distinct one is hashed and checked
        against the subscription set once (string sorts in `np.isin`/`np.unique` cost ~6x).
        """
        if self._codes_for is not self._allowed:  # a new subscription set
            self._codes, self._codes_for = {}, self._allowed
        codes = self._codes
        names = sym.tolist()
        try:
            return np.fromiter(map(codes.__getitem__, names), np.int64, len(names))
        except KeyError:
            allowed = None if self._allowed is None else set(self._allowed.tolist())
            if len(codes) > MAX_ROUTED_SYMBOLS:  # bad feeds must not grow it without bound
                codes.clear()
            for name in set(names).difference(codes):
                known = allowed is None or name in allowed
                codes[name] = shard_of(name, len(self._lanes)) if known else -1
            return np.fromiter(map(codes.__getitem__, names), np.int64, len(names))

    def _filter(self, batch: Batch, shard: np.ndarray) -> tuple[Batch, np.ndarray]:
        """Drop (and count) rows with absurd prices or unsubscribed symbols."""
        prices = batch.p if isinstance(batch, TradeBatch) else batch.c
        keep = np.isfinite(prices) & (prices > 0) & (prices <= self._cfg.max_price)
        if not keep.all():
            self.rejected["bad_price"] += int(np.count_nonzero(~keep))
        unknown = (shard < 0) & keep
        if unknown.any():
            self.rejected["unknown_symbol"] += int(np.count_nonzero(unknown))
            keep &= ~unknown
        return (batch, shard) if keep.all() else (batch.take(keep), shard[keep])

    def _sequence(self, batch: Batch) -> Batch:
        seq = np.arange(self._seq, self._seq + len(batch), dtype=np.int64)
        self._seq += len(batch)
        if isinstance(batch, TradeBatch):
            return TradeBatch(batch.sym, batch.t, batch.p, batch.s, batch.flags, seq)
        return BarBatch(
            batch.sym, batch.start, batch.end, batch.o, batch.h, batch.l, batch.c, batch.v,
            batch.vw, seq,
        )

    # -- routing and sending -----------------------------------------------------------------

    async def accept(self, batch: Batch) -> None:
        """Validate, sequence and route one source batch; ship full lanes."""
        self.rows_in += len(batch)
        batch, idx = self._filter(batch, self._route(batch.sym))
        if not len(batch):
            return
        batch = self._sequence(batch)
        times = batch.t if isinstance(batch, TradeBatch) else batch.end
        self.last_event_ms = max(self.last_event_ms, int(times.max()))
        now = time.monotonic()
        for k in np.unique(idx).tolist():
            part = batch.take(idx == k) if len(self._lanes) > 1 else batch
            lane = self._lanes[k]
            if not lane.pending:
                lane.pending_since = now
            lane.pending.append(part)
            lane.pending_rows += len(part)
            if lane.pending_rows >= self._cfg.batch_max_rows:
                await self._ship(k)

    async def flush_due(self, force: bool = False) -> None:
        """Ship lanes whose oldest pending row waited `batch_max_ms` (or all, if forced).

        A due lane whose shard has no free in-flight slot keeps collecting instead (up to
        `batch_max_rows`, where `accept` ships and waits): the rows would only queue at the
        busy shard anyway, and one larger batch costs the shard far less than several small
        ones (its per-call work is per ticker), so throughput adapts to the load while a
        lightly loaded lane still ships every `batch_max_ms`.
        """
        now = time.monotonic()
        max_age = self._cfg.batch_max_ms / 1000
        for k, lane in enumerate(self._lanes):
            if not lane.pending or (not force and now - lane.pending_since < max_age):
                continue
            await self._harvest(k)
            if force or len(lane.in_flight) < self._cfg.max_inflight_per_shard:
                await self._ship(k)

    def has_pending(self) -> bool:
        """Whether some lane holds rows not yet shipped."""
        return any(lane.pending for lane in self._lanes)

    async def _ship(self, k: int) -> None:
        lane = self._lanes[k]
        items, lane.pending, lane.pending_rows = lane.pending, [], 0
        for batch in _coalesce(items, self._cfg.batch_max_rows):
            await self._send(k, batch)

    async def _send(self, k: int, batch: Batch) -> None:
        lane = self._lanes[k]
        while len(lane.in_flight) >= self._cfg.max_inflight_per_shard:
            await self._await_oldest(k)
        self._retain(lane, batch)
        # A future, so finished calls can be collected without waiting (`_harvest`).
        lane.in_flight.append((asyncio.ensure_future(self._call(lane, batch)), batch))
        self.rows_sent += len(batch)
        self.batches_sent += 1

    @staticmethod
    def _call(lane: ShardLane, batch: Batch) -> Any:
        if isinstance(batch, TradeBatch):
            return lane.handle.send_trades(batch)
        return lane.handle.send_bars(batch)

    def _retain(self, lane: ShardLane, batch: Batch) -> None:
        if self._cfg.retain_rows_per_shard == 0:
            return
        lane.retained.append(batch)
        lane.retained_rows += len(batch)
        while lane.retained_rows > self._cfg.retain_rows_per_shard and len(lane.retained) > 1:
            old = lane.retained.popleft()
            lane.retained_rows -= len(old)
            if int(_seqs(old)[-1]) > lane.checkpoint_seq:
                self.rejected["retention_overflow"] += len(old)
                lane.evicted.append(_seqs(old))

    def _trim(self, lane: ShardLane) -> None:
        while lane.retained and int(_seqs(lane.retained[0])[-1]) <= lane.checkpoint_seq:
            lane.retained_rows -= len(lane.retained.popleft())
        while lane.evicted and int(lane.evicted[0][-1]) <= lane.checkpoint_seq:
            lane.evicted.popleft()

    async def _await_oldest(self, k: int) -> None:
        lane = self._lanes[k]
        ref, _batch = lane.in_flight[0]
        try:
            ack = await ref
        except ray.exceptions.RayActorError:
            await self._recover(k)
            return
        lane.in_flight.popleft()
        self._on_ack(lane, ack)

    async def _harvest(self, k: int) -> None:
        """Take the acks of the calls that have finished, oldest first (never waits)."""
        lane = self._lanes[k]
        while lane.in_flight and lane.in_flight[0][0].done():
            await self._await_oldest(k)

    def _on_ack(self, lane: ShardLane, ack: dict[str, Any]) -> None:
        lane.last_ack = dict(ack)
        self.events += int(ack.get("events", 0))
        cp = int(ack.get("checkpoint_seq", -1))
        if cp > lane.checkpoint_seq:
            lane.checkpoint_seq = cp
            self._trim(lane)

    async def drain(self) -> None:
        """Wait for every batch in flight."""
        for k, lane in enumerate(self._lanes):
            while lane.in_flight:
                await self._await_oldest(k)

    # -- recovery ----------------------------------------------------------------------------

    async def _recover(self, k: int) -> None:
        """Wait for a restarted shard, then re-send what its checkpoint does not cover."""
        lane = self._lanes[k]
        lane.restarts += 1
        lane.in_flight.clear()
        log.warning("detector shard %d failed; waiting for its restart", k)
        while not await lane.handle.ping():  # noqa: ASYNC110 - polls a remote actor
            await asyncio.sleep(0.2)
        last = await lane.handle.last_seq()
        # Rows of this shard pushed out of retention beyond its checkpoint cannot be re-sent.
        self.lost_on_restart += sum(int((seqs > last).sum()) for seqs in lane.evicted)
        lane.evicted.clear()
        lane.checkpoint_seq = last
        resend = [b for b in lane.retained if int(_seqs(b)[-1]) > last]
        lane.retained.clear()
        lane.retained_rows = 0
        log.warning("shard %d back at seq %d; re-sending %d batches", k, last, len(resend))
        for batch in resend:
            rows = batch.take(_seqs(batch) > last)
            self._retain(lane, rows)
            try:
                ack = await self._call(lane, rows)
            except ray.exceptions.RayActorError:
                await self._recover(k)
                return
            self._on_ack(lane, ack)

    async def finish(self) -> list[dict[str, Any]]:
        """End of data: ship everything, wait for acks, let shards finalize pending bars."""
        await self.flush_due(force=True)
        await self.drain()
        return [await lane.handle.flush() for lane in self._lanes]

    def lane_stats(self) -> list[dict[str, Any]]:
        return [
            {
                "in_flight": len(lane.in_flight),
                "retained_rows": lane.retained_rows,
                "checkpoint_seq": lane.checkpoint_seq,
                "restarts": lane.restarts,
                "last_ack": lane.last_ack,
            }
            for lane in self._lanes
        ]


def _coalesce(items: list[Batch], max_rows: int) -> list[Batch]:
    """Join consecutive batches of the same kind, then cut into pieces of <= max_rows."""
    out: list[Batch] = []
    run: list[Batch] = []
    for item in [*items, None]:
        if run and (item is None or type(item) is not type(run[0])):
            joined = type(run[0]).concat(run)  # type: ignore[arg-type]
            out.extend(joined.take(slice(i, i + max_rows)) for i in range(0, len(joined), max_rows))
            run = []
        if item is not None:
            run.append(item)
    return out
