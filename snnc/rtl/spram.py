"""Single-port RAM for weights that the bitstream does not hold (``weight_memory = "spram"``).

:class:`SinglePortRam` has one address for reads and writes: ``addr``, ``w_data``, ``w_en``
(in) and ``r_data`` (out), the word at ``addr`` one cycle after (reads in a write cycle return
an unspecified value). On an iCE40 UltraPlus (a platform whose ``device`` starts with
``iCE40UP``) it is built from ``SB_SPRAM256KA`` blocks (16K x 16 bits each, ``ceil(width/16)``
side by side and ``ceil(depth/16384)`` deep, the read selected by a registered bank index);
elsewhere, and in simulation, it is an Amaranth memory. Its contents start undefined on the
device (SPRAM has no initial contents), so the host writes every word before the first run.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal
from amaranth.hdl import ClockSignal, Instance
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from snnc.rtl.params import index_bits

__all__ = ["SPRAM_DEPTH", "SPRAM_WIDTH", "SinglePortRam", "uses_spram"]

SPRAM_DEPTH, SPRAM_WIDTH = 16384, 16


def uses_spram(platform) -> bool:
    """Whether ``platform`` is an iCE40 UltraPlus (its SPRAM blocks are used)."""
    return str(getattr(platform, "device", "")).upper().startswith("ICE40UP")


class SinglePortRam(wiring.Component):
    def __init__(self, width: int, depth: int) -> None:
        self.width, self.depth = width, depth
        super().__init__({"addr": In(index_bits(depth)), "w_data": In(width), "w_en": In(1),
                          "r_data": Out(width)})  # fmt: skip

    @property
    def blocks(self) -> int:
        """SPRAM blocks it takes on an iCE40 UltraPlus."""
        return -(-self.width // SPRAM_WIDTH) * -(-self.depth // SPRAM_DEPTH)

    def elaborate(self, platform):
        m = Module()
        if not uses_spram(platform):
            mem = m.submodules.mem = Memory(shape=self.width, depth=self.depth, init=[])
            wp, rp = mem.write_port(), mem.read_port()
            m.d.comb += [wp.addr.eq(self.addr), wp.data.eq(self.w_data), wp.en.eq(self.w_en),
                         rp.addr.eq(self.addr), rp.en.eq(~self.w_en),
                         self.r_data.eq(rp.data)]  # fmt: skip
            return m
        wide = -(-self.width // SPRAM_WIDTH)
        deep = -(-self.depth // SPRAM_DEPTH)
        lo = self.addr[:14]
        bank = self.addr[14:] if deep > 1 else None
        bank_q = Signal(max(1, (deep - 1).bit_length()))
        if bank is not None:
            m.d.sync += bank_q.eq(bank)
        data = Cat(self.w_data, Signal(wide * SPRAM_WIDTH - self.width))
        outs = []
        for d in range(deep):
            sel = (bank == d) if bank is not None else 1
            row = []
            for k in range(wide):
                q = Signal(SPRAM_WIDTH, name=f"q{d}_{k}")
                m.submodules[f"spram{d}_{k}"] = Instance(
                    "SB_SPRAM256KA",
                    i_ADDRESS=lo, i_DATAIN=data[k * SPRAM_WIDTH : (k + 1) * SPRAM_WIDTH],
                    i_MASKWREN=0b1111, i_WREN=self.w_en & sel, i_CHIPSELECT=sel,
                    i_CLOCK=ClockSignal("sync"), i_STANDBY=0, i_SLEEP=0, i_POWEROFF=1,
                    o_DATAOUT=q,
                )  # fmt: skip
                row.append(q)
            outs.append(Cat(*row))
        out = outs[0]
        for d in range(1, deep):
            out = Mux(bank_q == d, outs[d], out)
        m.d.comb += self.r_data.eq(out[: self.width])
        return m
