"""Initial schema: accounts, billing, preferences, config, market data, checkpoints.

Revision ID: 0001
Revises:
Create Date: 2026-11-26

Self-contained on purpose (no import of `schemas.tables`): a migration freezes the schema of
its revision. `tests/integration/test_storage.py` checks that head equals the ORM models.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _id() -> sa.Column[int]:
    # SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGSERIAL.
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False)


def _bigint(name: str, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=nullable)


def _user_id(table: str, nullable: bool = False) -> list[sa.SchemaItem]:
    ondelete = "SET NULL" if nullable else "CASCADE"
    return [
        sa.Column("user_id", sa.Integer(), nullable=nullable),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f(f"fk_{table}_user_id_users"), ondelete=ondelete
        ),
    ]


def _pk(table: str, column: str = "id") -> sa.PrimaryKeyConstraint:
    return sa.PrimaryKeyConstraint(column, name=op.f(f"pk_{table}"))


def _unique(table: str, *columns: str) -> sa.UniqueConstraint:
    return sa.UniqueConstraint(*columns, name=op.f(f"uq_{table}_{'_'.join(columns)}"))


def _index(table: str, *columns: str) -> None:
    op.create_index(op.f(f"ix_{table}_{'_'.join(columns)}"), table, list(columns), unique=False)


# Tables with a plain index on user_id (the others have a unique constraint leading with it).
USER_INDEXED = (
    "user_history",
    "sessions",
    "verification_codes",
    "communication_log",
    "subscriptions",
    "billing_info",
    "payment_history",
)


def _accounts() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=50), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        _bigint("locked_until_ms", nullable=True),
        sa.Column("lockout_count", sa.Integer(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=False),
        _bigint("created_ms"),
        sa.Column("terms_version", sa.String(length=20), nullable=True),
        _bigint("terms_accepted_ms", nullable=True),
        _pk("users"),
        _unique("users", "email"),
        _unique("users", "phone"),
        _unique("users", "username"),
    )
    op.create_table(
        "user_settings",
        _id(),
        *_user_id("user_settings"),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("value", _json(), nullable=False),
        _bigint("updated_ms"),
        _pk("user_settings"),
        _unique("user_settings", "user_id", "key"),
    )
    op.create_table(
        "user_history",
        _id(),
        *_user_id("user_history"),
        sa.Column("field", sa.String(length=50), nullable=False),
        sa.Column("old_value", sa.Text(), nullable=True),
        sa.Column("new_value", sa.Text(), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        _bigint("changed_ms"),
        _pk("user_history"),
    )
    op.create_table(
        "sessions",
        _id(),
        sa.Column("token_hash", sa.String(length=128), nullable=False),
        *_user_id("sessions"),
        _bigint("created_ms"),
        _bigint("expires_ms"),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=512), nullable=True),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        _pk("sessions"),
        _unique("sessions", "token_hash"),
    )
    op.create_table(
        "verification_codes",
        _id(),
        *_user_id("verification_codes"),
        sa.Column("purpose", sa.String(length=30), nullable=False),
        sa.Column("code_hash", sa.String(length=128), nullable=False),
        _bigint("created_ms"),
        _bigint("expires_ms"),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("used", sa.Boolean(), nullable=False),
        _pk("verification_codes"),
    )
    op.create_table(
        "communication_log",
        _id(),
        *_user_id("communication_log", nullable=True),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("destination", sa.String(length=254), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        _bigint("sent_ms"),
        sa.Column("details", _json(), nullable=True),
        _pk("communication_log"),
    )


def _billing() -> None:
    op.create_table(
        "subscriptions",
        _id(),
        *_user_id("subscriptions"),
        sa.Column("tier", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        _bigint("start_ms"),
        _bigint("end_ms"),
        _bigint("cancelled_ms", nullable=True),
        _bigint("created_ms"),
        _pk("subscriptions"),
    )
    op.create_table(
        "billing_info",
        _id(),
        *_user_id("billing_info"),
        sa.Column("payment_processor", sa.String(length=30), nullable=False),
        sa.Column("card_last4", sa.String(length=4), nullable=False),
        sa.Column("card_expiry", sa.String(length=5), nullable=False),
        sa.Column("billing_name", sa.String(length=100), nullable=True),
        sa.Column("billing_country", sa.String(length=2), nullable=True),
        _bigint("created_ms"),
        _bigint("updated_ms"),
        _pk("billing_info"),
    )
    op.create_table(
        "payment_history",
        _id(),
        *_user_id("payment_history"),
        sa.Column(
            "subscription_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("processor_ref", sa.String(length=100), nullable=True),
        _bigint("created_ms"),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_payment_history_subscription_id_subscriptions"),
            ondelete="SET NULL",
        ),
        _pk("payment_history"),
    )


def _preferences() -> None:
    op.create_table(
        "user_filters",
        _id(),
        *_user_id("user_filters"),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("filter_data", _json(), nullable=False),
        _bigint("updated_ms"),
        _pk("user_filters"),
        _unique("user_filters", "user_id", "name"),
    )
    op.create_table(
        "user_universe_selections",
        _id(),
        *_user_id("user_universe_selections"),
        sa.Column("tracker", sa.String(length=16), nullable=False),
        sa.Column("universes", _json(), nullable=False),
        _bigint("updated_ms"),
        sa.CheckConstraint(
            "tracker IN ('market', 'highlow')", name=op.f("ck_user_universe_selections_tracker")
        ),
        _pk("user_universe_selections"),
        _unique("user_universe_selections", "user_id", "tracker"),
    )
    op.create_table(
        "tagged_stocks",
        _id(),
        *_user_id("tagged_stocks"),
        sa.Column("ticker", sa.String(length=16), nullable=False),
        sa.Column("tag", sa.String(length=50), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        _bigint("created_ms"),
        _pk("tagged_stocks"),
        _unique("tagged_stocks", "user_id", "ticker", "tag"),
    )


def _config() -> None:
    op.create_table(
        "cache_entries",
        _id(),
        sa.Column("type", sa.String(length=50), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("value", _json(), nullable=False),
        sa.Column("environment", sa.String(length=20), nullable=False),
        _bigint("created_ms"),
        _bigint("updated_ms"),
        _pk("cache_entries"),
        _unique("cache_entries", "type", "name", "key", "environment"),
    )
    op.create_table(
        "app_settings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("value", _json(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        _bigint("updated_ms"),
        _pk("app_settings"),
        _unique("app_settings", "key"),
    )


def _market_data() -> None:
    op.create_table(
        "event_sessions",
        _id(),
        sa.Column("ticker", sa.String(length=16), nullable=False),
        sa.Column("session_date", sa.Date(), nullable=False),
        sa.Column("session", sa.String(length=10), nullable=False),
        sa.Column("high_count", sa.Integer(), nullable=False),
        sa.Column("low_count", sa.Integer(), nullable=False),
        sa.Column("surge_count", sa.Integer(), nullable=False),
        sa.Column("trend_count", sa.Integer(), nullable=False),
        _bigint("updated_ms"),
        _pk("event_sessions"),
        _unique("event_sessions", "ticker", "session_date", "session"),
    )
    op.create_table(
        "market_analytics",
        _id(),
        _bigint("time"),
        sa.Column("session", sa.String(length=10), nullable=False),
        sa.Column("net_score", sa.Double(), nullable=False),
        sa.Column("buy_volume", sa.Double(), nullable=False),
        sa.Column("sell_volume", sa.Double(), nullable=False),
        sa.Column("activity_level", sa.String(length=20), nullable=False),
        sa.Column("extras", _json(), nullable=True),
        _pk("market_analytics"),
    )
    _index("market_analytics", "time")
    op.create_table(
        "event_history",
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("ticker", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("direction", sa.String(length=4), nullable=False),
        sa.Column("price", sa.Double(), nullable=False),
        _bigint("time"),
        sa.Column("session", sa.String(length=10), nullable=False),
        sa.Column("session_date", sa.Date(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("pct_change", sa.Double(), nullable=False),
        sa.Column("volume", sa.Double(), nullable=False),
        sa.Column("extras", _json(), nullable=True),
        _pk("event_history", "event_id"),
    )
    _index("event_history", "ticker", "time")
    _index("event_history", "kind", "time")
    _index("event_history", "session_date", "session")
    op.create_table(
        "detector_checkpoints",
        _id(),
        sa.Column("shard", sa.Integer(), nullable=False),
        _bigint("created_ms"),
        _bigint("last_seq"),
        _bigint("watermark"),
        sa.Column("blob", sa.LargeBinary(), nullable=False),
        _pk("detector_checkpoints"),
    )
    _index("detector_checkpoints", "shard", "id")


def upgrade() -> None:
    _accounts()
    _billing()
    _preferences()
    _config()
    _market_data()
    for table in USER_INDEXED:
        _index(table, "user_id")


DROP_ORDER = (
    "payment_history",
    "subscriptions",
    "billing_info",
    "verification_codes",
    "communication_log",
    "sessions",
    "user_history",
    "user_settings",
    "user_filters",
    "user_universe_selections",
    "tagged_stocks",
    "users",
    "cache_entries",
    "app_settings",
    "event_sessions",
    "market_analytics",
    "event_history",
    "detector_checkpoints",
)


def downgrade() -> None:
    # Dropping a table drops its indexes and constraints; children go before `users`.
    for table in DROP_ORDER:
        op.drop_table(table)
