"""Shared fixtures: where the real recorded data lives, and a polling wait helper."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def real_data_path() -> Path:
    """The real recorded market data (TICKSTOCK_REAL_DATA, else ../shared/data/real)."""
    env = os.environ.get("TICKSTOCK_REAL_DATA")
    return Path(env) if env else (REPO / ".." / "shared" / "data" / "real").resolve()


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    path = real_data_path()
    if not path.is_dir():
        pytest.fail(f"real market data not found at {path}: set TICKSTOCK_REAL_DATA")
    return path


def wait_for(cond: Callable[[], T], timeout: float = 30.0, interval: float = 0.05) -> T:
    """Poll `cond` until it returns a truthy value (returned) or fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {cond}")
        time.sleep(interval)


async def eventually(
    cond: Callable[[], Any] | Callable[[], Awaitable[Any]], timeout: float = 30.0,
    interval: float = 0.05,
) -> Any:
    """Async poll: `cond` may be sync or async; returns its first truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)
