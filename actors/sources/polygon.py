"""The `polygon` source: a supervised Polygon WebSocket feed decoded into columnar batches.

`PolygonFeed` owns the connection (reconnects, resubscribes, cool-downs, watchdog) and hands
over raw frames; `FrameDecoder` turns each into batches, which go to the ingest as they are:
the ingest is the one place that coalesces rows and judges their values. The subscription set
is the ingest's to give (`set_subscriptions`): diffs are applied live, without reconnecting.
The feed lag (receive time minus the newest trade's event time) is reported in `stats`.

Channel note: with `T` the shards build per-second bars from trades; subscribe `A` instead of
`T` (not both) to take Polygon's own second bars, or the same volume would be counted twice.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from actors.market.sessions import day_hours
from actors.polygon.decode import FrameDecoder
from actors.polygon.feed import PolygonFeed
from actors.polygon.rest import PolygonRest, PolygonRestError
from config.settings import Settings
from schemas.batches import Batch

log = logging.getLogger(__name__)


class PolygonSource:
    """Source interface over `PolygonFeed` + `FrameDecoder`."""

    name = "polygon"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._feed = PolygonFeed(settings.polygon)
        self._decoder = FrameDecoder()
        self.market: dict[str, Any] = {}
        self.calendar_mismatches: list[str] = []
        self.rest_error = ""

    def set_subscriptions(self, tickers: Sequence[str]) -> None:
        """Subscribe the configured channels of exactly these tickers (live, as a diff)."""
        self._feed.set_subscriptions(tickers, self._settings.polygon.channels)

    async def batches(self) -> AsyncIterator[Batch]:
        await self._startup_checks()
        await self._feed.start()
        async for recv_ms, frame in self._feed.frames():
            decoded = self._decoder.decode(frame, recv_ms)
            for part in (decoded.trades, decoded.seconds, decoded.minutes):
                if part is not None and len(part):
                    yield part
        tail = self._decoder.flush()
        if tail is not None and len(tail):
            yield tail

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

    def stats(self) -> dict[str, Any]:
        decoder = self._decoder.stats()
        return {
            "lag_ms": decoder["lag_ms"], "feed": self._feed.stats(), "decoder": decoder,
            "market": self.market, "calendar_mismatches": self.calendar_mismatches,
            "rest_error": self.rest_error,
        }

    async def close(self) -> None:
        await self._feed.stop()


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
