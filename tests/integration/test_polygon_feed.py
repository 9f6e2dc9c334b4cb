"""PolygonFeed with the REAL polygon client against the replay server, one test per fault.

After every fault: the server-side subscription set is intact, no trade is delivered twice
(keyed by (sym, q)), and the trades delivered equal the trades the server sent, which equal
what it emitted minus what it emitted while the client was gone (`trades_missed`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest

from actors.polygon.decode import FrameDecoder
from actors.polygon.feed import PolygonFeed, topic_batches
from cluster.replay.server import Fault, ReplayServer
from config.settings import PolygonConfig
from tests.conftest import eventually

KEY = "pk_live_SECRET_9f8e7d6c5b4a"  # must never show up in a log, status, error or stats
AAPL = "lobster_2012-06-21/AAPL_2012-06-21_34200000_57600000_message_1.csv.gz"
AMZN = "lobster_2012-06-21/AMZN_2012-06-21_34200000_57600000_message_1.csv.gz"
TRADES = 5_000
SPEED = 2_500.0  # the first 5,000 AAPL trades span ~43 min of event time: ~1 s here

pytestmark = pytest.mark.timeout(90)


class _Head(msgspec.Struct):
    ev: str = ""
    sym: str = ""
    q: int = 0


_heads = msgspec.json.Decoder(list[_Head])


class Downstream:
    """Reads the feed like the ingest does: decode every frame, remember each trade's id."""

    def __init__(self, feed: PolygonFeed) -> None:
        self.feed = feed
        self.decoder = FrameDecoder()
        self.ids: list[tuple[str, int]] = []
        self.statuses: list[str] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for recv_ms, frame in self.feed.frames():
            out = self.decoder.decode(frame, recv_ms)
            self.statuses.extend(s.status for s in out.statuses)
            with contextlib.suppress(msgspec.DecodeError):
                # The injected malformed trades carry no `q`; real ones count from 1.
                self.ids.extend(
                    (h.sym, h.q) for h in _heads.decode(frame) if h.ev == "T" and h.q > 0)


@pytest.fixture(autouse=True)
def no_key_in_logs(caplog: pytest.LogCaptureFixture):
    """Every test here also checks that the API key never reached a log record."""
    caplog.set_level(logging.DEBUG)
    yield
    assert KEY not in caplog.text
    for record in caplog.records:
        assert KEY not in str(record.args)


def config(server: ReplayServer, **kw: Any) -> PolygonConfig:
    base: dict[str, Any] = {
        "api_key": KEY, "feed": server.feed, "secure": False, "channels": ["T"],
        "reconnect_initial_s": 0.05, "reconnect_max_s": 0.2, "ack_timeout_s": 2.0,
        "open_timeout_s": 3.0, "max_connections_cooldown_s": 1.0, "auth_retry_s": 60.0,
        "stale_after_s": 30.0, "rest_base": server.rest_base,
    }
    base.update(kw)
    return PolygonConfig(**base)


@contextlib.asynccontextmanager
async def system(
    data: Path, faults: Sequence[Fault] = (), *, files: Sequence[str] = (AAPL,),
    speed: float = SPEED, tickers: Sequence[str] = ("AAPL",), market_open: bool = False,
    server_kw: dict[str, Any] | None = None, **cfg: Any,
) -> AsyncIterator[tuple[ReplayServer, PolygonFeed, Downstream]]:
    server = ReplayServer([data / f for f in files], port=0, speed=speed, faults=faults,
                          max_trades=TRADES, **(server_kw or {}))
    await server.start()
    feed = PolygonFeed(config(server, **cfg), market_hours=lambda _ms: market_open)
    feed.set_subscriptions(tickers)
    await feed.start()
    down = Downstream(feed)
    try:
        yield server, feed, down
    finally:
        await feed.stop()
        await asyncio.wait_for(down.task, 10)
        await server.stop()
        stats = repr(feed.stats()) + repr(server.stats())
        assert KEY not in stats


async def settle(server: ReplayServer, down: Downstream) -> None:
    """Wait for the replay to end and every trade the server sent to arrive."""
    await eventually(server.finished.is_set, timeout=40)
    account = server.account(KEY)
    await eventually(lambda: len(down.ids) == account.trades_sent, timeout=10)


def assert_accounting(server: ReplayServer, down: Downstream) -> None:
    account = server.account(KEY)
    assert len(down.ids) == len(set(down.ids)), "a trade was delivered twice"
    assert len(down.ids) == account.trades_sent
    assert account.trades_sent + account.trades_missed == account.trades_emitted
    assert account.trades_emitted == TRADES
    assert down.decoder.trades == len(down.ids)
    assert down.decoder.rejected.total() == 0


