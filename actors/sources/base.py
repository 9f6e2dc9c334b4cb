"""Tick sources behind one interface: synthetic, replay (recorded files) and polygon.

A source is an async iterator of `TradeBatch | BarBatch` in event-time order, handed over as
it produced them: sources do not coalesce (the ingest's lanes are the one place that does) and
do not judge values (the ingest's check does, once). Sources pace themselves (synthetic at its
rate, replay at its speed multiplier); backpressure reaches them through the ingest's inbox.
Event time comes from the data (replay, polygon) or from a deterministic simulated clock
(synthetic), never from the wall clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from schemas.batches import Batch


class Source(Protocol):
    """What the ingest needs from a source."""

    name: str

    def batches(self) -> AsyncIterator[Batch]:
        """The source's rows, in event-time order, until it ends or is closed."""
        ...

    def set_subscriptions(self, tickers: Sequence[str]) -> None:
        """The tickers the system wants (a live feed subscribes to exactly these; sources of
        recorded or generated data produce what they hold and ignore it)."""
        ...

    def stats(self) -> dict[str, Any]:
        """Plain-data figures; a live source includes `lag_ms` (receive minus event time)."""
        ...

    async def close(self) -> None: ...
