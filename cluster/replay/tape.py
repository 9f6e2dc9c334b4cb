"""Recorded data -> time-ordered Polygon stocks events, grouped into frames (`Tick`s).

Used by the replay server (`cluster/replay/server.py`). Two kinds of tape:

- `EventTape`: CSV recordings (LOBSTER, AlgoSeek trade ticks, Lean minute bars, Alpha
  Vantage minute bars) turned into `T` events with realistic fields, plus `A` (per-second)
  and `AM` (per-minute) bars built from the trades with Polygon's eligibility rules (or the
  recorded minute bars as `AM`). Bars are sent at their end time, before trades of that ms.
- `FrameTape`: the project's own `*.jsonl[.gz]` recordings, replayed frame by frame,
  byte for byte, at their recorded pacing (`recv_ms`); recorded status frames are skipped.

Trade fields (docs/polygon.md §2):
- `x`: Polygon exchange id from the SIP participant letter (`EXCHANGE_IDS`, Polygon's
  /v3/reference/exchanges): A=1 NYSE American, B=2 Nasdaq BX, C=3 NYSE National (NSX),
  D=4 FINRA TRF, I=6 ISE, J=7 Cboe EDGA, K=8 Cboe EDGX, M=9 NYSE Chicago (CHX), N=10 NYSE,
  P=11 NYSE Arca, Q/T=12 Nasdaq, L=14 LTSE, V=15 IEX, W=16 Cboe (CBSX), X=17 Nasdaq PSX,
  Y=18 Cboe BYX, Z=19 Cboe BZX, H=20 MIAX Pearl, U=21 MEMX; LOBSTER (Nasdaq ITCH) is 12.
- `c`: `conditions.algoseek_to_polygon` of the AlgoSeek hex bits (absent when regular).
- `z`: the listing tape: 1 NYSE-listed, 2 NYSE Arca/American-listed (SPY), 3 Nasdaq-listed.
- `i`: a per-file (one symbol-day) trade id; `q`: a per-file sequence number (1, 2, ...).
- FINRA prints (`x`=4) carry `trfi`=202 (Nasdaq TRF Carteret) and `trft`=`t`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import msgspec
import numpy as np
import pandas as pd

from actors.market.conditions import algoseek_to_polygon, effective_flags
from actors.market.sessions import day_hours, local_date
from actors.sources.readers import ReadStats, detect_format, iter_recording, load_frame
from schemas.batches import FLAG_FORM_T, FLAG_HIGH_LOW, FLAG_LAST, FLAG_VOLUME
from schemas.polygon import (
    EventHead,
    PolygonTrade,
    WireAgg,
    WireMinuteAgg,
    WireTrade,
    encoder,
    event_head_decoder,
    message_decoder,
    raw_list_decoder,
)

EXCHANGE_IDS: dict[str, int] = {
    "A": 1, "B": 2, "C": 3, "D": 4, "I": 6, "J": 7, "K": 8, "M": 9, "N": 10, "P": 11,
    "Q": 12, "T": 12, "L": 14, "V": 15, "W": 16, "X": 17, "Y": 18, "Z": 19, "H": 20, "U": 21,
}
NASDAQ_ID = 12
FINRA_ID = 4
TRF_NASDAQ_CARTERET = 202
TAPE_NYSE, TAPE_ARCA, TAPE_NASDAQ = 1, 2, 3
# Listing tape of the symbols in the shipped data (and common ETFs); others default to NYSE.
LISTING_TAPE: dict[str, int] = {
    "SPY": TAPE_ARCA, "IWM": TAPE_ARCA, "DIA": TAPE_ARCA, "GLD": TAPE_ARCA,
    "QQQ": TAPE_NASDAQ, "AAPL": TAPE_NASDAQ, "AMZN": TAPE_NASDAQ, "GOOG": TAPE_NASDAQ,
    "MSFT": TAPE_NASDAQ, "INTC": TAPE_NASDAQ, "FOXA": TAPE_NASDAQ, "NWSA": TAPE_NASDAQ,
    "SHY": TAPE_NASDAQ,
}
KIND_A, KIND_AM, KIND_T = 0, 1, 2  # also the order of equal-time events: bars first
CHANNELS = ("A", "AM", "T")
SECOND_MS = 1_000
MINUTE_MS = 60_000
ENCODE_CHUNK = 4_096


_encode = encoder.encode


@dataclass(slots=True)
class Tick:
    """Events sent in one frame: pacing time, and per event its channel, symbol and JSON."""

    t: int  # event time (Unix ms) the frame is due
    chans: list[str] = field(default_factory=list)
    syms: list[str] = field(default_factory=list)
    parts: list[bytes] = field(default_factory=list)
    verbatim: bytes | None = None  # the recorded frame, sent as-is when nothing is filtered

    def __len__(self) -> int:
        return len(self.parts)


class Tape(Protocol):
    """A replayable source of ticks."""

    first_t: int
    last_t: int
    stats: ReadStats

    def ticks(self, group_ms: int, max_events: int) -> Iterator[Tick]: ...

    def symbols(self) -> list[str]: ...

    def first_prices(self) -> dict[str, float]: ...


def listing_tape(sym: str, fmt: str) -> int:
    """Polygon tape id of a symbol (LOBSTER samples are Nasdaq-listed)."""
    if fmt == "lobster":
        return TAPE_NASDAQ
    return LISTING_TAPE.get(sym, TAPE_NYSE)


# -- trades ---------------------------------------------------------------------------------


def _trade_columns(fmt: str, df: pd.DataFrame, conds: dict[tuple[int, ...], int]) -> pd.DataFrame:
    """Add the wire fields x, z, c (as an index into `conds`), q to one file's trades."""
    n = len(df)
    out = df[["sym", "t", "p", "s", "flags"]].reset_index(drop=True)
    if fmt == "algoseek_tick":
        letters = df["exchange"].to_numpy()
        out["x"] = [EXCHANGE_IDS.get(str(x).upper(), 0) for x in letters]
        ids = {h: conds.setdefault(algoseek_to_polygon(h), len(conds))
               for h in df["cond"].unique()}
        out["c"] = df["cond"].map(ids).to_numpy(dtype=np.int32)
    else:
        out["x"] = NASDAQ_ID
        out["c"] = conds.setdefault((), len(conds))
    sym = str(out["sym"].iloc[0]) if n else ""
    out["z"] = listing_tape(sym, fmt)
    out["q"] = np.arange(1, n + 1, dtype=np.int64)
    return out