@pytest.mark.parametrize(
    ("code", "reason"), [(1006, "dropped"), (1011, "dropped"), (1000, "closed"), (1001, "closed")]
)
async def test_drop_or_close_reconnects_and_keeps_subscriptions(
    real_data_dir: Path, code: int, reason: str
):
    async with system(real_data_dir, [Fault("drop", after_frames=20, code=code)]) as (
        server, feed, down,
    ):
        await settle(server, down)
        assert server.subscriptions(KEY) == {"T.AAPL"}
        assert feed.stats()["drops"] == {reason: 1}
        assert feed.stats()["connects"] == 2
        assert feed.stats()["state"] == "connected"
        assert server.fired == ["drop"]
        assert server.account(KEY).trades_missed > 0  # data flowed while it was away
        assert_accounting(server, down)


async def test_double_drop_keeps_subscriptions(real_data_dir: Path):
    faults = [Fault("drop", after_frames=10, code=1006), Fault("drop_auth"),
              Fault("drop", after_frames=5, code=1011)]
    async with system(real_data_dir, faults, tickers=("AAPL", "AMZN"), files=(AAPL, AMZN)) as (
        server, feed, down,
    ):
        await settle(server, down)
        assert server.fired == ["drop", "drop_auth", "drop"]
        assert server.subscriptions(KEY) == {"T.AAPL", "T.AMZN"}
        assert server.account(KEY).connections == 4
        assert feed.stats()["connects"] == 3
        assert {s for s, _ in down.ids} == {"AAPL", "AMZN"}
        assert_accounting(server, down)


async def test_auth_failed_is_reported_and_not_retried_hot(real_data_dir: Path):
    async with system(real_data_dir, [Fault("auth_failed", times=100)]) as (server, feed, down):
        await eventually(lambda: feed.state == "auth_failed")
        stats = feed.stats()
        assert stats["last_error"].startswith("auth_failed")
        assert "authentication failed" in stats["last_error"]
        assert stats["next_attempt_in_s"] >= 59
        # A bounded observation window: nothing more may happen in it.
        await asyncio.sleep(1.0)
        assert len(server.connections) == 1
        assert feed.stats()["attempts"] == 1
        assert down.ids == []


async def test_max_connections_cools_down(real_data_dir: Path):
    cooldown = 1.0
    async with system(real_data_dir, [Fault("max_connections")],
                      max_connections_cooldown_s=cooldown) as (server, feed, down):
        await eventually(lambda: feed.stats()["connects"] == 2)
        await settle(server, down)
        refused_at = server.account(KEY).refusals[0]
        retried_at = server.connections[1].at
        assert retried_at - refused_at >= cooldown  # a lower bound, not a race
        assert feed.stats()["drops"] == {"max_connections": 1}
        assert feed.stats()["cooldowns"] == 1
        assert server.subscriptions(KEY) == {"T.AAPL"}
        assert_accounting(server, down)


async def test_second_live_connection_is_refused_and_cools_down(real_data_dir: Path):
    """The real limit: one live connection per key. A second feed must back off, not hammer."""
    async with system(real_data_dir, speed=0.0) as (server, feed, down):
        await eventually(lambda: feed.stats()["acks"] == 1)
        other = PolygonFeed(config(server, max_connections_cooldown_s=30.0),
                            market_hours=lambda _ms: False)
        other.set_subscriptions(["AAPL"])
        await other.start()
        try:
            await eventually(lambda: other.stats()["drops"].get("max_connections") == 1)
            assert other.stats()["next_attempt_in_s"] >= 29
            assert other.stats()["statuses"].get("max_connections") == 1
            assert len(server.account(KEY).refusals) == 1
            await settle(server, down)
            assert feed.stats()["reconnects"] == 0
            assert_accounting(server, down)
        finally:
            await other.stop()


async def test_stall_triggers_the_staleness_watchdog(real_data_dir: Path):
    async with system(real_data_dir, [Fault("stall", after_frames=10, seconds=60)],
                      market_open=True, stale_after_s=0.5) as (server, feed, down):
        await settle(server, down)
        assert feed.stats()["drops"] == {"stale": 1}
        assert server.subscriptions(KEY) == {"T.AAPL"}
        assert server.account(KEY).trades_missed > 0
        assert_accounting(server, down)


async def test_no_staleness_reconnect_outside_market_hours(real_data_dir: Path):
    async with system(real_data_dir, [Fault("stall", after_frames=10, seconds=2)],
                      market_open=False, stale_after_s=0.3) as (server, feed, down):
        await settle(server, down)
        assert feed.stats()["reconnects"] == 0
        assert_accounting(server, down)


