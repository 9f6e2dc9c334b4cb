"""Read access to stored events and per-session counts (the REST API and notebooks)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.api import EventQuery
from schemas.tables import EventHistory as EventHistoryTable
from schemas.tables import EventSession
from storage.sql import as_date

if TYPE_CHECKING:
    import pandas as pd

EVENT_QUERY_COLUMNS = (
    EventHistoryTable.event_id,
    EventHistoryTable.ticker,
    EventHistoryTable.kind,
    EventHistoryTable.direction,
    EventHistoryTable.price,
    EventHistoryTable.time,
    EventHistoryTable.session,
    EventHistoryTable.session_date,
    EventHistoryTable.count,
    EventHistoryTable.pct_change,
    EventHistoryTable.volume,
    EventHistoryTable.extras,
)


def event_row_to_dict(row: Any) -> dict[str, Any]:
    """A stored event in its wire form (`id`, ...) plus `session_date` as an ISO string."""
    data: dict[str, Any] = row._asdict()
    extras = data.pop("extras") or {}
    data["id"] = data.pop("event_id")
    data["session_date"] = data["session_date"].isoformat()
    data.update(extras)
    return data


class EventHistory:
    """Read access to stored events and per-session counts (API and notebooks)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def query(self, query: EventQuery) -> list[dict[str, Any]]:
        """Events matching every filter of `query`, in time order (or newest first)."""
        table = EventHistoryTable
        order: tuple[Any, ...] = (table.time, table.event_id)
        if query.newest_first:
            order = (table.time.desc(), table.event_id.desc())
        statement = select(*EVENT_QUERY_COLUMNS).order_by(*order)
        if where := _event_filters(query):
            statement = statement.where(*where)
        async with self._engine.connect() as conn:
            rows = await conn.execute(statement.limit(query.limit))
            return [event_row_to_dict(row) for row in rows]

    async def to_dataframe(self, query: EventQuery) -> pd.DataFrame:
        """`query(query)` as a pandas DataFrame with a UTC `timestamp` column."""
        import pandas as pd  # late: only notebooks need pandas here

        frame = pd.DataFrame(await self.query(query))
        if not frame.empty:
            frame.insert(0, "timestamp", pd.to_datetime(frame["time"], unit="ms", utc=True))
        return frame

    async def count(self) -> int:
        """How many events are stored."""
        async with self._engine.connect() as conn:
            result = await conn.execute(select(func.count()).select_from(EventHistoryTable))
            return int(result.scalar_one())

    async def session_counts(
        self, session_date: dt.date | str, session: str
    ) -> dict[str, dict[str, int]]:
        """Per-ticker counts of one session: {ticker: {high, low, surge, trend, updated_ms}}."""
        query = select(
            EventSession.ticker,
            EventSession.high_count,
            EventSession.low_count,
            EventSession.surge_count,
            EventSession.trend_count,
            EventSession.updated_ms,
        ).where(EventSession.session_date == as_date(session_date), EventSession.session == session)
        async with self._engine.connect() as conn:
            rows = await conn.execute(query)
            return {
                ticker: {"high": hi, "low": lo, "surge": su, "trend": tr, "updated_ms": upd}
                for ticker, hi, lo, su, tr, upd in rows
            }


def _event_filters(query: EventQuery) -> list[Any]:
    table = EventHistoryTable
    where: list[Any] = []
    if query.ticker is not None:
        where.append(table.ticker == query.ticker)
    if query.kind is not None:
        where.append(table.kind == query.kind)
    if query.start_ms is not None:
        where.append(table.time >= query.start_ms)
    if query.end_ms is not None:
        where.append(table.time < query.end_ms)
    if query.session is not None:
        where.append(table.session == query.session)
    if query.session_date is not None:
        where.append(table.session_date == as_date(query.session_date))
    return where
