"""Benchmark load: real recorded trades re-labelled over N synthetic tickers (derived data).

The recordings have six symbols (AlgoSeek AIG, BAC, IBM, SPY; LOBSTER AAPL, AMZN), while the
e2e, memory and mixed-detect benchmarks need thousands. `SyntheticMarket` derives them:
ticker i replays the trades of recorded file i mod F from its own random offset, its prices
scaled to its own level (log-uniform $2-$400, so every HighLow price tier occurs); sizes,
exchanges, tapes and sale conditions are the recorded ones. Which ticker trades next follows
a Pareto activity profile (a few very active names, a long tail), and event time advances by
1/rate s per trade from a regular-session start, so no run crosses a session boundary.

`MarketTape` serves such a market through `ReplayServer(tape=...)`, as Polygon `T` frames,
and remembers when each frame left the tape (for tick-to-client latency).
"""

from __future__ import annotations

import datetime as dt
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from actors.market.sessions import ET
from actors.sources.readers import ReadStats
from cluster.replay.tape import EventTape, Tick
from schemas.batches import TradeBatch

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]

# A regular session with no holiday nearby: runs start 30 min after the open.
DEFAULT_START_MS = int(dt.datetime(2024, 3, 13, 10, 0, tzinfo=ET).timestamp() * 1000)
TRADE_GLOBS = ("algoseek_lean/tick/*/*_Trade_Tick.csv.gz", "lobster_2012-06-21/*_message_1.csv.gz")
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_encode = msgspec.json.Encoder().encode


def trade_files(data_dir: Path) -> list[Path]:
    """Every recorded trade-tick file of the real data set (sorted)."""
    return sorted(p for pattern in TRADE_GLOBS for p in data_dir.glob(pattern))


def synthetic_symbols(n: int) -> list[str]:
    """`n` distinct valid symbols, `XAAAA`, `XAAAB`, ... (no real listing starts this way)."""
    out = []
    for i in range(n):
        letters = []
        for _ in range(4):
            i, r = divmod(i, 26)
            letters.append(_LETTERS[r])
        out.append("X" + "".join(reversed(letters)))
    return out


@dataclass(frozen=True)
class RealTrades:
    """Recorded trades of several files, concatenated; file f is rows base[f]:base[f]+length[f]."""

    p: F64
    s: F64
    x: I64  # Polygon exchange id
    z: I64  # tape
    c: I64  # index into `conditions`
    flags: U8
    base: I64
    length: I64
    conditions: list[tuple[int, ...]]
    names: list[str]

    def __len__(self) -> int:
        return len(self.p)


def load_real_trades(files: Sequence[Path], max_rows_per_file: int | None = None) -> RealTrades:
    """Load trade-tick files (LOBSTER, AlgoSeek) with their wire fields."""
    cols: dict[str, list[np.ndarray[Any, Any]]] = {k: [] for k in ("p", "s", "x", "z", "c", "f")}
    conditions: list[tuple[int, ...]] = []
    names: list[str] = []
    for path in files:
        tape = EventTape([path], max_trades=max_rows_per_file, channels=("T",))
        df = tape.trades
        if df.empty:
            continue
        remap = np.array([_cond_index(conditions, c) for c in tape.cond_tuples], dtype=np.int64)
        for key, col in (("p", "p"), ("s", "s"), ("x", "x"), ("z", "z"), ("f", "flags")):
            cols[key].append(df[col].to_numpy())
        cols["c"].append(remap[df["c"].to_numpy(dtype=np.int64)])
        names.append(path.name)
    if not names:
        raise ValueError("no recorded trades found in the given files")
    length = np.array([len(a) for a in cols["p"]], dtype=np.int64)
    return RealTrades(
        p=np.concatenate(cols["p"]).astype(np.float64),
        s=np.concatenate(cols["s"]).astype(np.float64),
        x=np.concatenate(cols["x"]).astype(np.int64),
        z=np.concatenate(cols["z"]).astype(np.int64),
        c=np.concatenate(cols["c"]),
        flags=np.concatenate(cols["f"]).astype(np.uint8),
        base=np.concatenate([[0], np.cumsum(length)[:-1]]).astype(np.int64),
        length=length,
        conditions=conditions,
        names=names,
    )


def _cond_index(table: list[tuple[int, ...]], cond: tuple[int, ...]) -> int:
    if cond not in table:
        table.append(cond)
    return table.index(cond)


