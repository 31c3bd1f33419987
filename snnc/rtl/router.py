"""The crossbar router of the accelerator (ARCHITECTURE.md §6, timing of ``snnc/sim/cycle.py``).

**Tables.** Each source (core ``0..C-1``, then optionally the host's input) has a
:class:`RouteTable`: sorted, disjoint ranges ``first..last`` of source neurons, each with a tuple
of :class:`Destination` s. A spike of neuron ``n`` in the range sends, destination by
destination and ``j`` ascending, the events ``axon + (n-first)*stride + j``, ``j < stride``, to
core ``core`` (its next-step stream when ``delayed``) or, for ``core == HOST``, output element
``axon + (n-first)*stride + j`` to the host. :meth:`RouteTable.from_runs` builds a table from
overlapping runs (such as the backend's immediate and delayed tables) keeping that order.

**Ports** (*destination ports* ``0..C-1`` are the cores, ``C`` the host's output).
``spikes_in[c]`` and ``host_in`` (``{element, payload}``) are read, ``events_out[c]``,
``delayed_out[c]`` (``{axon, payload}``, the layout of the core's ``events``) and ``host_out``
(output element) are written; cores' events carry payload 1, the host's its own payload.

**Timing** (the rule of ``snnc/sim/cycle.py``). Each source has one *head*: in cycle ``r`` the
router takes (valid and ready) a source's next spike if its head is empty or empties in ``r``;
from ``r+1`` on the head's events take part in arbitration, one destination port at a time in
table order. In each cycle every destination port grants at most one event: to the first source,
counting round-robin from the one after the source the port last granted (sources ``0..C-1``,
then the host; the pointer starts at 0 and is never reset), whose head's next event for the port
finds its output register (``events_out``, ``delayed_out`` or ``host_out``) free, i.e. not valid
or taken in the same cycle. An event granted in cycle ``a`` is valid on its output from ``a+1``
until taken. A head empties in the cycle its last event is granted, or in ``r+1`` if the spike
has no event. Without back-pressure, a spike taken in ``r`` with no contention has all its first
events per port valid in ``r+2``: 2 cycles from FIFO read to the destination.

``busy`` is high in cycle ``t`` exactly when a head holds a spike (taken before ``t`` and not
emptied before ``t``) or an output register holds an event; it depends on registers only.

**Implementation.** Per source a *lookup memory* (one word per source neuron: entry index and a
mask of the ports it reaches; synchronous read addressed by the spike being taken, so its output
register is the head), and per (source, port) a *slot ROM* (asynchronous read, LUT ROM): word
``(entry, k)`` is the ``k``-th event of the entry for that port as ``base, stride, delayed,
last`` with ``axon = base + n*stride`` modulo the axon width (``base = axon + j - first*stride``).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["HOST", "Destination", "RouteEntry", "RouteTable", "Router"]

HOST = -1  #: destination core number of the host's output port


def _bits(n: int) -> int:
    """Bits of an index in ``range(n)`` (at least 1); as ``snnc.rtl.core.index_bits``."""
    return max(1, (n - 1).bit_length())


class Destination(NamedTuple):
    """Neuron ``first+i`` of an entry reaches axons ``axon + i*stride + j``, ``j < stride``."""

    core: int  #: destination core, or HOST (then ``axon`` is the output element)
    axon: int
    delayed: bool = False  #: into the core's next-step stream
    stride: int = 1


class RouteEntry(NamedTuple):
    first: int  #: first source neuron (host: input element)
    last: int  #: last source neuron, inclusive
    destinations: tuple[Destination, ...]


@dataclass(frozen=True)
class RouteTable:
    """Routing table of one source: sorted, disjoint entries (plain tuples are accepted)."""

    entries: tuple[RouteEntry, ...] = ()

    def __post_init__(self) -> None:
        ents = tuple(
            RouteEntry(int(f), int(la), tuple(Destination(*d) for d in ds))
            for f, la, ds in self.entries
        )
        object.__setattr__(self, "entries", ents)
        prev = -1
        for e in ents:
            if not prev < e.first <= e.last:
                raise ValueError(f"route entry {e.first}..{e.last}: entries must be sorted, "
                                 "disjoint and non-empty")  # fmt: skip
            prev = e.last
            for d in e.destinations:
                if d.core < HOST or d.axon < 0 or d.stride < 1 or (d.core == HOST and d.delayed):
                    raise ValueError(f"route entry {e.first}..{e.last}: bad destination {d}")

    def find(self, neuron: int) -> int | None:
        """Index of the entry holding ``neuron``, or None."""
        k = bisect.bisect_right([e.first for e in self.entries], neuron) - 1
        return k if k >= 0 and neuron <= self.entries[k].last else None

    def lookup(self, neuron: int) -> list[tuple[int, int, bool]]:
        """The events ``(core, axon, delayed)`` of a spike of ``neuron``, in table order."""
        k = self.find(neuron)
        if k is None:
            return []
        e = self.entries[k]
        return [(d.core, d.axon + (neuron - e.first) * d.stride + j, bool(d.delayed))
                for d in e.destinations for j in range(d.stride)]  # fmt: skip

    @classmethod
    def from_runs(cls, runs: Iterable[tuple[int, int, Sequence]]) -> RouteTable:
        """A table from runs ``(first, last, destinations)`` that may overlap: a neuron gets the
        destinations of every run holding it, in run order; continuing ranges are merged."""
        runs = [(f, la, tuple(Destination(*d) for d in ds)) for f, la, ds in runs if ds]
        cuts = sorted({f for f, _, _ in runs} | {la + 1 for _, la, _ in runs})
        out: list[RouteEntry] = []
        for a, b in zip(cuts, cuts[1:]):
            ds = tuple(d._replace(axon=d.axon + (a - f) * d.stride)
                       for f, la, dd in runs if f <= a <= la for d in dd)  # fmt: skip
            if not ds:
                continue
            p = out[-1] if out else None
            if p and p.last == a - 1 and len(p.destinations) == len(ds) and all(
                d == q._replace(axon=q.axon + (a - p.first) * q.stride)
                for d, q in zip(ds, p.destinations)
            ):
                out[-1] = p._replace(last=b - 1)
            else:
                out.append(RouteEntry(a, b - 1, ds))
        return cls(tuple(out))


class _Source:
    """Memory contents of one source: lookup words and per-port slot lists."""

    def __init__(self, table: RouteTable, size: int, widths: list[int]) -> None:
        ports = len(widths)  # cores, then the host
        if table.entries and table.entries[-1].last >= size:
            raise ValueError(f"a route entry covers source {table.entries[-1].last} of {size}")
        #: per port, per entry: the events (base, stride, delayed) in table order
        slots: list[list[list]] = [[[] for _ in table.entries] for _ in range(ports)]
        for k, e in enumerate(table.entries):
            for d in e.destinations:
                p = ports - 1 if d.core == HOST else d.core
                where = f"route entry {e.first}..{e.last}: {d}"
                if p >= ports - 1 and d.core != HOST:
                    raise ValueError(f"{where}: the router has {ports - 1} cores")
                if d.axon + (e.last - e.first + 1) * d.stride > widths[p]:
                    raise ValueError(f"{where} reaches beyond the {widths[p]} axons (outputs)")
                for j in range(d.stride):
                    slots[p][k].append((d.axon + j - e.first * d.stride, d.stride, d.delayed))
        self.entries, self.size, self.slots = len(table.entries), size, slots
        self.ports = [p for p in range(ports) if any(slots[p])]
        #: per source neuron: (entry, mask of the used ports it reaches) or None
        self.words: list[tuple[int, int] | None] = [None] * size
        for k, e in enumerate(table.entries):
            bits = sum(1 << i for i, p in enumerate(self.ports) if slots[p][k])
            self.words[e.first : e.last + 1] = [(k, bits)] * (e.last - e.first + 1)


def _first(vec: list) -> list:
    """One-hot of the lowest set element of ``vec``."""
    out, seen = [], Const(0)
    for v in vec:
        out.append(v & ~seen)
        seen = seen | v
    return out


def _round_robin(m: Module, req: list, idx: list[int], n_src: int, grant: list) -> None:
    """``grant``: the first requester counting from ``ptr``; ``ptr`` moves past it."""
    if len(req) == 1:
        m.d.comb += grant[0].eq(req[0])
        return
    ptr = Signal(range(n_src))
    hi = _first([r & (ptr <= i) for r, i in zip(req, idx)])
    lo = _first(req)
    any_hi = Cat(*hi).any()
    for g, h, lw, i in zip(grant, hi, lo, idx):
        m.d.comb += g.eq(Mux(any_hi, h, lw))
        with m.If(g):
            m.d.sync += ptr.eq((i + 1) % n_src)


class Router(wiring.Component):
    """Crossbar router for ``len(tables)`` cores (see the module docstring for the timing).

    Parameters
    ----------
    tables : one :class:`RouteTable` per core (its core-local neurons).
    neurons, axons : neurons and axons of a core (port widths as in ``NeuronCore``).
    payload_bits : event payload width (the host's graded input; cores send 1).
    host_table, host_elements : the host's input table and number of input elements; without a
        table there is no ``host_in`` port.
    outputs : output elements of the host port (0: no ``host_out`` port).
    deep : register the lookup memory's output (a lookup stage before the head): 3 cycles from
        FIFO read to destination instead of 2, for clock rates the 2-cycle path does not meet.
    """

    def __init__(self, tables: Sequence[RouteTable], *, neurons: int, axons: int,
                 payload_bits: int = 1, host_table: RouteTable | None = None,
                 host_elements: int = 0, outputs: int = 0, deep: bool = False) -> None:  # fmt: skip
        self.cores = c = len(tables)
        self.deep = deep
        self.latency = 3 if deep else 2  #: cycles from reading a spike to its first events
        if c < 1:
            raise ValueError("a router needs at least one core")
        self.event_layout = data.StructLayout({"axon": _bits(axons), "payload": payload_bits})
        widths = [axons] * c + [outputs]
        self._src = [_Source(t, neurons, widths) for t in tables]
        sig = {
            "spikes_in": In(stream.Signature(_bits(neurons))).array(c),
            "events_out": Out(stream.Signature(self.event_layout)).array(c),
            "delayed_out": Out(stream.Signature(self.event_layout)).array(c),
            "busy": Out(1),
        }
        if host_table is not None:
            self.host_layout = data.StructLayout(
                {"element": _bits(host_elements), "payload": payload_bits}
            )
            self._src.append(_Source(host_table, host_elements, widths))
            sig["host_in"] = In(stream.Signature(self.host_layout))
        if outputs:
            sig["host_out"] = Out(stream.Signature(_bits(outputs)))
        self.payload_bits, self.outputs = payload_bits, outputs
        super().__init__(sig)

    def _outputs(self) -> list[list]:
        """Per port: its output streams (immediate, delayed) or (host,)."""
        outs = [[self.events_out[p], self.delayed_out[p]] for p in range(self.cores)]
        return outs + [[self.host_out] if self.outputs else []]

    def elaborate(self, platform):
        m = Module()
        c, n_src = self.cores, len(self._src)
        outs = self._outputs()
        free = [[~o.valid | o.ready for o in po] for po in outs]
        reqs: list[list[_Slot]] = [[] for _ in range(c + 1)]
        busy = []
        for s, src in enumerate(self._src):
            inp = self.spikes_in[s] if s < c else self.host_in
            index = inp.payload if s < c else inp.payload.element
            hv, take = Signal(name=f"head{s}"), Signal(name=f"take{s}")
            fin = Signal(name=f"finish{s}")
            m.d.comb += take.eq(inp.valid & inp.ready)
            n = Signal.like(index, name=f"neuron{s}")
            pay = Signal(self.payload_bits, name=f"payload{s}", init=1)
            new_pay = inp.payload.payload if s == c else Const(1)
            lk = self._lookup(m, s, src, index, take) if src.ports else None
            if self.deep:  # the spike waits a cycle in the lookup stage (held in n1, pay1)
                s1v, load = Signal(name=f"stage{s}"), Signal(name=f"load{s}")
                n1, pay1 = Signal.like(n, name=f"neuron1_{s}"), Signal.like(pay, name=f"pay1_{s}")
                m.d.comb += [load.eq(s1v & (~hv | fin)), inp.ready.eq(~s1v | load)]
                with m.If(take):
                    m.d.sync += [s1v.eq(1), n1.eq(index), pay1.eq(new_pay)]
                with m.Elif(load):
                    m.d.sync += s1v.eq(0)
                new_n, new_pay = n1, pay1
                if lk is not None:
                    held = Signal.like(lk, name=f"entry{s}")
                    with m.If(load):
                        m.d.sync += held.eq(lk)
                    lk = held
                busy.append(s1v)
            else:
                load, new_n = take, index
                m.d.comb += inp.ready.eq(~hv | fin)
            with m.If(load):
                m.d.sync += [hv.eq(1), n.eq(new_n), pay.eq(new_pay)]
            with m.Elif(fin):
                m.d.sync += hv.eq(0)
            done = Const(1)
            for i, p in enumerate(src.ports):
                sl = self._slot(m, s, src, p, lk, n, pay)
                m.d.comb += sl.pend.eq(hv & lk.mask[i] & ~sl.done)
                sel = sl.rom.delayed if p < c else Const(0)
                m.d.comb += sl.req.eq(sl.pend & Mux(sel, free[p][-1], free[p][0]))
                with m.If(load):
                    m.d.sync += [sl.k.eq(0), sl.done.eq(0)]
                with m.Elif(sl.grant):
                    m.d.sync += [sl.k.eq(sl.k + 1), sl.done.eq(sl.rom.last)]
                reqs[p].append(sl)
                done = done & (~sl.pend | (sl.grant & sl.rom.last))
            m.d.comb += fin.eq(hv & done)
            busy.append(hv)
        for p, rq in enumerate(reqs):
            if rq:
                self._port(m, p, rq, outs[p], n_src)
        m.d.comb += self.busy.eq(Cat(*busy, *(o.valid for po in outs for o in po)).any())
        return m

    def _lookup(self, m: Module, s: int, src: _Source, index, take):
        """Lookup memory of a source, read with the spike being taken: its data is the head."""
        lay = data.StructLayout({"entry": _bits(src.entries), "mask": len(src.ports)})
        init = [{"entry": w[0], "mask": w[1]} if w else {} for w in src.words]
        mem = m.submodules[f"lookup{s}"] = Memory(shape=lay, depth=src.size, init=init)
        rp = mem.read_port()
        m.d.comb += [rp.addr.eq(index), rp.en.eq(take)]
        return rp.data

    def _slot(self, m: Module, s: int, src: _Source, p: int, lk, n, pay) -> _Slot:
        """Slot ROM of (source ``s``, port ``p``), read at (head's entry, events granted)."""
        per = src.slots[p]
        kb = (max(len(x) for x in per) - 1).bit_length()
        width = self.event_layout["axon"].width if p < self.cores else _bits(self.outputs)
        sb = max(st for x in per for _, st, _ in x).bit_length()
        lay = data.StructLayout({"base": width, "stride": sb, "delayed": 1, "last": 1})
        init = []
        for x in per:
            for k in range(1 << kb):
                b, st, d = x[k] if k < len(x) else (0, 1, False)
                init.append({"base": b % (1 << width), "stride": st, "delayed": int(d),
                             "last": int(k == len(x) - 1)})  # fmt: skip
        rom = m.submodules[f"slots{s}_{p}"] = Memory(shape=lay, depth=len(init), init=init)
        rp = rom.read_port(domain="comb")
        sl = _Slot(s, rp.data, max(kb, 1), width, self.payload_bits, f"{s}_{p}")
        m.d.comb += [
            rp.addr.eq(Cat(sl.k[:kb], lk.entry) if kb else lk.entry),
            sl.axon.eq(rp.data.base + _times(n, rp.data.stride)),
            sl.payload.eq(pay),
        ]
        return sl

    def _port(self, m: Module, p: int, rq: list[_Slot], po: list, n_src: int) -> None:
        """Round-robin arbitration of port ``p`` and its output registers."""
        _round_robin(m, [sl.req for sl in rq], [sl.source for sl in rq], n_src,
                     [sl.grant for sl in rq])  # fmt: skip
        ax = Signal(rq[0].axon.shape(), name=f"axon_{p}")
        pay, dly = Signal(self.payload_bits, name=f"payload_{p}"), Signal(name=f"delayed_{p}")
        any_g = Cat(*(sl.grant for sl in rq)).any()
        m.d.comb += [
            ax.eq(_or(Mux(sl.grant, sl.axon, 0) for sl in rq)),
            pay.eq(_or(Mux(sl.grant, sl.payload, 0) for sl in rq)),
        ]
        if p < self.cores:
            m.d.comb += dly.eq(_or(sl.grant & sl.rom.delayed for sl in rq))
        for which, o in enumerate(po):
            with m.If(any_g & (dly if which else ~dly)):
                m.d.sync += o.valid.eq(1)
                if p < self.cores:
                    m.d.sync += [o.payload.axon.eq(ax), o.payload.payload.eq(pay)]
                else:
                    m.d.sync += o.payload.eq(ax)
            with m.Elif(o.ready):
                m.d.sync += o.valid.eq(0)


class _Slot:
    """Head state of one (source, port): events granted ``k``, ``done``, and the next event."""

    def __init__(self, source: int, rom, kbits: int, width: int, payload_bits: int, name: str):
        self.source, self.rom = source, rom
        self.k = Signal(kbits, name=f"k{name}")
        self.done = Signal(name=f"done{name}")
        self.pend, self.req = Signal(name=f"pend{name}"), Signal(name=f"req{name}")
        self.grant = Signal(name=f"grant{name}")
        self.axon = Signal(width, name=f"axon{name}")
        self.payload = Signal(payload_bits, name=f"payload{name}")


def _times(n, stride) -> object:
    """``n * stride`` as shifts and adds (strides are a few bits; no multiplier block)."""
    return _sum(Mux(stride[b], n << b, 0) if b or len(stride) > 1 else n
                for b in range(len(stride)))


def _sum(vals) -> object:
    out = Const(0)
    for v in vals:
        out = out + v
    return out


def _or(vals) -> object:
    out = Const(0)
    for v in vals:
        out = out | v
    return out
