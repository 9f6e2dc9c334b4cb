"""The grouped (many-ticker) engine against the per-ticker engine it replaced, on real data.

`tests/reference/per_ticker/` is the engine as it was before it worked on many tickers at once.
Both engines get the same batches and must give exactly the same events (every field, bit for
bit), analytics deltas after every batch, rejects and final ticker states, with every detector
on. Inputs, in the shape a live shard sees them (8,192-row batches, many tickers each):

- the four AlgoSeek symbols of 2013-10-07 (SPY, IBM, BAC, AIG) merged by event time, from
  04:00 to 20:00 (every session boundary), with a snapshot/restore half way;
- an Alpha Vantage day: ~280 symbols of minute bars (`process_bars`);
- recorded trades re-labelled over 3,000 synthetic tickers (`bench/loadgen.py`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from actors.detection.engine import DetectorEngine
from actors.sources.readers import read_file
from bench.loadgen import SyntheticMarket, load_real_trades, trade_files
from config.detection import DetectionConfig
from schemas.batches import BarBatch, TradeBatch
from tests.reference.per_ticker.detector_engine import DetectorEngine as PerTickerEngine

pytestmark = pytest.mark.slow

BATCH_ROWS = 8_192
ALGOSEEK = [f"algoseek_lean/tick/{sym}/20131007_{sym}_Trade_Tick.csv.gz"
            for sym in ("spy", "ibm", "bac", "aig")]


def merged_by_time(paths: Iterable[Path]) -> TradeBatch:
    """The trades of several files as one stream ordered by event time, re-sequenced."""
    whole = TradeBatch.concat(b for p in paths for b in read_file(p) if isinstance(b, TradeBatch))
    merged = whole.take(np.argsort(whole.t, kind="stable"))
    return TradeBatch(merged.sym, merged.t, merged.p, merged.s, merged.flags,
                      np.arange(len(merged), dtype=np.int64))


def batches_of(stream: TradeBatch, rows: int = BATCH_ROWS) -> list[TradeBatch]:
    return [stream.take(slice(a, a + rows)) for a in range(0, len(stream), rows)]


class Pair:
    """Both engines over the same input; every output compared as it comes."""

    def __init__(self, config: DetectionConfig | None = None) -> None:
        self.config = config or DetectionConfig()
        self.new = DetectorEngine(self.config)
        self.old = PerTickerEngine(self.config)
        self.events: list[Any] = []
        self.tickers: set[str] = set()

    def feed(self, batch: TradeBatch | BarBatch) -> None:
        self.tickers |= set(batch.sym.tolist())
        if isinstance(batch, TradeBatch):
            got, expected = self.new.process_trades(batch), self.old.process_trades(batch)
        else:
            got, expected = self.new.process_bars(batch), self.old.process_bars(batch)
        assert got == expected
        self.events += got
        assert self.new.take_analytics() == self.old.take_analytics()

    def restart(self) -> None:
        """Continue the current engine from its own snapshot."""
        self.new = DetectorEngine.restore(self.config, 0, self.new.snapshot())

    def finish(self) -> None:
        got, expected = self.new.flush(), self.old.flush()
        assert got == expected
        self.events += got
        assert self.new.take_analytics() == self.old.take_analytics()
        assert self.new.rejected() == self.old.rejected()
        assert (self.new.watermark, self.new.last_seq) == (self.old.watermark, self.old.last_seq)
        for ticker in sorted(self.tickers):
            assert self.new.ticker_state(ticker) == self.old.ticker_state(ticker), ticker


def test_four_algoseek_symbols_merged_by_time(real_data_dir: Path) -> None:
    batches = batches_of(merged_by_time(real_data_dir / p for p in ALGOSEEK))
    pair = Pair()
    for k, batch in enumerate(batches):
        pair.feed(batch)
        if k == len(batches) // 2:
            pair.restart()
    pair.finish()
    assert {e.session for e in pair.events} >= {"PRE", "REGULAR", "AFTER"}
    assert {e.kind for e in pair.events} >= {"high", "low", "trend"}
    assert {e.ticker for e in pair.events} == {"SPY", "IBM", "BAC", "AIG"}


def test_an_alpha_vantage_day_of_minute_bars(real_data_dir: Path) -> None:
    path = real_data_dir / "alphavantage_1min_2018/2018-03-12.csv.gz"
    pair = Pair()
    for batch in read_file(path):
        pair.feed(batch)
    pair.finish()
    assert len(pair.tickers) > 200
    assert len({e.ticker for e in pair.events}) > 100


def test_recorded_trades_over_3000_tickers(real_data_dir: Path) -> None:
    files = trade_files(real_data_dir)
    market = SyntheticMarket(load_real_trades(files, max_rows_per_file=40_000), 3_000, 200_000.0)
    pair = Pair()
    for _ in range(12):
        pair.feed(market.trade_batch(market.chunk(BATCH_ROWS)))
    pair.finish()
    assert len(pair.tickers) > 2_500
    assert len({e.ticker for e in pair.events}) > 100
