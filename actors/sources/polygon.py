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
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from actors.market.sessions import day_hours
from actors.polygon.decode import FrameDecoder
from actors.polygon.feed import PolygonFeed
from actors.polygon.rest import PolygonRest, PolygonRestError
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
        self.market: dict[str, Any] = {}
        self.calendar_mismatches: list[str] = []
        self.rest_error = ""

    async def batches(self) -> AsyncIterator[Batch]:
        await self._sync_subscriptions()
        await self._startup_checks()
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

    async def _startup_checks(self) -> None:
        """Market status and upcoming NYSE holidays from REST; holidays are checked against
        the shipped calendar (a mismatch is logged and counted, not fatal)."""
        rest = PolygonRest(self._settings.polygon)
        try:
            status = await rest.market_status()
            self.market = {k: status.get(k) for k in ("market", "serverTime", "earlyHours",
                                                       "afterHours")}
            holidays = await rest.market_holidays()
            self.calendar_mismatches = calendar_mismatches(holidays)
            for day in self.calendar_mismatches:
                log.warning("Polygon's calendar disagrees with the shipped one on %s", day)
        except PolygonRestError as e:
            self.rest_error = str(e)
            log.warning("Polygon REST start-up data unavailable: %s", e)
        finally:
            rest.close()

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
        return {
            "feed": self._feed.stats(), "decoder": self._decoder.stats(), "market": self.market,
            "calendar_mismatches": self.calendar_mismatches, "rest_error": self.rest_error,
        }

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self._feed.stop()
        self._done = True
        self._ready.set()


def calendar_mismatches(holidays: list[dict[str, Any]]) -> list[str]:
    """ISO dates where Polygon's upcoming NYSE closures/early closes differ from ours."""
    out = []
    for h in holidays:
        if str(h.get("exchange", "")).upper() != "NYSE" or not h.get("date"):
            continue
        try:
            day = dt.date.fromisoformat(str(h["date"]))
        except ValueError:
            continue
        ours = day_hours(day)
        status = str(h.get("status", ""))
        if (status == "closed") != ours.closed or (status == "early-close") != ours.early_close:
            out.append(day.isoformat())
    return out
