"""`tickstock record`: capture raw Polygon frames with their receive time (docs/interfaces.md).

Each line of the output is `{"recv_ms": <int Unix ms>, "frame": "<raw frame text>"}`; a
`.gz` name is gzip-compressed. Frames come from `PolygonFeed` (so recording survives drops
like ingest does) from any host: Polygon itself or a local replay server. Recordings replay
through `tickstock replay-server` (frame by frame, byte for byte) and through
`actors.readers.read_file` (`--source replay`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import logging
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, cast

import msgspec

from actors.polygon_feed import PolygonFeed
from actors.readers import RecordedFrame
from config.settings import PolygonConfig, load_settings

log = logging.getLogger("tickstock.recorder")

FLUSH_EVERY_FRAMES = 1_000
_encode = msgspec.json.Encoder().encode


class FrameWriter:
    """Append recorded frames to a `.jsonl` or `.jsonl.gz` file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = cast(IO[bytes], (
            gzip.open(self.path, "wb") if self.path.name.endswith(".gz")  # noqa: SIM115
            else self.path.open("wb")
        ))
        self.frames = 0
        self.bytes = 0

    def write(self, recv_ms: int, frame: str | bytes) -> None:
        """Write one frame (bytes frames are stored as their UTF-8 text)."""
        text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
        line = _encode(RecordedFrame(recv_ms=recv_ms, frame=text)) + b"\n"
        self._fh.write(line)
        self.frames += 1
        self.bytes += len(line)
        if self.frames % FLUSH_EVERY_FRAMES == 0:
            self._fh.flush()

    def close(self) -> None:
        """Flush and close (a gzip file is only complete after this)."""
        self._fh.close()


class Recorder:
    """A `PolygonFeed` whose every frame goes to a `FrameWriter`."""

    def __init__(
        self, cfg: PolygonConfig, out: str | Path, tickers: Sequence[str],
        channels: Sequence[str],
    ) -> None:
        self.writer = FrameWriter(out)
        self.feed = PolygonFeed(cfg, on_frame=self.writer.write)
        self.feed.set_subscriptions(tickers, channels)

    async def run(
        self, duration_s: float | None = None, stop: asyncio.Event | None = None
    ) -> dict[str, Any]:
        """Record until `duration_s` passes or `stop` is set; returns a summary."""
        stop = stop or asyncio.Event()
        await self.feed.start()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), duration_s)
        finally:
            stats = self.feed.stats()  # before stop(): keeps e.g. "auth_failed"
            await self.feed.stop()
            self.writer.close()
        return {"out": str(self.writer.path), "frames": self.writer.frames,
                "bytes": self.writer.bytes, "reconnects": stats["reconnects"],
                "state": stats["state"], "last_error": stats["last_error"]}


async def record(
    cfg: PolygonConfig, out: str | Path, tickers: Sequence[str], channels: Sequence[str],
    duration_s: float | None = None, stop: asyncio.Event | None = None,
) -> dict[str, Any]:
    """Record frames until `duration_s` passes or `stop` is set; returns a summary."""
    return await Recorder(cfg, out, tickers, channels).run(duration_s, stop)


def build_parser() -> argparse.ArgumentParser:
    """Arguments of `tickstock record`."""
    p = argparse.ArgumentParser(prog="tickstock record",
                                description="Capture raw Polygon frames for later replay.")
    p.add_argument("--out", required=True, help="output FILE.jsonl or FILE.jsonl.gz")
    p.add_argument("--feed", default=None, help="host[:port] (default: POLYGON_FEED or Polygon)")
    p.add_argument("--insecure", action="store_true", help="plain ws:// (a local server)")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--tickers", nargs="+", default=None, help="symbols to record")
    who.add_argument("--all", action="store_true", help="every symbol (X.*)")
    p.add_argument("--channels", default="T", help="comma list of T,A,AM (default T)")
    p.add_argument("--duration", type=float, default=None, help="seconds (default: until Ctrl-C)")
    p.add_argument("--config", default=None, help="settings TOML file")
    return p


def record_main(argv: Sequence[str] | None = None) -> int:
    """Run `tickstock record`; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if not args.out.endswith((".jsonl", ".jsonl.gz")):
        print("record: --out must end in .jsonl or .jsonl.gz")
        return 2
    overrides: dict[str, Any] = {}
    if args.feed:
        overrides["feed"] = args.feed
    if args.insecure:
        overrides["secure"] = False
    settings = load_settings(file=args.config, overrides={"polygon": overrides})
    channels = [c.strip() for c in args.channels.split(",") if c.strip()]
    tickers = ["*"] if args.all or not args.tickers else [t.upper() for t in args.tickers]
    summary = asyncio.run(_record_until_signal(settings.polygon, args, tickers, channels))
    print(f"recorded {summary['frames']} frames ({summary['bytes']} bytes) to "
          f"{summary['out']}; reconnects {summary['reconnects']}"
          + (f"; last error: {summary['last_error']}" if summary["last_error"] else ""))
    return 0 if summary["state"] != "auth_failed" else 1


async def _record_until_signal(
    cfg: PolygonConfig, args: argparse.Namespace, tickers: list[str], channels: list[str]
) -> dict[str, Any]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return await record(cfg, args.out, tickers, channels, args.duration, stop)
