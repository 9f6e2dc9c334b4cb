"""Detector shard checkpoints: the newest snapshot per shard, written and read atomically."""

from __future__ import annotations

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.records import Checkpoint
from schemas.tables import (
    DetectorCheckpoint,
)
from storage.sql import Clock, wall_ms


class CheckpointStore:
    """Detector shard snapshots; only the newest `keep` per shard are retained."""

    def __init__(self, engine: AsyncEngine, clock: Clock = wall_ms, keep: int = 1) -> None:
        self._engine = engine
        self._clock = clock
        self._keep = keep

    async def save(self, shard: int, last_seq: int, watermark: int, blob: bytes) -> None:
        """Store a snapshot and delete the shard's older ones in the same transaction."""
        row = {
            "shard": shard,
            "created_ms": self._clock(),
            "last_seq": last_seq,
            "watermark": watermark,
            "blob": blob,
        }
        table = DetectorCheckpoint
        newest = (
            select(table.id).where(table.shard == shard).order_by(table.id.desc()).limit(self._keep)
        )
        async with self._engine.begin() as conn:
            await conn.execute(insert(table).values(row))
            kept = list((await conn.execute(newest)).scalars())
            await conn.execute(delete(table).where(table.shard == shard, table.id.not_in(kept)))

    async def load_latest(self, shard: int) -> Checkpoint | None:
        """The newest snapshot of `shard` as (last_seq, watermark, blob), or None."""
        table = DetectorCheckpoint
        query = (
            select(table.last_seq, table.watermark, table.blob)
            .where(table.shard == shard)
            .order_by(table.id.desc())
            .limit(1)
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else Checkpoint(row.last_seq, row.watermark, bytes(row.blob))
