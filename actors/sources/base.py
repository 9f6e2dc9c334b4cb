"""Tick sources behind one interface: synthetic, replay (recorded files) and polygon.

A source is an async iterator of `TradeBatch | BarBatch` in event-time order. Sources pace
themselves (synthetic at its rate, replay at its speed multiplier); the ingest batches, routes
and applies backpressure. Event time comes from the data (replay, polygon) or from a
deterministic simulated clock (synthetic), never from the wall clock.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol

from schemas.batches import BarBatch, TradeBatch

log = logging.getLogger(__name__)
Batch = TradeBatch | BarBatch


class Source(Protocol):
    """What the ingest needs from a source."""

    name: str

    def batches(self) -> AsyncIterator[Batch]: ...

    def stats(self) -> dict[str, Any]: ...

    async def close(self) -> None: ...
