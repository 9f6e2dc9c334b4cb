"""The universe coordinator keeps user selections and filters in the database."""

from __future__ import annotations

import asyncio
from pathlib import Path

from actors.universe.actor import UniverseCoordinatorActor
from config.settings import load_settings
from storage.database import ensure_database, make_engine
from storage.users import SqlUserStore


async def test_selections_and_filters_survive_a_restart(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'u.db'}"
    await ensure_database(url)
    engine = make_engine(url)
    store = SqlUserStore(engine)
    user = await store.create_user("trader1", "t1@example.com", "x")
    settings = load_settings(env={}, overrides={"storage": {"database_url": url}})

    first = UniverseCoordinatorActor(settings)
    view = await first.select(str(user.id), "highlow", ["DOW30"])
    assert view.tickers is not None
    assert len(view.tickers) == 30
    await first.set_filters(str(user.id), {"highlow": {"min_count": 3}})

    second = UniverseCoordinatorActor(settings)  # a restarted coordinator
    restored = await second.user_view(str(user.id))
    assert restored.selections == {"highlow": ["DOW30"]}
    assert restored.filters == {"highlow": {"min_count": 3}}
    _version, tickers = await second.subscription_set()
    assert set(restored.tickers or []) <= set(tickers)
    await asyncio.sleep(0)
    await engine.dispose()
