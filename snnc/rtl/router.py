"""The crossbar router of the accelerator (ARCHITECTURE.md §6; the timing of ``sim/cycle.py``).

**Tables.** Each source (cores ``0..C-1``, then optionally the host's input) has a
:class:`RouteTable`: sorted, disjoint ranges ``first..last`` of source neurons, each with a
tuple of destinations (:class:`Destination`). A spike of neuron ``n`` in a range sends,
destination by destination and ``j`` ascending, the events ``axon + (n-first)*stride + j``
(``j < stride``) to core ``core`` (to its next-step stream when ``delayed``) or, for
``core == HOST``, that output element to the host. :meth:`RouteTable.from_runs` builds a table
from overlapping runs (such as the backend's immediate and delayed tables, concatenated),
keeping the run order per neuron.

**Ports.** *Destination ports* ``0..C-1`` are the cores, ``C`` the host. Read: ``spikes_in[c]``
(core-local neuron index) and ``host_in`` (``{element, payload}``). Written: ``events_out[c]``
and ``delayed_out[c]`` (``{axon, payload}``, the layout of ``NeuronCore.events``; payload 1 for
spikes of cores, the host's payload for its input) and ``host_out`` (output element).

**Timing** (``deep=False``; ``deep=True``, below, is the rule of ``snnc/sim/cycle.py``). Each source
has one *head*. In cycle ``r`` the router takes (valid and ready) a source's next spike if the head
is empty or empties in ``r``; from ``r+1`` on, the spike's events take part in arbitration, for each
port in table order. In every cycle each destination port grants at most one event (immediate and
delayed events of a core share its port): to the first source, counting round-robin from the one
after the source the port last granted (sources ``0..C-1``, then the host; the pointer starts at 0
and is never reset), whose next event for the port finds its output register free (not valid, or
taken in this cycle). An event granted in cycle ``a`` is valid on its output from ``a+1`` until
taken. A head empties in the cycle its last event is granted, or in ``r+1`` when the spike has no
event. So, without contention or back-pressure, a spike taken in ``r`` has its first event for every
port valid in ``r+2`` (2 cycles from FIFO read to destination; ``latency``), and a source can be
read every cycle if each of its spikes has at most one event per port.

``deep=True`` (the accelerator's) puts a *lookup stage* between the read and the head: in cycle
``r`` a spike is taken if the stage is empty at the start of ``r`` (ready is the stage's register,
so a source is read at most every other cycle while its head is busy); the stage passes its
spike to the head at the end of the first cycle ``t >= r+1`` in which the head is empty or empties;
the events take part in arbitration from ``t+1`` (the rest as above). Without contention: ``r+3``.

``busy`` is high in a cycle exactly when a spike or an event is inside (lookup stage, head or
output register); it is a function of registers only.

**Implementation.** Per source a *lookup memory* (one word per source neuron: entry index and
the mask of the ports it reaches; synchronous read, enabled by the read of a spike, so its output
register is the head's entry), and per (source, port) a *slot ROM* (LUT ROM, asynchronous read)
whose word ``(entry, k)`` is the entry's ``k``-th event for the port: ``base, stride, delayed,
last`` with ``axon = base + n*stride`` modulo the axon width (``base = axon + j - first*stride``).
Per (source, port) a counter ``k`` and a ``done`` flag follow the granted events.
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
        for a, b in zip(cuts, cuts[1:], strict=False):
            ds = tuple(d._replace(axon=d.axon + (a - f) * d.stride)
                       for f, la, dd in runs if f <= a <= la for d in dd)  # fmt: skip
            if not ds:
                continue
            p = out[-1] if out else None
            if (
                p
                and p.last == a - 1
                and len(p.destinations) == len(ds)
                and all(
                    d == q._replace(axon=q.axon + (a - p.first) * q.stride)
                    for d, q in zip(ds, p.destinations, strict=True)
                )
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
    hi = _first([r & (ptr <= i) for r, i in zip(req, idx, strict=True)])
    lo = _first(req)
    any_hi = Cat(*hi).any()
    for g, h, lw, i in zip(grant, hi, lo, idx, strict=True):
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
    deep : a lookup stage before the head (module docstring): 3 cycles from FIFO read to
        destination instead of 2; the memory's slow clock-to-output leaves the critical path.
    """

    def __init__(self, tables: Sequence[RouteTable], *, neurons: int, axons: int,
                 payload_bits: int = 1, host_table: RouteTable | None = None,
                 host_elements: int = 0, outputs: int = 0, deep: bool = True) -> None:  # fmt: skip
        self.cores = c = len(tables)
        if c < 1:
            raise ValueError("a router needs at least one core")
        self.deep = deep
        self.latency = 3 if deep else 2  #: cycles from reading a spike to its first events
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
        outs = self._outputs()
        free = [[~o.valid | o.ready for o in po] for po in outs]
        reqs: list[list[_Slot]] = [[] for _ in outs]
        busy = []
        for s, src in enumerate(self._src):
            busy += self._source(m, s, src, free, reqs)
        for p, rq in enumerate(reqs):
            if rq:
                self._port(m, p, rq, outs[p], len(self._src))
        m.d.comb += self.busy.eq(Cat(*busy, *(o.valid for po in outs for o in po)).any())
        return m

    def _source(self, m: Module, s: int, src: _Source, free, reqs) -> list:
        """Read port, (lookup stage and) head of source ``s``; returns its busy flags."""
        c = self.cores
        inp = self.spikes_in[s] if s < c else self.host_in
        index = inp.payload if s < c else inp.payload.element
        new_pay = inp.payload.payload if s == c else Const(1)
        hv, take, fin = Signal(name=f"head{s}"), Signal(name=f"take{s}"), Signal(name=f"fin{s}")
        n = Signal.like(index, name=f"neuron{s}")
        pay = Signal(self.payload_bits, name=f"payload{s}", init=1)
        m.d.comb += take.eq(inp.valid & inp.ready)
        lk = self._lookup(m, s, src, index, take) if src.ports else None
        busy = [hv]
        if self.deep:  # the lookup stage holds the spike while the memory answers
            sv, load = Signal(name=f"stage{s}"), Signal(name=f"load{s}")
            sn, sp = Signal.like(n, name=f"stage_neuron{s}"), Signal.like(pay, name=f"stage_pay{s}")
            # ready from the stage's register only (not from this cycle's arbitration): a
            # spike is read while the stage is empty
            m.d.comb += [load.eq(sv & (~hv | fin)), inp.ready.eq(~sv)]
            with m.If(take):
                m.d.sync += [sv.eq(1), sn.eq(index), sp.eq(new_pay)]
            with m.Elif(load):
                m.d.sync += sv.eq(0)
            if lk is not None:
                held = Signal.like(lk, name=f"entry{s}")
                with m.If(load):
                    m.d.sync += held.eq(lk)
                lk = held
            index, new_pay = sn, sp
            busy.append(sv)
        else:
            load = take
            m.d.comb += inp.ready.eq(~hv | fin)
        with m.If(load):
            m.d.sync += [hv.eq(1), n.eq(index), pay.eq(new_pay)]
        with m.Elif(fin):
            m.d.sync += hv.eq(0)
        done = Const(1)
        for i, p in enumerate(src.ports):
            sl = self._slot(m, s, src, p, lk, n, pay)
            sel = sl.rom.delayed if p < c else Const(0)
            m.d.comb += [
                sl.pend.eq(hv & lk.mask[i] & ~sl.done),
                sl.req.eq(sl.pend & Mux(sel, free[p][-1], free[p][0])),
            ]
            with m.If(load):
                m.d.sync += [sl.k.eq(0), sl.done.eq(0)]
            with m.Elif(sl.grant):
                m.d.sync += [sl.k.eq(sl.k + 1), sl.done.eq(sl.rom.last)]
            reqs[p].append(sl)
            done = done & (~sl.pend | (sl.grant & sl.rom.last))
        m.d.comb += fin.eq(hv & done)
        return busy

    def _lookup(self, m: Module, s: int, src: _Source, index, take):
        """Lookup memory of a source, read with the spike being taken."""
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
    return _sum(
        Mux(stride[b], n << b, 0) if b or len(stride) > 1 else n for b in range(len(stride))
    )


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
