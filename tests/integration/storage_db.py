"""Scratch databases for storage tests: a SQLite file, or a fresh PostgreSQL database.

Each PostgreSQL test gets its own database (created through the `postgres` maintenance
database, dropped afterwards), so tests never see each other's rows or the shared `test` db.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest

from schemas.events import Event

PG_HOST = os.environ.get("TICKSTOCK_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("TICKSTOCK_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("TICKSTOCK_TEST_PG_USER", "postgres")
# Trust auth ignores it; it is there to prove no password leaks into errors or stats.
PG_PASSWORD = "s3cret-pw"

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


async def _admin() -> asyncpg.Connection:
    return await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres")


@asynccontextmanager
async def scratch_database(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """Yield the URL of an empty database of `backend` ('sqlite' | 'postgres')."""
    if backend == "sqlite":
        # A not-yet-existing directory: make_engine must create it.
        yield f"sqlite+aiosqlite:///{tmp_path / 'data' / 'tickstock.db'}"
        return
    name = f"tickstock_test_{uuid.uuid4().hex[:12]}"
    admin = await _admin()
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield f"postgresql+asyncpg://{PG_USER}:{PG_PASSWORD}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        admin = await _admin()
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def _pg_ctlcluster(action: str) -> subprocess.CompletedProcess[bytes]:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    return subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
        check=False,
        capture_output=True,
        timeout=60,
    )


def pg_cluster(action: str) -> None:
    """Stop or start the local PostgreSQL cluster (Debian `pg_ctlcluster`)."""
    result = _pg_ctlcluster(action)
    if result.returncode != 0:
        raise RuntimeError(f"pg_ctlcluster {action} failed: {result.stderr.decode().strip()}")


def ensure_pg_running() -> None:
    """Start the cluster unless it is running (`status` exits 0 when it is)."""
    if _pg_ctlcluster("status").returncode != 0:
        pg_cluster("start")


async def pg_accepts_connections() -> bool:
    """Whether the server answers a query right now."""
    try:
        conn = await _admin()
    except (OSError, asyncpg.PostgresError):
        return False
    try:
        return bool(await conn.fetchval("SELECT 1"))
    finally:
        await conn.close()


# 2024-03-15 (a Friday) 10:00:00 America/New_York, in Unix ms.
T0 = 1_710_511_200_000


def make_events(n: int, start: int = 0, ticker: str = "AAPL", kind: str = "high") -> list[Event]:
    """`n` distinct, valid events one second apart, with a few kind-specific fields."""
    return [
        Event(
            id=f"{ticker}:{kind}:{T0 + i * 1000}:{i}",
            ticker=ticker,
            kind=kind,
            direction="up" if kind != "low" else "down",
            price=100.0 + i / 100,
            time=T0 + i * 1000,
            count=i + 1,
            pct_change=0.1 * i,
            volume=1000.0 + i,
            vwap=100.5,
            significance=42.0,
            label="new high",
        )
        for i in range(start, start + n)
    ]
