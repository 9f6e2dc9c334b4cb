"""Accounts and login sessions: argon2 hashes, lockout, expiring hashed tokens.

Policy: tokens are random (256 bits), handed to the client once, stored only as their SHA-256;
a login revokes the user's earlier sessions (rotation); `max_failed_logins` failures in a row
lock the account for `lockout_s`; a locked or disabled account cannot log in. Unknown users
and wrong passwords get the same answer, after the same argon2 work.

In `local` mode every caller is the single user "local" (what `tickstock up` serves by
default on a laptop); `token` mode requires a valid session for every protected endpoint and
socket connection.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from typing import NamedTuple

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from config.settings import GatewayConfig
from gateway.deps import UserStore
from schemas.api import Credentials, Registration
from schemas.records import SessionRecord, UserRecord

TOKEN_COOKIE = "ts_token"  # noqa: S105 - a cookie name, not a secret
LOCAL_USER = "local"
_USERNAME = re.compile(r"^[A-Za-z0-9_.-]{3,50}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
_UNUSABLE_HASH = "!"  # never verifies: the local user cannot log in with a password


class AuthError(Exception):
    """A refused auth request: an HTTP status and a reason safe to show."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the id used for universes/filters, and the account's record id."""

    user_id: str
    username: str
    record_id: int | None  # None when there is no account (local mode without a store)


LOCAL_PRINCIPAL = Principal(LOCAL_USER, LOCAL_USER, None)


class LoginState(NamedTuple):
    """The lockout fields of a user record."""

    failed_logins: int
    locked_until_ms: int | None
    lockout_count: int


def after_failed_login(
    state: LoginState, now_ms: int, max_failed: int, lockout_s: int
) -> LoginState:
    """The lockout state after one more failed password."""
    failed = state.failed_logins + 1
    if failed >= max_failed:
        return LoginState(0, now_ms + lockout_s * 1000, state.lockout_count + 1)
    return LoginState(failed, state.locked_until_ms, state.lockout_count)


