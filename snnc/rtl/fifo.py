"""The memory FIFO of the accelerator's cores and top level."""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from snnc.rtl.params import index_bits

__all__ = ["Fifo"]

_NO_RW_CHECK = {"no_rw_check": 1}


def _incr(value, modulus: int):
    if modulus & (modulus - 1) == 0:
        return (value + 1)[: index_bits(modulus)]
    return Mux(value == modulus - 1, 0, value + 1)


class Fifo(wiring.Component):
    """Block-RAM FIFO with an output register; a write into an empty FIFO is valid on ``r`` in
    the next cycle, and a reader that takes every cycle gets one entry per cycle.

    Holds ``depth + 1`` entries (``level`` counts them); writes when full are lost: every user
    sizes it for the most entries it can hold (the core: ``N`` spikes between two moments at
    which the step controller sees the FIFO empty; the top level: see ``top.py``). Its
    registers reset with the domain (``ResetInserter`` empties it).
    """

    def __init__(self, width: int, depth: int) -> None:
        self.width, self.depth = width, max(1, depth)
        super().__init__({"w_en": In(1), "w_data": In(width), "r": Out(stream.Signature(width)),
                          "level": Out(range(self.depth + 2))})  # fmt: skip

    def elaborate(self, platform):
        m = Module()
        mem = m.submodules.mem = Memory(
            shape=self.width, depth=self.depth, init=[], attrs=_NO_RW_CHECK
        )  # reads only committed entries
        wp, rp = mem.write_port(), mem.read_port()
        produce = Signal(range(self.depth))
        consume = Signal(range(self.depth))
        count = Signal(range(self.depth + 1))
        empty, single = Signal(init=1), Signal()  # count == 0, count == 1 (registered)
        bypass_data, from_bypass = Signal(self.width, reset_less=True), Signal()

        out_free = ~self.r.valid | self.r.ready
        bypass = self.w_en & empty & out_free
        do_write = self.w_en & ~bypass
        do_read = ~empty & out_free
        m.d.comb += [
            wp.addr.eq(produce), wp.data.eq(self.w_data), wp.en.eq(do_write),
            rp.addr.eq(consume), rp.en.eq(do_read),
            self.r.payload.eq(Mux(from_bypass, bypass_data, rp.data)),
            self.level.eq(count + self.r.valid),
        ]  # fmt: skip
        with m.If(do_write):
            m.d.sync += produce.eq(_incr(produce, self.depth))
        with m.If(do_read):
            m.d.sync += consume.eq(_incr(consume, self.depth))
        with m.If(do_write & ~do_read):
            m.d.sync += [count.eq(count + 1), empty.eq(0), single.eq(empty)]
        with m.If(do_read & ~do_write):
            m.d.sync += [count.eq(count - 1), empty.eq(single), single.eq(count == 2)]
        with m.If(bypass):
            m.d.sync += [bypass_data.eq(self.w_data), from_bypass.eq(1), self.r.valid.eq(1)]
        with m.Elif(do_read):
            m.d.sync += [from_bypass.eq(0), self.r.valid.eq(1)]
        with m.Elif(self.r.ready):
            m.d.sync += self.r.valid.eq(0)
        return m
