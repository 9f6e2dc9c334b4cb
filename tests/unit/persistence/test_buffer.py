"""Pure persistence logic: bounded buffers, row conversion, retry policy (fake sink, no DB)."""

from __future__ import annotations

import datetime as dt
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from actors.persistence.actor import PersistenceActor
from actors.persistence.backoff import Backoff
from actors.persistence.buffer import (
    LatestRows,
    PersistenceBuffer,
    RowQueue,
    SessionLookup,
    event_row,
)
from config.settings import StorageConfig
from schemas.events import Event
from tests.fakes import FakeSink

# 2024-03-15 10:00 America/New_York (REGULAR), in Unix ms.
T0 = 1_710_511_200_000


def event(i: int, **fields: Any) -> Event:
    base: dict[str, Any] = {
        "id": f"AAPL:high:{T0 + i}:{i}",
        "ticker": "AAPL",
        "kind": "high",
        "direction": "up",
        "price": 100.0,
        "time": T0 + i,
    }
    return Event(**(base | fields))


def test_row_queue_drops_the_oldest_and_counts() -> None:
    dropped: Counter[str] = Counter()
    queue: RowQueue[int] = RowQueue(5, dropped, "full")
    queue.extend(range(8))
    assert dropped == {"full": 3}
    assert queue.take(2) == [3, 4]
    queue.extend([8, 9])
    queue.restore([3, 4])  # a failed write comes back first, and is the oldest again
    assert dropped == {"full": 5}
    assert queue.take(10) == [5, 6, 7, 8, 9]


def test_latest_rows_keep_the_newest_per_key() -> None:
    dropped: Counter[str] = Counter()
    rows = LatestRows(2, dropped, "full")
    day = dt.date(2024, 3, 15)
    rows.put({"ticker": "A", "session_date": day, "session": "REGULAR", "high_count": 1})
    rows.put({"ticker": "B", "session_date": day, "session": "REGULAR", "high_count": 1})
    rows.put({"ticker": "A", "session_date": day, "session": "REGULAR", "high_count": 2})
    assert len(rows) == 2
    assert not dropped
    taken = rows.take(2)
    assert [(r["ticker"], r["high_count"]) for r in taken] == [("B", 1), ("A", 2)]
    rows.put({"ticker": "A", "session_date": day, "session": "REGULAR", "high_count": 3})
    rows.restore(taken)  # B comes back; the stale A must not replace the newer A
    assert sorted((r["ticker"], r["high_count"]) for r in rows.take(5)) == [("A", 3), ("B", 1)]
    for t in "CDE":
        rows.put({"ticker": t, "session_date": day, "session": "PRE"})
    assert dropped == {"full": 1}


def test_event_row_derives_session_and_date_from_event_time() -> None:
    clock = SessionLookup()
    regular = event_row(event(0, vwap=99.5, significance=40.0), clock)
    assert regular[6:8] == ("REGULAR", dt.date(2024, 3, 15))
    assert json.loads(regular[11] or "") == {"vwap": 99.5, "significance": 40.0}
    # 22:00 ET on the 15th is 02:00 UTC on the 16th: still the 15th's (closed) session.
    late = event_row(event(12 * 3_600_000), clock)
    assert late[6:8] == ("CLOSED", dt.date(2024, 3, 15))
    assert late[11] is None
    assert event_row(event(0, session="PRE"), clock)[6] == "PRE"  # the shard's session wins


def test_invalid_input_is_rejected_with_reasons() -> None:
    buffer = PersistenceBuffer(100)
    bad = [
        event(1, price=float("nan")),
        event(2, price=-1.0),
        event(3, kind="spike"),
        event(4, ticker="X" * 17),
        event(5, id=""),
        event(6, time=0),
        event(7, volume=float("inf")),
        {"ticker": "AAPL"},
        "not an event",
    ]
    assert buffer.add_events([event(0), *bad, event(8)]) == 2
    assert buffer.rejected == {
        "event_bad_price": 2,
        "event_bad_kind": 1,
        "event_bad_ticker": 1,
        "event_bad_id": 1,
        "event_bad_time": 1,
        "event_not_finite": 1,
        "event_malformed": 2,
    }
    counts = [{"ticker": "A", "session_date": "2024-13-01", "session": "PRE"}, {"x": 1}]
    assert buffer.add_session_counts(counts) == 0
    assert buffer.rejected["session_count_malformed"] == 2


