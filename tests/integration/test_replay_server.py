"""The replay server speaks Polygon's stocks protocol over real sockets (docs/polygon.md §2, §7).

Protocol checks use a plain `websockets` client, so that what the server sends is seen
frame by frame; the REST stub is checked through `PolygonRest` (the official RESTClient).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import msgspec
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from actors.polygon.rest import PolygonRest, PolygonRestError
from cluster.replay.server import Fault, ReplayServer, parse_fault
from cluster.replay.tape import EXCHANGE_IDS, EventTape, open_tape
from config.settings import PolygonConfig
from tests.conftest import eventually

KEY = "replay-test-key-0001"
AAPL = "lobster_2012-06-21/AAPL_2012-06-21_34200000_57600000_message_1.csv.gz"
AMZN = "lobster_2012-06-21/AMZN_2012-06-21_34200000_57600000_message_1.csv.gz"
IBM = "algoseek_lean/tick/ibm/20131007_ibm_Trade_Tick.csv.gz"
SPY = "algoseek_lean/tick/spy/20131007_spy_Trade_Tick.csv.gz"

pytestmark = pytest.mark.timeout(60)


@contextlib.asynccontextmanager
async def running(server: ReplayServer) -> AsyncIterator[ReplayServer]:
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def paced(data: Path, trades: int, seconds: float) -> ReplayServer:
    """A server replaying the first `trades` AAPL trades in about `seconds` of wall time."""
    tape = open_tape([data / AAPL], max_trades=trades)
    span_s = (tape.last_t - tape.first_t) / 1000
    return ReplayServer([], port=0, speed=span_s / seconds, tape=tape)


async def recv_json(ws: ClientConnection, timeout: float = 5.0) -> list[dict]:
    return msgspec.json.decode(await asyncio.wait_for(ws.recv(), timeout))


async def login(server: ReplayServer, key: str = KEY) -> ClientConnection:
    ws = await connect(f"ws://{server.feed}/stocks", close_timeout=0.5)
    assert (await recv_json(ws))[0]["status"] == "connected"
    await ws.send(msgspec.json.encode({"action": "auth", "params": key}).decode())
    return ws


async def subscribe(ws: ClientConnection, params: str, binary: bool = False) -> list[str]:
    body = msgspec.json.encode({"action": "subscribe", "params": params})
    await ws.send(body if binary else body.decode())
    n = len([p for p in params.split(",") if p.strip()])
    return [(await recv_json(ws))[0]["message"] for _ in range(n)]


async def collect(ws: ClientConnection, until_quiet_s: float = 0.5) -> list[list[dict]]:
    frames = []
    with contextlib.suppress(TimeoutError, ConnectionClosed):
        while True:
            frames.append(await recv_json(ws, until_quiet_s))
    return frames


async def test_handshake_auth_and_acks_per_topic(real_data_dir: Path):
    server = ReplayServer([real_data_dir / AAPL, real_data_dir / AMZN], port=0, speed=0,
                          max_trades=3000, keys={KEY})
    async with running(server):
        ws = await login(server)
        auth = await recv_json(ws)
        assert auth == [{"ev": "status", "status": "auth_success", "message": "authenticated"}]
        # Comma lists with spaces; a binary client frame (custom_json=orjson clients).
        acks = await subscribe(ws, "T.AAPL, AM.AAPL ,A.AMZN", binary=True)
        assert acks == ["subscribed to: T.AAPL", "subscribed to: AM.AAPL",
                        "subscribed to: A.AMZN"]
        assert server.subscriptions(KEY) == {"T.AAPL", "AM.AAPL", "A.AMZN"}
        frames = await collect(ws)
        await ws.close()
    events = [e for f in frames for e in f]
    assert {(e["ev"], e["sym"]) for e in events} == {("T", "AAPL"), ("AM", "AAPL"), ("A", "AMZN")}
    assert max(len(f) for f in frames) > 1  # several events per frame, as on the real feed
    assert all(len(msgspec.json.encode(f)) < 2**20 for f in frames)


async def test_wildcard_gets_everything_in_time_order(real_data_dir: Path):
    tape = open_tape([real_data_dir / AAPL, real_data_dir / AMZN], max_trades=2000)
    server = ReplayServer([], port=0, speed=0, tape=tape)
    async with running(server):
        ws = await login(server)
        await recv_json(ws)
        await subscribe(ws, "T.*")
        frames = await collect(ws)
        await ws.close()
    trades = [e for f in frames for e in f]
    assert len(trades) == 2000 == server.account(KEY).trades_sent
    assert {e["sym"] for e in trades} == {"AAPL", "AMZN"}
    times = [e["t"] for e in trades]
    assert times == sorted(times)
    assert trades[0]["x"] == 12
    assert trades[0]["z"] == 3
    assert server.stats()["events_per_frame"]["max"] <= server.events_per_frame


async def test_minute_bars_agree_with_the_trades_sent(real_data_dir: Path):
    server = ReplayServer([real_data_dir / AAPL], port=0, speed=0, max_trades=3000)
    async with running(server):
        ws = await login(server)
        await recv_json(ws)
        await subscribe(ws, "T.AAPL,AM.AAPL")
        events = [e for f in await collect(ws) for e in f]
        await ws.close()
    trades = [e for e in events if e["ev"] == "T"]
    bars = [e for e in events if e["ev"] == "AM"]
    assert len(bars) >= 5
    for bar in bars:  # LOBSTER executions carry no conditions: every trade counts
        inside = [t for t in trades if bar["s"] <= t["t"] < bar["e"]]
        assert bar["v"] == sum(t["s"] for t in inside)
        assert bar["o"] == inside[0]["p"]
        assert bar["c"] == inside[-1]["p"]
        assert bar["h"] == max(t["p"] for t in inside)
        assert bar["l"] == min(t["p"] for t in inside)
        # The bar is sent after every trade of its minute and before any later one.
        pos = events.index(bar)
        assert all(e["t"] < bar["e"] for e in events[:pos] if e["ev"] == "T")


async def test_auth_timeout_and_bad_key_and_bad_path(real_data_dir: Path):
    server = ReplayServer([real_data_dir / AAPL], port=0, speed=0, max_trades=100,
                          keys={KEY}, auth_timeout_s=0.3)
    async with running(server):
        async with connect(f"ws://{server.feed}/stocks") as ws:
            await recv_json(ws)
            assert (await recv_json(ws))[0]["status"] == "auth_timeout"
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1008
        ws = await login(server, key="wrong-key")
        reply = await recv_json(ws)
        assert reply[0]["status"] == "auth_failed"
        await ws.close()
        with pytest.raises(InvalidStatus):
            await connect(f"ws://{server.feed}/crypto")


async def test_one_live_connection_per_key(real_data_dir: Path):
    server = ReplayServer([real_data_dir / AAPL], port=0, speed=0, max_trades=100)
    async with running(server):
        first = await login(server)
        await recv_json(first)
        await subscribe(first, "T.AAPL")
        second = await login(server)
        assert (await recv_json(second))[0]["status"] == "auth_success"
        assert await subscribe(second, "T.AAPL") == ["subscribed to: T.AAPL"]
        refusal = await recv_json(second)
        assert refusal[0]["status"] == "max_connections"
        with pytest.raises(ConnectionClosed) as closed:
            await second.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1008
        assert server.live_connections() == 1
        assert len(server.account(KEY).refusals) == 1
        await first.close()


async def test_trades_before_a_reconnect_subscribes_count_as_missed(real_data_dir: Path):
    """Between a reconnect's auth and its subscribe the key's trades are missed, not unseen:
    emitted = sent + missed holds for every trade of the tape (the feed tests rely on it)."""
    server = paced(real_data_dir, 2000, seconds=2.0)
    async with running(server):
        first = await login(server)
        await recv_json(first)
        await subscribe(first, "T.AAPL")
        assert await recv_json(first)  # the tape is running: leave part-way
        await first.close()
        second = await login(server)
        await recv_json(second)
        await asyncio.sleep(0.4)  # authenticated, not subscribed: the tape runs on
        await subscribe(second, "T.AAPL")
        await eventually(server.finished.is_set, timeout=20)
        assert sum(len(f) for f in await collect(second, 0.3)) > 0
        await second.close()
    account = server.account(KEY)
    # (What the first connection was sent but did not read before it closed is unknowable
    # here, so the trades sent are not compared with the trades read.)
    assert account.trades_emitted == 2000
    assert account.trades_sent + account.trades_missed == 2000
    assert account.trades_missed > 0


async def test_speed_zero_backpressure_keeps_memory_bounded(real_data_dir: Path):
    server = ReplayServer([real_data_dir / SPY], port=0, speed=0, max_trades=100_000)
    async with running(server):
        # A client with a tiny receive window that reads nothing after subscribing.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
        ws = await connect(f"ws://{server.feed}/stocks", sock=sock, close_timeout=0.2)
        await recv_json(ws)
        await ws.send(msgspec.json.encode({"action": "auth", "params": KEY}).decode())
        await recv_json(ws)
        await subscribe(ws, "T.*")
        account = server.account(KEY)

        async def stalled() -> bool:
            before = account.trades_emitted
            await asyncio.sleep(0.3)
            return before > 0 and account.trades_emitted == before

        # The server stops producing instead of buffering without bound.
        await eventually(stalled, timeout=20)
        conn = next(iter(server._conns))
        assert len(conn.pending) <= server.queue_frames
        assert not server.finished.is_set()
        assert account.trades_emitted < 100_000
        await ws.close()


async def test_paced_replay_is_not_faster_than_event_time(real_data_dir: Path):
    server = paced(real_data_dir, 2000, seconds=0.6)
    async with running(server):
        ws = await login(server)
        await recv_json(ws)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await subscribe(ws, "T.*")
        await eventually(server.finished.is_set, timeout=20)
        elapsed = loop.time() - started
        frames = await collect(ws, 0.3)
        await ws.close()
    assert elapsed >= 0.5  # a lower bound only: pacing never runs ahead of event time
    assert sum(len(f) for f in frames) == 2000


async def test_rest_stub_through_the_official_client(real_data_dir: Path):
    server = ReplayServer([real_data_dir / IBM], port=0, rest_port=0, speed=0,
                          max_trades=500, keys={KEY})
    async with running(server):
        rest = PolygonRest(PolygonConfig(api_key=KEY, rest_base=server.rest_base,
                                         rest_timeout_s=5))
        closes = await rest.previous_close(["IBM", "NOPE"])
        assert set(closes) == {"IBM"}
        assert closes["IBM"] > 0
        assert rest.errors["no_data"] == 1
        status = await rest.market_status()
        assert status["market"] in {"open", "closed", "extended-hours"}
        assert set(status["exchanges"]) == {"nyse", "nasdaq", "otc"}
        holidays = await rest.market_holidays()
        assert holidays[0]["date"] == "2013-11-28"
        assert holidays[0]["status"] == "closed"
        assert any(h["status"] == "early-close" and "close" in h for h in holidays)
        bad = PolygonRest(PolygonConfig(api_key="not-the-key", rest_base=server.rest_base))
        with pytest.raises(PolygonRestError, match="NOT_AUTHORIZED") as err:
            await bad.market_status()
        assert "not-the-key" not in str(err.value)
        async with aiohttp.ClientSession() as http:
            url = f"{server.rest_base}/v1/marketstatus/now"
            async with http.get(url) as resp:
                assert resp.status == 401
            async with http.get(url, params={"apiKey": KEY}) as resp:
                assert resp.status == 200
        rest.close()
        bad.close()


async def test_rest_timeouts_are_applied():
    """The 1.16.3 client never applies its timeouts: a silent server must not hang us."""
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    rest = PolygonRest(PolygonConfig(api_key=KEY, rest_base=f"http://127.0.0.1:{port}",
                                     rest_timeout_s=0.3), retries=0)
    try:
        with pytest.raises(PolygonRestError) as err:
            await asyncio.wait_for(rest.market_status(), 10)
        assert rest.errors["network"] == 1
        assert KEY not in str(err.value)
    finally:
        rest.close()
        server.close()


def test_fault_specs():
    assert parse_fault("drop:after=50,code=1006") == Fault("drop", after_frames=50, code=1006)
    assert parse_fault("stall:after=5, seconds=2.5") == Fault("stall", after_frames=5, seconds=2.5)
    assert parse_fault("malformed:what=not_array").what == "not_array"
    assert parse_fault("auth_failed:times=3").times == 3
    for bad in ("explode", "drop:after", "drop:when=3", "malformed:what=nope"):
        with pytest.raises(ValueError, match=r"fault|malformed"):
            parse_fault(bad)


def test_algoseek_trades_get_polygon_fields(real_data_dir: Path):
    tape = EventTape([real_data_dir / IBM], max_trades=5000, channels=("T",))
    trades = [msgspec.json.decode(p) for tick in tape.ticks(0, 100) for p in tick.parts]
    assert len(trades) == 5000
    raw = tape.trades
    assert {t["z"] for t in trades} == {1}  # IBM is NYSE-listed: tape A
    assert {t["x"] for t in trades} <= set(EXCHANGE_IDS.values())
    finra = [t for t in trades if t["x"] == 4]
    assert finra
    assert all(t["trfi"] == 202 and t["trft"] == t["t"] for t in finra)
    assert [t["q"] for t in trades] == list(range(1, 5001))
    assert all(t["p"] > 0 and t["s"] >= 0 for t in trades)
    with_conditions = [t for t in trades if "c" in t]
    assert with_conditions
    assert all(isinstance(c, int) for t in with_conditions for c in t["c"])
    assert len(raw) == 5000


async def test_start_at_and_loop(real_data_dir: Path):
    server = ReplayServer([real_data_dir / AAPL], port=0, speed=0, max_trades=3000,
                          start_at="09:45", loop=True)
    async with running(server):
        ws = await login(server)
        await recv_json(ws)
        await subscribe(ws, "T.AAPL")
        assert server.tape.first_t < server.start_ms
        seen: list[dict] = []
        while len(seen) < 4000:  # more than one pass over the tape
            seen.extend(await recv_json(ws))
        await ws.close()
    start = server.start_ms
    assert all(e["t"] >= start for e in seen)
    assert server.counts["loops"] >= 1
    assert len({e["q"] for e in seen}) < len(seen)  # the same trades again: it started over
