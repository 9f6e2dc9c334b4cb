"""Alembic environment: runs on a connection handed in by `storage.database`, or opens one.

`storage.database.upgrade()` passes a live (sync-facing) connection in
`config.attributes["connection"]`, so migrations run inside the caller's event loop. Started by
the `alembic` command line instead, it builds an async engine from `sqlalchemy.url`.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from schemas.tables import Base

config = context.config
target_metadata = Base.metadata


def run_on(connection: Connection) -> None:
    """Run the migrations on one open connection."""
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async(url: str) -> None:
    """Open an engine for `url` and migrate through it."""
    from storage.database import make_engine

    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(run_on)
    finally:
        await engine.dispose()


def run_offline(url: str) -> None:
    """Emit SQL instead of executing it (`alembic upgrade --sql`)."""
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run_on(connection)
elif context.is_offline_mode():
    run_offline(config.get_main_option("sqlalchemy.url") or "")
else:
    asyncio.run(run_async(config.get_main_option("sqlalchemy.url") or ""))
