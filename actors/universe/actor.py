"""The universe coordinator actor: `UniverseRegistry` plus persistence of user selections.

Plain async class (`cluster/graph.py` applies `ray.remote`). Selections and filters are written
through a `SqlUserStore` when storage is on, and loaded back on the first call after a restart.
The subscription set has a version; `next_subscription_set` is a long poll that answers as soon
as the version moves, so the ingest follows the set without polling it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Any

from actors.universe.registry import UniverseRegistry
from config.settings import Settings
from schemas.api import UserView

MAX_WAIT_S = 300.0  # the longest long poll a caller may ask for


class UniverseCoordinatorActor:
    """Async actor around `UniverseRegistry`; persists selections and filters when a store
    (`SqlUserStore`-like: get/set universe selections and filters) is attached."""

    def __init__(self, settings: Settings, store: Any = None) -> None:
        self._registry = UniverseRegistry(settings.universe)
        if store is None and settings.storage.enabled:
            from storage.database import engine_for
            from storage.users import SqlUserStore

            store = SqlUserStore(engine_for(settings.database_url(), settings.storage))
        self._store = store
        self._version = 0
        self._changed = asyncio.Event()  # set (and replaced) whenever the version moves
        self._loaded = False

    async def _ensure_loaded(self) -> None:
        if self._loaded or self._store is None:
            self._loaded = True
            return
        self._loaded = True
        for user_id, selections in (await self._store.all_universe_selections()).items():
            filters = await self._store.get_filters(user_id)
            self._registry.load_user(str(user_id), selections, filters.get("default", {}))

    async def subscription_set(self) -> tuple[int, list[str]]:
        """(version, sorted tickers); the version changes whenever the set may have changed."""
        await self._ensure_loaded()
        return self._version, sorted(self._registry.subscription_set())

    async def next_subscription_set(self, after: int, timeout_s: float) -> tuple[int, list[str]]:
        """The subscription set as soon as its version is not `after` (at most `timeout_s`)."""
        if self._version == after:
            wait = min(max(timeout_s, 0.0), MAX_WAIT_S) if math.isfinite(timeout_s) else 0.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), wait)
        return await self.subscription_set()

    def _bump(self) -> None:
        self._version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def add_tickers(self, tickers: list[str]) -> int:
        added = self._registry.add_tickers(tickers)
        if added:
            self._bump()
        return added

    async def is_member(self, tickers: list[str]) -> list[bool]:
        return [self._registry.is_member(t) for t in tickers]

    async def list_universes(self) -> dict[str, int]:
        return self._registry.names()

    async def universe_tickers(self, name: str) -> list[str]:
        return sorted(self._registry.tickers_of(name))

    async def user_view(self, user_id: str) -> UserView:
        await self._ensure_loaded()
        return self._registry.view(user_id)

    async def select(self, user_id: str, tracker: str, names: list[str]) -> UserView:
        await self._ensure_loaded()
        self._registry.select(user_id, tracker, names)
        self._bump()
        if self._store is not None and user_id.isdigit():
            await self._store.set_universe_selection(int(user_id), tracker, list(names))
        return self._registry.view(user_id)

    async def set_filters(self, user_id: str, filters: dict[str, Any]) -> UserView:
        await self._ensure_loaded()
        self._registry.set_filters(user_id, filters)
        if self._store is not None and user_id.isdigit():
            await self._store.set_filters(int(user_id), "default", filters)
        return self._registry.view(user_id)

    async def ping(self) -> str:
        return "ok"
