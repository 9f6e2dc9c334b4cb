"""The inbox between a source and the ingest: bounded by rows, emptied in one go.

A source hands over each batch as it decoded it (a live feed: one frame's trades at a time).
The ingest takes everything waiting at each turn, so under load it gets few large batches and
when idle each small one at once, without a timer. A full inbox (`max_rows`) blocks the
source: that is the backpressure that reaches the feed (which then stops reading its socket).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sized
from typing import Generic, TypeVar

T = TypeVar("T", bound=Sized)


class Inbox(Generic[T]):
    """A FIFO of row batches for one producer and one consumer on the same event loop."""

    def __init__(self, max_rows: int) -> None:
        self._max_rows = max_rows
        self._items: list[T] = []
        self._rows = 0
        self._closed = False
        self._arrived = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()

    @property
    def rows(self) -> int:
        """Rows waiting."""
        return self._rows

    async def put(self, item: T) -> None:
        """Add a batch, first waiting while the inbox is full (one batch always fits)."""
        while self._rows >= self._max_rows and self._items:
            self._space.clear()
            await self._space.wait()
        self._items.append(item)
        self._rows += len(item)
        self._arrived.set()

    def close(self) -> None:
        """No more batches: `take` returns what is left, then None."""
        self._closed = True
        self._arrived.set()

    async def take(self, timeout_s: float) -> list[T] | None:
        """Every waiting batch, oldest first; [] after `timeout_s` with none; None once closed
        and empty."""
        if not self._items and not self._closed:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout_s)
        if not self._items:
            return None if self._closed else []
        items, self._items, self._rows = self._items, [], 0
        self._space.set()
        return items
