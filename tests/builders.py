"""Small builders shared by the unit tests: bars and how a detector is fed them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from actors.detection.bars import Bar
from actors.market.sessions import SessionClock, SessionInfo
from schemas.events import Event

CALENDAR = SessionClock()


class BarConsumer(Protocol):
    def on_bar(self, bar: Bar, session: SessionInfo, base_price: float) -> Event | None: ...


def flat_bar(end: int, c: float, v: float = 100.0, ticker: str = "X") -> Bar:
    """A one-second bar ending at `end` (Unix ms) whose open, high, low and close are `c`."""
    return Bar(ticker, end - 1_000, end, c, c, c, c, v, c, 1)


def feed_bars(detector: BarConsumer, bars: Iterable[Bar], base: float = 100.0) -> list[Event]:
    """The events `detector` emits for `bars`, each judged in its own market session."""
    out = []
    for bar in bars:
        event = detector.on_bar(bar, CALENDAR.session_at(bar.start), base)
        if event is not None:
            out.append(event)
    return out
