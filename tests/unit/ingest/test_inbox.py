"""The inbox between a source and the ingest: everything waiting in one take, bounded by rows."""

from __future__ import annotations

import asyncio

from actors.ingest.inbox import Inbox


class Rows(list[int]):
    """A stand-in batch: its length is its row count."""


async def test_take_returns_everything_waiting_in_order() -> None:
    inbox: Inbox[Rows] = Inbox(max_rows=100)
    for n in (3, 1, 2):
        await inbox.put(Rows(range(n)))
    assert inbox.rows == 6
    assert [len(b) for b in await inbox.take(1.0) or []] == [3, 1, 2]
    assert inbox.rows == 0


async def test_take_waits_for_the_first_batch_then_returns_at_once() -> None:
    inbox: Inbox[Rows] = Inbox(max_rows=100)
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, lambda: loop.create_task(inbox.put(Rows([1]))))
    started = loop.time()
    got = await inbox.take(5.0)
    assert got == [Rows([1])]
    assert loop.time() - started < 2.0  # woken by the put, not by the timeout


async def test_take_times_out_empty_and_ends_after_close() -> None:
    inbox: Inbox[Rows] = Inbox(max_rows=100)
    assert await inbox.take(0.01) == []
    await inbox.put(Rows([1, 2]))
    inbox.close()
    assert await inbox.take(0.01) == [Rows([1, 2])]  # what is left comes first
    assert await inbox.take(0.01) is None


async def test_a_full_inbox_blocks_the_producer_until_taken() -> None:
    inbox: Inbox[Rows] = Inbox(max_rows=4)
    await inbox.put(Rows(range(3)))
    await inbox.put(Rows(range(3)))  # one batch always fits; now 6 >= 4 rows wait
    blocked = asyncio.ensure_future(inbox.put(Rows([9])))
    await asyncio.sleep(0.02)
    assert not blocked.done()
    assert len(await inbox.take(1.0) or []) == 2
    await asyncio.wait_for(blocked, 1.0)
    assert await inbox.take(1.0) == [Rows([9])]
