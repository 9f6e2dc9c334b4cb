"""Every Ray call goes through one handle class per remote role (STYLE §5).

Coordinators take these handles, so unit tests pass hand-written fakes with the same methods
and never start Ray. Sync handles (`QueueSink`, `CheckpointSink`) serve the synchronous shard
actor; async ones serve the ingest and the gateway, which live on event loops and must
`await` refs instead of blocking in `ray.get`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import ray

from schemas.api import Collected, UserView
from schemas.batches import BarBatch, TradeBatch
from schemas.events import ShardOutput


class QueueSink:
    """Shard -> priority queue: fire-and-forget puts with a bound on calls in flight."""

    def __init__(self, actor: Any, max_in_flight: int = 16) -> None:
        self._actor = actor
        self._max = max_in_flight
        self._refs: list[Any] = []

    def put(self, output: ShardOutput) -> None:
        self._refs.append(self._actor.put.remote(output))
        if len(self._refs) > self._max:
            done, self._refs = ray.wait(self._refs, num_returns=len(self._refs) - self._max)
            ray.get(done)

    def wait_all(self) -> None:
        refs, self._refs = self._refs, []
        ray.get(refs)


class CheckpointSink:
    """Shard -> persistence: durable (synchronous) checkpoint save and load."""

    def __init__(self, actor: Any) -> None:
        self._actor = actor

    def save(self, shard: int, last_seq: int, watermark: int, blob: bytes) -> bool:
        """True once the checkpoint is durable (False: the database refused it)."""
        return bool(ray.get(self._actor.save_checkpoint.remote(shard, last_seq, watermark, blob)))

    def load_latest(self, shard: int) -> tuple[int, int, bytes] | None:
        found = ray.get(self._actor.load_checkpoint.remote(shard))
        if found is None:
            return None
        last_seq, watermark, blob = found
        return int(last_seq), int(watermark), bytes(blob)


class ShardHandle:
    """Ingest -> one detector shard (async)."""

    def __init__(self, index: int, actor: Any) -> None:
        self.index = index
        self.actor = actor

    def send_trades(self, batch: TradeBatch) -> Any:
        return self.actor.on_trades.remote(batch)

    def send_bars(self, batch: BarBatch) -> Any:
        return self.actor.on_bars.remote(batch)

    async def flush(self) -> dict[str, Any]:
        return dict(await self.actor.flush.remote())

    async def last_seq(self) -> int:
        return int(await self.actor.last_seq.remote())

    async def ping(self, timeout_s: float = 2.0) -> bool:
        try:
            await asyncio.wait_for(self.actor.ping.remote(), timeout_s)
        except (ray.exceptions.RayActorError, TimeoutError):
            return False
        return True

    async def stats(self) -> dict[str, Any]:
        return dict(await self.actor.stats.remote())


class UniverseHandle:
    """Any caller -> the universe coordinator (async)."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    async def subscription_set(self) -> tuple[int, list[str]]:
        version, tickers = await self.actor.subscription_set.remote()
        return int(version), list(tickers)

    async def add_tickers(self, tickers: list[str]) -> int:
        return int(await self.actor.add_tickers.remote(tickers))

    async def user_view(self, user_id: str) -> UserView:
        return await self.actor.user_view.remote(user_id)  # type: ignore[no-any-return]

    async def list_universes(self) -> dict[str, int]:
        return dict(await self.actor.list_universes.remote())

    async def universe_tickers(self, name: str) -> list[str]:
        return list(await self.actor.universe_tickers.remote(name))

    async def select(self, user_id: str, tracker: str, names: list[str]) -> UserView:
        return await self.actor.select.remote(user_id, tracker, names)  # type: ignore[no-any-return]

    async def set_filters(self, user_id: str, filters: dict[str, Any]) -> UserView:
        return await self.actor.set_filters.remote(user_id, filters)  # type: ignore[no-any-return]


class QueueHandle:
    """Gateway -> priority queue (async pull)."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    async def collect(self, max_events: int, timeout_s: float) -> Collected:
        return await self.actor.collect.remote(max_events, timeout_s)  # type: ignore[no-any-return]

    async def stats(self) -> dict[str, Any]:
        return dict(await self.actor.stats.remote())


class IngestHandle:
    """Status readers -> the ingest actor (async)."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    async def stats(self) -> dict[str, Any]:
        return dict(await self.actor.stats.remote())
