"""Run the reference and the current detectors side by side; report every difference.

Events must agree exactly in ids, kinds, directions, labels and every other non-float field,
and within `REL_TOL` (relative; `ABS_TOL` near zero) in float fields: the current detectors
compute the same quantities with other summation orders.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import msgspec

from actors.detection.engine import DetectorEngine
from actors.sources.readers import read_file
from config.detection import DetectionConfig
from schemas.batches import BarBatch, TradeBatch
from schemas.events import Event
from tests.reference.detector_engine import DetectorEngine as ReferenceEngine

REL_TOL = 1e-9
ABS_TOL = 1e-12
FIELDS = Event.__struct_fields__


class Engine(Protocol):
    def process_trades(self, batch: TradeBatch) -> list[Event]: ...
    def process_bars(self, batch: BarBatch) -> list[Event]: ...
    def flush(self) -> list[Event]: ...
    def take_analytics(self) -> dict[str, Any]: ...
    def rejected(self) -> dict[str, int]: ...


def close(a: Any, b: Any) -> bool:
    """Equal, or (floats) equal within the tolerances."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    return bool(a == b)


def event_diffs(expected: Sequence[Event], got: Sequence[Event], limit: int = 10) -> list[str]:
    """Human-readable differences between two event lists (empty when equivalent)."""
    out: list[str] = []
    if len(expected) != len(got):
        out.append(f"{len(expected)} events expected, {len(got)} produced")
    for i, (e, g) in enumerate(zip(expected, got, strict=False)):
        fields = [f for f in FIELDS if not close(getattr(e, f), getattr(g, f))]
        if fields:
            out.append(f"#{i} {e.id} vs {g.id}: " + ", ".join(
                f"{f}={getattr(e, f)!r}/{getattr(g, f)!r}" for f in fields))
        if len(out) >= limit:
            break
    return out


class Run(msgspec.Struct):
    """What one engine produced over a file."""

    events: list[Event]
    analytics: list[dict[str, Any]]  # the deltas taken after each batch
    rejected: dict[str, int]


def run(engine: Engine, batches: Iterable[TradeBatch | BarBatch]) -> Run:
    """Feed `batches` to `engine`, taking analytics deltas after each; flush at the end."""
    events: list[Event] = []
    deltas: list[dict[str, Any]] = []
    for batch in batches:
        if isinstance(batch, TradeBatch):
            events.extend(engine.process_trades(batch))
        else:
            events.extend(engine.process_bars(batch))
        deltas.append(engine.take_analytics())
    events.extend(engine.flush())
    deltas.append(engine.take_analytics())
    return Run(events, deltas, engine.rejected())


def compare_file(path: Path, config: DetectionConfig | None = None) -> tuple[Run, list[str]]:
    """Run both engines over a recorded file; return the current run and the differences."""
    batches = list(read_file(path))
    expected = run(ReferenceEngine(config), batches)
    got = run(DetectorEngine(config), batches)
    diffs = event_diffs(expected.events, got.events)
    if not close(expected.analytics, got.analytics):
        diffs.append("analytics deltas differ")
    if expected.rejected != got.rejected:
        diffs.append(f"rejected {expected.rejected} vs {got.rejected}")
    return got, diffs
