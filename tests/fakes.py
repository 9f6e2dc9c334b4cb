"""Hand-written fakes of the remote roles, shared by the unit tests (no Ray, no servers).

Each fake has the methods of the Protocol its consumer declares (`ShardLink` for the ingest,
`Sink` for the persistence actor, ...) and records what it was given, so a test can assert
on what crossed the boundary. Failures are the project's own errors, as the handles raise
them (`actors.ShardUnavailable`, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from actors import ShardUnavailable
from schemas.batches import BarBatch, TradeBatch


class FakeShard:
    """A detector shard for the ingest: records every batch; can crash and 'restart' at a
    checkpoint seq (everything after it is lost with the process, as on a real restart)."""

    def __init__(self) -> None:
        self.batches: list[TradeBatch | BarBatch] = []
        self.crash_next = False
        self.restored_seq = -1
        self.calls = 0

    async def _ack(self, batch: TradeBatch | BarBatch) -> dict[str, Any]:
        self.calls += 1
        if self.crash_next:
            self.crash_next = False
            self.batches = [b.take(b.seq <= self.restored_seq) for b in self.batches]
            raise ShardUnavailable("fake shard crashed")
        self.batches.append(batch)
        return {"events": 0, "checkpoint_seq": -1, "last_seq": int(batch.seq[-1])}

    def send_trades(self, batch: TradeBatch) -> asyncio.Future[dict[str, Any]]:
        return asyncio.ensure_future(self._ack(batch))

    def send_bars(self, batch: BarBatch) -> asyncio.Future[dict[str, Any]]:
        return asyncio.ensure_future(self._ack(batch))

    async def ping(self, timeout_s: float = 2.0) -> bool:
        return True

    async def last_seq(self) -> int:
        return self.restored_seq

    async def flush(self) -> dict[str, Any]:
        return {}

    def seqs(self) -> list[int]:
        return [s for b in self.batches for s in b.seq.tolist()]


class FakeSink:
    """A database for the persistence actor: fails with the queued errors first, then stores
    rows by kind."""

    def __init__(self, errors: list[Exception]) -> None:
        self.errors = errors
        self.rows: dict[str, list[Any]] = {}
        self.resets = 0

    async def write(self, kind: str, rows: list[Any]) -> int:
        if self.errors:
            raise self.errors.pop(0)
        self.rows.setdefault(kind, []).extend(rows)
        return len(rows)

    async def reset(self) -> None:
        self.resets += 1

    async def close(self) -> None:
        pass


class FakeUniverse:
    """The universe coordinator for the ingest: a subscription set that tests change by hand
    (`publish`), answered at once by `next_subscription_set` when its version moved."""

    def __init__(self, tickers: list[str]) -> None:
        self.version = 0
        self.tickers = list(tickers)
        self._changed = asyncio.Event()

    def publish(self, tickers: list[str]) -> None:
        self.version += 1
        self.tickers = list(tickers)
        self._changed.set()

    async def subscription_set(self) -> tuple[int, list[str]]:
        return self.version, list(self.tickers)

    async def next_subscription_set(self, after: int, timeout_s: float) -> tuple[int, list[str]]:
        if self.version == after:
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout_s)
        return await self.subscription_set()
