"""IngestEngine: the one path of a row from a source to the detector shards (pure, no Ray).

For every source batch, in arrival order:

1. judge every row once (`actors/market/validity.py`: bad ticker, price, size) and drop the
   symbols outside the subscription set (`unknown_symbol`), each counted by reason;
2. number the kept rows with the ingest's `seq` (gap-free, shared by trades and bars) and
   append each shard's rows (`shard = crc32(ticker) % N`) to that shard's lane, with the
   verdict (`valid`) that the shard, its bars and its analytics then trust;
3. ship a lane as one columnar batch when it holds `batch_max_rows`, or when its oldest row
   has waited `batch_max_ms` since it reached the ingest and the shard has a free in-flight
   slot. While a shard is busy (all `max_inflight_per_shard` batches unacknowledged) its rows
   keep collecting up to `batch_max_rows`, so batches grow with the load.

The ingest is the one place where rows are coalesced, on one clock: sources hand over what
they decoded, as they decoded it; the actor's inbox gathers them until a batch's worth or
`batch_max_ms` from the oldest row's arrival, and the lanes count their wait from that same
arrival. No Ray call per tick.

Error policy: bad rows are dropped with a counted reason; a shard that fails (the handle
raises `ShardUnavailable`) is waited for, asked for the last ingest `seq` its restored
checkpoint covers, and sent every retained row after it, so nothing it would have seen is
lost. Rows evicted from the retention window before a checkpoint covered them are counted as
`lost_on_restart`. `CancelledError` always propagates.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from actors import ShardUnavailable
from actors.ingest.routing import shard_of
from actors.market.validity import check_bars, check_trades
from config.settings import Settings
from schemas.batches import BarBatch, Batch, TradeBatch

log = logging.getLogger(__name__)
PENDING_POLL_S = 0.005  # how often held rows are offered to a busy shard again
MAX_ROUTED_SYMBOLS = 200_000  # distinct symbols remembered for routing before starting over
RESTART_POLL_S = 0.2  # how often a failed shard is asked whether it is back


class ShardLink(Protocol):
    """What the ingest needs of one detector shard (`actors.handles.ShardHandle`, or a fake).

    `send_*` submit at once and return the acknowledgement's awaitable; every call raises
    `actors.ShardUnavailable` when the shard is gone.
    """

    def send_trades(self, batch: TradeBatch) -> Awaitable[dict[str, Any]]: ...

    def send_bars(self, batch: BarBatch) -> Awaitable[dict[str, Any]]: ...

    async def flush(self) -> dict[str, Any]: ...

    async def last_seq(self) -> int: ...

    async def ping(self, timeout_s: float = 2.0) -> bool: ...


@dataclass
class ShardLane:
    """Per-shard send state: pending rows, calls in flight, retained batches for recovery."""

    link: ShardLink
    pending: list[Batch] = field(default_factory=list)
    pending_rows: int = 0
    pending_since: float = 0.0
    in_flight: deque[tuple[asyncio.Future[dict[str, Any]], Batch]] = field(default_factory=deque)
    retained: deque[Batch] = field(default_factory=deque)
    retained_rows: int = 0
    checkpoint_seq: int = -1
    evicted: deque[np.ndarray] = field(default_factory=deque)  # seqs pushed out, uncovered
    last_ack: dict[str, Any] = field(default_factory=dict)
    restarts: int = 0


class IngestEngine:
    """Judging, numbering, routing, batching and shard recovery; shard links are injected
    (`actors.handles.ShardHandle` in the actor, fakes in unit tests)."""

    def __init__(self, settings: Settings, shards: Sequence[ShardLink]) -> None:
        self._cfg = settings.ingest
        self._lanes = [ShardLane(link) for link in shards]
        self._allowed: frozenset[str] | None = None  # None: every symbol is routed
        self.subscription_version = -1
        self._codes: dict[str, int] = {}  # symbol -> shard, -1 when not subscribed
        self._seq = 0
        self.rejected: Counter[str] = Counter()
        self.rows_in = 0
        self.rows_sent = 0
        self.batches_sent = 0
        self.events = 0
        self.last_event_ms = 0
        self.lost_on_restart = 0

    # -- judging and routing -----------------------------------------------------------------

    def set_subscriptions(self, version: int, tickers: Iterable[str]) -> None:
        """Route only these symbols from now on (unless every symbol is accepted)."""
        self.subscription_version = version
        if self._cfg.accept_unknown_symbols:
            return
        allowed = frozenset(tickers)
        if allowed != self._allowed:
            self._allowed, self._codes = allowed, {}

    def _route(self, sym: np.ndarray) -> np.ndarray:
        """The shard of each row, or -1 for a symbol outside the subscription set.

        One dict lookup per row: symbols repeat, so each distinct one is hashed and checked
        against the subscription set once (string sorts in `np.isin`/`np.unique` cost ~6x).
        """
        codes = self._codes
        names = sym.tolist()
        try:
            return np.fromiter(map(codes.__getitem__, names), np.int64, len(names))
        except KeyError:
            allowed = self._allowed
            if len(codes) > MAX_ROUTED_SYMBOLS:  # bad feeds must not grow it without bound
                codes.clear()
            for name in set(names).difference(codes):
                known = allowed is None or name in allowed
                codes[name] = shard_of(name, len(self._lanes)) if known else -1
            return np.fromiter(map(codes.__getitem__, names), np.int64, len(names))

    def _judge(self, batch: Batch, shard: np.ndarray) -> np.ndarray:
        """The rows to keep: valid (counted by reason otherwise) and subscribed."""
        max_price = self._cfg.max_price
        if isinstance(batch, TradeBatch):
            keep = check_trades(batch, self.rejected, max_price=max_price)
        else:
            keep = check_bars(batch, self.rejected, max_price=max_price)
        unknown = (shard < 0) & keep
        if unknown.any():
            self.rejected["unknown_symbol"] += int(np.count_nonzero(unknown))
            keep &= ~unknown
        return keep

    def _sequence(self, batch: Batch) -> Batch:
        """The kept rows numbered with the ingest's seq, judged valid."""
        n = len(batch)
        seq = np.arange(self._seq, self._seq + n, dtype=np.int64)
        self._seq += n
        return dataclasses.replace(batch, seq=seq, valid=np.ones(n, dtype=bool))

    # -- lanes and sending -------------------------------------------------------------------

    async def accept(self, batch: Batch, arrived: float | None = None) -> None:
        """Judge, number and route one source batch; ship full lanes. `arrived`: when its
        oldest row reached the ingest (monotonic s; default now), where a lane's wait starts."""
        self.rows_in += len(batch)
        idx = self._route(batch.sym)
        keep = self._judge(batch, idx)
        if not keep.all():
            batch, idx = batch.take(keep), idx[keep]
        if not len(batch):
            return
        batch = self._sequence(batch)
        times = batch.t if isinstance(batch, TradeBatch) else batch.end
        self.last_event_ms = max(self.last_event_ms, int(times.max()))
        now = time.monotonic() if arrived is None else arrived
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
    def _call(lane: ShardLane, batch: Batch) -> Awaitable[dict[str, Any]]:
        if isinstance(batch, TradeBatch):
            return lane.link.send_trades(batch)
        return lane.link.send_bars(batch)

    def _retain(self, lane: ShardLane, batch: Batch) -> None:
        if self._cfg.retain_rows_per_shard == 0:
            return
        lane.retained.append(batch)
        lane.retained_rows += len(batch)
        while lane.retained_rows > self._cfg.retain_rows_per_shard and len(lane.retained) > 1:
            old = lane.retained.popleft()
            lane.retained_rows -= len(old)
            if int(old.seq[-1]) > lane.checkpoint_seq:
                self.rejected["retention_overflow"] += len(old)
                lane.evicted.append(old.seq)

    def _trim(self, lane: ShardLane) -> None:
        while lane.retained and int(lane.retained[0].seq[-1]) <= lane.checkpoint_seq:
            lane.retained_rows -= len(lane.retained.popleft())
        while lane.evicted and int(lane.evicted[0][-1]) <= lane.checkpoint_seq:
            lane.evicted.popleft()

    async def _await_oldest(self, k: int) -> None:
        lane = self._lanes[k]
        ref, _batch = lane.in_flight[0]
        try:
            ack = await ref
        except ShardUnavailable:
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
        while not await lane.link.ping():  # noqa: ASYNC110 - polls a remote actor
            await asyncio.sleep(RESTART_POLL_S)
        last = await lane.link.last_seq()
        # Rows of this shard pushed out of retention beyond its checkpoint cannot be re-sent.
        self.lost_on_restart += sum(int((seqs > last).sum()) for seqs in lane.evicted)
        lane.evicted.clear()
        lane.checkpoint_seq = last
        resend = [b for b in lane.retained if int(b.seq[-1]) > last]
        lane.retained.clear()
        lane.retained_rows = 0
        log.warning("shard %d back at seq %d; re-sending %d batches", k, last, len(resend))
        for batch in resend:
            rows = batch.take(batch.seq > last)
            self._retain(lane, rows)
            try:
                ack = await self._call(lane, rows)
            except ShardUnavailable:
                await self._recover(k)
                return
            self._on_ack(lane, ack)

    async def finish(self) -> list[dict[str, Any]]:
        """End of data: ship everything, wait for acks, let shards finalize pending bars."""
        await self.flush_due(force=True)
        await self.drain()
        return [await lane.link.flush() for lane in self._lanes]

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


def join_runs(items: Sequence[Batch]) -> list[Batch]:
    """Consecutive batches of the same kind joined into one (trades and bars keep their order)."""
    out: list[Batch] = []
    run: list[Batch] = []
    for item in [*items, None]:
        if run and (item is None or type(item) is not type(run[0])):
            out.append(run[0] if len(run) == 1 else type(run[0]).concat(run))  # type: ignore[arg-type]
            run = []
        if item is not None:
            run.append(item)
    return out


def _coalesce(items: list[Batch], max_rows: int) -> list[Batch]:
    """`join_runs`, then each joined batch cut into pieces of at most `max_rows` rows."""
    return [
        joined.take(slice(i, i + max_rows))
        for joined in join_runs(items)
        for i in range(0, len(joined), max_rows)
    ]
