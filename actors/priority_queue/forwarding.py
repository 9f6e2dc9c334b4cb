"""Persistence forwarding: what the queue hands the persistence actor, batched (pure).

Three kinds of rows wait here between two flushes of the queue actor's forward loop: every
admitted event (for `event_history`), the per-ticker counts of a session (only tickers whose
counts changed since they were last sent) and one market-analytics record per completed
10 s gauge window. `take` empties them; the actor sends them and counts what could not be.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from schemas.events import Event
from schemas.records import AnalyticsRow, SessionCountRow

SessionKey = tuple[str, str]  # (ISO date, session name)
# Gauge fields that have their own columns; the rest go to the record's `extras`.
ANALYTICS_COLUMNS = frozenset({"net_score", "buy_volume", "sell_volume", "activity_level"})


class PersistenceForwarder:
    """Rows waiting to be forwarded, one list per kind."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.session_counts: list[SessionCountRow] = []
        self.analytics: list[AnalyticsRow] = []
        self._sent_counts: dict[tuple[SessionKey, str], dict[str, int]] = {}
        self._last_gauge_window: int | None = None

    def add_events(self, events: Iterable[Event]) -> None:
        self.events.extend(events)

    def add_counts(
        self, key: SessionKey, counts: Mapping[str, dict[str, int]], updated_ms: int
    ) -> None:
        """Queue the counts of session `key` for the tickers whose counts changed."""
        for ticker, c in counts.items():
            if self._sent_counts.get((key, ticker)) == c:
                continue
            self._sent_counts[(key, ticker)] = dict(c)
            self.session_counts.append(SessionCountRow(
                ticker=ticker, session_date=key[0], session=key[1], high_count=c["highs"],
                low_count=c["lows"], surge_count=c["surges"], trend_count=c["trends"],
                updated_ms=updated_ms,
            ))

    def add_analytics(self, snapshot: Mapping[str, Any], session: str) -> None:
        """Queue the gauge of `snapshot` once per completed window."""
        gauge = snapshot.get("gauge") or {}
        start = gauge.get("window_start")
        if not start or start == self._last_gauge_window:
            return
        self._last_gauge_window = start
        extras = {k: v for k, v in gauge.items() if k not in ANALYTICS_COLUMNS}
        extras["activity"] = snapshot.get("activity", {})
        self.analytics.append(AnalyticsRow(
            time=int(start), session=session,
            net_score=float(gauge.get("net_score", 0.0)),
            buy_volume=float(gauge.get("buy_volume", 0.0)),
            sell_volume=float(gauge.get("sell_volume", 0.0)),
            activity_level=str(gauge.get("activity_level", "")), extras=extras,
        ))

    def take(self) -> tuple[list[Event], list[SessionCountRow], list[AnalyticsRow]]:
        """Everything waiting (events, session counts, analytics), and start afresh."""
        out = (self.events, self.session_counts, self.analytics)
        self.events, self.session_counts, self.analytics = [], [], []
        return out

    def pending(self) -> int:
        return len(self.events) + len(self.session_counts) + len(self.analytics)
