"""SQL helpers shared by the repositories: dialect-aware upserts, dates, the account clock."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert

Clock = Callable[[], int]  # wall-clock Unix ms


def wall_ms() -> int:
    """Wall-clock Unix ms (accounts and sessions only; market data uses event time)."""
    return time.time_ns() // 1_000_000


def dialect_insert(conn: AsyncConnection, table: Any) -> Insert:
    """An INSERT that supports `on_conflict_do_*` on this connection's dialect."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"unsupported database dialect {conn.dialect.name!r}")


def upsert(conn: AsyncConnection, table: Any, keys: Sequence[str], values: Sequence[str]) -> Insert:
    """INSERT ... ON CONFLICT (keys) DO UPDATE SET values = excluded.values."""
    stmt: Any = dialect_insert(conn, table)
    return stmt.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=list(keys), set_={name: stmt.excluded[name] for name in values}
    )


def as_date(value: dt.date | str) -> dt.date:
    """Accept a date or an ISO `YYYY-MM-DD` string."""
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)


