"""Storage on real databases (SQLite file and PostgreSQL): migrations, repositories, writes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from actors.persistence.actor import PersistenceActor
from config.settings import StorageConfig
from schemas.api import EventQuery
from schemas.events import Event
from schemas.records import AnalyticsRow, SessionCountRow
from schemas.tables import Base, DetectorCheckpoint, MarketAnalytics
from storage.checkpoints import CheckpointStore
from storage.database import (
    current,
    downgrade,
    ensure_database,
    head_revision,
    make_engine,
    sqlite_path,
    upgrade,
)
from storage.history import EventHistory
from storage.users import SqlUserStore, UserExistsError
from tests.integration.storage_db import BACKENDS, T0, make_events, scratch_database

pytestmark = pytest.mark.timeout(120)

MODEL_TABLES = set(Base.metadata.tables)


@pytest.fixture(params=BACKENDS)
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with scratch_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    await upgrade(db_url)
    eng = make_engine(db_url)
    yield eng
    await eng.dispose()


async def table_names(url: str) -> set[str]:
    eng = make_engine(url)
    try:
        async with eng.connect() as conn:
            return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await eng.dispose()


# -- migrations ----------------------------------------------------------------------------


async def test_upgrade_from_empty_then_downgrade_to_base(db_url: str) -> None:
    assert await current(db_url) is None
    await upgrade(db_url)
    assert await current(db_url) == head_revision() == "0001"
    assert await table_names(db_url) == MODEL_TABLES | {"alembic_version"}

    await downgrade(db_url, "base")
    assert await current(db_url) is None
    assert await table_names(db_url) == {"alembic_version"}

    await upgrade(db_url)  # a second cycle works: downgrade left nothing behind
    assert await table_names(db_url) == MODEL_TABLES | {"alembic_version"}


async def test_migration_head_equals_the_models(db_url: str) -> None:
    await upgrade(db_url)
    eng = make_engine(db_url)
    try:
        async with eng.connect() as conn:

            def diff(sync_conn: object) -> list[object]:
                context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
                return list(compare_metadata(context, Base.metadata))

            assert await conn.run_sync(diff) == []
    finally:
        await eng.dispose()


async def test_ensure_database_migrates_once(db_url: str) -> None:
    assert await ensure_database(db_url) == head_revision()
    assert await ensure_database(db_url) == head_revision()
    assert await current(db_url) == head_revision()
    path = sqlite_path(db_url)
    if path is not None:
        assert path.is_file()


async def test_sqlite_engine_uses_wal(tmp_path: Path) -> None:
    eng = make_engine(f"sqlite:///{tmp_path / 'nested' / 'dir' / 'x.db'}")
    try:
        async with eng.connect() as conn:
            assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
            assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar() == 5000
            assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
    finally:
        await eng.dispose()


# -- users, sessions, preferences ----------------------------------------------------------


async def test_users_are_unique_and_login_state_persists(engine: AsyncEngine) -> None:
    store = SqlUserStore(engine, clock=lambda: 1_000)
    alice = await store.create_user("alice01", "alice@example.com", "$argon2id$hash")
    assert alice.id > 0
    assert alice.created_ms == 1_000
    assert alice.verified
    with pytest.raises(UserExistsError):
        await store.create_user("alice01", "other@example.com", "h")
    with pytest.raises(UserExistsError):
        await store.create_user("alice02", "alice@example.com", "h")

    assert await store.get_user("alice01") == alice
    assert await store.get_user_by_id(alice.id) == alice
    assert await store.get_user("nobody") is None

    await store.update_login_state(alice.id, 5, 2_000_000, 1, False)
    locked = await store.get_user_by_id(alice.id)
    assert locked is not None
    assert (locked.failed_logins, locked.locked_until_ms, locked.lockout_count) == (5, 2_000_000, 1)
    assert locked.is_locked(1_999_999)
    assert not locked.is_locked(2_000_000)
    await store.set_password_hash(alice.id, "$argon2id$new")
    changed = await store.get_user("alice01")
    assert changed is not None
    assert changed.password_hash == "$argon2id$new"


async def test_sessions_expire_and_revoke(engine: AsyncEngine) -> None:
    store = SqlUserStore(engine, clock=lambda: 10_000)
    user = await store.create_user("bob0001", "bob@example.com", "h")
    first = await store.create_session("hash-1", user.id, 20_000, "10.0.0.1", "pytest")
    await store.create_session("hash-2", user.id, 20_000)
    await store.create_session("hash-3", user.id, 20_000)

    stored = await store.get_session("hash-1")
    assert stored == first
    assert stored is not None
    assert stored.is_active(19_999)
    assert not stored.is_active(20_000)
    assert await store.get_session("missing") is None

    assert await store.revoke_session("hash-1") is True
    assert await store.revoke_session("hash-1") is False  # already revoked
    revoked = await store.get_session("hash-1")
    assert revoked is not None
    assert revoked.revoked
    assert not revoked.is_active(0)
    assert await store.revoke_user_sessions(user.id) == 2
    for token_hash in ("hash-2", "hash-3"):
        other = await store.get_session(token_hash)
        assert other is not None
        assert other.revoked


async def test_settings_filters_and_universe_selections(engine: AsyncEngine) -> None:
    store = SqlUserStore(engine)
    a = await store.create_user("carol01", "carol@example.com", "h")
    b = await store.create_user("dave001", "dave@example.com", "h")

    await store.set_setting(a.id, "theme", "dark")
    await store.set_setting(a.id, "layout", {"columns": [1, 2], "compact": True})
    await store.set_setting(a.id, "theme", "light")  # replaces
    await store.set_setting(b.id, "theme", "dark")
    assert await store.get_settings(a.id) == {
        "theme": "light",
        "layout": {"columns": [1, 2], "compact": True},
    }
    assert await store.delete_setting(a.id, "theme") is True
    assert await store.delete_setting(a.id, "theme") is False
    assert await store.get_settings(a.id) == {"layout": {"columns": [1, 2], "compact": True}}
    assert await store.get_settings(b.id) == {"theme": "dark"}

    await store.set_filters(a.id, "default", {"highlow": {"min_count": 2}})
    await store.set_filters(a.id, "default", {"highlow": {"min_count": 3}, "surge": {}})
    await store.set_filters(a.id, "quiet", {"trends": {"strength": "strong"}})
    assert await store.get_filters(a.id) == {
        "default": {"highlow": {"min_count": 3}, "surge": {}},
        "quiet": {"trends": {"strength": "strong"}},
    }
    assert await store.get_filters(b.id) == {}

    await store.set_universe_selection(a.id, "market", ["sp500", "nasdaq100"])
    await store.set_universe_selection(a.id, "highlow", ["dow30"])
    await store.set_universe_selection(a.id, "market", ["dow30"])
    await store.set_universe_selection(b.id, "highlow", [])
    with pytest.raises(ValueError, match="tracker"):
        await store.set_universe_selection(a.id, "surge", ["dow30"])
    assert await store.get_universe_selections(a.id) == {"market": ["dow30"], "highlow": ["dow30"]}
    assert await store.all_universe_selections() == {
        a.id: {"market": ["dow30"], "highlow": ["dow30"]},
        b.id: {"highlow": []},
    }


# -- event history, session counts, analytics, checkpoints ---------------------------------


async def persist(url: str, events: list[Event]) -> PersistenceActor:
    actor = PersistenceActor(url, StorageConfig(flush_interval_s=60.0))
    assert await actor.put_events(events) == len(events)
    assert await actor.flush() is True
    return actor


async def test_event_history_insert_is_idempotent(db_url: str, engine: AsyncEngine) -> None:
    events = make_events(30)
    actor = await persist(db_url, events)
    # The same events again (a replay), plus 10 new ones, plus a duplicate inside one batch.
    again = [*events, *make_events(10, start=30), events[0]]
    assert await actor.put_events(again) == 41
    assert await actor.flush() is True
    stats = await actor.stats()
    await actor.close()

    assert stats["written"]["events"] == 40
    assert stats["duplicates"] == 31
    history = EventHistory(engine)
    assert await history.count() == 40
    stored = await history.query(EventQuery(limit=100))
    assert {e["id"] for e in stored} == {e.id for e in make_events(40)}


async def test_event_history_query_filters_and_round_trip(db_url: str, engine: AsyncEngine) -> None:
    events = [*make_events(20), *make_events(5, ticker="MSFT", kind="low")]
    events.append(
        Event(
            id="TSLA:surge:1710511300000:1",
            ticker="TSLA",
            kind="surge",
            direction="up",
            price=171.25,
            time=1_710_511_300_000,
            session="REGULAR",
            score=87.5,
            strength="strong",
            trigger="price_and_volume",
            magnitude=3.2,
        )
    )
    actor = await persist(db_url, events)
    await actor.close()
    history = EventHistory(engine)

    msft = await history.query(EventQuery(ticker="MSFT"))
    assert [e["id"] for e in msft] == [e.id for e in events[20:25]]
    assert all(e["kind"] == "low" and e["direction"] == "down" for e in msft)

    window = await history.query(
        EventQuery(ticker="AAPL", start_ms=T0 + 5_000, end_ms=T0 + 10_000)
    )
    assert [e["time"] for e in window] == [T0 + i * 1000 for i in range(5, 10)]

    newest = await history.query(EventQuery(ticker="AAPL", limit=3, newest_first=True))
    assert [e["time"] for e in newest] == [T0 + 19_000, T0 + 18_000, T0 + 17_000]

    by_session = await history.query(
        EventQuery(session_date="2024-03-15", session="REGULAR", limit=1000)
    )
    assert len(by_session) == len(events)
    assert await history.query(EventQuery(session_date="2024-03-14")) == []

    (surge,) = await history.query(EventQuery(kind="surge"))
    assert surge == {
        "id": "TSLA:surge:1710511300000:1",
        "ticker": "TSLA",
        "kind": "surge",
        "direction": "up",
        "price": 171.25,
        "time": 1_710_511_300_000,
        "session": "REGULAR",
        "session_date": "2024-03-15",
        "count": 0,
        "pct_change": 0.0,
        "volume": 0.0,
        "score": 87.5,
        "strength": "strong",
        "trigger": "price_and_volume",
        "magnitude": 3.2,
    }
    first = (await history.query(EventQuery(ticker="AAPL", limit=1)))[0]
    assert (first["vwap"], first["significance"], first["label"]) == (100.5, 42.0, "new high")

    frame = await history.to_dataframe(EventQuery(ticker="AAPL", limit=20))
    assert len(frame) == 20
    assert {"timestamp", "id", "price", "significance"} <= set(frame.columns)
    assert str(frame["timestamp"].iloc[0]) == "2024-03-15 14:00:00+00:00"


async def test_session_counts_keep_the_newest_total(db_url: str, engine: AsyncEngine) -> None:
    actor = PersistenceActor(db_url, StorageConfig(flush_interval_s=60.0))
    row = {"ticker": "AAPL", "session_date": "2024-03-15", "session": "REGULAR"}
    await actor.put_session_counts(
        [
            SessionCountRow(**row, high_count=3, low_count=1, updated_ms=T0 + 10),
            {**row, "ticker": "MSFT", "high_count": 1, "updated_ms": T0},
        ]
    )
    assert await actor.flush()
    # Newer total wins; an older total arriving later (e.g. after a restart) is ignored.
    await actor.put_session_counts(
        [{**row, "high_count": 5, "low_count": 2, "updated_ms": T0 + 20}]
    )
    assert await actor.flush()
    await actor.put_session_counts([{**row, "high_count": 4, "updated_ms": T0 + 15}])
    assert await actor.flush()
    await actor.close()

    counts = await EventHistory(engine).session_counts("2024-03-15", "REGULAR")
    assert counts == {
        "AAPL": {"high": 5, "low": 2, "surge": 0, "trend": 0, "updated_ms": T0 + 20},
        "MSFT": {"high": 1, "low": 0, "surge": 0, "trend": 0, "updated_ms": T0},
    }
    assert await EventHistory(engine).session_counts("2024-03-15", "PRE") == {}


async def test_analytics_rows_are_written(db_url: str, engine: AsyncEngine) -> None:
    actor = PersistenceActor(db_url, StorageConfig(flush_interval_s=60.0))
    rows = [
        AnalyticsRow(time=T0 + i * 10_000, session="REGULAR", net_score=i - 5.0, buy_volume=10.0)
        for i in range(12)
    ]
    assert await actor.put_analytics([*rows, {"time": -1, "session": "REGULAR"}]) == 12
    assert await actor.flush()
    assert (await actor.stats())["rejected"] == {"analytics_malformed": 1}
    await actor.close()
    async with engine.connect() as conn:
        scores = (
            await conn.execute(select(MarketAnalytics.net_score).order_by(MarketAnalytics.time))
        ).scalars()
        assert list(scores) == [i - 5.0 for i in range(12)]


async def test_checkpoints_keep_only_the_latest_per_shard(engine: AsyncEngine) -> None:
    store = CheckpointStore(engine)
    assert await store.load_latest(0) is None
    big = bytes(range(256)) * 4096  # 1 MiB, every byte value
    await store.save(0, 100, T0, b"first")
    await store.save(1, 7, T0 + 1, b"other shard")
    await store.save(0, 200, T0 + 2, big)

    assert await store.load_latest(0) == (200, T0 + 2, big)
    assert await store.load_latest(1) == (7, T0 + 1, b"other shard")
    async with engine.connect() as conn:
        per_shard = await conn.execute(
            select(DetectorCheckpoint.shard, func.count()).group_by(DetectorCheckpoint.shard)
        )
        assert dict(per_shard.all()) == {0: 1, 1: 1}


async def test_deleting_a_user_cascades(engine: AsyncEngine) -> None:
    store = SqlUserStore(engine)
    user = await store.create_user("erin001", "erin@example.com", "h")
    await store.set_setting(user.id, "theme", "dark")
    await store.create_session("tok", user.id, 1)
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM users WHERE id = :id"), {"id": user.id})
    assert await store.get_settings(user.id) == {}
    assert await store.get_session("tok") is None
