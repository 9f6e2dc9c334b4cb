"""Batched, bounded persistence of events, per-session counts and market analytics.

`PersistenceActor` (async; `cluster/` makes it a Ray actor) holds rows in a
`PersistenceBuffer`, writes them through a `SqlSink` every `flush_interval_s` or as soon as
`batch_rows` are waiting, and survives a slow or absent database: rows wait in the buffer, the
oldest are dropped (counted) past `buffer_max_rows`, and writes resume with backoff when the
database is back. Checkpoints are not buffered: `save_checkpoint` writes at once.

Error policy: bad rows are rejected and counted per reason at `put_*`; a write that fails for
connection reasons is retried forever with backoff; one that fails otherwise is retried
`max_write_attempts` times, then its rows are dropped and counted. Nothing here raises to callers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from actors.persistence.backoff import Backoff
from actors.persistence.buffer import EVENTS, KINDS, PersistenceBuffer
from config.base import redact_url
from config.settings import StorageConfig
from schemas.api import EventQuery
from schemas.events import Event
from schemas.records import AnalyticsRow, Checkpoint, SessionCountRow
from storage.bulk import Sink, SqlSink
from storage.checkpoints import CheckpointStore
from storage.database import describe_error, engine_for, is_transient, normalize_url
from storage.history import EventHistory

log = logging.getLogger(__name__)


# -- the actor ------------------------------------------------------------------------------


class PersistenceActor:
    """Accept rows from the pipeline and write them in bulk; never raises to callers.

    Plain class: `cluster/` applies `ray.remote`. All methods are async, so a Ray actor runs
    them (and the background flush loop) in one event loop.
    """

    def __init__(
        self,
        database_url: str,
        config: StorageConfig | None = None,
        *,
        sink: Sink | None = None,
    ) -> None:
        self._config = config or StorageConfig()
        self._url = normalize_url(database_url)
        self._buffer = PersistenceBuffer(self._config.buffer_max_rows)
        engine = engine_for(self._url, self._config)
        self._sink: Sink = sink or SqlSink(engine)
        self._checkpoints = CheckpointStore(engine)
        self._history = EventHistory(engine)
        self._checkpoint_errors = 0
        self._backoff = Backoff(self._config.retry_initial_s, self._config.retry_max_s)
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._failing = False
        self._retry_in_s = 0.0
        self._attempts: Counter[str] = Counter()  # consecutive non-connection failures per kind
        self._written: Counter[str] = Counter()
        self._duplicates = 0
        self._errors = 0
        self._flushes = 0
        self._last_error: str | None = None
        self._last_error_ms: int | None = None
        self._last_write_ms: int | None = None

    # input

    async def put_events(self, events: Sequence[Event]) -> int:
        """Queue events for `event_history`; return how many were accepted."""
        return self._accepted(self._buffer.add_events(events))

    async def put_session_counts(self, rows: Sequence[SessionCountRow | Mapping[str, Any]]) -> int:
        """Queue per-ticker session totals for `event_sessions` (upserted); return accepted."""
        return self._accepted(self._buffer.add_session_counts(rows))

    async def put_analytics(self, rows: Sequence[AnalyticsRow | Mapping[str, Any]]) -> int:
        """Queue 10-second analytics records for `market_analytics`; return accepted."""
        return self._accepted(self._buffer.add_analytics(rows))

    def _accepted(self, n: int) -> int:
        self._ensure_started()
        if max(self._buffer.sizes().values()) >= self._config.batch_rows:
            self._wake.set()
        return n

    # checkpoints (written at once: a shard relies on them to restart)

    async def save_checkpoint(self, shard: int, last_seq: int, watermark: int, blob: bytes) -> bool:
        """Store a shard's snapshot, replacing its older ones; False if the database refused."""
        try:
            await self._checkpoints.save(shard, last_seq, watermark, blob)
        except Exception as exc:
            self._checkpoint_failed(exc)
            return False
        return True

    async def load_checkpoint(self, shard: int) -> Checkpoint | None:
        """A shard's newest snapshot as (last_seq, watermark, blob); None if none or unreadable."""
        try:
            return await self._checkpoints.load_latest(shard)
        except Exception as exc:
            self._checkpoint_failed(exc)
            return None

    def _checkpoint_failed(self, exc: Exception) -> None:
        self._checkpoint_errors += 1
        self._last_error = describe_error(exc, self._url)
        self._last_error_ms = time.time_ns() // 1_000_000
        log.warning("checkpoint database error: %s", self._last_error)

    # reads (notebooks, the gateway's history API)

    async def query_events(self, query: EventQuery) -> list[dict[str, Any]]:
        """Stored events matching `query` ([] if the database is down)."""
        try:
            return await self._history.query(query)
        except Exception as exc:
            self._checkpoint_failed(exc)
            return []

    async def ping(self) -> str:
        return "ok"

    # control

    async def flush(self) -> bool:
        """Write everything buffered now; return False if the database refused a write."""
        self._ensure_started()
        return await self._write_all()

    async def stats(self) -> dict[str, Any]:
        """Counters for metrics: buffered, written, duplicates, dropped, rejected, last error."""
        sizes = self._buffer.sizes()
        return {
            "database": redact_url(self._url),
            "db_up": not self._failing,
            "buffered": sizes,
            "buffered_rows": sum(sizes.values()),
            "written": {kind: self._written[kind] for kind in KINDS},
            "duplicates": self._duplicates,
            "dropped": dict(self._buffer.dropped),
            "dropped_rows": sum(self._buffer.dropped.values()),
            "rejected": dict(self._buffer.rejected),
            "errors": self._errors,
            "checkpoint_errors": self._checkpoint_errors,
            "last_error": self._last_error,
            "last_error_ms": self._last_error_ms,
            "last_write_ms": self._last_write_ms,
            "flushes": self._flushes,
            "retry_in_s": self._retry_in_s if self._failing else 0.0,
        }

    async def close(self) -> None:
        """Stop the loop, try a last flush and release the database (unwritten rows are counted)."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._write_all()
        for kind, left in self._buffer.sizes().items():
            if left:
                self._buffer.dropped[f"{kind}_unwritten_at_close"] += left
                self._buffer.take(kind, left)
        await self._sink.close()

    # the loop

    def _ensure_started(self) -> None:
        if self._closed or (self._task is not None and not self._task.done()):
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name="persistence-flush")

    async def _run(self) -> None:
        while True:
            try:
                await self._pause()
                if any(self._buffer.sizes().values()):
                    await self._write_all()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not stop persistence; it is logged and retried
                log.exception("persistence loop error")
                self._errors += 1
                await asyncio.sleep(self._config.flush_interval_s)

    async def _pause(self) -> None:
        if self._failing and any(self._buffer.sizes().values()):
            self._retry_in_s = self._backoff.next_delay()
            await asyncio.sleep(self._retry_in_s)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self._config.flush_interval_s)
        self._wake.clear()

    async def _write_all(self) -> bool:
        async with self._lock:
            self._flushes += 1
            for kind in KINDS:
                while rows := self._buffer.take(kind, self._config.batch_rows):
                    if not await self._write(kind, rows):
                        return False
            return True

    async def _write(self, kind: str, rows: list[Any]) -> bool:
        try:
            new = await self._sink.write(kind, rows)
        except asyncio.CancelledError:
            self._buffer.restore(kind, rows)
            raise
        except Exception as exc:
            await self._on_failure(kind, rows, exc)
            return False
        self._on_success(kind, rows, new)
        return True

    def _on_success(self, kind: str, rows: list[Any], new: int) -> None:
        self._written[kind] += new
        if kind == EVENTS:
            self._duplicates += len(rows) - new
        self._attempts[kind] = 0
        self._last_write_ms = time.time_ns() // 1_000_000
        if self._failing:
            log.info("database writes resumed (%s)", redact_url(self._url))
        self._failing = False
        self._backoff.reset()

    async def _on_failure(self, kind: str, rows: list[Any], exc: Exception) -> None:
        # Warn once per outage; the retries that follow are visible in stats().
        level = logging.DEBUG if self._failing else logging.WARNING
        self._errors += 1
        self._failing = True
        self._last_error = describe_error(exc, self._url)
        self._last_error_ms = time.time_ns() // 1_000_000
        transient = is_transient(exc)
        self._attempts[kind] += 0 if transient else 1
        if self._attempts[kind] >= self._config.max_write_attempts:
            self._buffer.dropped[f"{kind}_write_error"] += len(rows)
            self._attempts[kind] = 0
            log.error("dropped %d %s rows after errors: %s", len(rows), kind, self._last_error)
        else:
            self._buffer.restore(kind, rows)
            log.log(level, "database write failed, will retry: %s", self._last_error)
        try:
            await self._sink.reset()
        except Exception:  # the pool is being rebuilt anyway
            log.debug("engine reset failed", exc_info=True)
