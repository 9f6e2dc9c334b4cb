"""Recorded-data readers (DESIGN §4, contract): file name/content -> time-ordered batches.

Formats:
- ``lobster``: LOBSTER message CSV (``*_message_*.csv[.gz]``); executions (types 4, 5) are trades.
- ``algoseek_tick``: AlgoSeek/Lean trade ticks (``YYYYMMDD_<sym>_Trade_Tick.csv[.gz]``).
- ``lean_minute``: Lean minute trade bars (``YYYYMMDD_<sym>_minute_trade.csv[.gz]``).
- ``alphavantage``: multi-symbol minute CSV with a ``date,time_et,symbol,...`` header.
- ``polygon_jsonl``: the project's own recording of raw Polygon frames (``*.jsonl[.gz]``).

Every row that is dropped is counted by reason in `ReadStats`; nothing is dropped silently.
Timestamps in the CSV formats are America/New_York wall clock; they become Unix ms.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd

from actors.market.conditions import algoseek_flags, flags_for
from actors.market.sessions import ET
from schemas.batches import FLAGS_REGULAR, BarBatch, TradeBatch
from schemas.polygon import (
    PolygonAgg,
    PolygonTrade,
    RecordedFrame,
    frame_decoder,
    recorded_frame_decoder,
)

CHUNK_ROWS = 65_536
_NON_FINITE = frozenset({"nan", "inf", "+inf", "-inf", "infinity", "-infinity"})

_ALGOSEEK = re.compile(r"^(\d{8})_([a-z0-9.\-]+)_trade_tick\.csv(\.gz)?$", re.IGNORECASE)
_LEAN_MINUTE = re.compile(r"^(\d{8})_([a-z0-9.\-]+)_minute_trade\.csv(\.gz)?$", re.IGNORECASE)
_LOBSTER = re.compile(r"^([A-Za-z0-9.\-]+)_(\d{4}-\d{2}-\d{2})_\d+_\d+_message_\d+\.csv(\.gz)?$")
_JSONL = re.compile(r"\.jsonl(\.gz)?$")


@dataclass
class ReadStats:
    """What a reader saw: rows read, rows emitted, rows rejected by reason."""

    rows: int = 0
    emitted: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # not data (e.g. order adds): no loss
    rejected: Counter[str] = field(default_factory=Counter)  # bad rows, by reason


class UnknownFormatError(ValueError):
    """The file is none of the recorded formats."""


def _open_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def detect_format(path: str | Path) -> str:
    """The reader for `path`, by file name, then by header content."""
    p = Path(path)
    name = p.name
    if _LOBSTER.match(name):
        return "lobster"
    if _ALGOSEEK.match(name):
        return "algoseek_tick"
    if _LEAN_MINUTE.match(name):
        return "lean_minute"
    if _JSONL.search(name):
        return "polygon_jsonl"
    if re.search(r"\.csv(\.gz)?$", name):
        opener = gzip.open if name.endswith(".gz") else open
        with opener(p, "rt") as fh:
            header = fh.readline().strip().lower()
        if header.startswith("date,time_et,symbol"):
            return "alphavantage"
    raise UnknownFormatError(
        f"unrecognised recorded-data file {name!r}: expected LOBSTER *_message_*.csv, "
        "YYYYMMDD_<sym>_Trade_Tick.csv, YYYYMMDD_<sym>_minute_trade.csv, an Alpha Vantage "
        "date,time_et,symbol CSV or a *.jsonl recording"
    )


def _yyyymmdd(text: str) -> dt.date:
    return dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))


def midnight_ms(day: dt.date) -> int:
    """Unix ms of local midnight in New York on `day`."""
    return int(dt.datetime.combine(day, dt.time(0), tzinfo=ET).timestamp() * 1000)


def _read_csv(raw: bytes, names: list[str], stats: ReadStats, header: bool = False) -> pd.DataFrame:
    """Parse every field as text; rows with a wrong number of fields or an empty field are
    rejected as `malformed_row` (blank lines included)."""
    lines = raw.count(b"\n") + (0 if raw.endswith(b"\n") or not raw else 1) - (1 if header else 0)
    df = pd.read_csv(
        io.BytesIO(raw), header=0 if header else None, names=None if header else names,
        dtype=str, on_bad_lines="skip", engine="c", keep_default_na=False, na_values=[""],
    )
    if header:
        df.columns = [c.strip().lower() for c in df.columns]
    stats.rows += lines
    bad_shape = lines - len(df)  # too many fields (skipped by the parser) or blank lines
    short = df.isna().any(axis=1)  # a missing or empty field
    bad = bad_shape + int(short.sum())
    if bad > 0:
        stats.rejected["malformed_row"] += bad
    return df[~short] if short.any() else df


def _numeric(
    df: pd.DataFrame, cols: list[str], stats: ReadStats, prices: tuple[str, ...] = ()
) -> pd.DataFrame:
    """Convert `cols` to numbers; rows with a missing/non-numeric field are rejected.

    In `prices`, "nan"/"inf" parse (as NaN) so the price check counts them as `bad_price`.
    """
    out = df.copy()
    keep_nan = pd.Series(False, index=df.index)
    for c in cols:
        text = out[c].str.strip()
        out[c] = pd.to_numeric(text, errors="coerce")
        if c in prices:
            keep_nan |= text.str.lower().isin(_NON_FINITE)
    others = [c for c in cols if c not in prices]
    ok = out[cols].notna().all(axis=1) | (keep_nan & out[others].notna().all(axis=1))
    bad = int((~ok).sum())
    if bad:
        stats.rejected["malformed_row"] += bad
    return out[ok]


def _reject_bad_prices(df: pd.DataFrame, price_cols: list[str], stats: ReadStats) -> pd.DataFrame:
    values = df[price_cols].to_numpy(dtype=np.float64)
    ok = np.isfinite(values).all(axis=1) & (values > 0).all(axis=1)
    bad = int((~ok).sum())
    if bad:
        stats.rejected["bad_price"] += bad
    return df[ok]


def _reject_bad_sizes(df: pd.DataFrame, col: str, stats: ReadStats) -> pd.DataFrame:
    values = df[col].to_numpy(dtype=np.float64)
    ok = np.isfinite(values) & (values >= 0)
    bad = int((~ok).sum())
    if bad:
        stats.rejected["bad_size"] += bad
    return df[ok]


def load_lobster(path: Path, stats: ReadStats) -> pd.DataFrame:
    """Trades of a LOBSTER message file: columns sym, t, p, s, side (+1 buyer-initiated)."""
    m = _LOBSTER.match(path.name)
    assert m is not None
    sym, day = m.group(1).upper(), dt.date.fromisoformat(m.group(2))
    names = ["time", "type", "order_id", "size", "price", "direction"]
    df = _numeric(_read_csv(_open_bytes(path), names, stats), names, stats, ("price",))
    trades = df["type"].isin((4, 5))
    stats.skipped["order_book_message"] += int((~trades).sum())
    df = df[trades]
    out = pd.DataFrame({
        "sym": sym,
        "t": midnight_ms(day) + np.floor(df["time"].to_numpy() * 1000).astype(np.int64),
        "p": df["price"].to_numpy() / 10_000,
        "s": df["size"].to_numpy(dtype=np.float64),
        "flags": np.uint8(FLAGS_REGULAR),
        # LOBSTER direction is the resting order's side: an executed sell order is a buy.
        "side": -df["direction"].to_numpy(dtype=np.int8),
        "row": df.index.to_numpy(),
    })
    return _reject_bad_prices(out, ["p"], stats)


def load_algoseek(path: Path, stats: ReadStats) -> pd.DataFrame:
    """AlgoSeek trade ticks: columns sym, t, p, s, flags, exchange, cond (hex), row."""
    m = _ALGOSEEK.match(path.name)
    assert m is not None
    day = _yyyymmdd(m.group(1))
    sym = m.group(2).upper()
    names = ["time_ms", "price", "size", "exchange", "cond", "suspicious"]
    raw = _read_csv(_open_bytes(path), names, stats)
    df = _numeric(raw, ["time_ms", "price", "size"], stats, ("price",))
    susp = df["suspicious"].str.strip() == "1"
    if susp.any():
        stats.rejected["suspicious"] += int(susp.sum())
        df = df[~susp]
    cond = df["cond"].str.strip().str.lower()
    valid_hex = cond.str.fullmatch(r"[0-9a-f]{1,8}").fillna(False).astype(bool)
    if (~valid_hex).any():
        stats.rejected["bad_condition"] += int((~valid_hex).sum())
        df, cond = df[valid_hex], cond[valid_hex]
    codes = {c: algoseek_flags(c) for c in cond.unique()}
    out = pd.DataFrame({
        "sym": sym,
        "t": midnight_ms(day) + df["time_ms"].to_numpy(dtype=np.int64),
        "p": df["price"].to_numpy() / 10_000,
        "s": df["size"].to_numpy(dtype=np.float64),
        "flags": cond.map(codes).to_numpy(dtype=np.uint8),
        "exchange": df["exchange"].str.strip().to_numpy(),
        "cond": cond.to_numpy(),
        "row": df.index.to_numpy(),
    })
    return _reject_bad_sizes(_reject_bad_prices(out, ["p"], stats), "s", stats)


def load_lean_minute(path: Path, stats: ReadStats) -> pd.DataFrame:
    """Lean minute bars: columns sym, start, end, o, h, l, c, v, row."""
    m = _LEAN_MINUTE.match(path.name)
    assert m is not None
    day = _yyyymmdd(m.group(1))
    names = ["time_ms", "o", "h", "l", "c", "v"]
    df = _numeric(_read_csv(_open_bytes(path), names, stats), names, stats, ("o", "h", "l", "c"))
    start = midnight_ms(day) + df["time_ms"].to_numpy(dtype=np.int64)
    out = pd.DataFrame({
        "sym": m.group(2).upper(), "start": start, "end": start + 60_000,
        **{k: df[k].to_numpy() / 10_000 for k in ("o", "h", "l", "c")},
        "v": df["v"].to_numpy(dtype=np.float64), "row": df.index.to_numpy(),
    })
    return _reject_bad_sizes(_reject_bad_prices(out, ["o", "h", "l", "c"], stats), "v", stats)


def load_alphavantage(path: Path, stats: ReadStats) -> pd.DataFrame:
    """Alpha Vantage multi-symbol minute bars: columns sym, start, end, o, h, l, c, v, row."""
    df = _read_csv(_open_bytes(path), [], stats, header=True)
    df = _numeric(df, ["open", "high", "low", "close", "volume"], stats,
                  ("open", "high", "low", "close"))
    stamp = df["date"].str.strip() + " " + df["time_et"].str.strip()
    parsed = pd.to_datetime(stamp, format="%Y-%m-%d %H:%M", errors="coerce")
    bad = parsed.isna() | (df["symbol"].str.strip() == "")
    if bad.any():
        stats.rejected["malformed_row"] += int(bad.sum())
        df, parsed = df[~bad], parsed[~bad]
    local = parsed.dt.tz_localize(ET, ambiguous="NaT", nonexistent="NaT")
    start = local.dt.as_unit("ms").astype("int64").to_numpy()
    out = pd.DataFrame({
        "sym": df["symbol"].str.strip().str.upper().to_numpy(), "start": start,
        "end": start + 60_000,
        "o": df["open"].to_numpy(), "h": df["high"].to_numpy(), "l": df["low"].to_numpy(),
        "c": df["close"].to_numpy(), "v": df["volume"].to_numpy(dtype=np.float64),
        "row": df.index.to_numpy(),
    })
    out = _reject_bad_prices(out, ["o", "h", "l", "c"], stats)
    return _reject_bad_sizes(out, "v", stats).sort_values(["start", "sym"], kind="stable")


def _trade_batch(df: pd.DataFrame) -> TradeBatch:
    return TradeBatch.from_columns(
        df["sym"].to_numpy(), df["t"].to_numpy(), df["p"].to_numpy(), df["s"].to_numpy(),
        df["flags"].to_numpy(), df["row"].to_numpy(),
    )


def _bar_batch(df: pd.DataFrame) -> BarBatch:
    return BarBatch.from_columns(
        sym=df["sym"].to_numpy(), start=df["start"].to_numpy(), end=df["end"].to_numpy(),
        o=df["o"].to_numpy(), h=df["h"].to_numpy(), l=df["l"].to_numpy(), c=df["c"].to_numpy(),
        v=df["v"].to_numpy(), seq=df["row"].to_numpy(),
    )


def _chunks(df: pd.DataFrame, rows: int) -> Iterator[pd.DataFrame]:
    for start in range(0, len(df), rows):
        yield df.iloc[start : start + rows]


LOADERS = {
    "lobster": load_lobster,
    "algoseek_tick": load_algoseek,
    "lean_minute": load_lean_minute,
    "alphavantage": load_alphavantage,
}
TRADE_FORMATS = frozenset({"lobster", "algoseek_tick"})


def load_frame(path: str | Path, stats: ReadStats | None = None) -> tuple[str, pd.DataFrame]:
    """The whole CSV file as one DataFrame (trades or bars) plus its format name."""
    p = Path(path)
    fmt = detect_format(p)
    if fmt == "polygon_jsonl":
        raise UnknownFormatError("jsonl recordings are read frame by frame: use read_file()")
    return fmt, LOADERS[fmt](p, stats if stats is not None else ReadStats())


def read_file(
    path: str | Path, stats: ReadStats | None = None, chunk_rows: int = CHUNK_ROWS
) -> Iterator[TradeBatch | BarBatch]:
    """Time-ordered batches of a recorded file; `seq` is the row's position in the file."""
    stats = stats if stats is not None else ReadStats()
    p = Path(path)
    fmt = detect_format(p)
    if fmt == "polygon_jsonl":
        yield from read_jsonl(p, stats, chunk_rows)
        return
    _, df = load_frame(p, stats)
    make = _trade_batch if fmt in TRADE_FORMATS else _bar_batch
    for chunk in _chunks(df, chunk_rows):
        stats.emitted += len(chunk)
        yield make(chunk)


