"""Sale conditions -> eligibility flags (docs/trade-conditions.md §2-3).

A trade may update high/low, last or volume only if every one of its condition ids allows it.
Unknown ids fail closed for high/low and last (no false "new high"), still add volume, and
are counted. Form T (12) is flagged apart: inside PRE/AFTER it is treated as all-true.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from functools import cache
from importlib import resources

from schemas.batches import FLAG_FORM_T, FLAG_HIGH_LOW, FLAG_LAST, FLAG_VOLUME, FLAGS_REGULAR

FORM_T = 12
UNKNOWN_FLAGS = FLAG_VOLUME
REGULAR_BIT = 0x1  # AlgoSeek "Regular": no Polygon id
EXTENDED_BIT = 0x2000  # AlgoSeek ExtendedHours (T)
OUT_OF_SEQUENCE_BIT = 0x4000
SOLD_OUT_OF_SEQUENCE = 32
EXT_OUT_OF_SEQ = 13


def _csv_rows(name: str) -> list[dict[str, str]]:
    text = resources.files("config").joinpath(f"data/{name}").read_text()
    return list(csv.DictReader(text.splitlines()))


@cache
def polygon_condition_flags() -> dict[int, int]:
    """Polygon condition id -> flag bits."""
    table: dict[int, int] = {}
    for row in _csv_rows("trade-conditions.csv"):
        bits = 0
        if row["updates_high_low"] == "true":
            bits |= FLAG_HIGH_LOW
        if row["updates_last"] == "true":
            bits |= FLAG_LAST
        if row["updates_volume"] == "true":
            bits |= FLAG_VOLUME
        table[int(row["polygon_id"])] = bits
    return table


def flags_for(conditions: Iterable[int], unknown: list[int] | None = None) -> int:
    """AND the flags of every condition id; 12 sets FLAG_FORM_T instead of blocking."""
    table = polygon_condition_flags()
    flags = FLAGS_REGULAR
    form_t = False
    for cid in conditions:
        if cid == FORM_T:
            form_t = True
            continue
        bits = table.get(cid)
        if bits is None:
            bits = UNKNOWN_FLAGS
            if unknown is not None:
                unknown.append(cid)
        flags &= bits
    return flags | FLAG_FORM_T if form_t else flags


@cache
def _algoseek_bits() -> list[tuple[int, int | None]]:
    out: list[tuple[int, int | None]] = []
    for row in _csv_rows("algoseek-conditions.csv"):
        bit = int(row["bit_hex"], 16)
        ids = row["polygon_ids"]
        if bit and (ids or bit == REGULAR_BIT):  # other id-less bits stay unknown
            out.append((bit, int(ids.split(";")[0]) if ids else None))
    return out


@cache
def algoseek_to_polygon(hex_flags: str) -> tuple[int, ...]:
    """AlgoSeek/LEAN hex sale-condition bits -> Polygon condition ids (first alternative)."""
    value = int(hex_flags, 16)
    known = 0
    ids = []
    for bit, cid in _algoseek_bits():
        if value & bit and cid is not None:
            ids.append(cid)
        known |= bit
    if value & ~known:
        ids.append(-1)  # an undocumented bit: unknown id, fails closed
    if value & EXTENDED_BIT and value & OUT_OF_SEQUENCE_BIT:
        # Together they are SIP code U (13), volume-only in every session: not a Form T print.
        ids = [cid for cid in ids if cid not in (FORM_T, SOLD_OUT_OF_SEQUENCE)] + [EXT_OUT_OF_SEQ]
    return tuple(ids)


@cache
def algoseek_flags(hex_flags: str) -> int:
    """Eligibility flags of an AlgoSeek sale-condition field."""
    return flags_for(algoseek_to_polygon(hex_flags))


def effective_flags(flags: int, extended_session: bool) -> int:
    """Resolve Form T: inside PRE/AFTER a Form T print counts as regular (ANDed with the rest)."""
    if flags & FLAG_FORM_T:
        return flags & FLAGS_REGULAR if extended_session else flags & FLAG_VOLUME
    return flags
