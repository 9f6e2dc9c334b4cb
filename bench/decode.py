"""`tickstock bench decode`: raw Polygon trade frames -> typed rows on one core (ingest ceiling).

Frames: recorded trades (AlgoSeek SPY and BAC, LOBSTER AAPL) encoded as Polygon `T` events,
as the replay server sends them (100 events per frame). Measured: `FrameDecoder.decode`, which
parses a frame, validates it, maps sale conditions to flags and returns a columnar
`TradeBatch`. Ceiling, same frames, same run: the parse alone with msgspec into the typed
wire structs (`schemas.polygon.frame_decoder`), the least work any decoder of these frames
does. For reference: msgspec into plain dicts/lists and the stdlib `json.loads`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import msgspec

from actors.polygon.decode import FrameDecoder
from bench.report import emit, real_data_dir, result, rss_mb
from bench.timing import interleaved_best
from cluster.replay.tape import EventTape
from schemas.polygon import frame_decoder

EVENTS_PER_FRAME = 100  # the replay server's default frame size
ROUNDS = 5
DEFAULT_FILES = (
    "algoseek_lean/tick/spy/20131010_spy_Trade_Tick.csv.gz",
    "algoseek_lean/tick/bac/20131010_bac_Trade_Tick.csv.gz",
    "lobster_2012-06-21/AAPL_2012-06-21_34200000_57600000_message_1.csv.gz",
)


def recorded_frames(files: list[Path], rows: int) -> tuple[list[bytes], int]:
    """The first `rows` recorded trades (time order) as Polygon frames; and the trade count."""
    tape = EventTape(files, max_trades=rows, channels=("T",))
    frames = [b"[" + b",".join(tick.parts) + b"]" for tick in tape.ticks(0, EVENTS_PER_FRAME)]
    return frames, tape.n_trades()


def _decoder_run(frames: list[bytes]) -> Any:
    def run() -> None:
        decoder = FrameDecoder()
        for frame in frames:
            decoder.decode(frame, 0)

    return run


def _parse_run(frames: list[bytes], decode: Any) -> Any:
    def run() -> None:
        for frame in frames:
            decode(frame)

    return run


def bench_decode(files: list[Path], rows: int, rounds: int = ROUNDS) -> dict[str, Any]:
    """Run the benchmark; print the table and the JSON line; return the result."""
    frames, trades = recorded_frames(files, rows)
    check = FrameDecoder()
    decoded = sum(len(b.trades) for b in (check.decode(f, 0) for f in frames) if b.trades)
    if decoded != trades:
        raise RuntimeError(f"decoder kept {decoded} of {trades} trades: {check.rejected}")
    best = interleaved_best(
        {
            "decoder": _decoder_run(frames),
            "typed": _parse_run(frames, frame_decoder.decode),
            "untyped": _parse_run(frames, msgspec.json.decode),
            "json": _parse_run(frames, json.loads),
        },
        rounds,
    )
    rate = {name: trades / seconds for name, seconds in best.items()}
    nbytes = sum(len(f) for f in frames)
    outcome = result(
        "decode", rate["decoder"], rate["typed"], trades=trades, frames=len(frames),
        events_per_frame=EVENTS_PER_FRAME, bytes_per_trade=round(nbytes / trades, 1),
        msgspec_untyped_per_s=round(rate["untyped"], 1), json_loads_per_s=round(rate["json"], 1),
        rss_mb=round(rss_mb(), 1),
    )
    table = [
        ("recorded trades", trades),
        ("frames (events per frame)", f"{len(frames):,} ({EVENTS_PER_FRAME})"),
        ("bytes per trade", nbytes / trades),
        ("FrameDecoder -> TradeBatch (trades/s)", rate["decoder"]),
        ("ceiling: msgspec typed parse (trades/s)", rate["typed"]),
        ("ref: msgspec untyped parse (trades/s)", rate["untyped"]),
        ("ref: json.loads (trades/s)", rate["json"]),
        ("ratio decoder / ceiling", outcome["ratio"]),
        (f"timing: best of {rounds} interleaved rounds", "one core"),
    ]
    emit(table, outcome, "decode: Polygon frames -> typed rows")
    return outcome


def run(args: argparse.Namespace) -> dict[str, Any]:
    """`tickstock bench decode [--rows N] [--file F ...]` (see bench/cli.py)."""
    files = [Path(f) for f in getattr(args, "file", [])] or [
        real_data_dir() / f for f in DEFAULT_FILES
    ]
    return bench_decode(files, int(getattr(args, "rows", 200_000)))
