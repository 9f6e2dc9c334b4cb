"""API payloads between the gateway and the rest of the system (DESIGN §6).

`Collected` is what the priority queue hands the gateway each emission cycle; `UserView` is a
user's resolved universe selection and filters; `UserFilters` validates the filters a user
posts (the original stored these and never applied them; the gateway applies them);
`EventQuery` is a query of the stored event history, whoever asks it.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from schemas.events import Event

Strength = Literal["any", "weak", "moderate", "strong"]
VwapPosition = Literal["any", "above", "below"]
PriceRange = Literal["any", "penny", "low", "mid", "high"]


class Collected(msgspec.Struct, kw_only=True):
    """One pull from the priority queue: new events plus the market state they belong to."""

    events: list[Event] = msgspec.field(default_factory=list)
    watermark: int = 0  # max event time seen, Unix ms; 0 = none yet
    session: str = ""  # MarketSession value of the watermark
    session_date: str = ""  # ISO date (America/New_York) of that session; "" = none yet
    analytics: dict[str, Any] = msgspec.field(default_factory=dict)  # {"activity", "gauge"}
    dropped: dict[str, int] = msgspec.field(default_factory=dict)  # queue drops by reason, totals


class EventQuery(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """A query of stored events: every layer (REST, gateway, persistence, storage, notebooks)
    passes this one struct; a field left at None does not filter."""

    ticker: str | None = None
    kind: str | None = None  # EventKind value
    start_ms: int | None = None  # event time, Unix ms, inclusive
    end_ms: int | None = None  # event time, Unix ms, exclusive
    session: str | None = None  # MarketSession value
    session_date: str | None = None  # ISO date (America/New_York) of the session
    limit: int = 1000  # rows at most
    newest_first: bool = False  # order by time descending (the newest `limit` matches)


class UserView(msgspec.Struct, kw_only=True):
    """What a user sees: the union of their universes' tickers (None = all) and their filters."""

    user_id: str
    tickers: list[str] | None = None  # None = no universe filter
    selections: dict[str, list[str]] = msgspec.field(default_factory=dict)  # tracker -> names
    filters: dict[str, Any] = msgspec.field(default_factory=dict)  # UserFilters as data


class HighLowFilter(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Keep a high/low event only if the ticker's session count and volume reach these."""

    min_count: int = 0  # the ticker's high+low events this session
    min_volume: float = 0.0  # shares of the triggering trade/bar


class TrendFilter(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Keep a trend event only at or above `strength` and on the chosen side of VWAP."""

    strength: Strength = "any"
    vwap_position: VwapPosition = "any"


class SurgeFilter(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Keep a surge event only above `magnitude` (|%|), with one of the triggers, in a band."""

    magnitude: float = 0.0  # minimum |magnitude| in %
    trigger_type: str | list[str] = "any"  # "any", one trigger, or a list of triggers
    price_range: PriceRange | list[PriceRange] = "any"  # penny < $1, low < $25, mid < $100, high


class UserFilters(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A user's event filters (`/api/user-filters`); every part defaults to keep-all."""

    highlow: HighLowFilter = msgspec.field(default_factory=HighLowFilter)
    trends: TrendFilter = msgspec.field(default_factory=TrendFilter)
    surge: SurgeFilter = msgspec.field(default_factory=SurgeFilter)


class Credentials(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The body of `POST /api/auth/login`."""

    username: str
    password: str


class Registration(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The body of `POST /api/auth/register`."""

    username: str
    email: str
    password: str


class UniverseSelection(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The body of `POST /api/universes/select`."""

    tracker: Literal["market", "highlow"]
    universes: list[str]
