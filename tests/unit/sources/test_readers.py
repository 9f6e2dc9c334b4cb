"""Recorded-data readers: formats, real-file counts, and bad rows counted by reason."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from actors.sources.readers import ReadStats, UnknownFormatError, detect_format, read_file
from schemas.batches import FLAG_FORM_T, FLAGS_REGULAR, BarBatch, TradeBatch

LOBSTER = "lobster_2012-06-21/AMZN_2012-06-21_34200000_57600000_message_1.csv.gz"
ALGOSEEK = "algoseek_lean/tick/ibm/20131007_ibm_Trade_Tick.csv.gz"


def rows(path: Path, stats: ReadStats | None = None) -> list[TradeBatch | BarBatch]:
    return list(read_file(path, stats))


def test_formats_by_name_and_content(real_data_dir: Path, tmp_path: Path) -> None:
    assert detect_format(real_data_dir / LOBSTER) == "lobster"
    assert detect_format(real_data_dir / ALGOSEEK) == "algoseek_tick"
    minute = "algoseek_lean/minute/goog/20151224_goog_minute_trade.csv.gz"
    assert detect_format(real_data_dir / minute) == "lean_minute"
    av = real_data_dir / "alphavantage_1min_2018/2018-02-16.csv.gz"
    assert detect_format(av) == "alphavantage"
    assert detect_format(tmp_path / "x.jsonl.gz") == "polygon_jsonl"
    other = tmp_path / "notes.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(UnknownFormatError, match="unrecognised"):
        detect_format(other)


def test_lobster_executions_only_in_time_order(real_data_dir: Path) -> None:
    stats = ReadStats()
    batches = rows(real_data_dir / LOBSTER, stats)
    trades = TradeBatch.concat(b for b in batches if isinstance(b, TradeBatch))
    assert len(trades) == 11_419  # 8,974 visible + 2,445 hidden executions
    assert stats.skipped["order_book_message"] == 57_515 - 11_419
    assert np.all(np.diff(trades.t) >= 0)
    assert set(trades.sym.tolist()) == {"AMZN"}
    assert 200 < trades.p.min() < trades.p.max() < 250


def test_algoseek_conditions_become_flags(real_data_dir: Path) -> None:
    trades = TradeBatch.concat(rows(real_data_dir / ALGOSEEK))  # type: ignore[arg-type]
    pre = trades.t < trades.t[0] - trades.t[0] % 86_400_000 + 13 * 3_600_000 + 30 * 60_000
    assert np.all(trades.flags[pre] & FLAG_FORM_T)  # extended-hours prints carry Form T
    assert np.mean(trades.flags[~pre] == FLAGS_REGULAR) > 0.9


def test_bad_rows_counted_by_reason(tmp_path: Path) -> None:
    path = tmp_path / "20131007_ibm_Trade_Tick.csv"
    path.write_text(
        "34200000,1750000,100,N,1,0\n"      # good
        "34200001,0,100,N,1,0\n"            # price 0
        "34200002,-5,100,N,1,0\n"           # negative price
        "34200003,nan,100,N,1,0\n"          # NaN price
        "34200004,1750100,100,N\n"          # too few fields
        "abc,1750100,100,N,1,0\n"           # not a number
        "34200005,1750100,100,N,zz,0\n"     # bad condition field
        "34200006,1750100,100,N,1,1\n"      # flagged suspicious
        "34200007,1750200,200,N,1,0"        # good, no trailing newline
    )
    stats = ReadStats()
    trades = TradeBatch.concat(rows(path, stats))  # type: ignore[arg-type]
    assert trades.p.tolist() == [175.0, 175.02]
    assert stats.rows == 9
    assert dict(stats.rejected) == {
        "bad_price": 3, "malformed_row": 2, "bad_condition": 1, "suspicious": 1,
    }


def test_jsonl_recording_with_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl.gz"
    frames = [
        [{"ev": "T", "sym": "AAPL", "p": 100.0, "s": 10, "t": 1_000, "c": [12]}],
        [{"ev": "AM", "sym": "AAPL", "o": 1, "h": 2, "l": 0.5, "c": 1.5, "v": 100,
          "s": 0, "e": 60_000}],
    ]
    with gzip.open(path, "wt") as fh:
        for i, frame in enumerate(frames):
            fh.write(json.dumps({"recv_ms": i, "frame": json.dumps(frame)}) + "\n")
        fh.write("not json\n")
        fh.write(json.dumps({"recv_ms": 9, "frame": "[{bad"}) + "\n")
    stats = ReadStats()
    out = rows(path, stats)
    assert [type(b).__name__ for b in out] == ["TradeBatch", "BarBatch"]
    assert out[0].flags.tolist() == [FLAGS_REGULAR | FLAG_FORM_T]
    assert dict(stats.rejected) == {"malformed_line": 1, "malformed_frame": 1}