def _effective(df: pd.DataFrame) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """Flags with Form T resolved per trade session (extended hours -> regular)."""
    flags: np.ndarray[Any, np.dtype[np.uint8]] = df["flags"].to_numpy(dtype=np.uint8)
    form_t = (flags & FLAG_FORM_T) != 0
    if not form_t.any():
        return flags
    t = df["t"].to_numpy(dtype=np.int64)
    extended = np.ones(len(t), dtype=bool)
    for day in {local_date(int(x)) for x in t[form_t]}:
        h = day_hours(day)
        extended &= ~((t >= h.open_ms) & (t < h.close_ms))
    out: np.ndarray[Any, np.dtype[np.uint8]] = flags.copy()
    for ext in (True, False):
        mask = form_t & (extended == ext)
        out[mask] = [effective_flags(int(f), ext) for f in flags[mask]]
    return out


def build_bars(trades: pd.DataFrame, width_ms: int) -> pd.DataFrame:
    """Polygon-style bars of `width_ms` from trades (sym, t, p, s, flags), in end order.

    Open/close come from trades that may update the last price, high/low from those that
    may update high/low, volume and VWAP from those that count toward volume; a bar exists
    when at least one trade may update the last price. `av`/`a` accumulate per symbol-day.
    """
    cols = ["sym", "s", "e", "o", "h", "l", "c", "v", "vw", "av", "a", "z", "op"]
    if trades.empty:
        return pd.DataFrame(columns=cols)
    flags = _effective(trades)
    p = trades["p"].to_numpy()
    s = trades["s"].to_numpy()
    last_ok = (flags & FLAG_LAST) != 0
    hl_ok = (flags & FLAG_HIGH_LOW) != 0
    vol_ok = (flags & FLAG_VOLUME) != 0
    df = pd.DataFrame({
        "sym": trades["sym"].to_numpy(),
        "bucket": trades["t"].to_numpy() // width_ms * width_ms,
        "p_last": np.where(last_ok, p, np.nan),
        "p_hl": np.where(hl_ok, p, np.nan),
        "v": np.where(vol_ok, s, 0.0),
        "pv": np.where(vol_ok, p * s, 0.0),
        "n": vol_ok.astype(np.int64),
    })
    g = df.groupby(["sym", "bucket"], sort=False)
    bars = pd.DataFrame({
        "o": g["p_last"].first(), "c": g["p_last"].last(),
        "h": g["p_hl"].max(), "l": g["p_hl"].min(),
        "v": g["v"].sum(), "pv": g["pv"].sum(), "n": g["n"].sum(),
    }).reset_index()
    bars = bars[bars["o"].notna()].sort_values(["bucket", "sym"], kind="stable")
    bars["h"] = np.fmax(bars["h"], np.fmax(bars["o"], bars["c"]))
    bars["l"] = np.fmin(bars["l"], np.fmin(bars["o"], bars["c"]))
    bars["s"] = bars["bucket"].astype(np.int64)
    bars["e"] = bars["s"] + width_ms
    bars["vw"] = np.where(bars["v"] > 0, bars["pv"] / bars["v"].where(bars["v"] > 0, 1), bars["c"])
    bars["z"] = np.where(bars["n"] > 0, bars["v"] // bars["n"].where(bars["n"] > 0, 1), 0)
    day = [local_date(int(x)) for x in bars["s"]]
    bars["day"] = day
    cum = bars.groupby(["sym", "day"], sort=False)
    bars["av"] = cum["v"].cumsum()
    cum_pv = cum["pv"].cumsum()
    bars["a"] = np.where(bars["av"] > 0, cum_pv / bars["av"].where(bars["av"] > 0, 1), bars["c"])
    bars["op"] = _official_open(bars)
    return bars[cols].reset_index(drop=True)


def _official_open(bars: pd.DataFrame) -> np.ndarray[Any, np.dtype[np.float64]]:
    """The first regular-session open of each symbol-day, on bars at or after it (else 0)."""
    out = np.zeros(len(bars))
    open_ms = np.array([day_hours(d).open_ms for d in bars["day"]], dtype=np.int64)
    start = bars["s"].to_numpy()
    regular = start >= open_ms
    keys = list(zip(bars["sym"], bars["day"], strict=True))
    first: dict[tuple[str, dt.date], float] = {}
    o = bars["o"].to_numpy()
    for k, (key, is_reg) in enumerate(zip(keys, regular, strict=True)):
        if is_reg:
            out[k] = first.setdefault(key, float(o[k]))
    return out


# -- the tape of CSV recordings -------------------------------------------------------------


class EventTape:
    """Trades and bars of CSV recordings, merged in time order, encoded lazily per tick."""

    def __init__(
        self, files: Sequence[str | Path], *, max_trades: int | None = None,
        channels: Sequence[str] = CHANNELS, stats: ReadStats | None = None,
    ) -> None:
        self.stats = stats if stats is not None else ReadStats()
        self._conds: dict[tuple[int, ...], int] = {(): 0}
        trades, minute_files = self._load(files)
        if max_trades is not None:
            trades = trades.iloc[:max_trades]
        self.trades = trades.reset_index(drop=True)
        seconds = build_bars(self.trades, SECOND_MS) if "A" in channels else build_bars(
            self.trades.iloc[:0], SECOND_MS)
        minutes = build_bars(self.trades, MINUTE_MS) if "AM" in channels else build_bars(
            self.trades.iloc[:0], MINUTE_MS)
        if minute_files is not None and "AM" in channels:
            minutes = pd.concat([minutes, minute_files], ignore_index=True)
        self.seconds = seconds.reset_index(drop=True)
        self.minutes = minutes.reset_index(drop=True)
        self.cond_tuples = sorted(self._conds, key=self._conds.__getitem__)
        self._order = self._merge()
        self._t = self._times()
        self.first_t = int(self._t[0]) if len(self._t) else 0
        self.last_t = int(self._t[-1]) if len(self._t) else 0

    def _load(self, files: Sequence[str | Path]) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        trade_frames: list[pd.DataFrame] = []
        bar_frames: list[pd.DataFrame] = []
        for path in files:
            fmt, df = load_frame(path, self.stats)
            if fmt in ("lobster", "algoseek_tick"):
                trade_frames.append(_trade_columns(fmt, df, self._conds))
            else:
                bar_frames.append(_recorded_minutes(df))
        if trade_frames:
            trades = pd.concat(trade_frames, ignore_index=True)
            trades = trades.sort_values("t", kind="stable").reset_index(drop=True)
        else:
            trades = pd.DataFrame(columns=["sym", "t", "p", "s", "flags", "x", "c", "z", "q"])
        bars = pd.concat(bar_frames, ignore_index=True) if bar_frames else None
        return trades, bars

    def _times(self) -> np.ndarray[Any, np.dtype[np.int64]]:
        kinds, idx = self._order
        t = np.empty(len(kinds), dtype=np.int64)
        for kind, col, table in (
            (KIND_T, "t", self.trades), (KIND_A, "e", self.seconds), (KIND_AM, "e", self.minutes)
        ):
            mask = kinds == kind
            t[mask] = table[col].to_numpy(dtype=np.int64)[idx[mask]]
        return t

    def _merge(self) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        parts = [
            (self.trades["t"].to_numpy(dtype=np.int64), KIND_T),
            (self.seconds["e"].to_numpy(dtype=np.int64), KIND_A),
            (self.minutes["e"].to_numpy(dtype=np.int64), KIND_AM),
        ]
        times = np.concatenate([t for t, _ in parts])
        kinds = np.concatenate([np.full(len(t), k, np.int8) for t, k in parts])
        idx = np.concatenate([np.arange(len(t)) for t, _ in parts])
        order = np.lexsort((idx, kinds, times))
        return kinds[order], idx[order]

    def symbols(self) -> list[str]:
        """Every symbol on the tape."""
        syms = set(self.trades["sym"].unique()) | set(self.minutes["sym"].unique())
        return sorted(str(s) for s in syms)

    def first_prices(self) -> dict[str, float]:
        """The first trade (or bar open) price of each symbol."""
        out: dict[str, float] = {}
        if len(self.minutes):
            out.update(self.minutes.groupby("sym", sort=False)["o"].first().to_dict())
        if len(self.trades):
            out.update(self.trades.groupby("sym", sort=False)["p"].first().to_dict())
        return {str(k): float(v) for k, v in out.items()}

    def __len__(self) -> int:
        return len(self._order[0])

    def n_trades(self) -> int:
        """Trades on the tape."""
        return len(self.trades)

    def ticks(self, group_ms: int, max_events: int, start_ms: int = 0) -> Iterator[Tick]:
        """Frames in time order: events of one `group_ms` bucket (0: any), ≤ `max_events`,
        from the first event at or after `start_ms`."""
        tick: Tick | None = None
        bucket = -1
        first = int(np.searchsorted(self._t, start_ms, side="left")) if start_ms else 0
        for t, chan, sym, part in self._events(first):
            b = t // group_ms if group_ms > 0 else 0
            if tick is None or b != bucket or len(tick) >= max_events:
                if tick is not None:
                    yield tick
                tick = Tick(t)
                bucket = b
            tick.t = t
            tick.chans.append(chan)
            tick.syms.append(sym)
            tick.parts.append(part)
        if tick is not None:
            yield tick

    def _events(self, first: int = 0) -> Iterator[tuple[int, str, str, bytes]]:
        kinds, idx = self._order
        for lo in range(first, len(kinds), ENCODE_CHUNK):
            k_chunk = kinds[lo : lo + ENCODE_CHUNK]
            i_chunk = idx[lo : lo + ENCODE_CHUNK]
            yield from self._encode_chunk(k_chunk, i_chunk)

    def _encode_chunk(
        self, kinds: np.ndarray[Any, Any], idx: np.ndarray[Any, Any]
    ) -> Iterator[tuple[int, str, str, bytes]]:
        encoded: dict[int, Iterator[tuple[int, str, bytes]]] = {}
        for kind in (KIND_T, KIND_A, KIND_AM):
            rows = idx[kinds == kind]
            if len(rows):
                encoded[kind] = iter(self._encode_rows(kind, rows))
        for kind in kinds.tolist():
            t, sym, part = next(encoded[kind])
            yield t, CHANNELS[kind], sym, part

    def _encode_rows(self, kind: int, rows: np.ndarray[Any, Any]) -> list[tuple[int, str, bytes]]:
        if kind == KIND_T:
            return self._encode_trades(rows)
        table = self.seconds if kind == KIND_A else self.minutes
        cls = WireAgg if kind == KIND_A else WireMinuteAgg
        sub = table.iloc[rows]
        cols = {c: sub[c].tolist() for c in table.columns}
        out = []
        for k in range(len(rows)):
            bar = cls(
                sym=cols["sym"][k], v=int(cols["v"][k]), av=int(cols["av"][k]),
                vw=round(cols["vw"][k], 4), o=cols["o"][k], c=cols["c"][k], h=cols["h"][k],
                l=cols["l"][k], a=round(cols["a"][k], 4), z=int(cols["z"][k]),
                s=int(cols["s"][k]), e=int(cols["e"][k]), op=float(cols["op"][k]) or None,
            )
            out.append((bar.e, bar.sym, _encode(bar)))
        return out

    def _encode_trades(self, rows: np.ndarray[Any, Any]) -> list[tuple[int, str, bytes]]:
        sub = self.trades.iloc[rows]
        sym, t, p, s = (sub[c].tolist() for c in ("sym", "t", "p", "s"))
        x, c, z, q = (sub[col].tolist() for col in ("x", "c", "z", "q"))
        conds = self.cond_tuples
        out = []
        for k in range(len(rows)):
            trf = x[k] == FINRA_ID
            ev = WireTrade(
                sym=sym[k], i=str(q[k]), x=x[k], p=p[k], s=int(s[k]), t=t[k], q=q[k], z=z[k],
                c=conds[c[k]], trfi=TRF_NASDAQ_CARTERET if trf else None,
                trft=t[k] if trf else None,
            )
            out.append((t[k], sym[k], _encode(ev)))
        return out


def _recorded_minutes(df: pd.DataFrame) -> pd.DataFrame:
    """Recorded minute bars (Lean, Alpha Vantage) as AM rows."""
    bars = df.copy()
    bars["vw"] = (bars["o"] + bars["h"] + bars["l"] + bars["c"]) / 4
    bars["day"] = [local_date(int(x)) for x in bars["start"]]
    bars = bars.rename(columns={"start": "s", "end": "e"})
    cum = bars.groupby(["sym", "day"], sort=False)
    bars["av"] = cum["v"].cumsum()
    bars["a"] = (bars["vw"] * bars["v"]).groupby([bars["sym"], bars["day"]]).cumsum() / bars[
        "av"
    ].where(bars["av"] > 0, 1)
    bars["z"] = 0
    bars["op"] = _official_open(bars)
    return bars[["sym", "s", "e", "o", "h", "l", "c", "v", "vw", "av", "a", "z", "op"]]


# -- the tape of our own recordings -------------------------------------------------------


class FrameTape:
    """A `tickstock record` file: its data frames, byte for byte, paced by `recv_ms`."""

    def __init__(self, files: Sequence[str | Path], *, stats: ReadStats | None = None) -> None:
        self.stats = stats if stats is not None else ReadStats()
        self.files = [Path(f) for f in files]
        first = last = 0
        syms: set[str] = set()
        prices: dict[str, float] = {}
        for tick in self.ticks(0, 0):
            first = first or tick.t
            last = tick.t
            syms.update(tick.syms)
            for chan, sym, part in zip(tick.chans, tick.syms, tick.parts, strict=True):
                if chan == "T" and sym not in prices:
                    with contextlib.suppress(msgspec.DecodeError):
                        message = message_decoder.decode(part)
                        if isinstance(message, PolygonTrade):
                            prices[sym] = message.p
        self.first_t, self.last_t = first, last
        self._symbols = sorted(s for s in syms if s)
        self._prices = prices

    def symbols(self) -> list[str]:
        """Every symbol in the recording."""
        return self._symbols

    def first_prices(self) -> dict[str, float]:
        """Not known without decoding prices: empty (the REST stub then reports none)."""
        return dict(self._prices)

    def ticks(self, group_ms: int, max_events: int, start_ms: int = 0) -> Iterator[Tick]:
        """One tick per recorded data frame (recordings keep their own framing)."""
        for path in self.files:
            for rec in iter_recording(path, self.stats):
                if rec.recv_ms < start_ms:
                    continue
                tick = frame_tick(rec.recv_ms, rec.frame)
                if tick is not None:
                    yield tick


def frame_tick(recv_ms: int, frame: str) -> Tick | None:
    """A recorded frame as a tick; status-only frames give None (the server makes its own)."""
    data = frame.encode()
    tick = Tick(recv_ms, verbatim=data)
    try:
        raws = raw_list_decoder.decode(data)
    except msgspec.DecodeError:
        return tick  # unparseable: replayed as-is to every subscriber
    for raw in raws:
        try:
            head = event_head_decoder.decode(raw)
        except msgspec.DecodeError:
            head = EventHead()
        if head.ev == "status":
            continue
        tick.chans.append(head.ev)
        tick.syms.append(head.sym or head.T)
        tick.parts.append(bytes(raw))
    return tick if tick.parts else None


_CSV_NAME = re.compile(r"\.csv(\.gz)?$")


def open_tape(
    files: Sequence[str | Path], *, max_trades: int | None = None,
    channels: Sequence[str] = CHANNELS,
) -> EventTape | FrameTape:
    """The tape for `files`: all CSV recordings, or all jsonl recordings (not mixed)."""
    if not files:
        raise ValueError("no recorded files given")
    kinds = {detect_format(f) == "polygon_jsonl" for f in files}
    if kinds == {True}:
        return FrameTape(files)
    if kinds == {False}:
        return EventTape(files, max_trades=max_trades, channels=channels)
    raise ValueError("replay either jsonl recordings or CSV files, not both at once")
