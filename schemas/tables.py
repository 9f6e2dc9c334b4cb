"""ORM tables (SQLAlchemy 2 declarative) for SQLite and PostgreSQL.

Rules: times are Unix ms in BIGINT columns (`*_ms`, event `time`); JSON columns are JSONB on
PostgreSQL; constraint names come from one naming convention so the hand-written migration
(`migrations/versions/0001_initial.py`) and these models stay comparable. Any change here needs
a new migration revision.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JsonType = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGSERIAL.
BigId = BigInteger().with_variant(Integer(), "sqlite")
Ticker = String(16)
SessionName = String(10)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _user_fk(*, index: bool = True) -> Mapped[int]:
    # No separate index where a unique constraint already leads with user_id.
    return mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=index)


# -- users and accounts --------------------------------------------------------------------


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(50), unique=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    phone: Mapped[str | None] = mapped_column(String(20), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until_ms: Mapped[int | None] = mapped_column(BigInteger)
    lockout_count: Mapped[int] = mapped_column(Integer, default=0)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    terms_version: Mapped[str | None] = mapped_column(String(20))
    terms_accepted_ms: Mapped[int | None] = mapped_column(BigInteger)


class UserSetting(Base):
    __tablename__ = "user_settings"
    __table_args__ = (UniqueConstraint("user_id", "key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = _user_fk(index=False)
    key: Mapped[str] = mapped_column(String(100))
    value: Mapped[Any] = mapped_column(JsonType)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class UserHistory(Base):
    """Audit trail of account changes (email, phone, password, subscription)."""

    __tablename__ = "user_history"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = _user_fk()
    field: Mapped[str] = mapped_column(String(50))
    old_value: Mapped[str | None] = mapped_column(Text)
    new_value: Mapped[str | None] = mapped_column(Text)
    ip: Mapped[str | None] = mapped_column(String(64))
    changed_ms: Mapped[int] = mapped_column(BigInteger)


class LoginSession(Base):
    """A login session; only the token's hash is stored."""

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    user_id: Mapped[int] = _user_fk()
    created_ms: Mapped[int] = mapped_column(BigInteger)
    expires_ms: Mapped[int] = mapped_column(BigInteger)
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class VerificationCode(Base):
    """Email/SMS/password-reset codes; only the code's hash is stored."""

    __tablename__ = "verification_codes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = _user_fk()
    purpose: Mapped[str] = mapped_column(String(30))  # email | phone | password_reset | renewal
    code_hash: Mapped[str] = mapped_column(String(128))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    expires_ms: Mapped[int] = mapped_column(BigInteger)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    used: Mapped[bool] = mapped_column(Boolean, default=False)


class CommunicationLog(Base):
    """Every email/SMS sent (or simulated) to a user."""

    __tablename__ = "communication_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    channel: Mapped[str] = mapped_column(String(10))  # email | sms
    kind: Mapped[str] = mapped_column(String(50))
    destination: Mapped[str] = mapped_column(String(254))
    status: Mapped[str] = mapped_column(String(20))
    sent_ms: Mapped[int] = mapped_column(BigInteger)
    details: Mapped[dict[str, Any] | None] = mapped_column(JsonType)


# -- billing ------------------------------------------------------------------------------


class Subscription(Base):
    __tablename__ = "subscriptions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = _user_fk()
    tier: Mapped[str] = mapped_column(String(20), default="premium")
    status: Mapped[str] = mapped_column(String(20))  # active | cancelled | expired
    start_ms: Mapped[int] = mapped_column(BigInteger)
    end_ms: Mapped[int] = mapped_column(BigInteger)
    cancelled_ms: Mapped[int | None] = mapped_column(BigInteger)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class BillingInfo(Base):
    """Card summary only: never a full card number or CVV."""

    __tablename__ = "billing_info"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = _user_fk()
    payment_processor: Mapped[str] = mapped_column(String(30), default="stripe")
    card_last4: Mapped[str] = mapped_column(String(4))
    card_expiry: Mapped[str] = mapped_column(String(5))  # MM/YY
    billing_name: Mapped[str | None] = mapped_column(String(100))
    billing_country: Mapped[str | None] = mapped_column(String(2))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class PaymentHistory(Base):
    __tablename__ = "payment_history"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = _user_fk()
    subscription_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="SET NULL")
    )
    amount_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    status: Mapped[str] = mapped_column(String(20))
    processor_ref: Mapped[str | None] = mapped_column(String(100))
    created_ms: Mapped[int] = mapped_column(BigInteger)


# -- user preferences ---------------------------------------------------------------------


