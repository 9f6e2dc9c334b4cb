"""The gateway over real sockets: aiohttp on 127.0.0.1, real `socketio.AsyncClient`s.

The system behind the gateway is `InMemoryDeps` (events pushed by the test); everything in
front of it (HTTP, engine.io, Socket.IO, auth, emission) is the production code path.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import socketio
from aiohttp import web
from argon2 import PasswordHasher

from config.settings import GatewayConfig
from gateway.app import create_app
from gateway.auth import Authenticator
from gateway.deps import InMemoryDeps
from gateway.hub import Hub
from gateway.keys import HUB
from schemas.events import Event
from tests.conftest import eventually

FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
UNIVERSES = {"TECH": ["AAPL", "MSFT"], "BANKS": ["JPM", "BAC"]}
PASSWORD = "s3cret-pass"


def ev(ticker: str, t: int, kind: str = "high", direction: str = "up", **kw: Any) -> Event:
    return Event(
        id=f"{ticker}:{kind}:{t}:1",
        ticker=ticker,
        kind=kind,
        direction=direction,
        price=kw.pop("price", 100.0),
        time=t,
        session=kw.pop("session", "REGULAR"),
        **kw,
    )


def event_ids(payload: dict[str, Any]) -> list[str]:
    lists = [
        payload["highs"],
        payload["lows"],
        *payload["surging"].values(),
        *payload["trending"].values(),
    ]
    return [e["id"] for lst in lists for e in lst]


@dataclass
class Server:
    url: str
    deps: InMemoryDeps
    hub: Hub
    runner: web.AppRunner


async def start_server(**cfg: Any) -> Server:
    config = GatewayConfig(**{"emission_interval_s": 0.1, "heartbeat_interval_s": 2.0, **cfg})
    deps = InMemoryDeps(UNIVERSES)
    auth = Authenticator(config, deps.user_store, hasher=FAST_HASHER)
    app = create_app(config, deps, authenticator=auth, seq_base=1000)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return Server(f"http://127.0.0.1:{port}", deps, app[HUB], runner)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = await start_server()
    yield srv
    await srv.runner.cleanup()


@pytest.fixture
async def token_server() -> AsyncIterator[Server]:
    srv = await start_server(auth_mode="token", max_failed_logins=3)
    yield srv
    await srv.runner.cleanup()


class Client:
    """A Socket.IO client that records what it receives."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.received: dict[str, list[Any]] = {
            "stock_data": [],
            "status_update": [],
            "session_reset": [],
        }
        for name in self.received:
            self.sio.on(name, self._recorder(name))

    def _recorder(self, name: str) -> Any:
        async def record(data: Any) -> None:
            self.received[name].append(data)

        return record

    @property
    def payloads(self) -> list[dict[str, Any]]:
        return self.received["stock_data"]

    async def connect(
        self, url: str, auth: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> Client:
        await self.sio.connect(
            url,
            auth=auth,
            headers=headers or {},
            transports=["websocket"],
            socketio_path="socket.io",
            wait_timeout=10,
        )
        return self

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()
        await self.sio.shutdown()


@pytest.fixture
async def clients() -> AsyncIterator[list[Client]]:
    made: list[Client] = []
    yield made
    for c in made:
        await c.close()


def new_client(clients: list[Client]) -> Client:
    c = Client()
    clients.append(c)
    return c


async def attached(srv: Server, n: int = 1) -> None:
    """Wait until `n` connections finished catching up (they are in their user's stream)."""
    await eventually(
        lambda: (
            srv.hub.emitter.stats()["users_connected"] >= n
            and all(c.joined for c in srv.hub._conns.values())
        ),
        timeout=10,
    )


async def processed(srv: Server, n_events: int) -> None:
    """Wait until the emitter took in `n_events` events in total."""
    await eventually(lambda: srv.hub.emitter.counters["events_in"] >= n_events, timeout=10)


async def login(http: aiohttp.ClientSession, url: str, name: str) -> str:
    r = await http.post(
        f"{url}/api/auth/register",
        json={"username": name, "email": f"{name}@example.com", "password": PASSWORD},
    )
    assert r.status == 201, await r.text()
    r = await http.post(f"{url}/api/auth/login", json={"username": name, "password": PASSWORD})
    assert r.status == 200, await r.text()
    return str((await r.json())["token"])


# -- Socket.IO ----------------------------------------------------------------------------------


async def test_stock_data_reaches_a_client_in_the_contract_shape(
    server: Server, clients: list[Client]
) -> None:
    c = await new_client(clients).connect(server.url)
    await attached(server)
    server.deps.analytics = {"activity": {"activity_level": "High"}, "gauge": {"net_score": 2.5}}
    events = [
        ev("AAPL", 1, "high"),
        ev("MSFT", 2, "low", "down"),
        ev("JPM", 3, "surge", "up", magnitude=3.0),
        ev("BAC", 4, "trend", "down"),
    ]
    server.deps.push(events)
    await eventually(lambda: c.payloads, timeout=10)
    p = c.payloads[0]
    assert set(p) == {"seq", "session", "highs", "lows", "surging", "trending", "activity", "gauge"}
    assert p["session"] == "REGULAR"
    assert [e["id"] for e in p["highs"]] == [events[0].id]
    assert [e["id"] for e in p["lows"]] == [events[1].id]
    assert [e["id"] for e in p["surging"]["up"]] == [events[2].id]
    assert [e["id"] for e in p["trending"]["down"]] == [events[3].id]
    assert p["surging"]["up"][0]["magnitude"] == 3.0
    assert p["activity"] == {"activity_level": "High"}
    assert p["gauge"] == {"net_score": 2.5}


async def test_late_joiner_first_payload_has_the_session_then_only_new_events(
    server: Server, clients: list[Client]
) -> None:
    early = [ev("AAPL", t) for t in range(1, 6)] + [ev("JPM", 6, "low", "down")]
    server.deps.push(early)
    await processed(server, len(early))  # nobody was connected while these went by
    c = await new_client(clients).connect(server.url)
    await eventually(lambda: c.payloads, timeout=10)
    assert event_ids(c.payloads[0]) == [e.id for e in early]
    await attached(server)
    new = ev("MSFT", 7)
    server.deps.push([new])
    await eventually(lambda: len(c.payloads) >= 2, timeout=10)
    assert event_ids(c.payloads[1]) == [new.id]
    assert c.payloads[1]["seq"] > c.payloads[0]["seq"]


async def test_reconnect_with_last_seq_gets_exactly_the_missed_payloads(
    server: Server, clients: list[Client]
) -> None:
    first = await new_client(clients).connect(server.url)
    await attached(server)
    server.deps.push([ev("AAPL", 1)])
    await eventually(lambda: first.payloads, timeout=10)
    last_seq = first.payloads[-1]["seq"]
    await first.close()
    await eventually(lambda: server.hub.connected == 0, timeout=10)

    missed = [ev("AAPL", 2), ev("MSFT", 3), ev("JPM", 4, "low", "down")]
    for n, e in enumerate(missed, start=2):  # one payload per cycle while disconnected
        server.deps.push([e])
        await processed(server, n)
        await eventually(lambda n=n: server.hub.emitter.head("local") == last_seq + n - 1)

    back = await new_client(clients).connect(server.url, auth={"last_seq": last_seq})
    await eventually(lambda: len(back.payloads) >= 3, timeout=10)
    assert [p["seq"] for p in back.payloads] == [last_seq + 1, last_seq + 2, last_seq + 3]
    assert [event_ids(p) for p in back.payloads] == [[e.id] for e in missed]
    await attached(server)
    live = ev("BAC", 5)
    server.deps.push([live])
    await eventually(lambda: len(back.payloads) >= 4, timeout=10)
    assert back.payloads[3]["seq"] == last_seq + 4
    assert event_ids(back.payloads[3]) == [live.id]
    assert len(back.payloads) == 4  # nothing twice
    assert server.hub.emitter.counters["resumes"] == 1


async def test_session_reset_is_broadcast(server: Server, clients: list[Client]) -> None:
    c = await new_client(clients).connect(server.url)
    await attached(server)
    server.deps.push([ev("AAPL", 1)])
    await eventually(lambda: c.payloads, timeout=10)
    server.deps.set_session("AFTER", "2024-01-02")
    await eventually(lambda: c.received["session_reset"], timeout=10)
    assert c.received["session_reset"] == [
        {"session": "AFTER", "session_date": "2024-01-02", "previous": "REGULAR"}
    ]
    server.deps.push([ev("MSFT", 2, session="AFTER")])
    await eventually(lambda: len(c.payloads) >= 2, timeout=10)
    assert c.payloads[1]["session"] == "AFTER"


async def test_status_update_heartbeat(server: Server, clients: list[Client]) -> None:
    server.deps.status = {"feed": "connected", "lag_ms": 12, "ticks_per_s": 345.0}
    c = await new_client(clients).connect(server.url)
    await eventually(lambda: len(c.received["status_update"]) >= 2, timeout=15)
    s = c.received["status_update"][-1]
    assert s["feed"] == "connected"
    assert s["lag_ms"] == 12
    assert s["ticks_per_s"] == 345.0
    assert s["connected"] == 1
    assert s["server_time"] > 1_600_000_000_000
    assert "session" in s


async def test_universe_selection_filters_the_stream(server: Server, clients: list[Client]) -> None:
    async with aiohttp.ClientSession() as http:
        r = await http.post(
            f"{server.url}/api/universes/select",
            json={"tracker": "highlow", "universes": ["BANKS"]},
        )
        assert r.status == 200
        assert sorted((await r.json())["tickers"]) == ["BAC", "JPM"]
    c = await new_client(clients).connect(server.url)
    await attached(server)
    server.deps.push([ev("AAPL", 1), ev("JPM", 2), ev("MSFT", 3), ev("BAC", 4)])
    await eventually(lambda: c.payloads, timeout=10)
    assert event_ids(c.payloads[0]) == [ev("JPM", 2).id, ev("BAC", 4).id]


async def test_token_mode_refuses_anonymous_and_serves_users_their_own_view(
    token_server: Server, clients: list[Client]
) -> None:
    url = token_server.url
    with pytest.raises(socketio.exceptions.ConnectionError):
        await new_client(clients).connect(url)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await new_client(clients).connect(url, auth={"token": "forged"})
    assert token_server.hub.metrics["connections_refused"] == 2
    assert token_server.hub.connected == 0

    async with aiohttp.ClientSession() as http:
        alice, bob = await login(http, url, "alice"), await login(http, url, "bob")
        r = await http.post(
            f"{url}/api/universes/select",
            headers={"Authorization": f"Bearer {alice}"},
            json={"tracker": "highlow", "universes": ["TECH"]},
        )
        assert r.status == 200
    a = await new_client(clients).connect(url, auth={"token": alice})
    b = await new_client(clients).connect(url, headers={"Cookie": f"ts_token={bob}"})
    await attached(token_server, 2)
    token_server.deps.push([ev("AAPL", 1), ev("JPM", 2)])
    await eventually(lambda: a.payloads and b.payloads, timeout=10)
    assert event_ids(a.payloads[0]) == [ev("AAPL", 1).id]
    assert event_ids(b.payloads[0]) == [ev("AAPL", 1).id, ev("JPM", 2).id]


async def test_a_failing_queue_is_counted_and_the_gateway_keeps_serving(
    server: Server, clients: list[Client]
) -> None:
    real_collect = server.deps.collect
    calls = {"n": 0}

    async def flaky(max_events: int, timeout_s: float) -> Any:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise RuntimeError("queue actor died")
        return await real_collect(max_events, timeout_s)

    server.deps.collect = flaky  # type: ignore[method-assign]
    server.deps.push([])  # wake the cycle that is waiting inside the real collect
    await eventually(lambda: server.hub.metrics["collect_errors"] >= 2, timeout=10)
    c = await new_client(clients).connect(server.url)
    await attached(server)
    server.deps.push([ev("AAPL", 1)])
    await eventually(lambda: c.payloads, timeout=10)
    assert server.hub.metrics["collect_errors"] == 2


# -- REST ---------------------------------------------------------------------------------------


async def test_health_status_and_metrics(server: Server, clients: list[Client]) -> None:
    await new_client(clients).connect(server.url)
    async with aiohttp.ClientSession() as http:
        r = await http.get(f"{server.url}/healthz")
        assert r.status == 200
        assert (await r.json())["status"] == "ok"
        await eventually(lambda: server.hub.metrics["cycles"] > 0, timeout=10)
        r = await http.get(f"{server.url}/api/health")
        assert r.status == 200
        assert (await r.json())["status"] == "ok"
        r = await http.get(f"{server.url}/api/status")
        body = await r.json()
        assert body["system"]["feed"] == "connected"
        assert body["gateway"]["connected"] == 1
        await http.post(f"{server.url}/api/user-filters", data="nope")  # one rejected request
        r = await http.get(f"{server.url}/api/metrics")
        m = await r.json()
        for key in ("emitted", "emitted_events", "dropped", "connected", "rejected_requests"):
            assert key in m
        assert m["connected"] == 1
        assert m["rejected_requests"] == 1
        assert m["counters"]["rejected:not_json"] == 1


async def test_dashboard_and_vendored_client_are_served(server: Server) -> None:
    async with aiohttp.ClientSession() as http:
        r = await http.get(f"{server.url}/")
        html = await r.text()
        assert r.status == 200
        assert "/static/vendor/socket.io.min.js" in html
        assert "default-src 'self'" in r.headers["Content-Security-Policy"]
        assert "cdn" not in html.lower()
        r = await http.get(f"{server.url}/static/app.js")
        assert r.status == 200
        assert "last_seq" in await r.text()
        r = await http.get(f"{server.url}/static/vendor/socket.io.min.js")
        assert r.status == 200, "vendor file missing: run `pip install -e .` (npm ci + copy)"


async def test_token_mode_auth_endpoints(token_server: Server) -> None:
    url = token_server.url
    # unsafe=True: aiohttp's client keeps cookies of IP-address hosts only when asked to
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        for path in (
            "/api/universes",
            "/api/universes/current",
            "/api/user/settings",
            "/api/user-filters",
            "/api/events",
            "/api/auth/me",
        ):
            r = await http.get(f"{url}{path}")
            assert r.status == 401, path
            assert await r.json() == {"error": "authentication required"}
        r = await http.post(
            f"{url}/api/auth/register",
            json={"username": "carol", "email": "bad", "password": PASSWORD},
        )
        assert r.status == 400
        assert "email" in (await r.json())["error"]
        token = await login(http, url, "carol")
        # the login also set the HttpOnly cookie: the session works without a header
        r = await http.get(f"{url}/api/auth/me")
        assert r.status == 200
        assert (await r.json())["username"] == "carol"
        r = await http.post(f"{url}/api/auth/logout", json={})
        assert r.status == 200
        r = await http.get(f"{url}/api/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert r.status == 401  # revoked

    async with aiohttp.ClientSession() as http:  # lockout after max_failed_logins (3)
        statuses = []
        for _ in range(3):
            r = await http.post(
                f"{url}/api/auth/login", json={"username": "carol", "password": "wrong-pass1"}
            )
            statuses.append(r.status)
        assert statuses == [401, 401, 423]
        r = await http.post(
            f"{url}/api/auth/login", json={"username": "carol", "password": PASSWORD}
        )
        assert r.status == 423


async def test_no_response_ever_carries_a_secret(token_server: Server) -> None:
    url = token_server.url
    seen: list[str] = []
    async with aiohttp.ClientSession() as http:
        token = await login(http, url, "dave")
        user = await token_server.deps.user_store.get_user("dave")
        assert user is not None
        hdr = {"Authorization": f"Bearer {token}"}
        for path in (
            "/api/auth/me",
            "/api/status",
            "/api/metrics",
            "/api/universes/current",
            "/api/user/settings",
            "/healthz",
            "/api/health",
        ):
            r = await http.get(f"{url}{path}", headers=hdr)
            seen.append(await r.text())
    text = "\n".join(seen)
    assert user.password_hash not in text
    assert PASSWORD not in text
    assert "$argon2" not in text
    assert token not in text


async def test_settings_filters_universes_and_events(server: Server) -> None:
    url = server.url
    server.deps.push([ev("AAPL", 10), ev("JPM", 20, "low", "down"), ev("AAPL", 30, "low", "down")])
    async with aiohttp.ClientSession() as http:
        r = await http.post(f"{url}/api/user/settings", json={"theme": "dark", "rows": 50})
        assert r.status == 200
        assert (await r.json())["settings"] == {"theme": "dark", "rows": 50}
        r = await http.post(f"{url}/api/user/settings/theme", json={"value": "light"})
        assert r.status == 200
        r = await http.get(f"{url}/api/user/settings/theme")
        assert (await r.json()) == {"key": "theme", "value": "light"}
        r = await http.delete(f"{url}/api/user/settings/theme")
        assert r.status == 200
        r = await http.get(f"{url}/api/user/settings/theme")
        assert r.status == 404
        r = await http.post(f"{url}/api/user/settings/bad%20key", json={"value": 1})
        assert r.status == 400

        r = await http.post(
            f"{url}/api/user-filters", json={"filter_data": {"highlow": {"min_count": 2}}}
        )
        assert r.status == 200
        assert (await r.json())["filters"]["highlow"] == {"min_count": 2, "min_volume": 0.0}
        assert server.deps.filters["local"]["highlow"]["min_count"] == 2
        r = await http.post(f"{url}/api/user-filters", json={"highlow": {"min_cnt": 2}})
        assert r.status == 400
        assert "min_cnt" in (await r.json())["error"]
        r = await http.get(f"{url}/api/user-filters")
        assert (await r.json())["filters"]["highlow"]["min_count"] == 2

        r = await http.get(f"{url}/api/universes")
        assert (await r.json())["universes"] == {"TECH": 2, "BANKS": 2}
        r = await http.get(f"{url}/api/universes/tickers", params={"name": "TECH"})
        assert (await r.json())["tickers"] == ["AAPL", "MSFT"]
        r = await http.get(f"{url}/api/universes/tickers", params={"name": "NOPE"})
        assert r.status == 404
        r = await http.post(
            f"{url}/api/universes/select", json={"tracker": "highlow", "universes": ["NOPE"]}
        )
        assert r.status == 400
        r = await http.post(
            f"{url}/api/universes/select", json={"tracker": "moon", "universes": ["TECH"]}
        )
        assert r.status == 400

        r = await http.get(f"{url}/api/events", params={"ticker": "AAPL", "kind": "low"})
        assert [e["id"] for e in (await r.json())["events"]] == [ev("AAPL", 30, "low").id]
        r = await http.get(f"{url}/api/events", params={"start_ms": "15", "end_ms": "31"})
        assert (await r.json())["count"] == 2
        for bad in (
            {"kind": "sideways"},
            {"limit": "0"},
            {"start_ms": "x"},
            {"ticker": "<script>"},
            {"start_ms": "5", "end_ms": "1"},
        ):
            r = await http.get(f"{url}/api/events", params=bad)
            assert r.status == 400, bad
        r = await http.get(f"{url}/api/nothing-here")
        assert r.status == 404
        assert "error" in await r.json()
