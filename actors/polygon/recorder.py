"""`tickstock record`: capture raw Polygon frames with their receive time (docs/interfaces.md).

Each line of the output is `{"recv_ms": <int Unix ms>, "frame": "<raw frame text>"}`; a
`.gz` name is gzip-compressed. Frames come from `PolygonFeed` (so recording survives drops
like ingest does) from any host: Polygon itself or a local replay server. Recordings replay
through `tickstock replay-server` (frame by frame, byte for byte) and through
`actors.sources.readers.read_file` (`--source replay`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, cast

from actors.polygon.feed import PolygonFeed
from config.settings import PolygonConfig
from schemas.polygon import RecordedFrame, encoder

log = logging.getLogger("tickstock.recorder")

FLUSH_EVERY_FRAMES = 1_000
_encode = encoder.encode


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
