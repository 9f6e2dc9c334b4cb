"""What the gateway needs from the rest of the system, and an in-memory stand-in.

`GatewayDeps` is implemented over Ray handles by the composition root; `InMemoryDeps` serves
unit and integration tests and demos (`push` events in, they come out of `collect`).
User ids: the gateway passes `"local"` in local mode and `str(UserRecord.id)` in token mode to
the universe/filter methods; the `user_store` methods take the record's integer id.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from typing import Any, Protocol

import msgspec

from schemas.api import Collected, EventQuery, UserView
from schemas.events import Event, MarketSession
from schemas.records import SessionRecord, UserRecord


class UserStore(Protocol):
    """Accounts, login sessions and per-user settings (SQL in `storage/users.py`)."""

    async def create_user(self, username: str, email: str, password_hash: str) -> UserRecord:
        """Insert a user; raise ValueError if the username or email is taken."""
        ...

    async def get_user(self, username: str) -> UserRecord | None: ...

    async def get_user_by_id(self, user_id: int) -> UserRecord | None: ...

    async def update_login_state(
        self,
        user_id: int,
        failed_logins: int,
        locked_until_ms: int | None,
        lockout_count: int,
        disabled: bool,
    ) -> None: ...

    async def create_session(
        self, token_hash: str, user_id: int, expires_ms: int, ip: str | None, user_agent: str | None
    ) -> SessionRecord: ...

    async def get_session(self, token_hash: str) -> SessionRecord | None: ...

    async def revoke_session(self, token_hash: str) -> object: ...

    async def revoke_user_sessions(self, user_id: int) -> object: ...

    async def get_settings(self, user_id: int) -> dict[str, Any]: ...

    async def set_setting(self, user_id: int, key: str, value: Any) -> None: ...

    async def delete_setting(self, user_id: int, key: str) -> object: ...


class GatewayDeps(Protocol):
    """The gateway's view of the system (queue, universes, status, storage)."""

    user_store: UserStore

    async def collect(self, max_events: int, timeout_s: float) -> Collected: ...

    async def user_view(self, user_id: str) -> UserView: ...

    async def list_universes(self) -> dict[str, int]: ...

    async def universe_tickers(self, name: str) -> list[str]: ...

    async def select_universes(self, user_id: str, tracker: str, names: list[str]) -> UserView: ...

    async def set_filters(self, user_id: str, filters: dict[str, Any]) -> UserView: ...

    async def system_status(self) -> dict[str, Any]: ...

    async def event_history(self, query: EventQuery) -> list[dict[str, Any]]: ...


class InMemoryUserStore:
    """A `UserStore` in dicts (tests and demos)."""

    def __init__(self, clock: Any = time.time) -> None:
        self._clock = clock
        self._users: dict[int, UserRecord] = {}
        self._sessions: dict[str, SessionRecord] = {}
        self._settings: dict[int, dict[str, Any]] = {}

    async def create_user(self, username: str, email: str, password_hash: str) -> UserRecord:
        """Insert a user; raise ValueError if the username or email is taken."""
        for user in self._users.values():
            if user.username.lower() == username.lower() or user.email.lower() == email.lower():
                raise ValueError("username or email already registered")
        user = UserRecord(
            id=len(self._users) + 1,
            username=username,
            email=email,
            password_hash=password_hash,
            created_ms=int(self._clock() * 1000),
        )
        self._users[user.id] = user
        return user

    async def get_user(self, username: str) -> UserRecord | None:
        return next((u for u in self._users.values() if u.username == username), None)

    async def get_user_by_id(self, user_id: int) -> UserRecord | None:
        return self._users.get(user_id)

    async def update_login_state(
        self,
        user_id: int,
        failed_logins: int,
        locked_until_ms: int | None,
        lockout_count: int,
        disabled: bool,
    ) -> None:
        user = self._users[user_id]
        self._users[user_id] = msgspec.structs.replace(
            user,
            failed_logins=failed_logins,
            locked_until_ms=locked_until_ms,
            lockout_count=lockout_count,
            disabled=disabled,
        )

    async def create_session(
        self, token_hash: str, user_id: int, expires_ms: int, ip: str | None, user_agent: str | None
    ) -> SessionRecord:
        record = SessionRecord(
            token_hash=token_hash,
            user_id=user_id,
            created_ms=int(self._clock() * 1000),
            expires_ms=expires_ms,
            ip=ip,
            user_agent=user_agent,
        )
        self._sessions[token_hash] = record
        return record

    async def get_session(self, token_hash: str) -> SessionRecord | None:
        return self._sessions.get(token_hash)

    async def revoke_session(self, token_hash: str) -> None:
        if (record := self._sessions.get(token_hash)) is not None:
            self._sessions[token_hash] = msgspec.structs.replace(record, revoked=True)

    async def revoke_user_sessions(self, user_id: int) -> None:
        for token_hash, record in list(self._sessions.items()):
            if record.user_id == user_id:
                self._sessions[token_hash] = msgspec.structs.replace(record, revoked=True)

    async def get_settings(self, user_id: int) -> dict[str, Any]:
        return dict(self._settings.get(user_id, {}))

    async def set_setting(self, user_id: int, key: str, value: Any) -> None:
        self._settings.setdefault(user_id, {})[key] = value

    async def delete_setting(self, user_id: int, key: str) -> None:
        self._settings.get(user_id, {}).pop(key, None)