def token_hash(token: str) -> str:
    """The stored form of a session token."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh session token (256 random bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def registration_problem(reg: Registration) -> str | None:
    """Why a registration is unacceptable, or None."""
    if not _USERNAME.match(reg.username):
        return "username must be 3-50 letters, digits, '_', '.' or '-'"
    if len(reg.email) > 254 or not _EMAIL.match(reg.email):
        return "invalid email address"
    pw = reg.password
    if not 8 <= len(pw) <= 128:
        return "password must be 8-128 characters"
    if not (any(c.isalpha() for c in pw) and any(c.isdigit() for c in pw)):
        return "password must contain a letter and a digit"
    if pw.lower() in {reg.username.lower(), reg.email.lower()}:
        return "password must differ from username and email"
    return None


def token_from_headers(headers: Mapping[str, str]) -> str | None:
    """A bearer token from `Authorization`, else the `ts_token` cookie."""
    auth = headers.get("Authorization") or headers.get("HTTP_AUTHORIZATION") or ""
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return cookie_token(headers.get("Cookie") or headers.get("HTTP_COOKIE") or "")


def cookie_token(cookie_header: str) -> str | None:
    """The `ts_token` value of a `Cookie` header."""
    if not cookie_header:
        return None
    cookies: SimpleCookie = SimpleCookie()
    try:
        cookies.load(cookie_header)
    except CookieError:
        return None
    morsel = cookies.get(TOKEN_COOKIE)
    return morsel.value if morsel is not None and morsel.value else None


class Authenticator:
    """Registration, login, logout and token resolution over a `UserStore`."""

    def __init__(
        self,
        config: GatewayConfig,
        store: UserStore,
        *,
        hasher: PasswordHasher | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cfg = config
        self._store = store
        self._hasher = hasher or PasswordHasher()
        self._clock = clock
        self._dummy_hash: str | None = None
        self._local = LOCAL_PRINCIPAL

    @property
    def local_mode(self) -> bool:
        """Whether every caller is the single local user."""
        return self._cfg.auth_mode == "local"

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def ensure_local_user(self) -> Principal:
        """Make sure the local user has an account (for settings); return its principal."""
        user = await self._store.get_user(LOCAL_USER)
        if user is None:
            try:
                user = await self._store.create_user(LOCAL_USER, "local@localhost", _UNUSABLE_HASH)
            except ValueError:  # created concurrently by another gateway
                user = await self._store.get_user(LOCAL_USER)
        if user is not None:
            self._local = Principal(LOCAL_USER, LOCAL_USER, user.id)
        return self._local

    async def register(self, reg: Registration) -> UserRecord:
        """Create an account; AuthError(400/409) when refused."""
        if (problem := registration_problem(reg)) is not None:
            raise AuthError(400, problem)
        if reg.username.lower() == LOCAL_USER:
            raise AuthError(409, "username already registered")
        pw_hash = await asyncio.to_thread(self._hasher.hash, reg.password)
        try:
            return await self._store.create_user(reg.username, reg.email, pw_hash)
        except ValueError:
            raise AuthError(409, "username or email already registered") from None

    async def login(
        self, creds: Credentials, ip: str | None = None, user_agent: str | None = None
    ) -> tuple[str, SessionRecord, UserRecord]:
        """Check the password; on success revoke older sessions and issue a new token."""
        user = await self._store.get_user(creds.username)
        if user is None or user.username == LOCAL_USER:
            await self._burn(creds.password)
            raise AuthError(401, "invalid username or password")
        now = self._now_ms()
        if user.disabled:
            raise AuthError(403, "account disabled")
        if user.locked_until_ms is not None and now < user.locked_until_ms:
            raise AuthError(423, "account locked; try again later")
        if not await self._verify(user.password_hash, creds.password):
            state = after_failed_login(
                LoginState(user.failed_logins, user.locked_until_ms, user.lockout_count),
                now,
                self._cfg.max_failed_logins,
                self._cfg.lockout_s,
            )
            await self._store.update_login_state(user.id, *state, user.disabled)
            if state.locked_until_ms is not None and state.locked_until_ms > now:
                raise AuthError(423, "account locked; try again later")
            raise AuthError(401, "invalid username or password")
        if user.failed_logins or user.locked_until_ms is not None:
            await self._store.update_login_state(user.id, 0, None, user.lockout_count, False)
        await self._store.revoke_user_sessions(user.id)
        token = new_token()
        expires = now + self._cfg.session_ttl_s * 1000
        session = await self._store.create_session(
            token_hash(token), user.id, expires, ip, user_agent
        )
        return token, session, user

    async def logout(self, token: str) -> None:
        """Revoke one session token (unknown tokens are ignored)."""
        await self._store.revoke_session(token_hash(token))

    async def resolve(self, token: str | None) -> Principal | None:
        """The caller behind `token`; always the local user in local mode; None if invalid."""
        if self.local_mode:
            return self._local
        if not token or len(token) > 256:
            return None
        session = await self._store.get_session(token_hash(token))
        if session is None or session.revoked or session.expires_ms <= self._now_ms():
            return None
        user = await self._store.get_user_by_id(session.user_id)
        if user is None or user.disabled:
            return None
        return Principal(str(user.id), user.username, user.id)

    async def _verify(self, pw_hash: str, password: str) -> bool:
        def check() -> bool:
            try:
                return bool(self._hasher.verify(pw_hash, password))
            except (VerificationError, InvalidHashError):
                return False

        return await asyncio.to_thread(check)

    async def _burn(self, password: str) -> None:
        """Spend the same argon2 work as a real check, so unknown users are not revealed."""
        if self._dummy_hash is None:
            self._dummy_hash = await asyncio.to_thread(self._hasher.hash, new_token())
        await self._verify(self._dummy_hash, password)
