"""Bulk writes of buffered rows: COPY on PostgreSQL, multi-row INSERT OR IGNORE on SQLite.

PostgreSQL events go by COPY straight into `event_history`; after a duplicate id (a replay, a
re-sent batch) they go by COPY into a temporary staging table and INSERT ... ON CONFLICT DO
NOTHING, until a batch comes through without duplicates again.

Events are idempotent by `event_id` (a replayed day inserts nothing twice); per-session counts
are upserted, never letting an older total overwrite a newer one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

import asyncpg
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from actors.persistence.buffer import EVENTS, SESSION_COUNTS, EventRow
from schemas.tables import EVENT_COLUMNS, EventSession, MarketAnalytics
from storage.sql import dialect_insert


class Sink(Protocol):
    """Where batches go (the database, or a fake in unit tests)."""

    async def write(self, kind: str, rows: list[Any]) -> int: ...

    async def reset(self) -> None: ...

    async def close(self) -> None: ...


_COLS = ", ".join(EVENT_COLUMNS)
PG_STAGE = "event_history_stage"
PG_CREATE_STAGE = (
    f"CREATE TEMP TABLE IF NOT EXISTS {PG_STAGE} "
    "(LIKE event_history INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
PG_MERGE = (
    f"INSERT INTO event_history ({_COLS}) SELECT {_COLS} FROM {PG_STAGE} "  # noqa: S608 -- constants
    "ON CONFLICT (event_id) DO NOTHING"
)
SQLITE_INSERT = (
    f"INSERT OR IGNORE INTO event_history ({_COLS}) "  # noqa: S608 -- constants
    f"VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"
)
COUNT_COLUMNS = ("high_count", "low_count", "surge_count", "trend_count", "updated_ms")


class SqlSink:
    """Bulk writes through one `AsyncEngine`; returns how many rows were new."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        self._expect_duplicates = False

    async def write(self, kind: str, rows: list[Any]) -> int:
        """Write one batch of `kind`; return the number of new rows."""
        if kind == EVENTS:
            return await (self._copy_events(rows) if self._postgres else self._insert_events(rows))
        if kind == SESSION_COUNTS:
            return await self._upsert_session_counts(rows)
        return await self._insert_analytics(rows)

    async def _copy_events(self, rows: list[EventRow]) -> int:
        # Live data has no duplicates: COPY straight into the table (fastest). A conflict means
        # a replay or a re-send; then merge through the staging table until batches are clean.
        if not self._expect_duplicates:
            try:
                return await self._copy_direct(rows)
            except asyncpg.UniqueViolationError:
                self._expect_duplicates = True
        new = await self._copy_merge(rows)
        self._expect_duplicates = new < len(rows)
        return new

    @asynccontextmanager
    async def _driver_transaction(self) -> AsyncIterator[Any]:
        async with self._engine.connect() as conn:
            raw = await conn.get_raw_connection()
            pg: Any = raw.driver_connection
            async with pg.transaction():
                yield pg

    async def _copy_direct(self, rows: list[EventRow]) -> int:
        async with self._driver_transaction() as pg:
            await pg.copy_records_to_table("event_history", records=rows, columns=EVENT_COLUMNS)
        return len(rows)

    async def _copy_merge(self, rows: list[EventRow]) -> int:
        async with self._driver_transaction() as pg:
            await pg.execute(PG_CREATE_STAGE)
            await pg.copy_records_to_table(PG_STAGE, records=rows, columns=EVENT_COLUMNS)
            status: str = await pg.execute(PG_MERGE)
        return int(status.rsplit(" ", 1)[-1])  # "INSERT 0 <n>"

    async def _insert_events(self, rows: list[EventRow]) -> int:
        # SQLite stores DATE as ISO text; the ORM reads it back as a date.
        params = [(*row[:7], row[7].isoformat(), *row[8:]) for row in rows]
        async with self._engine.begin() as conn:
            result = await conn.exec_driver_sql(SQLITE_INSERT, params)
        return max(int(result.rowcount), 0)

    async def _upsert_session_counts(self, rows: list[dict[str, Any]]) -> int:
        table = EventSession.__table__
        async with self._engine.begin() as conn:
            stmt: Any = dialect_insert(conn, table)
            stmt = stmt.on_conflict_do_update(
                index_elements=["ticker", "session_date", "session"],
                set_={name: stmt.excluded[name] for name in COUNT_COLUMNS},
                # A replayed older total (e.g. after a shard restart) never overwrites a newer one.
                where=stmt.excluded.updated_ms >= table.c.updated_ms,
            )
            await conn.execute(stmt, rows)
        return len(rows)

    async def _insert_analytics(self, rows: list[dict[str, Any]]) -> int:
        async with self._engine.begin() as conn:
            await conn.execute(insert(MarketAnalytics), rows)
        return len(rows)

    async def reset(self) -> None:
        """Drop pooled connections (after a failure they may be dead)."""
        await self._engine.dispose()

    async def close(self) -> None:
        """Release the engine."""
        await self._engine.dispose()