class InMemoryDeps:
    """A `GatewayDeps` fed by hand: `push` events, set the session, read selections.

    Use it on the event loop that runs the gateway (it holds an `asyncio.Event`).
    """

    def __init__(
        self,
        universes: dict[str, list[str]] | None = None,
        *,
        session: str = MarketSession.REGULAR.value,
        session_date: str = "2024-01-02",
        user_store: InMemoryUserStore | None = None,
    ) -> None:
        self.user_store = user_store or InMemoryUserStore()
        self.universes = dict(universes or {})
        self.session = session
        self.session_date = session_date
        self.analytics: dict[str, Any] = {}
        self.dropped: dict[str, int] = {}
        self.status: dict[str, Any] = {"feed": "connected", "lag_ms": 0, "ticks_per_s": 0.0}
        self.history: list[Event] = []
        self.selections: dict[str, dict[str, list[str]]] = {}
        self.filters: dict[str, dict[str, Any]] = {}
        self.collect_calls = 0
        self._pending: list[Event] = []
        self._watermark = 0
        self._has_data = asyncio.Event()

    # -- feeding (tests) ----------------------------------------------------------------------

    def push(self, events: Iterable[Event]) -> None:
        """Queue events for the next `collect`."""
        events = list(events)
        self._pending.extend(events)
        self.history.extend(events)
        self._watermark = max([self._watermark, *(e.time for e in events)])
        self._has_data.set()

    def set_session(self, session: str, session_date: str) -> None:
        """Move the market to another session (the next `collect` reports it)."""
        self.session, self.session_date = session, session_date
        self._has_data.set()

    # -- GatewayDeps ----------------------------------------------------------------------------

    async def collect(self, max_events: int, timeout_s: float) -> Collected:
        """Pending events (up to `max_events`), waiting up to `timeout_s` when there are none."""
        self.collect_calls += 1
        if not self._pending:
            self._has_data.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._has_data.wait(), timeout_s)
        events, self._pending = self._pending[:max_events], self._pending[max_events:]
        return Collected(
            events=events,
            watermark=self._watermark,
            session=self.session,
            session_date=self.session_date,
            analytics=self.analytics,
            dropped=dict(self.dropped),
        )

    async def user_view(self, user_id: str) -> UserView:
        selections = self.selections.get(user_id, {})
        names = {n for chosen in selections.values() for n in chosen}
        tickers = sorted({t for n in names for t in self.universes.get(n, [])})
        return UserView(
            user_id=user_id,
            tickers=tickers or None,
            selections={k: list(v) for k, v in selections.items()},
            filters=dict(self.filters.get(user_id, {})),
        )

    async def list_universes(self) -> dict[str, int]:
        return {name: len(tickers) for name, tickers in self.universes.items()}

    async def universe_tickers(self, name: str) -> list[str]:
        if name not in self.universes:
            raise KeyError(name)
        return list(self.universes[name])

    async def select_universes(self, user_id: str, tracker: str, names: list[str]) -> UserView:
        self.selections.setdefault(user_id, {})[tracker] = list(names)
        return await self.user_view(user_id)

    async def set_filters(self, user_id: str, filters: dict[str, Any]) -> UserView:
        self.filters[user_id] = dict(filters)
        return await self.user_view(user_id)

    async def system_status(self) -> dict[str, Any]:
        return dict(self.status)

    async def event_history(self, query: EventQuery) -> list[dict[str, Any]]:
        out = [e for e in self.history if _matches(e, query)]
        out.sort(key=lambda e: (e.time, e.id), reverse=query.newest_first)
        return [msgspec.to_builtins(e) for e in out[: query.limit]]


def _matches(event: Event, q: EventQuery) -> bool:
    """Whether an event passes every filter of `q` (the in-memory `EventHistory.query`)."""
    return (
        (q.ticker is None or event.ticker == q.ticker)
        and (q.kind is None or event.kind == q.kind)
        and (q.start_ms is None or event.time >= q.start_ms)
        and (q.end_ms is None or event.time < q.end_ms)
        and (q.session is None or event.session == q.session)
    )
