"""The dashboard in a real browser (Debian's chromium through Playwright).

The page served by `create_app` loads the vendored socket.io client, shows the events a
late joiner gets (the session so far) and then live ones, the status header, and clears its
lists on a session reset. A screenshot goes to /tmp/tickstock-dashboard.png.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from config.settings import GatewayConfig
from gateway.app import STATIC_DIR, VENDOR_SCRIPT, create_app
from gateway.deps import InMemoryDeps
from gateway.hub import Hub
from gateway.keys import HUB
from schemas.events import Event
from tests.conftest import eventually

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("TICKSTOCK_CHROMIUM", "/usr/bin/chromium")
SCREENSHOT = Path("/tmp/tickstock-dashboard.png")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def ev(ticker: str, t: int, kind: str, direction: str = "up", **kw: Any) -> Event:
    base = 1_704_207_000_000  # 2024-01-02 09:50 ET
    return Event(
        id=f"{ticker}:{kind}:{t}:1",
        ticker=ticker,
        kind=kind,
        direction=direction,
        price=kw.pop("price", 100.0 + t),
        time=base + t * 1000,
        session="REGULAR",
        pct_change=kw.pop("pct_change", 0.5),
        **kw,
    )


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, InMemoryDeps, Hub]]:
    if not (STATIC_DIR / VENDOR_SCRIPT).is_file():
        pytest.fail(f"{STATIC_DIR / VENDOR_SCRIPT} missing: run `pip install -e .` (npm ci + copy)")
    deps = InMemoryDeps({"TECH": ["AAPL", "MSFT", "NVDA"]})
    deps.status = {"feed": "connected", "lag_ms": 42, "ticks_per_s": 1234.0, "events_per_s": 5.0}
    deps.analytics = {
        "activity": {"activity_level": "High", "ticks_per_minute": 900},
        "gauge": {"net_score": 4.0},
    }
    app = create_app(GatewayConfig(emission_interval_s=0.2, heartbeat_interval_s=0.5), deps)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", deps, app[HUB]
    finally:
        await runner.cleanup()
        assert app[HUB].connected == 0


@pytest.fixture
async def page() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} missing: apt-get install -y chromium")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = await browser.new_context(viewport={"width": 1500, "height": 800})
        pg = await context.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        yield pg
        await browser.close()
        assert errors == [], errors


async def row_ids(page: Any, list_name: str) -> list[str]:
    return list(
        await page.eval_on_selector_all(
            f"#list-{list_name} li", "els => els.map(e => e.dataset.id)"
        )
    )


async def test_dashboard_shows_session_events_live_events_and_status(
    served: tuple[str, InMemoryDeps, Hub], page: Any
) -> None:
    url, deps, hub = served
    early = [
        ev("AAPL", 1, "high", significance=60.0, label="HIGH #1"),
        ev("MSFT", 2, "low", "down", pct_change=-0.7, label="LOW #1"),
    ]
    deps.push(early)
    await eventually(lambda: deps.collect_calls > 2 and not deps._pending, timeout=10)

    await page.goto(url)
    # late join: the session's events so far are on the page
    await eventually(lambda: row_ids(page, "highs"), timeout=15)
    assert await row_ids(page, "highs") == [early[0].id]
    assert await row_ids(page, "lows") == [early[1].id]

    live = [
        ev("NVDA", 3, "surge", "up", magnitude=3.2, strength="strong", trigger="price_and_volume"),
        ev("AAPL", 4, "trend", "up", strength="moderate", vwap_position="above"),
        ev("MSFT", 5, "trend", "down", strength="weak"),
        ev("NVDA", 6, "surge", "down", magnitude=-2.1, strength="moderate"),
    ]
    deps.push(live)
    await eventually(lambda: row_ids(page, "trend_down"), timeout=15)
    assert await row_ids(page, "surge_up") == [live[0].id]
    assert await row_ids(page, "trend_up") == [live[1].id]
    assert await row_ids(page, "trend_down") == [live[2].id]
    assert await row_ids(page, "surge_down") == [live[3].id]
    assert await page.text_content("#list-surge_up li .tk") == "NVDA"

    # the header follows status_update and the analytics in stock_data
    await eventually(lambda: _text_is(page, "#feed-text", "connected"), timeout=15)
    assert await page.text_content("#session") == "REGULAR"
    assert await page.text_content("#lag") == "42 ms"
    assert await page.text_content("#ticks") == "1234"
    assert await page.text_content("#clients") == "1"
    assert "High" in (await page.text_content("#activity") or "")
    assert await page.text_content("#gauge-value") == "+4.0"
    assert await page.text_content("#conn") == "live"

    # newest on top
    deps.push([ev("MSFT", 7, "high")])
    await eventually(lambda: _count_is(page, "highs", 2), timeout=15)
    assert await row_ids(page, "highs") == [ev("MSFT", 7, "high").id, early[0].id]
    assert "undefined" not in (await page.text_content("main") or "")
    await page.screenshot(path=str(SCREENSHOT), full_page=True)

    # a dropped connection resumes by seq: what was missed arrives once, nothing twice
    await page.evaluate("window.__tickstock.socket.io.engine.close()")
    await eventually(lambda: hub.connected == 0, timeout=10)
    missed = ev("NVDA", 8, "high")
    deps.push([missed])
    await eventually(lambda: _count_is(page, "highs", 3), timeout=20)
    assert (await row_ids(page, "highs"))[0] == missed.id
    assert hub.emitter.counters["resumes"] == 1
    assert await page.text_content("#conn") == "live"

    # a new session clears the lists and says so
    deps.set_session("AFTER", "2024-01-02")
    await eventually(lambda: _count_is(page, "highs", 0), timeout=15)
    assert await page.is_visible("#banner")
    assert await page.text_content("#session") == "AFTER"


async def _text_is(page: Any, selector: str, text: str) -> bool:
    return await page.text_content(selector) == text


async def _count_is(page: Any, list_name: str, n: int) -> bool:
    return len(await row_ids(page, list_name)) == n


async def test_token_mode_asks_for_a_login_then_streams(page: Any) -> None:
    from argon2 import PasswordHasher

    from gateway.auth import Authenticator

    config = GatewayConfig(emission_interval_s=0.2, auth_mode="token")
    deps = InMemoryDeps({"TECH": ["AAPL"]})
    fast = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    app = create_app(
        config, deps, authenticator=Authenticator(config, deps.user_store, hasher=fast)
    )
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        await page.goto(f"http://127.0.0.1:{runner.addresses[0][1]}")
        await page.wait_for_selector("#login", state="visible", timeout=10_000)
        assert app[HUB].connected == 0  # nothing streams to an anonymous page
        await page.click("#register-toggle")
        await page.fill("#login-form input[name=username]", "erin")
        await page.fill("#login-form input[name=email]", "erin@example.com")
        await page.fill("#login-form input[name=password]", "wrong")
        await page.click("#login-submit")
        await eventually(
            lambda: _text_is(page, "#login-error", "password must be 8-128 characters"), timeout=10
        )
        await page.fill("#login-form input[name=password]", "s3cret-pass")
        await page.click("#login-submit")
        await page.wait_for_selector("#login", state="hidden", timeout=10_000)
        assert await page.text_content("#user") == "erin"
        await eventually(lambda: app[HUB].connected == 1, timeout=10)
        deps.push([ev("AAPL", 1, "high")])
        await eventually(lambda: row_ids(page, "highs"), timeout=15)
        assert await row_ids(page, "highs") == [ev("AAPL", 1, "high").id]
    finally:
        await runner.cleanup()