def iter_recording(path: str | Path, stats: ReadStats | None = None) -> Iterator[RecordedFrame]:
    """Lines of a recording; malformed lines are counted and skipped."""
    stats = stats if stats is not None else ReadStats()
    p = Path(path)
    opener = gzip.open if p.name.endswith(".gz") else open
    with opener(p, "rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                yield recorded_frame_decoder.decode(line)
            except msgspec.DecodeError:
                stats.rejected["malformed_line"] += 1


def read_jsonl(path: Path, stats: ReadStats, chunk_rows: int) -> Iterator[TradeBatch | BarBatch]:
    """Trades and bars of a recording, in frame order (a kind switch flushes the batch)."""
    trades: list[PolygonTrade] = []
    bars: list[PolygonAgg] = []
    seq = 0
    for rec in iter_recording(path, stats):
        stats.rows += 1
        try:
            messages = frame_decoder.decode(rec.frame)
        except msgspec.DecodeError:
            stats.rejected["malformed_frame"] += 1
            continue
        for msg in messages:
            if isinstance(msg, PolygonTrade):
                if bars:
                    yield _bars_from(bars, seq - len(bars), stats)
                    bars = []
                trades.append(msg)
            elif isinstance(msg, PolygonAgg):
                if trades:
                    yield _trades_from(trades, seq - len(trades), stats)
                    trades = []
                bars.append(msg)
            else:
                continue
            seq += 1
            if len(trades) >= chunk_rows:
                yield _trades_from(trades, seq - len(trades), stats)
                trades = []
            if len(bars) >= chunk_rows:
                yield _bars_from(bars, seq - len(bars), stats)
                bars = []
    if trades:
        yield _trades_from(trades, seq - len(trades), stats)
    if bars:
        yield _bars_from(bars, seq - len(bars), stats)


def _trades_from(items: list[PolygonTrade], first_seq: int, stats: ReadStats) -> TradeBatch:
    stats.emitted += len(items)
    return TradeBatch.from_columns(
        [m.sym for m in items], [m.t for m in items], [m.p for m in items],
        [m.s for m in items], [flags_for(m.c) for m in items],
        np.arange(first_seq, first_seq + len(items)),
    )


def _bars_from(items: list[PolygonAgg], first_seq: int, stats: ReadStats) -> BarBatch:
    stats.emitted += len(items)
    return BarBatch.from_columns(
        sym=[m.sym for m in items], start=[m.s for m in items], end=[m.e for m in items],
        o=[m.o for m in items], h=[m.h for m in items], l=[m.l for m in items],
        c=[m.c for m in items], v=[m.v for m in items], vw=[m.vw for m in items],
        seq=np.arange(first_seq, first_seq + len(items)),
    )
