"""The coordinator's long poll: it answers as soon as the subscription set's version moves."""

from __future__ import annotations

import asyncio

from actors.universe.actor import UniverseCoordinatorActor
from config.settings import load_settings


def coordinator() -> UniverseCoordinatorActor:
    settings = load_settings(env={}, overrides={"storage": {"enabled": False}})
    return UniverseCoordinatorActor(settings)


async def test_a_changed_version_is_answered_at_once() -> None:
    c = coordinator()
    version, tickers = await c.subscription_set()
    assert await c.next_subscription_set(version - 1, 30.0) == (version, tickers)


async def test_the_poll_wakes_when_the_set_changes() -> None:
    c = coordinator()
    version, _ = await c.subscription_set()
    waiting = asyncio.ensure_future(c.next_subscription_set(version, 30.0))
    await asyncio.sleep(0.02)
    assert not waiting.done()
    await c.add_tickers(["ZZZT"])
    new_version, tickers = await asyncio.wait_for(waiting, 2.0)
    assert new_version == version + 1
    assert "ZZZT" in tickers


async def test_an_unchanged_set_is_answered_at_the_timeout() -> None:
    c = coordinator()
    version, tickers = await c.subscription_set()
    assert await c.next_subscription_set(version, 0.02) == (version, tickers)


async def test_a_bad_timeout_is_clamped_not_raised() -> None:
    c = coordinator()
    version, tickers = await c.subscription_set()
    assert await c.next_subscription_set(version, -5.0) == (version, tickers)
    assert await c.next_subscription_set(version, float("nan")) == (version, tickers)
