# amaranth: UnusedElaboratable=no
"""The memory FIFO (snnc/rtl/fifo.py) against an ideal FIFO, cycle by cycle.

The ideal FIFO, which the cycle model assumes of every FIFO of the accelerator: an entry
written in cycle ``t`` can be taken from ``t + 1``; ``r.valid`` is high exactly while it holds
an entry written before this cycle; the head is the oldest; ``level`` counts the entries
written before this cycle and not taken before it. Random writes and random back-pressure,
including long full stretches and a reader that takes every cycle.
"""

from __future__ import annotations

import random
from collections import deque

import pytest
from amaranth.sim import Simulator

from snnc.rtl.fifo import Fifo


def _run(depth: int, cycles: int, seed: int, p_write: float, p_ready: float) -> int:
    rng = random.Random(seed)
    dut = Fifo(12, depth)
    taken = 0

    async def tb(ctx):
        nonlocal taken
        model: deque[int] = deque()
        for t in range(cycles):
            write = rng.random() < p_write and len(model) < depth + 1
            data = rng.randrange(1 << 12)
            ready = rng.random() < p_ready
            ctx.set(dut.w_en, write)
            ctx.set(dut.w_data, data)
            ctx.set(dut.r.ready, ready)
            assert ctx.get(dut.r.valid) == bool(model), (t, len(model))
            assert ctx.get(dut.level) == len(model), t
            if model:
                assert ctx.get(dut.r.payload) == model[0], t
                if ready:
                    model.popleft()
                    taken += 1
            if write:
                model.append(data)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return taken


@pytest.mark.parametrize(
    ("depth", "seed", "p_write", "p_ready"),
    [(1, 0, 0.5, 0.5), (2, 1, 0.9, 0.3), (5, 2, 0.7, 0.7), (16, 3, 0.95, 0.1),
     (16, 4, 0.3, 0.95), (7, 5, 1.0, 1.0), (7, 6, 0.6, 1.0), (64, 7, 0.8, 0.5)],
)  # fmt: skip
def test_fifo_is_an_ideal_fifo_under_random_traffic(depth, seed, p_write, p_ready) -> None:
    assert _run(depth, 600, seed, p_write, p_ready) > 40


def test_a_reader_that_takes_every_cycle_gets_one_entry_per_cycle() -> None:
    """Fill it (memory and output register: depth + 1), then read with ready high throughout:
    ``r.valid`` must stay high until it is empty, the entries in order."""
    dut = Fifo(8, 10)

    async def tb(ctx):
        ctx.set(dut.r.ready, 0)
        for k in range(11):
            ctx.set(dut.w_en, 1)
            ctx.set(dut.w_data, k)
            await ctx.tick()
        ctx.set(dut.w_en, 0)
        assert ctx.get(dut.level) == 11
        ctx.set(dut.r.ready, 1)
        got = []
        for _ in range(11):
            assert ctx.get(dut.r.valid)
            got.append(ctx.get(dut.r.payload))
            await ctx.tick()
        assert got == list(range(11)) and not ctx.get(dut.r.valid)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
