"""The accelerator's top level (ARCHITECTURE.md §6, §8; cycle accounting of ``snnc/sim/cycle.py``).

:class:`Accelerator` is built from a plain :class:`AcceleratorConfig` (core images, router
tables, the number of levels); ``snnc/backends/fpga/rtl_config.py`` makes one from an
``AcceleratorImage``. It holds ``C`` :class:`~snnc.rtl.core.NeuronCore` s, the
:class:`~snnc.rtl.router.Router`, per core an input FIFO and a two-bank next-step FIFO, a host
input FIFO, a host output FIFO and the step controller.

Host protocol
-------------

``host_in`` (stream of ``{element, payload, end, clear}``). Between steps the accelerator accepts
the input of one step: the events ``(element, payload)`` of the step's input elements in increasing
element order (hardware order, ``AcceleratorImage.inputs``), then one word with ``end = 1`` (its
other fields are ignored). A word with ``end = 1, clear = 1`` between steps starts a new run
instead: every core writes zeros over its state and accumulators (``N`` cycles, ``host_in.ready``
low), and the router, the input, host and next-step FIFOs restart as after reset (delayed events
still waiting are dropped); the counters keep counting. Events with payload 0 or of an element
without routes are dropped at the door (the host may send every element, or only the non-zero ones).
Every taken word is registered and acted on in the next cycle, so the step starts two cycles after
the end word is taken; ``host_in.ready`` (a function of registers) is low in the cycle after an
end word, while a step runs, and between steps while ``host_out`` holds more than one step's worth
of words (the host must drain it).

``host_out`` (stream of ``{element, end, cycles}``): the output population's spikes of the step
(``element`` in hardware order, ``AcceleratorImage.output_perm``) in the order the router delivers
them, then ``end = 1`` (``element`` 0, ``cycles`` the step's cycle count): the end-of-step marker,
written in the step's last barrier-check cycle. Both directions are buffered, so a slow host never
changes the cycle counts.

``load`` (only when the cores' ``weight_memory`` is ``"spram"``; stream of ``{core, addr,
data}``): between steps, weight word ``addr`` of core ``core`` gets ``data`` (lanes as in
``NeuronCore``). The host loads every word of every core (``load_words`` in
``snnc/backends/fpga/rtl_config.py``) before the first step; a clear keeps the weights.

Counters (outputs): ``cycles_last_step`` (cycles of the last finished step, counted as
``snnc/sim/cycle.py`` does: from the phase start of phase 0 to the last barrier check, both
included), ``steps`` (steps finished), ``events`` (events taken by all cores since reset),
``running`` (a step is in progress).

Step controller
---------------

States *wait* (between steps), *start* (phase start: one cycle, nothing else happens), *work*,
*clear* (the cores wipe their state).
In *work* the controller issues each core's update commands of the phase's level from a ROM
(the commands of every level, in level order; a pointer per core, ``cmd.valid`` while the pointer
is below the level's end), gates the host FIFO into the router and the next-step FIFOs into the
cores (phase 0 only), and evaluates ``idle`` (from registers only): no command pending, no core
busy, no spike in a core's output FIFO, the router not busy, every input FIFO empty and, in
phase 0, the host FIFO and the draining next-step banks empty. The first *work* cycle with
``idle`` is the barrier check; the next cycle is the next phase's start, or, after the last
phase, the end-of-step marker has gone out in the check cycle and the controller waits.

Every FIFO is a block-RAM :class:`~snnc.rtl.fifo.Fifo` sized for the most entries it can hold
(each core's input FIFO and next-step banks: one event per axon and step; the host FIFO: one
word per input element; the output FIFO: two steps of output spikes and markers).

Per core the input arbitration is: in phase 0 the next-step bank filled in the previous step
(all of it, first), then the input FIFO; a router event that finds the input FIFO empty (and
no next-step event offered) goes straight to the core in the cycle it is valid, so an event
granted in ``a`` is takeable in ``a+1`` as in the cycle model; otherwise it is queued. Delayed
events go to the filling bank; the banks swap when a step starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from amaranth import Array, Cat, Const, Elaboratable, Module, Mux, ResetInserter, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from snnc.rtl.core import NeuronCore
from snnc.rtl.fifo import Fifo
from snnc.rtl.params import CoreImage, index_bits
from snnc.rtl.router import Router, RouteTable

__all__ = ["AcceleratorConfig", "Accelerator"]

COUNTER_BITS = 32


@dataclass(frozen=True)
class AcceleratorConfig:
    """Everything the accelerator is built from (plain values, no IR)."""

    cores: tuple[CoreImage, ...]  #: per core; ``updates`` holds its commands per level
    tables: tuple[RouteTable, ...]  #: per core: its spikes' routes (cores, next step, host)
    host_table: RouteTable  #: input element -> (core, axon) routes
    host_elements: int  #: input elements
    outputs: int  #: output elements (the host port of the router)
    max_level: int  #: highest population level: a step has phases 0..max_level

    def __post_init__(self) -> None:
        if not self.cores or len(self.tables) != len(self.cores):
            raise ValueError("one routing table per core, at least one core")
        if len({c.params for c in self.cores}) != 1:
            raise ValueError("every core must have the same parameters")
        if self.outputs < 1 or self.host_elements < 1:
            raise ValueError("the accelerator needs input elements and output elements")
        for k, c in enumerate(self.cores):
            if any(not 1 <= lv <= self.max_level for lv in c.updates):
                raise ValueError(f"core {k}: update levels outside 1..{self.max_level}")

    @property
    def params(self):
        return self.cores[0].params


def _fifo(m: Module, name: str, layout, depth: int, flush=None) -> Fifo:
    f = Fifo(layout if isinstance(layout, int) else data.Layout.cast(layout).size, depth)
    m.submodules[name] = f if flush is None else ResetInserter(flush)(f)
    return f


class Accelerator(wiring.Component):
    """The whole accelerator (see the module docstring for the ports and the protocol).

    ``fifo_depth``: depth of each core's input FIFO and of each next-step bank (default: the
    core's axons, enough since an axon receives at most one event per step).
    """

    def __init__(self, config: AcceleratorConfig, *, fifo_depth: int | None = None) -> None:
        self.config = config
        p = config.params
        self.fifo_depth = p.axons if fifo_depth is None else fifo_depth
        self.in_layout = data.StructLayout({
            "element": index_bits(config.host_elements), "payload": p.payload_bits, "end": 1,
            "clear": 1,
        })  # fmt: skip
        #: the weights are loaded by the host (``load`` port) rather than held by the bitstream
        self.loads = p.weight_memory == "spram"
        self.load_layout = data.StructLayout({
            "core": index_bits(len(config.cores)), "addr": index_bits(p.weight_words),
            "data": p.lanes * p.weight_bits,
        })  # fmt: skip
        self.out_layout = data.StructLayout({
            "element": index_bits(config.outputs), "end": 1, "cycles": COUNTER_BITS,
        })  # fmt: skip
        super().__init__({
            "host_in": In(stream.Signature(self.in_layout)),
            "host_out": Out(stream.Signature(self.out_layout)),
            "cycles_last_step": Out(COUNTER_BITS),
            "steps": Out(COUNTER_BITS),
            "events": Out(COUNTER_BITS),
            "running": Out(1),
        } | ({"load": In(stream.Signature(self.load_layout))} if self.loads else {}))  # fmt: skip

    def elaborate(self, platform):
        m = Module()
        cfg, p = self.config, self.config.params
        C = len(cfg.cores)
        cores = [NeuronCore(img, deep=True) for img in cfg.cores]
        for c, core in enumerate(cores):
            m.submodules[f"core{c}"] = core
        router = Router(
            cfg.tables, neurons=p.neurons, axons=p.axons, payload_bits=p.payload_bits,
            host_table=cfg.host_table, host_elements=cfg.host_elements, outputs=cfg.outputs,
            deep=True,
        )  # fmt: skip
        # a clear word: every core wipes its state, the router and the FIFOs restart (the
        # router's round-robin pointers included), as after reset; `clr` is the registered
        # pulse (the cycle after the word is taken) that does it
        clr_word, clr = Signal(), Signal()
        m.d.sync += clr.eq(clr_word)
        m.submodules.router = ResetInserter(clr)(router)
        delayed = any(d.delayed for t in cfg.tables for e in t.entries for d in e.destinations)
        ev_layout = router.event_layout

        # ------------------------------------------------------------------ controller state
        WAIT, START, WORK, CLEAR = 0, 1, 2, 3
        state = Signal(2, init=WAIT)
        phase = Signal(range(cfg.max_level + 1))
        fill = Signal()  # the next-step bank being filled in this step
        cyc = Signal(COUNTER_BITS)
        work = state == WORK
        phase0 = phase == 0
        m.d.comb += self.running.eq(state != WAIT)

        # ------------------------------------------------------------------ host output
        # {element, end} words in block RAM; the cycle counts of the markers in a small FIFO
        # beside it (a marker is written in the cycle after the last check cycle)
        out_depth = 2 * (cfg.outputs + 1)
        ob = index_bits(cfg.outputs)
        ofifo = _fifo(m, "out_fifo", ob + 1, out_depth)
        cfifo = m.submodules.cycles_fifo = _RegFifo(COUNTER_BITS, 4)
        marker, marker_q = Signal(), Signal()  # the check cycle of the last phase; the next
        m.d.sync += marker_q.eq(marker)
        head_end = ofifo.r.payload[ob]
        m.d.comb += [
            router.host_out.ready.eq(1),
            ofifo.w_en.eq(router.host_out.valid | marker_q),
            ofifo.w_data.eq(Mux(marker_q, Cat(Const(0, ob), Const(1, 1)),
                                Cat(router.host_out.payload[:ob], Const(0, 1)))),
            cfifo.w_en.eq(marker_q), cfifo.w_data.eq(self.cycles_last_step),
            self.host_out.valid.eq(ofifo.r.valid),
            self.host_out.payload.eq(Cat(ofifo.r.payload, Mux(head_end, cfifo.r_data, 0))),
            ofifo.r.ready.eq(self.host_out.ready),
            cfifo.r_en.eq(self.host_out.ready & ofifo.r.valid & head_end),
        ]  # fmt: skip

        # ------------------------------------------------------------------ host input
        hin = self.host_in
        h_layout = data.StructLayout({"element": len(hin.payload.element),
                                      "payload": p.payload_bits})  # fmt: skip
        hfifo = _fifo(m, "host_fifo", h_layout, cfg.host_elements, clr)
        routed = [0] * cfg.host_elements
        for e in cfg.host_table.entries:
            if e.destinations:
                routed[e.first : e.last + 1] = [1] * (e.last - e.first + 1)
        routed_bits = Const(sum(b << i for i, b in enumerate(routed)), cfg.host_elements)
        take_in = hin.valid & hin.ready
        # a taken word is registered and acted on in the next cycle (filtering, FIFO write,
        # end, clear); ready comes from registers: not after an end word still being acted
        # on, and only while the output FIFO has room for a whole step (its level one cycle
        # ago, so one entry less)
        in_v, in_q = Signal(), Signal(self.in_layout)
        room = Signal()
        m.d.sync += [in_v.eq(take_in), room.eq(ofifo.level <= cfg.outputs)]
        with m.If(take_in):
            m.d.sync += in_q.eq(hin.payload)
        end_word = in_v & in_q.end
        m.d.comb += [
            clr_word.eq(end_word & in_q.clear),
            hin.ready.eq((state == WAIT) & room & ~end_word),
            hfifo.w_data.eq(Cat(in_q.element, in_q.payload)),
            hfifo.w_en.eq(
                in_v & ~in_q.end & (in_q.payload != 0) & routed_bits.bit_select(in_q.element, 1)
            ),  # fmt: skip
        ]
        h_out = data.View(h_layout, hfifo.r.payload)
        h_gate = work & phase0
        m.d.comb += [
            router.host_in.valid.eq(hfifo.r.valid & h_gate),
            router.host_in.payload.element.eq(h_out.element),
            router.host_in.payload.payload.eq(h_out.payload),
            hfifo.r.ready.eq(router.host_in.ready & h_gate),
        ]

        # ------------------------------------------------------------------ per core
        busy_terms = [router.busy, hfifo.r.valid & phase0]
        takes = []
        for c, core in enumerate(cores):
            wiring.connect(m, core.spikes, router.spikes_in[c])
            m.d.comb += core.clear.eq(clr)
            busy_terms += [core.busy, core.spikes.valid]

            # update commands: the ROM of every level in level order, a pointer, level ends
            cmds, ends = [], [0]
            for lv in range(1, cfg.max_level + 1):
                cmds += list(core.image.updates.get(lv, ()))
                ends.append(len(cmds))
            ptr = Signal(range(len(cmds) + 1), name=f"cmd_ptr{c}")
            end = Array(Const(x, range(len(cmds) + 1)) for x in ends)[phase]
            pending = ptr < end
            busy_terms.append(pending)
            if cmds:
                rom = Array(Value.cast(core.cmd_layout.const({"first_group": g, "n_groups": n}))
                            for g, n in cmds)  # fmt: skip
                m.d.comb += core.cmd.payload.eq(rom[ptr])
            m.d.comb += core.cmd.valid.eq(work & pending)
            with m.If(core.cmd.valid & core.cmd.ready):
                m.d.sync += ptr.eq(ptr + 1)
            with m.If((state == WAIT) & end_word):
                m.d.sync += ptr.eq(0)

            # input FIFO with bypass; next-step banks
            ififo = _fifo(m, f"in_fifo{c}", ev_layout, self.fifo_depth, clr)
            ev, dl = router.events_out[c], router.delayed_out[c]
            m.d.comb += [ev.ready.eq(1), dl.ready.eq(1)]
            # the next-step banks, only when some route is delayed
            banks = ([_fifo(m, f"next{c}_{b}", ev_layout, self.fifo_depth, clr) for b in (0, 1)]
                     if delayed else [])  # fmt: skip
            for b, bank in enumerate(banks):
                m.d.comb += [bank.w_en.eq(dl.valid & (fill == b)), bank.w_data.eq(dl.payload)]
            drain_rdy = Mux(fill, banks[0].r.valid, banks[1].r.valid) if banks else Const(0)
            drain_data = Mux(fill, banks[0].r.payload, banks[1].r.payload) if banks else 0
            busy_terms += [ififo.r.valid, drain_rdy & phase0]
            use_drain = phase0 & drain_rdy
            direct = ~use_drain & ~ififo.r.valid
            offer = Mux(use_drain, drain_data, Mux(ififo.r.valid, ififo.r.payload, ev.payload))
            take = core.events.valid & core.events.ready
            m.d.comb += [
                core.events.valid.eq(work & (use_drain | ififo.r.valid | ev.valid)),
                core.events.payload.eq(offer),
                ififo.w_data.eq(ev.payload),
                ififo.w_en.eq(ev.valid & ~(direct & take)),
                ififo.r.ready.eq(take & ~use_drain),
            ]
            for b, bank in enumerate(banks):
                m.d.comb += bank.r.ready.eq(take & use_drain & (fill != b))
            takes.append(take)

        idle = ~Cat(*busy_terms).any()

        # ------------------------------------------------------------------ weight loading
        if self.loads:
            ld = self.load
            ready = Const(0)
            for c, core in enumerate(cores):
                mine = ld.payload.core == c
                m.d.comb += [
                    core.load.valid.eq(ld.valid & mine & (state == WAIT)),
                    core.load.payload.addr.eq(ld.payload.addr),
                    core.load.payload.data.eq(ld.payload.data),
                ]  # fmt: skip
                ready = ready | (mine & core.load.ready)
            m.d.comb += ld.ready.eq(ready & (state == WAIT))

        # ------------------------------------------------------------------ counters
        events = Signal(COUNTER_BITS)
        steps = Signal(COUNTER_BITS)
        cycles = Signal(COUNTER_BITS)
        n_takes = sum((t.as_unsigned() for t in takes), Const(0, index_bits(C + 1) + 1))
        takes_q = Signal.like(n_takes)  # registered before the adder (off the takes' paths)
        m.d.sync += [takes_q.eq(n_takes), events.eq(events + takes_q)]
        m.d.comb += [self.events.eq(events), self.steps.eq(steps),
                     self.cycles_last_step.eq(cycles)]  # fmt: skip

        # ------------------------------------------------------------------ step controller
        m.d.sync += cyc.eq(cyc + 1)
        with m.Switch(state):
            with m.Case(WAIT):
                with m.If(clr_word):
                    m.d.sync += [state.eq(CLEAR), fill.eq(0)]
                with m.Elif(end_word):
                    m.d.sync += [state.eq(START), phase.eq(0), fill.eq(~fill), cyc.eq(0)]
            with m.Case(CLEAR):  # `clr`, then the cores wipe their state (N cycles)
                with m.If(~clr & ~Cat(*(core.busy for core in cores)).any()):
                    m.d.sync += state.eq(WAIT)
            with m.Case(START):
                m.d.sync += state.eq(WORK)
            with m.Case(WORK):
                with m.If(idle):
                    with m.If(phase == cfg.max_level):
                        m.d.comb += marker.eq(1)
                        m.d.sync += [state.eq(WAIT), cycles.eq(cyc + 1), steps.eq(steps + 1)]
                    with m.Else():
                        m.d.sync += [state.eq(START), phase.eq(phase + 1)]
        return m


class _RegFifo(Elaboratable):
    """A FIFO of a few words in flip-flops (``w_en``/``w_data``, ``r_en``/``r_data``: the head,
    valid while not empty); writes when full are lost (the user bounds its entries)."""

    def __init__(self, width: int, depth: int) -> None:
        self.w_en, self.w_data = Signal(), Signal(width)
        self.r_en, self.r_data = Signal(), Signal(width)
        self.width, self.depth = width, depth

    def elaborate(self, platform):
        m = Module()
        regs = Array(Signal(self.width, name=f"r{k}") for k in range(self.depth))
        wp, rp = Signal(range(self.depth)), Signal(range(self.depth))

        def nxt(x):
            return Mux(x == self.depth - 1, 0, x + 1)

        m.d.comb += self.r_data.eq(regs[rp])
        with m.If(self.w_en):
            m.d.sync += [regs[wp].eq(self.w_data), wp.eq(nxt(wp))]
        with m.If(self.r_en):
            m.d.sync += rp.eq(nxt(rp))
        return m


def accelerator_from(cores: Sequence[CoreImage], tables: Sequence[RouteTable], **kw) -> Accelerator:
    """Shorthand: ``Accelerator(AcceleratorConfig(tuple(cores), tuple(tables), **kw))``."""
    return Accelerator(AcceleratorConfig(tuple(cores), tuple(tables), **kw))
