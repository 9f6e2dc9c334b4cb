"""DetectorShard: the detector shard actor, a thin shell around `DetectorEngine`.

A plain class (`cluster/graph.py` applies `ray.remote` to `ShardRayActor`, which builds the
sinks below over handles). Synchronous on purpose: Ray runs a sync actor's calls one at a
time in submission order, so batches from the ingest are processed in the order they were
sent.

Output: one `ShardOutput` per input batch, sent to the priority queue (fire-and-forget with a
bound on calls in flight). Crash recovery: every `checkpoint_interval_s` the engine state and
the last processed ingest `seq` are saved through the checkpoint sink; after a restart the
shard restores the latest checkpoint, and the ingest re-sends every row after `last_seq`
(rows at or below it are dropped by the engine as duplicates, and the queue drops re-emitted
event ids). So counts and extremes continue as if nothing happened.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any, Protocol

from actors.detection.engine import DetectorEngine
from config.settings import Settings
from schemas.batches import BarBatch, TradeBatch
from schemas.events import ShardOutput

log = logging.getLogger(__name__)


class OutputSink(Protocol):
    """Where a shard's outputs go (`actors.handles.QueueSink`, or a fake)."""

    def put(self, output: ShardOutput) -> None: ...

    def wait_all(self) -> None: ...


class CheckpointPort(Protocol):
    """Where a shard's checkpoints live (`actors.handles.CheckpointSink`, or a fake)."""

    def save(self, shard: int, last_seq: int, watermark: int, blob: bytes) -> bool: ...

    def load_latest(self, shard: int) -> tuple[int, int, bytes] | None: ...


class ShardAck(dict[str, Any]):
    """What `on_trades` returns to the ingest: rows, events, watermark, last/checkpoint seq."""


class DetectorShard:
    """Per-shard detection: batches in, events out to the queue, checkpoints saved."""

    def __init__(
        self, shard: int, settings: Settings, queue: OutputSink,
        checkpoints: CheckpointPort | None = None, restored: bool = False,
    ) -> None:
        self.shard = shard
        self._settings = settings
        self._queue = queue
        self._checkpoints = checkpoints
        self._engine = DetectorEngine(settings.detection, shard)
        self._checkpoint_seq = -1
        self._last_checkpoint = time.monotonic()
        self._rows = 0
        self._events = 0
        self._batches = 0
        self._restored_from = -1
        self._counts: Counter[str] = Counter()
        if restored and checkpoints is not None:
            self._restore()

    # -- data path --------------------------------------------------------------------------

    def on_trades(self, batch: TradeBatch) -> ShardAck:
        events = self._engine.process_trades(batch)
        return self._emit(len(batch), events)

    def on_bars(self, batch: BarBatch) -> ShardAck:
        events = self._engine.process_bars(batch)
        return self._emit(len(batch), events)

    def flush(self) -> ShardAck:
        """End of data: finalize pending bars and push the last analytics."""
        events = self._engine.flush()
        ack = self._emit(0, events, force=True)
        self._queue.wait_all()
        return ack

    def _emit(self, rows: int, events: list[Any], force: bool = False) -> ShardAck:
        self._rows += rows
        self._events += len(events)
        self._batches += 1
        analytics = self._engine.take_analytics()
        if events or analytics or force or rows:
            self._queue.put(ShardOutput(
                shard=self.shard, events=events, watermark=self._engine.watermark, rows=rows,
                analytics=analytics, rejected=self._take_rejected(),
                sessions=self._engine.sessions,
            ))
        self._maybe_checkpoint()
        return ShardAck(
            rows=rows, events=len(events), watermark=self._engine.watermark,
            last_seq=self._engine.last_seq, checkpoint_seq=self._checkpoint_seq,
        )

    def _take_rejected(self) -> dict[str, int]:
        total = Counter(self._engine.rejected())
        delta = total - self._counts
        self._counts = total
        return dict(delta)

    # -- checkpoints ------------------------------------------------------------------------

    def _maybe_checkpoint(self) -> None:
        if self._checkpoints is None:
            return
        if time.monotonic() - self._last_checkpoint < self._settings.shards.checkpoint_interval_s:
            return
        self.checkpoint()

    def checkpoint(self) -> int:
        """Save the engine state now; return the last seq it covers."""
        if self._checkpoints is None:
            return -1
        seq = self._engine.last_seq
        self._last_checkpoint = time.monotonic()
        if self._checkpoints.save(self.shard, seq, self._engine.watermark, self._engine.snapshot()):
            self._checkpoint_seq = seq  # only a durable checkpoint lets the ingest trim rows
        return self._checkpoint_seq

    def _restore(self) -> None:
        assert self._checkpoints is not None
        found = self._checkpoints.load_latest(self.shard)
        if found is None:
            log.warning("shard %d restarted with no checkpoint: starting empty", self.shard)
            return
        last_seq, _watermark, blob = found
        self._engine = DetectorEngine.restore(self._settings.detection, self.shard, blob)
        self._checkpoint_seq = last_seq
        self._restored_from = last_seq
        log.warning("shard %d restored from checkpoint at seq %d", self.shard, last_seq)

    # -- introspection (notebooks, status) --------------------------------------------------

    def last_seq(self) -> int:
        return int(self._engine.last_seq)

    def ticker_state(self, ticker: str) -> dict[str, Any]:
        return self._engine.ticker_state(ticker)

    def stats(self) -> dict[str, Any]:
        return {
            "shard": self.shard,
            "rows": self._rows,
            "events": self._events,
            "batches": self._batches,
            "watermark": self._engine.watermark,
            "last_seq": self._engine.last_seq,
            "checkpoint_seq": self._checkpoint_seq,
            "restored_from": self._restored_from,
            "rejected": dict(self._engine.rejected()),
        }

    def pid(self) -> int:
        import os

        return os.getpid()

    def ping(self) -> str:
        return "ok"