class UserFilter(Base):
    __tablename__ = "user_filters"
    __table_args__ = (UniqueConstraint("user_id", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = _user_fk(index=False)
    name: Mapped[str] = mapped_column(String(100), default="default")
    filter_data: Mapped[dict[str, Any]] = mapped_column(JsonType)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class UserUniverseSelection(Base):
    __tablename__ = "user_universe_selections"
    __table_args__ = (
        UniqueConstraint("user_id", "tracker"),
        CheckConstraint("tracker IN ('market', 'highlow')", name="tracker"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = _user_fk(index=False)
    tracker: Mapped[str] = mapped_column(String(16))
    universes: Mapped[list[str]] = mapped_column(JsonType)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class TaggedStock(Base):
    __tablename__ = "tagged_stocks"
    __table_args__ = (UniqueConstraint("user_id", "ticker", "tag"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = _user_fk(index=False)
    ticker: Mapped[str] = mapped_column(Ticker)
    tag: Mapped[str] = mapped_column(String(50))
    note: Mapped[str | None] = mapped_column(Text)
    created_ms: Mapped[int] = mapped_column(BigInteger)


# -- config and cache ---------------------------------------------------------------------


class CacheEntry(Base):
    __tablename__ = "cache_entries"
    __table_args__ = (UniqueConstraint("type", "name", "key", "environment"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    type: Mapped[str] = mapped_column(String(50))
    name: Mapped[str] = mapped_column(String(100))
    key: Mapped[str] = mapped_column(String(200))
    value: Mapped[Any] = mapped_column(JsonType)
    environment: Mapped[str] = mapped_column(String(20), default="dev")
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class AppSetting(Base):
    __tablename__ = "app_settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(100), unique=True)
    value: Mapped[Any] = mapped_column(JsonType)
    description: Mapped[str | None] = mapped_column(Text)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


# -- market data --------------------------------------------------------------------------


class EventSession(Base):
    """Per-ticker event counts of one market session (absolute totals, upserted)."""

    __tablename__ = "event_sessions"
    __table_args__ = (UniqueConstraint("ticker", "session_date", "session"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ticker: Mapped[str] = mapped_column(Ticker)
    session_date: Mapped[dt.date] = mapped_column(Date)
    session: Mapped[str] = mapped_column(SessionName)
    high_count: Mapped[int] = mapped_column(Integer, default=0)
    low_count: Mapped[int] = mapped_column(Integer, default=0)
    surge_count: Mapped[int] = mapped_column(Integer, default=0)
    trend_count: Mapped[int] = mapped_column(Integer, default=0)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class MarketAnalytics(Base):
    """One 10-second window of the buy/sell pressure gauge and activity."""

    __tablename__ = "market_analytics"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    time: Mapped[int] = mapped_column(BigInteger, index=True)
    session: Mapped[str] = mapped_column(SessionName)
    net_score: Mapped[float] = mapped_column(Double)
    buy_volume: Mapped[float] = mapped_column(Double)
    sell_volume: Mapped[float] = mapped_column(Double)
    activity_level: Mapped[str] = mapped_column(String(20))
    extras: Mapped[dict[str, Any] | None] = mapped_column(JsonType)


class EventHistory(Base):
    """One row per detected event; `event_id` is deterministic, so re-inserts are no-ops.

    The event id is the primary key: one unique index fewer to maintain on the hot path.
    """

    __tablename__ = "event_history"
    __table_args__ = (
        Index(None, "ticker", "time"),
        Index(None, "kind", "time"),
        Index(None, "session_date", "session"),
    )

    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    ticker: Mapped[str] = mapped_column(Ticker)
    kind: Mapped[str] = mapped_column(String(8))
    direction: Mapped[str] = mapped_column(String(4))
    price: Mapped[float] = mapped_column(Double)
    time: Mapped[int] = mapped_column(BigInteger)
    session: Mapped[str] = mapped_column(SessionName)
    session_date: Mapped[dt.date] = mapped_column(Date)
    count: Mapped[int] = mapped_column(Integer, default=0)
    pct_change: Mapped[float] = mapped_column(Double, default=0.0)
    volume: Mapped[float] = mapped_column(Double, default=0.0)
    extras: Mapped[dict[str, Any] | None] = mapped_column(JsonType)


class DetectorCheckpoint(Base):
    """Detector shard state snapshots; the store keeps only the latest per shard."""

    __tablename__ = "detector_checkpoints"
    __table_args__ = (Index(None, "shard", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    shard: Mapped[int] = mapped_column(Integer)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    watermark: Mapped[int] = mapped_column(BigInteger)
    blob: Mapped[bytes] = mapped_column(LargeBinary)


EVENT_COLUMNS: tuple[str, ...] = (
    "event_id",
    "ticker",
    "kind",
    "direction",
    "price",
    "time",
    "session",
    "session_date",
    "count",
    "pct_change",
    "volume",
    "extras",
)
"""Column order of `event_history` rows as the persistence writers build them."""
