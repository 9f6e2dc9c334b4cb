"""Market periods for Surge and Trend thresholds, on event time (docs/behaviour.md §1, Surge).

PREMARKET, OPENING (the first 15 min of the regular session), MIDDAY, CLOSING (the last 30 min
of the regular session: 15:30-16:00, or 12:30-13:00 on an early close), AFTERHOURS, CLOSED.
The period comes from the instant's `SessionInfo` (America/New_York, weekends and NYSE holidays
closed), never from the server clock: the original used the host's local time.
"""

from __future__ import annotations

from enum import StrEnum

from actors.market.sessions import SessionInfo
from schemas.events import MarketSession

OPENING_MS = 15 * 60_000
CLOSING_MS = 30 * 60_000


class MarketPeriod(StrEnum):
    PREMARKET = "PREMARKET"
    OPENING = "OPENING"
    MIDDAY = "MIDDAY"
    CLOSING = "CLOSING"
    AFTERHOURS = "AFTERHOURS"
    CLOSED = "CLOSED"


_OUTSIDE_REGULAR = {
    MarketSession.PRE: MarketPeriod.PREMARKET,
    MarketSession.AFTER: MarketPeriod.AFTERHOURS,
    MarketSession.CLOSED: MarketPeriod.CLOSED,
}


def market_period(
    ms: int,
    session: SessionInfo,
    opening_ms: int = OPENING_MS,
    closing_ms: int = CLOSING_MS,
) -> MarketPeriod:
    """Return the period of the instant `ms` (Unix ms) inside `session`."""
    outside = _OUTSIDE_REGULAR.get(session.session)
    if outside is not None:
        return outside
    if ms < session.open_ms + opening_ms:
        return MarketPeriod.OPENING
    if ms >= session.close_ms - closing_ms:
        return MarketPeriod.CLOSING
    return MarketPeriod.MIDDAY