async def test_slow_consumer_kick(real_data_dir: Path):
    fault = Fault("slow_consumer", after_frames=5, factor=8, frames=2)
    async with system(real_data_dir, [fault]) as (server, feed, down):
        await settle(server, down)
        assert "slow_consumer" in down.statuses
        assert feed.stats()["statuses"]["slow_consumer"] == 1
        assert feed.stats()["drops"] == {"dropped": 1}  # not mistaken for max_connections
        assert feed.stats()["cooldowns"] == 0
        # While "slow", the server packed several ticks per frame.
        assert server.stats()["events_per_frame"]["max"] > server.events_per_frame
        assert server.subscriptions(KEY) == {"T.AAPL"}
        assert_accounting(server, down)


async def test_malformed_frames_are_counted_and_the_connection_kept(real_data_dir: Path):
    kinds = ["bad_json", "not_array", "unknown_ev", "missing_fields", "wrong_types",
             "status_no_message"]
    faults = [Fault("malformed", after_frames=3 + i, what=w) for i, w in enumerate(kinds)]
    async with system(real_data_dir, faults) as (server, feed, down):
        await settle(server, down)
        assert server.fired == ["malformed"] * len(kinds)
        assert feed.stats()["reconnects"] == 0
        assert dict(down.decoder.rejected) == {
            "malformed_json": 1, "not_array": 1, "unknown_ev": 1, "missing_field": 1,
            "wrong_type": 1,
        }
        assert "info" in down.statuses  # the status without "message" went through
        account = server.account(KEY)
        assert len(down.ids) == account.trades_sent == TRADES
        assert down.decoder.trades == TRADES


async def test_missing_acks_are_resubscribed(real_data_dir: Path):
    async with system(real_data_dir, [Fault("no_acks")], speed=0.0, ack_timeout_s=0.3) as (
        server, feed, down,
    ):
        await settle(server, down)
        assert feed.stats()["resubscribes"] == 1
        assert feed.stats()["reconnects"] == 0
        assert server.subscriptions(KEY) == {"T.AAPL"}
        assert_accounting(server, down)


async def test_acks_that_never_come_recycle_the_connection(real_data_dir: Path):
    async with system(real_data_dir, [Fault("no_acks", times=2)], speed=0.0,
                      ack_timeout_s=0.3) as (server, feed, down):
        await settle(server, down)
        assert feed.stats()["drops"] == {"ack_timeout": 1}
        assert feed.stats()["connects"] == 2
        assert server.subscriptions(KEY) == {"T.AAPL"}
        assert_accounting(server, down)


async def test_live_subscription_changes_without_reconnect(real_data_dir: Path):
    async with system(real_data_dir, files=(AAPL, AMZN), speed=600.0, tickers=("AAPL",)) as (
        server, feed, down,
    ):
        await eventually(lambda: server.subscriptions(KEY) == {"T.AAPL"} and down.ids)
        feed.set_subscriptions(["AAPL", "AMZN"], ["T", "AM"])
        await eventually(
            lambda: server.subscriptions(KEY) == {"T.AAPL", "T.AMZN", "AM.AAPL", "AM.AMZN"})
        await eventually(lambda: feed.stats()["acks"] == 4)
        await eventually(lambda: any(sym == "AMZN" for sym, _ in down.ids))
        assert not server.finished.is_set()
        feed.set_subscriptions(["AMZN"])
        await eventually(lambda: server.subscriptions(KEY) == {"T.AMZN"})
        await settle(server, down)
        assert feed.stats()["connects"] == 1
        assert feed.stats()["reconnects"] == 0
        assert feed.stats()["acks_pending"] == 0
        assert down.ids[-1][0] == "AMZN"
        assert len(down.ids) == len(set(down.ids)) == server.account(KEY).trades_sent


async def test_unreachable_server_backs_off_with_jitter(real_data_dir: Path):
    server = ReplayServer([real_data_dir / AAPL], port=0, max_trades=10)
    await server.start()
    await server.stop()  # a port nobody listens on any more
    feed = PolygonFeed(config(server, reconnect_initial_s=0.2, reconnect_max_s=0.4),
                       market_hours=lambda _ms: False)
    await feed.start()
    try:
        await eventually(lambda: feed.stats()["attempts"] >= 3, timeout=10)
        stats = feed.stats()
        assert stats["state"] == "connecting"
        assert stats["drops"].get("handshake_failed", 0) >= 2
        gaps = [b - a for a, b in zip(feed.attempt_times, feed.attempt_times[1:], strict=False)]
        assert min(gaps) >= 0.2 * 0.75  # the backoff floor (jitter never goes below it)
    finally:
        await feed.stop()
    assert feed.state == "stopped"


def test_subscribe_messages_stay_under_one_megabyte():
    topics = {f"T.SYM{i:06d}" for i in range(200_000)}
    batches = topic_batches(topics)
    assert len(batches) > 1
    assert all(len(b.encode()) <= 1_000_000 for b in batches)
    assert {t for b in batches for t in b.split(",")} == topics
