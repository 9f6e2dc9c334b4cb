"""Accounts, login sessions, settings, filters and universe selections over an `AsyncEngine`.

Same code on SQLite and PostgreSQL; upserts use each dialect's `ON CONFLICT`. Account times are
wall-clock Unix ms from an injectable clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.records import TRACKERS, SessionRecord, UserRecord
from schemas.tables import (
    LoginSession,
    User,
    UserFilter,
    UserSetting,
    UserUniverseSelection,
)
from storage.sql import Clock, upsert, wall_ms


class UserExistsError(ValueError):
    """The username or email is already taken."""


USER_COLUMNS = (
    User.id,
    User.username,
    User.email,
    User.password_hash,
    User.failed_logins,
    User.locked_until_ms,
    User.lockout_count,
    User.disabled,
    User.verified,
    User.created_ms,
    User.terms_version,
)
SESSION_COLUMNS = (
    LoginSession.token_hash,
    LoginSession.user_id,
    LoginSession.created_ms,
    LoginSession.expires_ms,
    LoginSession.ip,
    LoginSession.user_agent,
    LoginSession.revoked,
)


class SqlUserStore:
    """Accounts, login sessions, settings, filters and universe selections."""

    def __init__(self, engine: AsyncEngine, clock: Clock = wall_ms) -> None:
        self._engine = engine
        self._clock = clock

    async def create_user(
        self,
        username: str,
        email: str,
        password_hash: str,
        *,
        verified: bool = True,
        terms_version: str | None = None,
    ) -> UserRecord:
        """Insert a user; raise `UserExistsError` if the username or email is taken."""
        now = self._clock()
        row = {
            "username": username,
            "email": email,
            "password_hash": password_hash,
            "failed_logins": 0,
            "lockout_count": 0,
            "disabled": False,
            "verified": verified,
            "created_ms": now,
            "terms_version": terms_version,
            "terms_accepted_ms": now if terms_version else None,
        }
        try:
            async with self._engine.begin() as conn:
                result = await conn.execute(insert(User).values(row).returning(*USER_COLUMNS))
                created = result.one()
        except IntegrityError:
            raise UserExistsError(f"username or email already registered: {username!r}") from None
        return UserRecord(**created._asdict())

    async def get_user(self, username: str) -> UserRecord | None:
        """The user named `username`, or None."""
        return await self._one_user(User.username == username)

    async def get_user_by_id(self, user_id: int) -> UserRecord | None:
        """The user with id `user_id`, or None."""
        return await self._one_user(User.id == user_id)

    async def _one_user(self, where: Any) -> UserRecord | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(*USER_COLUMNS).where(where))).first()
        return None if row is None else UserRecord(**row._asdict())

    async def update_login_state(
        self,
        user_id: int,
        failed_logins: int,
        locked_until_ms: int | None,
        lockout_count: int,
        disabled: bool,
    ) -> None:
        """Store the outcome of a login attempt (failure counter, lockout, disablement)."""
        values = {
            "failed_logins": failed_logins,
            "locked_until_ms": locked_until_ms,
            "lockout_count": lockout_count,
            "disabled": disabled,
        }
        await self._update(update(User).where(User.id == user_id).values(values))

    async def set_password_hash(self, user_id: int, password_hash: str) -> None:
        """Replace a user's password hash (callers revoke the user's sessions too)."""
        stmt = update(User).where(User.id == user_id).values(password_hash=password_hash)
        await self._update(stmt)

    async def _update(self, stmt: Any) -> int:
        async with self._engine.begin() as conn:
            result = await conn.execute(stmt)
        return int(result.rowcount)

    # sessions

    async def create_session(
        self,
        token_hash: str,
        user_id: int,
        expires_ms: int,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> SessionRecord:
        """Record a new login session (only the token's hash is stored)."""
        record = SessionRecord(
            token_hash=token_hash,
            user_id=user_id,
            created_ms=self._clock(),
            expires_ms=expires_ms,
            ip=ip,
            user_agent=user_agent[:512] if user_agent else user_agent,
        )
        async with self._engine.begin() as conn:
            await conn.execute(insert(LoginSession).values(_record_values(record)))
        return record

    async def get_session(self, token_hash: str) -> SessionRecord | None:
        """The session with this token hash, revoked or expired ones included (see `is_active`)."""
        query = select(*SESSION_COLUMNS).where(LoginSession.token_hash == token_hash)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else SessionRecord(**row._asdict())

    async def revoke_session(self, token_hash: str) -> bool:
        """Revoke one session; return whether it existed and was active."""
        stmt = update(LoginSession).where(
            LoginSession.token_hash == token_hash, LoginSession.revoked.is_(False)
        )
        return await self._update(stmt.values(revoked=True)) > 0

    async def revoke_user_sessions(self, user_id: int) -> int:
        """Revoke every session of a user; return how many were active."""
        stmt = update(LoginSession).where(
            LoginSession.user_id == user_id, LoginSession.revoked.is_(False)
        )
        return await self._update(stmt.values(revoked=True))

    # settings

    async def get_settings(self, user_id: int) -> dict[str, Any]:
        """All settings of a user as {key: value}."""
        query = select(UserSetting.key, UserSetting.value).where(UserSetting.user_id == user_id)
        return await self._pairs(query)

    async def set_setting(self, user_id: int, key: str, value: Any) -> None:
        """Create or replace one setting (any JSON value)."""
        row = {"user_id": user_id, "key": key, "value": value, "updated_ms": self._clock()}
        await self._upsert(UserSetting.__table__, ("user_id", "key"), row)

    async def delete_setting(self, user_id: int, key: str) -> bool:
        """Delete one setting; return whether it existed."""
        stmt = delete(UserSetting).where(UserSetting.user_id == user_id, UserSetting.key == key)
        return await self._update(stmt) > 0

    # filters

    async def get_filters(self, user_id: int) -> dict[str, dict[str, Any]]:
        """The user's named filter sets as {name: filter_data}."""
        query = select(UserFilter.name, UserFilter.filter_data).where(UserFilter.user_id == user_id)
        return await self._pairs(query)

    async def set_filters(self, user_id: int, name: str, filters: Mapping[str, Any]) -> None:
        """Create or replace the filter set `name` of a user."""
        row = {
            "user_id": user_id,
            "name": name,
            "filter_data": dict(filters),
            "updated_ms": self._clock(),
        }
        await self._upsert(UserFilter.__table__, ("user_id", "name"), row)

    # universe selections

    async def get_universe_selections(self, user_id: int) -> dict[str, list[str]]:
        """The user's selected universe names per tracker ('market', 'highlow')."""
        query = select(UserUniverseSelection.tracker, UserUniverseSelection.universes).where(
            UserUniverseSelection.user_id == user_id
        )
        return await self._pairs(query)

    async def set_universe_selection(
        self, user_id: int, tracker: str, names: Sequence[str]
    ) -> None:
        """Replace the universes a user selected for one tracker."""
        if tracker not in TRACKERS:
            raise ValueError(f"unknown tracker {tracker!r}; expected one of {TRACKERS}")
        row = {
            "user_id": user_id,
            "tracker": tracker,
            "universes": list(names),
            "updated_ms": self._clock(),
        }
        await self._upsert(UserUniverseSelection.__table__, ("user_id", "tracker"), row)

    async def all_universe_selections(self) -> dict[int, dict[str, list[str]]]:
        """Every user's selections as {user_id: {tracker: names}} (to rebuild subscriptions)."""
        query = select(
            UserUniverseSelection.user_id,
            UserUniverseSelection.tracker,
            UserUniverseSelection.universes,
        )
        out: dict[int, dict[str, list[str]]] = {}
        async with self._engine.connect() as conn:
            for user_id, tracker, names in await conn.execute(query):
                out.setdefault(user_id, {})[tracker] = list(names)
        return out

    async def _pairs(self, query: Any) -> dict[Any, Any]:
        async with self._engine.connect() as conn:
            return {key: value for key, value in await conn.execute(query)}

    async def _upsert(self, table: Any, keys: Sequence[str], row: dict[str, Any]) -> None:
        values = [name for name in row if name not in keys]
        async with self._engine.begin() as conn:
            await conn.execute(upsert(conn, table, keys, values), row)


def _record_values(record: SessionRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__struct_fields__}
