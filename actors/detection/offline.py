"""Offline detection over recorded files: the shard's engine, no Ray (DESIGN §7 `tickstock detect`).

Each file runs through its own `DetectorEngine`, so files of different tickers or days need no
merging: every detector keeps per-ticker state and resets at session changes, so a file gives
the same events alone as next to others. Events come back as a DataFrame, one row per event,
with the `Event` fields as columns.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pandas as pd
from tqdm import tqdm

from actors.detection.engine import DetectorEngine
from actors.sources.readers import ReadStats, read_file
from config.detection import DetectionConfig
from schemas.batches import TradeBatch
from schemas.events import Event

COLUMNS = list(Event.__struct_fields__)


@dataclass
class DetectStats:
    """What one `detect` run did: rows, events by kind, rejects by reason, time."""

    files: int = 0
    rows: int = 0  # rows handed to the engines (trades and bars)
    trades: int = 0
    bars: int = 0
    events: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)  # engine and reader rejects
    seconds: float = 0.0  # detection time (reading excluded)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (kept in the result's `DataFrame.attrs["stats"]`)."""
        return {
            "files": self.files, "rows": self.rows, "trades": self.trades, "bars": self.bars,
            "events": dict(self.events), "rejected": dict(self.rejected),
            "seconds": self.seconds, "rows_per_s": self.rows_per_s,
        }


def detect(
    paths: Iterable[str | Path],
    config: DetectionConfig | None = None,
    progress: bool = True,
    stats: DetectStats | None = None,
) -> pd.DataFrame:
    """Run the detectors over recorded files; return one row per event (Event fields).

    The run's figures (rows, events by kind, rejects by reason, speed) are in
    `frame.attrs["stats"]`, and in `stats` when one is passed.
    """
    stats = stats if stats is not None else DetectStats()
    events: list[Event] = []
    bar = tqdm(unit="rows", unit_scale=True, disable=not progress, desc="detect")
    try:
        for path in paths:
            events.extend(_detect_file(Path(path), config, stats, bar))
    finally:
        bar.close()
    frame = events_frame(events)
    frame.attrs["stats"] = stats.to_dict()
    return frame


def _detect_file(
    path: Path, config: DetectionConfig | None, stats: DetectStats, bar: tqdm[Any]
) -> list[Event]:
    engine = DetectorEngine(config)
    reads = ReadStats()
    events: list[Event] = []
    bar.set_postfix_str(path.name, refresh=False)
    for batch in read_file(path, reads):
        started = time.perf_counter()
        if isinstance(batch, TradeBatch):
            events.extend(engine.process_trades(batch))
            stats.trades += len(batch)
        else:
            events.extend(engine.process_bars(batch))
            stats.bars += len(batch)
        stats.seconds += time.perf_counter() - started
        stats.rows += len(batch)
        bar.update(len(batch))
    started = time.perf_counter()
    events.extend(engine.flush())
    stats.seconds += time.perf_counter() - started
    stats.files += 1
    stats.events.update(e.kind for e in events)
    stats.rejected.update(engine.rejected())
    stats.rejected.update({f"read:{k}": v for k, v in reads.rejected.items()})
    return events


def events_frame(events: Sequence[Event]) -> pd.DataFrame:
    """Events as a DataFrame with every `Event` field as a column (None where unset)."""
    rows = [msgspec.structs.astuple(e) for e in events]
    return pd.DataFrame.from_records(rows, columns=COLUMNS)


def write_events(frame: pd.DataFrame, out: Path) -> None:
    """Write events as .csv, .parquet or .jsonl (by suffix)."""
    suffix = out.suffix.lower()
    if suffix == ".csv":
        frame.to_csv(out, index=False)
    elif suffix == ".parquet":
        frame.to_parquet(out, index=False)
    elif suffix == ".jsonl":
        frame.to_json(out, orient="records", lines=True)
    else:
        raise ValueError(f"unsupported output {out.name!r}: use .csv, .parquet or .jsonl")
