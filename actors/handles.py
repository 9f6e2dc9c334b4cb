"""Every call between actors goes through one handle class per remote role (docs/style.md §5).

Coordinators take these handles (typed by the Protocols their pure modules declare), so unit
tests pass hand-written fakes with the same methods and never start Ray. A handle turns Ray's
"the actor is gone" failures (`RayActorError`, lost objects) into the project's own errors
(`actors.ShardUnavailable`, ...), so no pure module imports `ray`. An error raised *inside* a
remote method is not translated: it is a bug, and it surfaces as Ray's `RayTaskError`.

Sync handles (`QueueSink`, `CheckpointSink`) serve the synchronous shard actor; the others
serve actors that live on event loops and must `await` refs instead of blocking in `ray.get`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import ray

from actors import (
    ActorUnavailable,
    IngestUnavailable,
    PersistenceUnavailable,
    QueueUnavailable,
    ShardUnavailable,
    UniverseUnavailable,
)
from schemas.api import Collected, EventQuery, UserView
from schemas.batches import BarBatch, TradeBatch
from schemas.events import Event, ShardOutput
from schemas.records import AnalyticsRow, SessionCountRow

GONE = (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError)


async def _await(ref: Any, error: type[ActorUnavailable], what: str) -> Any:
    """The result of an actor call, with Ray's failures turned into `error`."""
    try:
        return await ref
    except GONE as e:
        raise error(f"{what}: {type(e).__name__}") from e


def _get(refs: Any, error: type[ActorUnavailable], what: str) -> Any:
    """`ray.get` with Ray's failures turned into `error` (sync callers)."""
    try:
        return ray.get(refs)
    except GONE as e:
        raise error(f"{what}: {type(e).__name__}") from e


class _AsyncHandle:
    """A remote actor called from an event loop; failures become `error`."""

    error: type[ActorUnavailable] = ActorUnavailable
    role = "actor"

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def _call(self, method: str, *args: Any) -> Awaitable[Any]:
        """Submit `method(*args)` now; the returned awaitable yields its result."""
        ref = getattr(self.actor, method).remote(*args)
        return _await(ref, self.error, f"{self.role}.{method}")

    async def ping(self, timeout_s: float = 2.0) -> bool:
        """Whether the actor answers within `timeout_s` (False while it is down)."""
        try:
            await asyncio.wait_for(self._call("ping"), timeout_s)
        except (ActorUnavailable, TimeoutError):
            return False
        return True

    async def stats(self) -> dict[str, Any]:
        return dict(await self._call("stats"))


# -- the data path --------------------------------------------------------------------------


class ShardHandle(_AsyncHandle):
    """Ingest -> one detector shard. `send_*` submit at once and return the ack's awaitable."""

    error = ShardUnavailable
    role = "shard"

    def __init__(self, index: int, actor: Any) -> None:
        super().__init__(actor)
        self.index = index

    def send_trades(self, batch: TradeBatch) -> Awaitable[dict[str, Any]]:
        return self._call("on_trades", batch)

    def send_bars(self, batch: BarBatch) -> Awaitable[dict[str, Any]]:
        return self._call("on_bars", batch)

    async def flush(self) -> dict[str, Any]:
        return dict(await self._call("flush"))

    async def last_seq(self) -> int:
        return int(await self._call("last_seq"))


class QueueSink:
    """Shard -> priority queue: fire-and-forget puts with a bound on calls in flight (sync)."""

    def __init__(self, actor: Any, max_in_flight: int = 16) -> None:
        self._actor = actor
        self._max = max_in_flight
        self._refs: list[Any] = []

    def put(self, output: ShardOutput) -> None:
        self._refs.append(self._actor.put.remote(output))
        if len(self._refs) > self._max:
            done, self._refs = ray.wait(self._refs, num_returns=len(self._refs) - self._max)
            _get(done, QueueUnavailable, "queue.put")

    def wait_all(self) -> None:
        refs, self._refs = self._refs, []
        _get(refs, QueueUnavailable, "queue.put")


class CheckpointSink:
    """Shard -> persistence: durable (synchronous) checkpoint save and load."""

    def __init__(self, actor: Any) -> None:
        self._actor = actor

    def save(self, shard: int, last_seq: int, watermark: int, blob: bytes) -> bool:
        """True once the checkpoint is durable (False: the database refused it)."""
        ref = self._actor.save_checkpoint.remote(shard, last_seq, watermark, blob)
        return bool(_get(ref, PersistenceUnavailable, "persistence.save_checkpoint"))

    def load_latest(self, shard: int) -> tuple[int, int, bytes] | None:
        ref = self._actor.load_checkpoint.remote(shard)
        found = _get(ref, PersistenceUnavailable, "persistence.load_checkpoint")
        if found is None:
            return None
        last_seq, watermark, blob = found
        return int(last_seq), int(watermark), bytes(blob)


class PersistenceHandle(_AsyncHandle):
    """Queue, gateway and notebooks -> the persistence actor (async)."""

    error = PersistenceUnavailable
    role = "persistence"

    async def put_events(self, events: list[Event]) -> int:
        return int(await self._call("put_events", events))

    async def put_session_counts(self, rows: list[SessionCountRow]) -> int:
        return int(await self._call("put_session_counts", rows))

    async def put_analytics(self, rows: list[AnalyticsRow]) -> int:
        return int(await self._call("put_analytics", rows))

    async def query_events(self, query: EventQuery) -> list[dict[str, Any]]:
        return list(await self._call("query_events", query))


# -- coordination and reads -----------------------------------------------------------------


class UniverseHandle(_AsyncHandle):
    """Any caller -> the universe coordinator (async)."""

    error = UniverseUnavailable
    role = "universe"

    async def subscription_set(self) -> tuple[int, list[str]]:
        version, tickers = await self._call("subscription_set")
        return int(version), list(tickers)

    async def next_subscription_set(self, after: int, timeout_s: float) -> tuple[int, list[str]]:
        """The set once its version differs from `after` (or the current one at `timeout_s`)."""
        version, tickers = await self._call("next_subscription_set", after, timeout_s)
        return int(version), list(tickers)

    async def add_tickers(self, tickers: list[str]) -> int:
        return int(await self._call("add_tickers", tickers))

    async def user_view(self, user_id: str) -> UserView:
        result: UserView = await self._call("user_view", user_id)
        return result

    async def list_universes(self) -> dict[str, int]:
        return dict(await self._call("list_universes"))

    async def universe_tickers(self, name: str) -> list[str]:
        return list(await self._call("universe_tickers", name))

    async def select(self, user_id: str, tracker: str, names: list[str]) -> UserView:
        result: UserView = await self._call("select", user_id, tracker, names)
        return result

    async def set_filters(self, user_id: str, filters: dict[str, Any]) -> UserView:
        result: UserView = await self._call("set_filters", user_id, filters)
        return result


class QueueHandle(_AsyncHandle):
    """Gateway -> priority queue (async pull)."""

    error = QueueUnavailable
    role = "queue"

    async def collect(self, max_events: int, timeout_s: float) -> Collected:
        result: Collected = await self._call("collect", max_events, timeout_s)
        return result

    async def session_counts(self) -> dict[str, Any]:
        return dict(await self._call("session_counts"))


class IngestHandle(_AsyncHandle):
    """Status readers -> the ingest actor (async)."""

    error = IngestUnavailable
    role = "ingest"

