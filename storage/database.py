"""Database engines and migrations: SQLite (embedded default) or PostgreSQL (asyncpg).

`make_engine(url)` builds a tuned `AsyncEngine`; `upgrade`/`downgrade`/`current` run the
packaged Alembic migrations programmatically inside the caller's event loop, so they work the
same from `tickstock up`, `tickstock db ...`, tests and notebooks after a plain `pip install`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from asyncpg import exceptions as asyncpg_errors
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from config.base import redact_url
from config.settings import StorageConfig

DEFAULT_BUSY_TIMEOUT_MS = 5_000
DEFAULT_CONNECT_TIMEOUT_S = 5.0
DEFAULT_COMMAND_TIMEOUT_S = 60.0


def normalize_url(url: str) -> str:
    """Pick the async driver: `postgres[ql]://` -> asyncpg, `sqlite://` -> aiosqlite."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url.removeprefix("sqlite://")
    return url


def is_sqlite(url: str) -> bool:
    """Whether `url` names a SQLite database."""
    return make_url(normalize_url(url)).get_backend_name() == "sqlite"


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for in-memory or non-SQLite URLs)."""
    parsed = make_url(normalize_url(url))
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).expanduser()


def make_engine(
    url: str,
    *,
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    command_timeout_s: float = DEFAULT_COMMAND_TIMEOUT_S,
    pool_size: int = 5,
) -> AsyncEngine:
    """Build an `AsyncEngine` for `url` (SQLite: WAL + busy timeout; PostgreSQL: asyncpg)."""
    url = normalize_url(url)
    if is_sqlite(url):
        return _sqlite_engine(url, busy_timeout_ms)
    return create_async_engine(
        url,
        pool_pre_ping=True,  # a restarted server leaves dead pooled connections behind
        pool_size=pool_size,
        connect_args={
            "timeout": connect_timeout_s,
            "command_timeout": command_timeout_s,
            "server_settings": {"application_name": "tickstock"},
        },
    )


def engine_for(url: str, config: StorageConfig) -> AsyncEngine:
    """`make_engine` with the timeouts of a `StorageConfig`."""
    return make_engine(
        url,
        busy_timeout_ms=config.sqlite_busy_timeout_ms,
        connect_timeout_s=config.connect_timeout_s,
        command_timeout_s=config.command_timeout_s,
    )


def _sqlite_engine(url: str, busy_timeout_ms: int) -> AsyncEngine:
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": busy_timeout_ms / 1000})
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas(busy_timeout_ms))
    return engine


def _sqlite_pragmas(busy_timeout_ms: int) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # WAL lets readers (API, notebooks) run while the persistence actor writes.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return on_connect


# -- migrations ---------------------------------------------------------------------------


@contextmanager
def _script_location() -> Iterator[str]:
    with resources.as_file(resources.files("migrations")) as path:
        yield str(path)


def alembic_config(script_location: str) -> AlembicConfig:
    """An Alembic config built in code (no alembic.ini needed)."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", script_location)
    return cfg


def head_revision() -> str | None:
    """The newest revision shipped with the package."""
    with _script_location() as location:
        return ScriptDirectory.from_config(alembic_config(location)).get_current_head()


async def _run_with_connection(url: str, fn: Callable[[Connection], Any]) -> Any:
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(fn)
    finally:
        await engine.dispose()


def _alembic_command(name: str, revision: str) -> Callable[[Connection], None]:
    def run(connection: Connection) -> None:
        with _script_location() as location:
            cfg = alembic_config(location)
            cfg.attributes["connection"] = connection
            getattr(command, name)(cfg, revision)

    return run


async def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at `url` up to `revision`."""
    await _run_with_connection(url, _alembic_command("upgrade", revision))


async def downgrade(url: str, revision: str) -> None:
    """Migrate the database at `url` down to `revision` (`base` drops every table)."""
    await _run_with_connection(url, _alembic_command("downgrade", revision))


async def current(url: str) -> str | None:
    """The revision the database at `url` is at (None when never migrated)."""

    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    result: str | None = await _run_with_connection(url, read)
    return result


async def ensure_database(url: str) -> str | None:
    """Bring the database to the newest revision if it is behind; return that revision."""
    head = head_revision()
    if await current(url) != head:
        await upgrade(url, "head")
    return head


TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # includes ConnectionError and TimeoutError
    sqlite3.OperationalError,  # locked, busy, unable to open
    asyncpg_errors.PostgresConnectionError,
    asyncpg_errors.InterfaceError,
    asyncpg_errors.OperatorInterventionError,  # shutting down, cannot connect now
    asyncpg_errors.InsufficientResourcesError,  # disk full, too many connections
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
)


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` means "database unreachable or busy" (retry) rather than bad data."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        err = todo.pop()
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, sa_exc.DBAPIError) and err.connection_invalidated:
            return True
        if isinstance(err, TRANSIENT_ERRORS):
            return True
        todo += [err.__cause__, err.__context__, getattr(err, "orig", None)]
    return False


def describe_error(exc: BaseException, url: str = "") -> str:
    """One line naming an error, with any password of `url` removed."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0] if lines else ''}"[:500]
    if url:
        text = text.replace(url, redact_url(url))
        password = make_url(url).password if "://" in url else None
        if password:
            text = text.replace(str(password), "***")
    return text
