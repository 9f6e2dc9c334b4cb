"""Internal events, market sessions and the shard output (DESIGN §6, contract). Frozen."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import msgspec


class EventKind(StrEnum):
    HIGH = "high"
    LOW = "low"
    SURGE = "surge"
    TREND = "trend"


class Direction(StrEnum):
    UP = "up"
    DOWN = "down"


class MarketSession(StrEnum):
    PRE = "PRE"
    REGULAR = "REGULAR"
    AFTER = "AFTER"
    CLOSED = "CLOSED"


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """The session an instant falls in, and where that session starts and ends."""

    session: MarketSession
    date: dt.date
    start_ms: int
    end_ms: int
    open_ms: int  # the day's regular open (for period logic); 0 on closed days
    close_ms: int  # the day's regular close; 0 on closed days

    @property
    def key(self) -> tuple[str, str]:
        """A stable identity for the session: (ISO date, session name)."""
        return (self.date.isoformat(), self.session.value)

    def holds(self, ms: int) -> bool:
        """Whether the instant `ms` (Unix ms) falls in this session."""
        return self.start_ms <= ms < self.end_ms


class Event(msgspec.Struct, frozen=True, omit_defaults=True, kw_only=True):
    """A market event. `id` is deterministic for a replay; `time` is the trigger's event time."""

    id: str
    ticker: str
    kind: str  # EventKind value
    direction: str  # Direction value
    price: float
    time: int  # Unix ms, event time of the triggering trade/bar
    session: str = ""  # MarketSession value
    count: int = 0  # high+low events (or surges, trends) of this ticker this session
    count_up: int = 0
    count_down: int = 0
    pct_change: float = 0.0  # % from the session base
    vwap: float | None = None
    volume: float = 0.0
    rel_volume: float | None = None
    label: str = ""
    # HighLow
    significance: float | None = None  # 0-100
    reversal: str | None = None  # V-top / V-bottom / up-now-down / down-now-up
    rapid: bool | None = None
    pattern: str | None = None  # W-bottom / M-top
    session_high: float | None = None
    session_low: float | None = None
    # Surge
    score: float | None = None
    strength: str | None = None
    trigger: str | None = None
    magnitude: float | None = None
    volume_multiplier: float | None = None
    # Trend
    trend_short: float | None = None
    trend_medium: float | None = None
    trend_long: float | None = None
    vwap_position: str | None = None
    window_s: int | None = None


class ShardOutput(msgspec.Struct, frozen=True, kw_only=True):
    """What a detector shard returns for one input batch."""

    shard: int
    events: list[Event] = msgspec.field(default_factory=list)
    watermark: int = 0  # max event time seen by the shard, Unix ms
    rows: int = 0  # input rows processed
    analytics: dict[str, Any] = msgspec.field(default_factory=dict)  # AnalyticsDelta as data
    rejected: dict[str, int] = msgspec.field(default_factory=dict)  # reason -> count
    # The market sessions of this output's events and watermark, oldest first (the shard
    # computed them once per batch; the queue takes them from here instead of again).
    sessions: tuple[SessionInfo, ...] = ()


event_encoder = msgspec.json.Encoder()
event_decoder = msgspec.json.Decoder(Event)
events_decoder = msgspec.json.Decoder(list[Event])