@dataclass(frozen=True)
class TradeRows:
    """A chunk of derived trades (columnar): ticker index, wire fields, flags, sequence."""

    ticker: I64
    t: I64
    p: F64
    s: F64
    x: I64
    z: I64
    c: I64
    flags: U8
    q: I64

    def __len__(self) -> int:
        return len(self.t)


class SyntheticMarket:
    """Real trades re-labelled over `tickers` synthetic symbols (see the module docstring)."""

    def __init__(
        self, real: RealTrades, tickers: int, rate: float, *, start_ms: int = DEFAULT_START_MS,
        seed: int = 7,
    ) -> None:
        if tickers < 1 or rate <= 0:
            raise ValueError("need at least one ticker and a positive event-time rate")
        rng = np.random.default_rng(seed)
        self.real = real
        self.symbols = synthetic_symbols(tickers)
        self.rate = rate
        self.start_ms = start_ms
        self._rng = rng
        self._source = np.arange(tickers) % len(real.length)
        self._offset = (rng.random(tickers) * real.length[self._source]).astype(np.int64)
        first = real.p[real.base[self._source] + self._offset]
        target = np.exp(rng.uniform(np.log(2.0), np.log(400.0), tickers))
        self._scale = target / first
        activity = np.minimum(rng.pareto(1.2, tickers) + 1, 50.0)
        self._weights = activity / activity.sum()
        self._cursor = np.zeros(tickers, dtype=np.int64)
        self.emitted = 0

    @property
    def tickers(self) -> int:
        return len(self.symbols)

    def first_prices(self) -> dict[str, float]:
        """Each ticker's first price (the REST stub's previous close)."""
        rows = self.real.base[self._source] + self._offset
        prices = _round_prices(self.real.p[rows] * self._scale)
        return dict(zip(self.symbols, prices.tolist(), strict=True))

    def chunk(self, n: int) -> TradeRows:
        """The next `n` trades, in event-time order."""
        idx = self._rng.choice(self.tickers, size=n, p=self._weights)
        counts = np.bincount(idx, minlength=self.tickers)
        order = np.argsort(idx, kind="stable")
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)
        step = self._cursor[idx] + rank
        self._cursor += counts
        src = self._source[idx]
        row = self.real.base[src] + (self._offset[idx] + step) % self.real.length[src]
        k = np.arange(self.emitted, self.emitted + n, dtype=np.float64)
        self.emitted += n
        r = self.real
        return TradeRows(
            ticker=idx, t=self.start_ms + np.floor(k * (1000.0 / self.rate)).astype(np.int64),
            p=_round_prices(r.p[row] * self._scale[idx]), s=r.s[row], x=r.x[row], z=r.z[row],
            c=r.c[row], flags=r.flags[row], q=k.astype(np.int64) + 1,
        )

    def trade_batch(self, rows: TradeRows) -> TradeBatch:
        """The rows as the ingest would ship them (flags from the recorded conditions)."""
        sym = np.asarray(self.symbols, dtype="<U12")[rows.ticker]
        return TradeBatch(sym, rows.t, rows.p, rows.s, rows.flags, rows.q - 1)

    def wire_dicts(self, rows: TradeRows) -> list[dict[str, Any]]:
        """Each row as one Polygon `T` event (Polygon's field names, as plain data)."""
        conds = self.real.conditions
        syms = self.symbols
        out = []
        cols = zip(
            rows.ticker.tolist(), rows.t.tolist(), rows.p.tolist(), rows.s.tolist(),
            rows.x.tolist(), rows.z.tolist(), rows.c.tolist(), rows.q.tolist(), strict=True,
        )
        for i, t, p, s, x, z, c, q in cols:
            event: dict[str, Any] = {
                "ev": "T", "sym": syms[i], "i": str(q), "x": x, "p": p, "s": int(s), "t": t,
                "q": q, "z": z,
            }
            if conds[c]:
                event["c"] = conds[c]
            out.append(event)
        return out

    def frames(self, rows: TradeRows, events_per_frame: int) -> list[bytes]:
        """The rows as Polygon frames (JSON arrays) of `events_per_frame` events."""
        events = self.wire_dicts(rows)
        return [_encode(events[i : i + events_per_frame])
                for i in range(0, len(events), events_per_frame)]


def _round_prices(p: F64) -> F64:
    """Cents at $1 and above, 1/100 cent below (as quoted)."""
    return np.where(p >= 1.0, np.round(p, 2), np.round(p, 4))


