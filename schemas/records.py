"""Storage records: what the repositories return and what the persistence actor accepts.

Times are Unix ms everywhere (event time for market data, wall time for accounts), so SQLite
and PostgreSQL store the same integers and no time zone is ever guessed.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import msgspec

Tracker = Literal["market", "highlow"]
TRACKERS: tuple[Tracker, ...] = ("market", "highlow")


class UserRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One row of `users`."""

    id: int
    username: str
    email: str
    password_hash: str  # argon2 encoded hash
    failed_logins: int = 0
    locked_until_ms: int | None = None
    lockout_count: int = 0
    disabled: bool = False
    verified: bool = False
    created_ms: int = 0
    terms_version: str | None = None

    def is_locked(self, now_ms: int) -> bool:
        """Whether a lockout is in force at `now_ms`."""
        return self.locked_until_ms is not None and now_ms < self.locked_until_ms


class SessionRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One row of `sessions` (a login session; the token itself is never stored)."""

    token_hash: str
    user_id: int
    created_ms: int
    expires_ms: int
    ip: str | None = None
    user_agent: str | None = None
    revoked: bool = False

    def is_active(self, now_ms: int) -> bool:
        """Whether the session may be used at `now_ms`."""
        return not self.revoked and now_ms < self.expires_ms


class SessionCountRow(msgspec.Struct, frozen=True, kw_only=True):
    """Per-ticker event counts of one market session (absolute totals; upserted)."""

    ticker: str
    session_date: str  # ISO date (America/New_York) of the session
    session: str  # MarketSession value
    high_count: int = 0
    low_count: int = 0
    surge_count: int = 0
    trend_count: int = 0
    updated_ms: int = 0  # event time of the latest counted event


class AnalyticsRow(msgspec.Struct, frozen=True, kw_only=True):
    """One 10-second market analytics record (buy/sell pressure gauge and activity)."""

    time: int  # Unix ms, event time of the window start
    session: str
    net_score: float = 0.0  # -10..+10
    buy_volume: float = 0.0
    sell_volume: float = 0.0
    activity_level: str = ""
    extras: dict[str, Any] = msgspec.field(default_factory=dict)


class Checkpoint(NamedTuple):
    """The latest detector checkpoint of a shard (unpacks as `last_seq, watermark, blob`)."""

    last_seq: int
    watermark: int
    blob: bytes
