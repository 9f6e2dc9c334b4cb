"""The persistence actor on real databases: batching, outages, recovery, and as a Ray actor."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.persistence.actor import PersistenceActor
from config.settings import StorageConfig
from schemas.api import EventQuery
from storage.database import make_engine, sqlite_path, upgrade
from storage.history import EventHistory
from tests.conftest import eventually
from tests.integration.storage_db import (
    BACKENDS,
    PG_PASSWORD,
    ensure_pg_running,
    make_events,
    pg_accepts_connections,
    pg_cluster,
    scratch_database,
)

pytestmark = pytest.mark.timeout(180)

# Fast reactions so an outage and its recovery take well under a second each.
OUTAGE_CONFIG = StorageConfig(
    flush_interval_s=0.05,
    buffer_max_rows=50,
    retry_initial_s=0.05,
    retry_max_s=0.3,
    sqlite_busy_timeout_ms=50,
    connect_timeout_s=2.0,
)


async def migrated(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    async with scratch_database(backend, tmp_path) as url:
        await upgrade(url)
        yield url


@pytest.fixture(params=BACKENDS)
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async for url in migrated(request.param, tmp_path):
        yield url


@pytest.fixture
async def pg_url(tmp_path: Path) -> AsyncIterator[str]:
    async for url in migrated("postgres", tmp_path):
        yield url


@pytest.fixture
async def sqlite_url(tmp_path: Path) -> AsyncIterator[str]:
    async for url in migrated("sqlite", tmp_path):
        yield url


async def stored_ids(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return {e["id"] for e in await EventHistory(engine).query(EventQuery(limit=100_000))}
    finally:
        await engine.dispose()


async def written(actor: PersistenceActor, n: int) -> bool:
    return (await actor.stats())["written"]["events"] == n


async def test_a_full_batch_is_written_without_waiting_for_the_interval(db_url: str) -> None:
    actor = PersistenceActor(db_url, StorageConfig(flush_interval_s=3600.0, batch_rows=100))
    try:
        await actor.put_events(make_events(99))
        await actor.put_analytics([{"time": 1, "session": "CLOSED"}])
        assert (await actor.stats())["buffered_rows"] == 100  # below a batch of any kind: waits
        await actor.put_events(make_events(1, start=99))
        # A full batch wakes the writer, which then writes everything it holds.
        await eventually(lambda: written(actor, 100))
        assert (await actor.stats())["written"]["analytics"] == 1
    finally:
        await actor.close()
    assert len(await stored_ids(db_url)) == 100


async def test_small_batches_are_written_every_interval(db_url: str) -> None:
    actor = PersistenceActor(db_url, StorageConfig(flush_interval_s=0.05))
    try:
        await actor.put_events(make_events(3))
        await eventually(lambda: written(actor, 3))
        await actor.put_events(make_events(2, start=3))
        await eventually(lambda: written(actor, 5))
        assert (await actor.stats())["flushes"] >= 2
    finally:
        await actor.close()


async def outage_then_recovery(
    actor: PersistenceActor, url: str, break_db: Any, fix_db: Any
) -> dict[str, Any]:
    """Write 10 events, break the database, send 120, fix it, send 20; check what is stored.

    The buffer holds 50 rows: of the 120 events sent during the outage the oldest 70 are
    dropped (counted) and the newest 50 are written once the database is back.
    """
    await actor.put_events(make_events(10))
    await eventually(lambda: written(actor, 10))
    break_db()
    try:
        for chunk in range(4):
            await actor.put_events(make_events(30, start=10 + chunk * 30))

        async def buffering() -> bool:
            stats = await actor.stats()
            return not stats["db_up"] and stats["errors"] > 0

        await eventually(buffering)
        assert await actor.flush() is False  # refused, but no exception
        outage = await actor.stats()
        assert outage["buffered"]["events"] == 50
        assert outage["dropped"] == {"events_buffer_full": 70}
    finally:
        fix_db()
    await eventually(lambda: written(actor, 60), timeout=60)
    await actor.put_events(make_events(20, start=130))
    await eventually(lambda: written(actor, 80))
    stats = await actor.stats()
    assert stats["db_up"]
    assert stats["buffered_rows"] == 0
    assert stats["dropped"] == {"events_buffer_full": 70}
    expected = {e.id for e in make_events(10) + make_events(70, start=80)}
    assert await stored_ids(url) == expected
    return {"outage": outage, "after": stats}


async def test_locked_sqlite_buffers_then_recovers(sqlite_url: str) -> None:
    path = sqlite_path(sqlite_url)
    assert path is not None
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    def lock() -> None:
        blocker.execute("BEGIN EXCLUSIVE")  # every other writer now gets "database is locked"

    def unlock() -> None:
        if blocker.in_transaction:
            blocker.execute("COMMIT")

    actor = PersistenceActor(sqlite_url, OUTAGE_CONFIG)
    try:
        seen = await outage_then_recovery(actor, sqlite_url, lock, unlock)
        assert "locked" in seen["outage"]["last_error"]
    finally:
        unlock()
        blocker.close()
        await actor.close()


@pytest.fixture
def restore_postgres() -> Iterator[None]:
    """Whatever happens in the test, leave the PostgreSQL server running."""
    try:
        yield
    finally:
        ensure_pg_running()


@pytest.mark.postgres
@pytest.mark.usefixtures("restore_postgres")
async def test_postgres_restart_buffers_then_recovers(pg_url: str) -> None:
    actor = PersistenceActor(pg_url, OUTAGE_CONFIG)
    try:
        seen = await outage_then_recovery(
            actor, pg_url, lambda: pg_cluster("stop"), lambda: pg_cluster("start")
        )
        assert await pg_accepts_connections()
    finally:
        await actor.close()
    assert seen["outage"]["last_error"]
    assert PG_PASSWORD not in repr(seen)
    assert "***" in seen["after"]["database"]


RAY_NAMESPACE = "test-persistence"


# -- as a real Ray actor ---------------------------------------------------------------------


async def test_persistence_as_a_ray_actor(ray_local: None, db_url: str) -> None:
    import ray

    remote_cls = ray.remote(PersistenceActor)
    actor = remote_cls.options(max_restarts=0).remote(db_url, StorageConfig(flush_interval_s=0.05))
    try:
        assert await actor.put_events.remote(make_events(40)) == 40
        assert (
            await actor.put_session_counts.remote(
                [
                    {
                        "ticker": "AAPL",
                        "session_date": "2024-03-15",
                        "session": "REGULAR",
                        "high_count": 40,
                    }
                ]
            )
            == 1
        )
        assert await actor.save_checkpoint.remote(0, 123, 456, b"state") is True

        async def all_written() -> bool:
            stats = await actor.stats.remote()
            return stats["written"] == {"events": 40, "session_counts": 1, "analytics": 0}

        await eventually(all_written)
        assert tuple(await actor.load_checkpoint.remote(0)) == (123, 456, b"state")
        await actor.close.remote()
    finally:
        ray.kill(actor)
    assert await stored_ids(db_url) == {e.id for e in make_events(40)}
