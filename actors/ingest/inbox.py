"""The inbox between a source and the ingest: bounded by rows, emptied in one go.

A source hands over each batch as it decoded it (a live feed: one frame's trades at a time).
The ingest takes what is waiting once `min_rows` rows have gathered or the oldest has waited
`max_wait_s`, so under load it gets few large batches, and a quiet feed's rows still move on
within `max_wait_s` of their arrival. The arrival time of the oldest row goes with them: the
ingest's lanes count their wait from it, so the whole ingest holds a row at most `max_wait_s`
(unless its shard is busy). A full inbox (`max_rows`) blocks the source: that is the
backpressure that reaches the feed (which then stops reading its socket).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sized
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T", bound=Sized)


@dataclass(frozen=True, slots=True)
class Taken(Generic[T]):
    """What one `take` returned: the batches, oldest first, and when the oldest arrived."""

    items: list[T]
    arrived: float  # clock time the oldest item was put (0.0 when there are none)


class Inbox(Generic[T]):
    """A FIFO of row batches for one producer and one consumer on the same event loop."""

    def __init__(
        self, max_rows: int, min_rows: int = 1, max_wait_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_rows = max_rows
        self._min_rows = min(min_rows, max_rows)
        self._max_wait_s = max_wait_s
        self._clock = clock
        self._items: list[T] = []
        self._rows = 0
        self._first_at = 0.0  # when the oldest waiting item arrived
        self._closed = False
        self._ready = asyncio.Event()  # a take may return: enough rows, first item, or closed
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
        if not self._items:
            self._first_at = self._clock()
            self._ready.set()  # starts the oldest item's wait
        self._items.append(item)
        self._rows += len(item)
        if self._rows >= self._min_rows:
            self._ready.set()

    def close(self) -> None:
        """No more batches: `take` returns what is left, then None."""
        self._closed = True
        self._ready.set()

    async def take(self, timeout_s: float) -> Taken[T] | None:
        """The waiting batches once `min_rows` rows wait, the oldest waited `max_wait_s`, or
        the inbox is closed; an empty `Taken` after `timeout_s` without that; None once
        closed and empty."""
        deadline = self._clock() + timeout_s
        while not self._due():
            wait = deadline - self._clock()
            if self._items:
                wait = min(wait, self._first_at + self._max_wait_s - self._clock())
            if wait <= 0:
                break
            self._ready.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), wait)
        if not self._items:
            return None if self._closed else Taken([], 0.0)
        if not self._due():  # the timeout came first: hand over nothing yet
            return Taken([], 0.0)
        taken = Taken(self._items, self._first_at)
        self._items, self._rows = [], 0
        self._space.set()
        return taken

    def _due(self) -> bool:
        if self._closed:
            return True
        if not self._items:
            return False
        return (self._rows >= self._min_rows
                or self._clock() - self._first_at >= self._max_wait_s)
