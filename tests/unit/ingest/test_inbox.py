"""The inbox between a source and the ingest: batches gathered by rows or age, bounded."""

from __future__ import annotations

import asyncio

from actors.ingest.inbox import Inbox


class Rows(list[int]):
    """A stand-in batch: its length is its row count."""


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_everything_waiting_is_taken_once_enough_rows_gathered() -> None:
    inbox: Inbox[Rows] = Inbox(max_rows=100, min_rows=5, max_wait_s=60.0)
    for n in (3, 1, 2):
        await inbox.put(Rows(range(n)))
    assert inbox.rows == 6
    taken = await inbox.take(1.0)
    assert taken is not None
    assert [len(b) for b in taken.items] == [3, 1, 2]
    assert inbox.rows == 0


async def test_a_few_rows_wait_for_their_age_and_carry_their_arrival() -> None:
    clock = Clock()
    inbox: Inbox[Rows] = Inbox(max_rows=100, min_rows=50, max_wait_s=0.05, clock=clock)
    await inbox.put(Rows([1]))
    clock.now += 0.01
    await inbox.put(Rows([2]))
    taken = await inbox.take(0.0)
    assert taken is not None
    assert taken.items == []  # not due: too few rows, too young
    clock.now += 0.05
    taken = await inbox.take(0.0)
    assert taken is not None
    assert taken.items == [Rows([1]), Rows([2])]
    assert taken.arrived == 100.0  # the oldest row's arrival


async def test_take_wakes_when_the_rows_arrive_not_at_its_timeout() -> None:
    inbox: Inbox[Rows] = Inbox(max_rows=100, min_rows=2, max_wait_s=60.0)
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, lambda: loop.create_task(inbox.put(Rows([1, 2]))))
    started = loop.time()
    taken = await inbox.take(5.0)
    assert taken is not None
    assert taken.items == [Rows([1, 2])]
    assert loop.time() - started < 2.0


async def test_take_times_out_empty_and_ends_after_close() -> None:
    inbox: Inbox[Rows] = Inbox(max_rows=100, min_rows=10, max_wait_s=60.0)
    taken = await inbox.take(0.01)
    assert taken is not None
    assert taken.items == []
    await inbox.put(Rows([1, 2]))
    inbox.close()
    taken = await inbox.take(0.01)
    assert taken is not None
    assert taken.items == [Rows([1, 2])]  # what is left comes first, due or not
    assert await inbox.take(0.01) is None


async def test_a_full_inbox_blocks_the_producer_until_taken() -> None:
    inbox: Inbox[Rows] = Inbox(max_rows=4, min_rows=4, max_wait_s=60.0)
    await inbox.put(Rows(range(3)))
    await inbox.put(Rows(range(3)))  # one batch always fits; now 6 >= 4 rows wait
    blocked = asyncio.ensure_future(inbox.put(Rows([9])))
    await asyncio.sleep(0.02)
    assert not blocked.done()
    taken = await inbox.take(1.0)
    assert taken is not None
    assert len(taken.items) == 2
    await asyncio.wait_for(blocked, 1.0)
    inbox.close()
    taken = await inbox.take(1.0)
    assert taken is not None
    assert taken.items == [Rows([9])]
