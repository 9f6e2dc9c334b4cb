"""Auth policy: argon2 hashes, lockout, token rotation and expiry, local mode, token parsing."""

from __future__ import annotations

import hashlib

import pytest
from argon2 import PasswordHasher

from config.settings import GatewayConfig
from gateway.auth import (
    Authenticator,
    AuthError,
    LoginState,
    after_failed_login,
    cookie_token,
    registration_problem,
    token_from_headers,
    token_hash,
)
from gateway.deps import InMemoryUserStore
from schemas.api import Credentials, Registration

FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
PASSWORD = "s3cret-pass"


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def make(mode: str = "token", **cfg: int) -> tuple[Authenticator, InMemoryUserStore, Clock]:
    clock = Clock()
    store = InMemoryUserStore(clock)
    config = GatewayConfig(auth_mode=mode, **cfg)  # type: ignore[arg-type]
    return Authenticator(config, store, hasher=FAST, clock=clock), store, clock


async def registered(auth: Authenticator, name: str = "alice") -> None:
    await auth.register(Registration(username=name, email=f"{name}@example.com", password=PASSWORD))


def test_lockout_transition() -> None:
    s = LoginState(0, None, 0)
    for _ in range(4):
        s = after_failed_login(s, 1_000, max_failed=5, lockout_s=60)
    assert s == LoginState(4, None, 0)
    s = after_failed_login(s, 1_000, max_failed=5, lockout_s=60)
    assert s == LoginState(0, 61_000, 1)


@pytest.mark.parametrize(
    ("username", "email", "password", "ok"),
    [
        ("alice", "alice@example.com", PASSWORD, True),
        ("al", "alice@example.com", PASSWORD, False),
        ("alice smith", "alice@example.com", PASSWORD, False),
        ("alice", "not-an-email", PASSWORD, False),
        ("alice", "alice@example.com", "short1", False),
        ("alice", "alice@example.com", "lettersonly", False),
        ("alice", "alice@example.com", "12345678901", False),
    ],
)
def test_registration_rules(username: str, email: str, password: str, ok: bool) -> None:
    reg = Registration(username=username, email=email, password=password)
    assert (registration_problem(reg) is None) == ok


def test_token_extraction_from_bearer_and_cookie() -> None:
    assert token_from_headers({"Authorization": "Bearer abc"}) == "abc"
    assert token_from_headers({"Cookie": "x=1; ts_token=tok"}) == "tok"
    assert token_from_headers({"HTTP_COOKIE": "ts_token=tok2"}) == "tok2"  # WSGI-style environ
    assert token_from_headers({"Authorization": "Basic abc"}) is None
    assert cookie_token('bad"cookie') is None
    assert token_hash("t") == hashlib.sha256(b"t").hexdigest()


async def test_register_stores_an_argon2_hash_never_the_password() -> None:
    auth, store, _ = make()
    await registered(auth)
    user = await store.get_user("alice")
    assert user is not None
    assert user.password_hash.startswith("$argon2")
    assert PASSWORD not in user.password_hash
    with pytest.raises(AuthError) as err:
        await registered(auth)
    assert err.value.status == 409
    with pytest.raises(AuthError) as err:
        await auth.register(
            Registration(username="local", email="l@example.com", password=PASSWORD)
        )
    assert err.value.status == 409


async def test_login_issues_hashed_expiring_token_and_rotates() -> None:
    auth, store, clock = make(session_ttl_s=3600)
    await registered(auth)
    token1, session1, user = await auth.login(Credentials(username="alice", password=PASSWORD))
    assert session1.token_hash == token_hash(token1) != token1
    assert await store.get_session(token1) is None  # the token itself is never stored
    principal = await auth.resolve(token1)
    assert principal is not None
    assert principal.user_id == str(user.id)
    token2, _, _ = await auth.login(Credentials(username="alice", password=PASSWORD))
    assert token2 != token1
    assert await auth.resolve(token1) is None  # rotated out
    assert await auth.resolve(token2) is not None
    clock.now += 3601
    assert await auth.resolve(token2) is None  # expired


async def test_logout_revokes_the_token() -> None:
    auth, _, _ = make()
    await registered(auth)
    token, _, _ = await auth.login(Credentials(username="alice", password=PASSWORD))
    await auth.logout(token)
    assert await auth.resolve(token) is None


async def test_wrong_passwords_lock_the_account_then_it_unlocks() -> None:
    auth, store, clock = make(max_failed_logins=3, lockout_s=60)
    await registered(auth)
    bad = Credentials(username="alice", password="wrong-pass1")
    statuses = []
    for _ in range(3):
        with pytest.raises(AuthError) as err:
            await auth.login(bad)
        statuses.append(err.value.status)
    assert statuses == [401, 401, 423]
    with pytest.raises(AuthError) as err:  # even the right password is refused while locked
        await auth.login(Credentials(username="alice", password=PASSWORD))
    assert err.value.status == 423
    clock.now += 61
    await auth.login(Credentials(username="alice", password=PASSWORD))
    user = await store.get_user("alice")
    assert user is not None
    assert user.failed_logins == 0
    assert user.lockout_count == 1


async def test_unknown_user_and_wrong_password_look_the_same() -> None:
    auth, _, _ = make()
    await registered(auth)
    reasons = []
    for name, pw in (("nobody", PASSWORD), ("alice", "wrong-pass1")):
        with pytest.raises(AuthError) as err:
            await auth.login(Credentials(username=name, password=pw))
        reasons.append((err.value.status, err.value.reason))
    assert reasons[0] == reasons[1]


async def test_disabled_account_cannot_log_in_or_use_its_token() -> None:
    auth, store, _ = make()
    await registered(auth)
    token, _, user = await auth.login(Credentials(username="alice", password=PASSWORD))
    await store.update_login_state(user.id, 0, None, 0, True)
    assert await auth.resolve(token) is None
    with pytest.raises(AuthError) as err:
        await auth.login(Credentials(username="alice", password=PASSWORD))
    assert err.value.status == 403


async def test_token_mode_refuses_missing_or_forged_tokens() -> None:
    auth, _, _ = make()
    assert await auth.resolve(None) is None
    assert await auth.resolve("forged") is None
    assert await auth.resolve("x" * 1000) is None


async def test_local_mode_accepts_everyone_as_local_with_an_account() -> None:
    auth, store, _ = make("local")
    principal = await auth.ensure_local_user()
    assert principal.user_id == "local"
    assert principal.record_id is not None
    assert await auth.resolve(None) == principal
    assert (await auth.ensure_local_user()).record_id == principal.record_id  # idempotent
    with pytest.raises(AuthError):  # the local account has no usable password
        await auth.login(Credentials(username="local", password=PASSWORD))
    local = await store.get_user("local")
    assert local is not None
    assert not local.password_hash.startswith("$argon2")
