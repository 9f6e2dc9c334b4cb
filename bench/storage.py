"""`tickstock bench storage`: event rows written per second through the persistence path.

Measured: `PersistenceActor.put_events` (validation, conversion) + bulk writes into the real,
indexed `event_history` table (PostgreSQL: COPY; see `storage/bulk.py`).
Ceiling, same run, same rows and batch size: raw asyncpg COPY into a bare unindexed temp table
(SQLite: executemany into an unindexed table). Runs in a scratch database that is dropped after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from actors.persistence.actor import PersistenceActor
from actors.persistence.buffer import EventRow, PersistenceBuffer
from bench.report import emit, result, rss_mb
from config.constants import ENV_DATABASE_URL
from config.settings import StorageConfig
from schemas.events import Event
from schemas.tables import EVENT_COLUMNS
from storage.database import is_sqlite, make_engine, normalize_url, upgrade

DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
T0 = 1_710_511_200_000  # 2024-03-15 10:00 America/New_York
KINDS = ("high", "low", "surge", "trend")


def synthetic_events(n: int, tickers: int = 500) -> list[Event]:
    """`n` distinct events over `tickers` symbols, with typical kind-specific fields."""
    out = []
    for i in range(n):
        kind = KINDS[i % 4]
        out.append(
            Event(
                id=f"T{i % tickers:04d}:{kind}:{T0 + i}:{i}",
                ticker=f"T{i % tickers:04d}",
                kind=kind,
                direction="up" if i % 3 else "down",
                price=10.0 + (i % 9000) / 100,
                time=T0 + i,
                count=i % 50,
                pct_change=0.01 * (i % 300),
                volume=float(100 * (i % 1000)),
                vwap=10.5,
                significance=float(i % 100) if kind in ("high", "low") else None,
                score=float(i % 100) if kind == "surge" else None,
                label=f"{kind} event",
            )
        )
    return out


@asynccontextmanager
async def scratch_database(url: str) -> AsyncIterator[str]:
    """A fresh database next to `url` (PostgreSQL) or a temp file (SQLite), removed after."""
    if is_sqlite(url):
        with tempfile.TemporaryDirectory(prefix="tickstock-bench-") as tmp:
            yield f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        return
    name = f"tickstock_bench_{uuid.uuid4().hex[:10]}"
    base = make_url(normalize_url(url))
    admin_dsn = base.set(drivername="postgresql", database="postgres")
    admin = await asyncpg.connect(admin_dsn.render_as_string(hide_password=False))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def measure_actor(url: str, events: list[Event], config: StorageConfig) -> float:
    """Seconds for the persistence actor to accept and store every event."""
    actor = PersistenceActor(url, config)
    chunk = 2_000  # what a queue flush typically hands over
    start = time.perf_counter()
    for i in range(0, len(events), chunk):
        await actor.put_events(events[i : i + chunk])
    if not await actor.flush():
        raise RuntimeError(f"write failed: {(await actor.stats())['last_error']}")
    elapsed = time.perf_counter() - start
    stats = await actor.stats()
    await actor.close()
    if stats["written"]["events"] != len(events):
        raise RuntimeError(f"expected {len(events)} rows written, stats: {stats}")
    return elapsed


async def measure_ceiling(url: str, rows: list[EventRow], batch: int) -> float:
    """Seconds to bulk-load the same rows into an unindexed table with the raw driver."""
    if is_sqlite(url):
        return await _sqlite_ceiling(url, rows, batch)
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TEMP TABLE ceiling (LIKE event_history)")
        start = time.perf_counter()
        for i in range(0, len(rows), batch):
            await conn.copy_records_to_table(
                "ceiling", records=rows[i : i + batch], columns=EVENT_COLUMNS
            )
        return time.perf_counter() - start
    finally:
        await conn.close()


async def _sqlite_ceiling(url: str, rows: list[EventRow], batch: int) -> float:
    engine = make_engine(url)
    params = [(*r[:7], r[7].isoformat(), *r[8:]) for r in rows]
    marks = ", ".join("?" * len(EVENT_COLUMNS))
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql(
                "CREATE TABLE ceiling AS SELECT * FROM event_history LIMIT 0"
            )
        start = time.perf_counter()
        for i in range(0, len(params), batch):
            async with engine.begin() as conn:
                await conn.exec_driver_sql(
                    f"INSERT INTO ceiling VALUES ({marks})",
                    params[i : i + batch],
                )
        return time.perf_counter() - start
    finally:
        await engine.dispose()


async def bench_storage_async(
    url: str, rows: int = 200_000, batch_rows: int = 10_000
) -> dict[str, Any]:
    """Run the benchmark; print a table and, last, one JSON line; return the result."""
    events = synthetic_events(rows)
    buffer = PersistenceBuffer(rows)
    buffer.add_events(events)
    prepared: list[EventRow] = buffer.take("events", rows)
    config = StorageConfig(flush_interval_s=3600.0, batch_rows=batch_rows, buffer_max_rows=rows)
    async with scratch_database(url) as scratch:
        await upgrade(scratch)
        actor_s = await measure_actor(scratch, events, config)
        ceiling_s = await measure_ceiling(scratch, prepared, batch_rows)
    backend = make_url(normalize_url(url)).get_backend_name()
    outcome = result(
        "storage",
        rows / actor_s,
        rows / ceiling_s,
        rows=rows,
        batch_rows=batch_rows,
        database=backend,
        rss_mb=round(rss_mb(), 1),
    )
    table = [
        ("event rows", rows),
        ("rows per bulk write", batch_rows),
        ("persistence actor -> indexed event_history (ms)", actor_s * 1000),
        ("ceiling: raw bulk load -> unindexed table (ms)", ceiling_s * 1000),
        ("rows/s written", outcome["items_per_s"]),
        ("rows/s ceiling", outcome["ceiling_per_s"]),
        ("ratio", outcome["ratio"]),
    ]
    emit(table, outcome, f"storage ({backend})")
    return outcome


def bench_storage(url: str = "", rows: int = 200_000) -> dict[str, Any]:
    """Synchronous entry point; `url` defaults to DATABASE_URL, else the local PostgreSQL."""
    return asyncio.run(bench_storage_async(url or default_url(), rows))


def default_url() -> str:
    """DATABASE_URL if set, else the development PostgreSQL server."""
    return os.environ.get(ENV_DATABASE_URL) or DEFAULT_URL


def run(args: argparse.Namespace) -> dict[str, Any]:
    """`tickstock bench storage [--database-url URL] [--rows N]` (see bench/cli.py)."""
    return bench_storage(getattr(args, "database_url", "") or "", getattr(args, "rows", 200_000))


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bench.storage [--database-url URL] [--rows N] [--batch-rows N]`."""
    parser = argparse.ArgumentParser(prog="tickstock bench storage")
    parser.add_argument("--database-url", default="")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch-rows", type=int, default=10_000)
    args = parser.parse_args(argv)
    url = args.database_url or default_url()
    asyncio.run(bench_storage_async(url, args.rows, args.batch_rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
