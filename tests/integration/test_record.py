"""`tickstock record` captures raw frames; recordings replay byte for byte and read back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import numpy as np
import pytest

from actors.polygon.recorder import Recorder
from actors.sources.readers import ReadStats, iter_recording, read_file
from cluster.commands.record import record_main
from cluster.commands.replay_server import replay_server_main
from cluster.replay.server import ReplayServer
from cluster.replay.tape import EventTape
from config.settings import PolygonConfig
from schemas.batches import BarBatch, TradeBatch
from tests.conftest import eventually

KEY = "rec-test-key-SECRET-42"
AAPL = "lobster_2012-06-21/AAPL_2012-06-21_34200000_57600000_message_1.csv.gz"
TRADES = 2_000
CHANNELS = ["T", "A", "AM"]

pytestmark = pytest.mark.timeout(90)


def config(server: ReplayServer) -> PolygonConfig:
    return PolygonConfig(api_key=KEY, feed=server.feed, secure=False, reconnect_initial_s=0.05,
                         channels=tuple(CHANNELS))


async def record_all(server: ReplayServer, out: Path) -> list[str]:
    """Record everything `server` replays; return the data frames (status frames dropped)."""
    await server.start()
    recorder = Recorder(config(server), out, ["AAPL"], CHANNELS)
    stop = asyncio.Event()
    task = asyncio.create_task(recorder.run(stop=stop))
    try:
        acks = len(CHANNELS)
        await eventually(server.finished.is_set, timeout=40)
        await eventually(lambda: recorder.writer.frames == server.stats()["frames"] + acks)
    finally:
        stop.set()
        summary = await task
        await server.stop()
    assert summary["frames"] == recorder.writer.frames
    assert summary["reconnects"] == 0
    frames = [r.frame for r in iter_recording(out)]
    assert len(frames) == recorder.writer.frames
    return [f for f in frames if '"ev":"status"' not in f]


async def test_record_then_replay_byte_for_byte(real_data_dir: Path, tmp_path: Path):
    tape = EventTape([real_data_dir / AAPL], max_trades=TRADES)
    first = tmp_path / "first.jsonl.gz"
    frames = await record_all(ReplayServer([], port=0, speed=0, tape=tape), first)
    assert frames

    recv = [r.recv_ms for r in iter_recording(first)]
    assert recv == sorted(recv)

    # The recording re-served by the replay server: the same frames, byte for byte.
    second = tmp_path / "second.jsonl"
    replayed = await record_all(ReplayServer([first], port=0, speed=0), second)
    assert replayed == frames

    # And read back as batches (the `--source replay` path): every trade, in order.
    stats = ReadStats()
    batches = list(read_file(first, stats))
    trades = TradeBatch.concat(b for b in batches if isinstance(b, TradeBatch))
    bars = BarBatch.concat(b for b in batches if isinstance(b, BarBatch))
    assert len(trades) == TRADES
    np.testing.assert_array_equal(trades.p, tape.trades["p"].to_numpy())
    np.testing.assert_array_equal(trades.t, tape.trades["t"].to_numpy())
    assert len(bars) == len(tape.seconds) + len(tape.minutes)
    assert stats.rejected.total() == 0


async def test_record_command_line(real_data_dir: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]):
    server = ReplayServer([real_data_dir / AAPL], port=0, speed=0, max_trades=300)
    await server.start()
    monkeypatch.setenv("POLYGON_API_KEY", KEY)
    out = tmp_path / "cli.jsonl.gz"
    try:
        code = await asyncio.to_thread(record_main, [
            "--out", str(out), "--feed", server.feed, "--insecure", "--tickers", "aapl",
            "--channels", "T", "--duration", "1.5",
        ])
    finally:
        await server.stop()
    assert code == 0
    assert server.subscriptions(KEY) == {"T.AAPL"}
    trades = sum(len(b) for b in read_file(out) if isinstance(b, TradeBatch))
    assert trades == server.account(KEY).trades_sent == 300
    printed = capsys.readouterr().out
    assert "recorded" in printed
    assert KEY not in printed


def test_command_lines_reject_bad_input(tmp_path: Path):
    assert record_main(["--out", str(tmp_path / "x.csv")]) == 2
    assert replay_server_main([str(tmp_path / "nothing.txt")]) == 2
    assert replay_server_main([str(tmp_path / "x.jsonl"), "--fault", "explode"]) == 2


async def test_recording_replayed_to_a_narrower_subscription(real_data_dir: Path,
                                                             tmp_path: Path):
    amzn = "lobster_2012-06-21/AMZN_2012-06-21_34200000_57600000_message_1.csv.gz"
    tape = EventTape([real_data_dir / AAPL, real_data_dir / amzn], max_trades=TRADES,
                     channels=("T",))
    both = tmp_path / "both.jsonl"
    server = ReplayServer([], port=0, speed=0, tape=tape)
    await server.start()
    recorder = Recorder(config(server), both, ["*"], ["T"])
    stop = asyncio.Event()
    task = asyncio.create_task(recorder.run(stop=stop))
    await eventually(lambda: server.finished.is_set()
                     and recorder.writer.frames == server.stats()["frames"] + 1)
    stop.set()
    await task
    await server.stop()

    # Replaying it to a client that wants AMZN only: the AMZN events, each byte for byte.
    only = tmp_path / "amzn.jsonl"
    replay = ReplayServer([both], port=0, speed=0)
    await replay.start()
    recorder = Recorder(config(replay), only, ["AMZN"], ["T"])
    stop = asyncio.Event()
    task = asyncio.create_task(recorder.run(stop=stop))
    await eventually(lambda: replay.finished.is_set()
                     and replay.account(KEY).trades_sent == replay.account(KEY).trades_emitted)
    await eventually(lambda: recorder.writer.frames >= replay.stats()["frames"] + 1)
    stop.set()
    await task
    await replay.stop()
    original = b"".join(r.frame.encode() for r in iter_recording(both))
    events = [msgspec.json.decode(r.frame) for r in iter_recording(only)]
    trades = [e for frame in events for e in frame if e["ev"] == "T"]
    assert trades
    assert {e["sym"] for e in trades} == {"AMZN"}
    assert len(trades) == int((tape.trades["sym"] == "AMZN").sum())
    for frame in iter_recording(only):
        if '"ev":"status"' not in frame.frame:
            for raw in msgspec.json.decode(frame.frame, type=list[msgspec.Raw]):
                assert bytes(raw) in original
