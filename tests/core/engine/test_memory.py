"""HeapTrim: after a burst of ends at once, after a trickle at most once a quiet period."""

from __future__ import annotations

import gc

from hookcast.engine.memory import HeapTrim


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_burst_is_due_at_once_a_trickle_once_a_quiet_period() -> None:
    clock = Clock()
    heap = HeapTrim(burst=3, quiet=60, clock=clock)
    assert not heap.due
    heap.freed()
    assert not heap.due  # one end: wait for the quiet period
    clock.now = 60
    assert heap.due
    await heap.collect()
    assert not heap.due and heap.trims == 1
    for _ in range(3):
        heap.freed()
    assert heap.due  # a burst: at the next tick


async def test_collect_frees_cyclic_garbage() -> None:
    class Node:
        def __init__(self) -> None:
            self.me = self

    gc.disable()
    try:
        for _ in range(1000):
            Node()
        before = sum(isinstance(o, Node) for o in gc.get_objects())
        await HeapTrim().collect()
        after = sum(isinstance(o, Node) for o in gc.get_objects())
    finally:
        gc.enable()
    assert before >= 1000 and after == 0
