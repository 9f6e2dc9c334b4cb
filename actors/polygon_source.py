"""The `polygon` source: a supervised Polygon WebSocket feed decoded into columnar batches.

`PolygonFeed` owns the connection (reconnects, resubscribes, cool-downs, watchdog) and hands
over raw frames; `FrameDecoder` turns them into batches. Frames are decoded as they arrive and
coalesced into one batch per `coalesce_ms` (or `coalesce_rows`), so the ingest sees a few
large batches instead of one tiny batch per frame. The subscription set follows the universe
coordinator: diffs are applied live, without reconnecting.

Channel note: with `T` the shards build per-second bars from trades; subscribe `A` instead of
`T` (not both) to take Polygon's own second bars, or the same volume would be counted twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from actors.polygon_decode import FrameDecoder
from actors.polygon_feed import PolygonFeed
from config.settings import Settings
from schemas.batches import BarBatch, TradeBatch

log = logging.getLogger(__name__)
Batch = TradeBatch | BarBatch


class PolygonSource:
    """Source interface over `PolygonFeed` + `FrameDecoder`."""

    name = "polygon"

    def __init__(
        self, settings: Settings, universe: Any, coalesce_ms: float = 20.0,
        coalesce_rows: int = 8192,
    ) -> None:
        self._settings = settings
        self._universe = universe
        self._feed = PolygonFeed(settings.polygon)
        self._decoder = FrameDecoder(max_price=settings.ingest.max_price)
        self._coalesce_s = coalesce_ms / 1000
        self._coalesce_rows = coalesce_rows
        self._trades: list[TradeBatch] = []
        self._bars: list[BarBatch] = []
        self._rows = 0
        self._first_at = 0.0
        self._ready = asyncio.Event()
        self._done = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._sub_version = -1

    async def batches(self) -> AsyncIterator[Batch]:
        await self._sync_subscriptions()
        await self._feed.start()
        for coro in (self._read(), self._follow_universe()):
            task = asyncio.get_running_loop().create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        while not (self._done and not self._rows):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), self._coalesce_s)
            self._ready.clear()
            due = self._rows and (
                self._done or self._rows >= self._coalesce_rows
                or time.monotonic() - self._first_at >= self._coalesce_s
            )
            if due:
                for batch in self._take():
                    yield batch

    async def _read(self) -> None:
        async for recv_ms, frame in self._feed.frames():
            decoded = self._decoder.decode(frame, recv_ms)
            self._feed.report_lag(decoded.lag_ms)
            for part in (decoded.trades, decoded.seconds, decoded.minutes):
                if part is not None and len(part):
                    self._add(part)
        tail = self._decoder.flush()
        if tail is not None and len(tail):
            self._add(tail)
        self._done = True
        self._ready.set()

    def _add(self, part: Batch) -> None:
        if not self._rows:
            self._first_at = time.monotonic()
        if isinstance(part, TradeBatch):
            self._trades.append(part)
        else:
            self._bars.append(part)
        self._rows += len(part)
        if self._rows >= self._coalesce_rows:
            self._ready.set()

    def _take(self) -> list[Batch]:
        out: list[Batch] = []
        if self._trades:
            out.append(TradeBatch.concat(self._trades))
        if self._bars:
            out.append(BarBatch.concat(self._bars))
        self._trades, self._bars, self._rows = [], [], 0
        return out

    async def _sync_subscriptions(self) -> None:
        version, tickers = await self._universe.subscription_set()
        if version != self._sub_version:
            self._sub_version = version
            self._feed.set_subscriptions(tickers, self._settings.polygon.channels)

    async def _follow_universe(self) -> None:
        while True:
            await asyncio.sleep(2.0)
            try:
                await self._sync_subscriptions()
            except Exception:  # coordinator restarting: keep the current subscriptions
                log.warning("universe coordinator unavailable; subscriptions unchanged")

    def stats(self) -> dict[str, Any]:
        return {"feed": self._feed.stats(), "decoder": self._decoder.stats()}

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self._feed.stop()
        self._done = True
        self._ready.set()