class MarketTape:
    """A `SyntheticMarket` as a replay-server tape of `T` frames (the `Tape` protocol).

    Every frame is encoded up front (`total_trades` trades), so the load generator spends no
    CPU while the benchmark measures. Frames are sent verbatim: the subscription must cover
    every symbol (as the e2e system's does), since per-event parts are not kept.

    The tape ends after its trades or `max_wall_s` seconds after its first frame. `sent_t` /
    `sent_wall` record, per frame, its last event time and the wall time (Unix s) at which
    the server took the *next* frame, i.e. when this one had been handed to the connection
    (at speed 0: after the backpressure wait). `first_wall` is when the server started.
    """

    def __init__(
        self, market: SyntheticMarket, total_trades: int, *, group_ms: int,
        events_per_frame: int, max_wall_s: float | None = None,
    ) -> None:
        self.market = market
        self.stats = ReadStats()
        self.group_ms = group_ms
        self.events_per_frame = events_per_frame
        self._frames = encode_frames(market, total_trades, group_ms, events_per_frame)
        self.first_t = market.start_ms
        self.last_t = self._frames[-1][0] if self._frames else market.start_ms
        self._max_wall_s = max_wall_s
        self.sent_t: list[int] = []
        self.sent_wall: list[float] = []
        self.first_wall = 0.0
        self.trades = 0

    def symbols(self) -> list[str]:
        return list(self.market.symbols)

    def first_prices(self) -> dict[str, float]:
        return self.market.first_prices()

    def ticks(self, group_ms: int, max_events: int) -> Iterator[Tick]:
        """The precomputed frames (the server must ask for the framing they were cut with)."""
        if (group_ms, max_events) != (self.group_ms, self.events_per_frame):
            raise ValueError(
                f"tape framed for group_ms={self.group_ms}, max_events={self.events_per_frame}"
                f"; the server asked for {group_ms}, {max_events}"
            )
        symbols = self.market.symbols
        self.first_wall = time.time()  # the server takes its pacing origin just before this
        for t, tickers, packed in self._frames:
            self._mark(t)
            n = len(tickers)
            self.trades += n
            syms = [symbols[i] for i in tickers.tolist()]
            yield Tick(t, ["T"] * n, syms, [b""] * n, zlib.decompress(packed))
            if self._max_wall_s is not None and time.time() - self.first_wall >= self._max_wall_s:
                break
        self._mark(0)

    def _mark(self, t: int) -> None:
        if self.sent_t:
            self.sent_wall.append(time.time())
        if t:
            self.sent_t.append(t)


# A frame: its last event time, the ticker index of each event, the frame JSON zlib-packed
# (JSON packs ~5x, so a 60 s tape at 250,000 trades/s holds ~350 MB instead of ~1.7 GB).
Frame = tuple[int, npt.NDArray[np.int16], bytes]  # (< 32,768 tickers)


def encode_frames(
    market: SyntheticMarket, total: int, group_ms: int, max_events: int, chunk_rows: int = 20_000
) -> list[Frame]:
    """`total` trades of `market` as Polygon frames, cut as the replay server would."""
    if market.tickers >= 2**15:
        raise ValueError("a tape holds at most 32,767 tickers (int16 indices)")
    out: list[Frame] = []
    for done in range(0, total, chunk_rows):
        rows = market.chunk(min(chunk_rows, total - done))
        events = market.wire_dicts(rows)
        tickers: npt.NDArray[np.int16] = rows.ticker.astype(np.int16)
        for lo, hi in _cuts(rows.t, group_ms, max(max_events, 1)):
            packed = zlib.compress(_encode(events[lo:hi]), 1)
            out.append((int(rows.t[hi - 1]), tickers[lo:hi].copy(), packed))
    return out


def _cuts(t: I64, group_ms: int, max_events: int) -> list[tuple[int, int]]:
    """Row ranges of consecutive frames: same `group_ms` bucket, at most `max_events` rows."""
    n = len(t)
    if group_ms > 0:
        bucket = t // group_ms
        edges = [0, *(np.flatnonzero(bucket[1:] != bucket[:-1]) + 1).tolist(), n]
    else:
        edges = [0, n]
    out: list[tuple[int, int]] = []
    for a, b in pairwise(edges):
        out.extend((lo, min(lo + max_events, b)) for lo in range(a, b, max_events))
    return out