def test_backoff_grows_caps_and_resets() -> None:
    backoff = Backoff(0.5, 4.0, random.Random(1))
    delays = [backoff.next_delay() for _ in range(6)]
    caps = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert all(cap / 2 <= d <= cap for d, cap in zip(delays, caps, strict=True))
    backoff.reset()
    assert backoff.next_delay() <= 0.5


def connection_lost() -> Exception:
    return OperationalError("INSERT", {}, ConnectionRefusedError("refused"))


def bad_data() -> Exception:
    return IntegrityError("INSERT", {}, ValueError("constraint"))


def actor_with(sink: FakeSink, tmp_path: Path, **config: Any) -> PersistenceActor:
    settings = StorageConfig(flush_interval_s=60.0, **config)
    return PersistenceActor(f"sqlite:///{tmp_path / 'unused.db'}", settings, sink=sink)


async def test_connection_errors_keep_rows_until_the_database_returns(tmp_path: Path) -> None:
    sink = FakeSink([connection_lost()] * 5)
    actor = actor_with(sink, tmp_path, max_write_attempts=2)
    await actor.put_events([event(i) for i in range(10)])
    for _ in range(5):
        assert await actor.flush() is False
    stats = await actor.stats()
    assert stats["buffered"]["events"] == 10
    assert not stats["db_up"]
    assert stats["errors"] == 5
    assert "OperationalError" in stats["last_error"]
    assert await actor.flush() is True
    assert [r[0] for r in sink.rows["events"]] == [event(i).id for i in range(10)]
    assert (await actor.stats())["db_up"] is True
    await actor.close()


async def test_data_errors_drop_the_batch_after_max_attempts(tmp_path: Path) -> None:
    sink = FakeSink([bad_data(), bad_data()])
    actor = actor_with(sink, tmp_path, max_write_attempts=2, batch_rows=4)
    await actor.put_events([event(i) for i in range(6)])
    assert await actor.flush() is False  # attempt 1: rows kept
    assert await actor.flush() is False  # attempt 2: the failing batch of 4 is dropped
    assert await actor.flush() is True
    stats = await actor.stats()
    assert stats["dropped"] == {"events_write_error": 4}
    assert [r[0] for r in sink.rows["events"]] == [event(i).id for i in (4, 5)]
    await actor.close()


async def test_buffer_bound_applies_while_the_database_is_down(tmp_path: Path) -> None:
    sink = FakeSink([connection_lost()] * 3)
    actor = actor_with(sink, tmp_path, buffer_max_rows=5)
    await actor.put_events([event(i) for i in range(4)])
    assert await actor.flush() is False
    await actor.put_events([event(i) for i in range(4, 8)])
    assert await actor.flush() is False
    assert (await actor.stats())["dropped"] == {"events_buffer_full": 3}
    assert await actor.flush() is False
    assert await actor.flush() is True
    assert [r[0] for r in sink.rows["events"]] == [event(i).id for i in range(3, 8)]
    await actor.close()


@pytest.mark.parametrize("url", ["postgresql://u:hunter2@db:5432/x"])
def test_errors_never_show_the_password(url: str) -> None:
    from storage.database import describe_error

    text = describe_error(ConnectionError(f"could not connect to {url} (hunter2)"), url)
    assert "hunter2" not in text
    assert "u:***@db" in text


async def test_rows_left_at_close_are_counted(tmp_path: Path) -> None:
    sink = FakeSink([connection_lost()] * 2)
    actor = actor_with(sink, tmp_path)
    await actor.put_events([event(i) for i in range(3)])
    assert await actor.flush() is False
    await actor.close()  # its last flush fails too
    stats = await actor.stats()
    assert stats["dropped"] == {"events_unwritten_at_close": 3}
    assert stats["buffered_rows"] == 0
