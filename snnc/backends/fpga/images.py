"""Memory images of the FPGA LIF accelerator (``snnc/rtl/ARCHITECTURE.md``) from a mapped network.

:func:`build_images` turns a partitioned graph and its :class:`~snnc.mapping.cores.Mapping` into
an :class:`AcceleratorImage`: one :class:`~snnc.rtl.params.CoreImage` per core (axon table,
weight memory, neuron parameters, profiles, update commands per level), the routing tables of
every core and of the host, and what the host needs to inject the input and read the output.

Format decisions
----------------

*Neuron numbering and padding.* A core's slices (in the mapping's order) are laid out one after
another, each starting at a group boundary: slice ``k`` occupies groups
``first_group .. first_group + ceil(size/P) - 1`` and its element ``e`` (mapping order, i.e.
pixel-major for conv populations) is the core-local neuron ``first_group*P + e - start``. The
padding neurons of a slice's last group are updated with it but never fire (threshold
``2**(S-1)-1``, bias 0, no synapse reaches them); they take the profile of the slice's last
neuron. :class:`SliceLayout` keeps the translation both ways.

*Axon splitting.* The mapping gives a core one input axon per (source, delay, element) with
synapses in the core. The accelerator's axon entry addresses one row of consecutive groups, and
rows are kept per slice (``ceil(slice size / P)`` words starting at the slice's first group,
the dense cost model of the partition pass), so an axon that feeds ``k`` slices of the core
becomes ``k`` consecutive axon-table entries, one per slice it has synapses in, in slice order;
the routing table delivers a spike to all ``k`` (``RouteTarget.stride``). Entries are numbered in
the mapping's axon order, so a core's entries are ``CoreLayout.axon_first[a] ..
axon_first[a] + axon_count[a] - 1`` for mapping axon ``a``. A slice the axon has no synapse in
gets no entry (an empty row is never routed). The table is padded to ``A`` entries with empty
ones ``(0, 0, 0, 0)``, never routed. Rows are stored one after another in entry order from
word 0; word ``k`` of a row holds lanes ``j`` = the weights onto neuron
``(group_base + k)*P + j``, zero where there is no synapse.

*Weights.* A row holds ``w >> shift`` in ``W`` bits (two's complement) where ``w`` is the
synapse of the mapping (already ``<< shift`` by quantisation) and ``shift`` the weight layer's
shift (the smallest when several layers feed the slice from one source); every ``w`` must be a
multiple of ``2**shift`` and ``w >> shift`` must fit ``W`` bits.

*Profiles.* One profile per distinct (kind, decay, decay_i, reset, timing, strict, saturate,
decay mode) of the core's neurons, numbered in order of first use; more than the target's
``neuron_profiles`` is refused. A shift decay ``k`` is stored as ``-1`` (no leak) .. ``S-1``
(larger shifts act the same on ``S``-bit values). A multiplier decay is ``0 .. 2**F`` (``F+1``
bits: ``2**F`` is "no leak"). A ``Threshold`` population (``x > th``, stateless) is a LIF
profile with shift decay 0 (``v - (v >> 0) = 0``: nothing carried over) and no reset.

*Neuron parameters.* ``bias`` = the neuron's bias + the population's ``input_bias`` (Affine and
Conv biases) for LIF/IF/Threshold; for CubaLIF ``bias`` is the neuron's and ``ibias`` the input
bias (added to ``x`` before the current).

*Routing.* Each core has two tables (:class:`RoutingTable`): ``immediate`` (events into the
destination's input FIFO) and ``delayed`` (delay-1 synapses, into its next-step FIFO). An entry
covers a run of consecutive core-local source neurons ``first .. first+count-1`` and lists its
targets (multicast; one target per entry when the target has no multicast): neuron ``n`` goes
to axons ``axon + (n-first)*stride + j``, ``j < stride``, of core ``core``. Spikes of the
output population also go to the host: target ``core = HOST`` with ``axon`` the population
element (hardware order) and stride 1. The host's table routes input elements the same way
(element = offset of the input in :attr:`AcceleratorImage.inputs` + its hardware-order index).

*Levels.* Input = 0; a population is 1 + the highest level of its non-delayed sources (1 when it
has none). A core's update commands of a level are its slices of that level, merged into one
command where they are adjacent in the group numbering.

Refused with :class:`~snnc.errors.BackendError`: targets without an FPGA section or with a
non-dense synapse memory; LI/CubaLI populations (the accelerator routes spikes only, it has no
membrane read-out); an output that is a graph input; synaptic delays other than 0 and 1; input
gains other than 1; saturating populations narrower than the core's ``S`` (the core saturates
at ``S`` bits); weights, thresholds, biases, reset values or decays wider than their fields;
weight shifts beyond ``max_shift``; graded input wider than 16 bits; more neurons, axon entries,
weight words, profiles or routing entries than a core has.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse as sp

from snnc.errors import BackendError
from snnc.ir import nodes as N
from snnc.ir.graph import Graph
from snnc.mapping.cores import HOST, Core, Mapping
from snnc.rtl.params import (
    AxonEntry,
    CoreImage,
    CoreParams,
    Kind,
    NeuronInit,
    Profile,
    Reset,
    Timing,
)

MAX_PAYLOAD_BITS = 16
_KINDS = {N.LIF: Kind.LIF, N.IF: Kind.IF, N.CubaLIF: Kind.CUBALIF}
_RESETS = {N.ResetMode.SUBTRACT: Reset.SUBTRACT, N.ResetMode.TO_VALUE: Reset.TO_VALUE,
           N.ResetMode.NONE: Reset.NONE}  # fmt: skip
_TIMINGS = {N.ResetTiming.IMMEDIATE: Timing.IMMEDIATE, N.ResetTiming.NEXT_STEP: Timing.NEXT_STEP,
            N.ResetTiming.GATED: Timing.GATED}  # fmt: skip


@dataclass(frozen=True)
class RouteTarget:
    """Where a run of source neurons goes: neuron ``first+i`` reaches axons
    ``axon + i*stride .. axon + i*stride + stride - 1`` of ``core`` (HOST: output element)."""

    core: int
    axon: int
    stride: int = 1


@dataclass(frozen=True)
class RouteEntry:
    first: int  #: first core-local source neuron (host: input element)
    count: int
    targets: tuple[RouteTarget, ...]


@dataclass(frozen=True)
class RoutingTable:
    immediate: tuple[RouteEntry, ...] = ()
    delayed: tuple[RouteEntry, ...] = ()

    @property
    def entries(self) -> int:
        return len(self.immediate) + len(self.delayed)

    def lookup(self, neuron: int, delayed: bool = False) -> list[tuple[int, int]]:
        """The (core, axon) events of a spike of ``neuron`` (in table order)."""
        out = []
        for e in self.delayed if delayed else self.immediate:
            if e.first <= neuron < e.first + e.count:
                for t in e.targets:
                    base = t.axon + (neuron - e.first) * t.stride
                    out.extend((t.core, base + j) for j in range(t.stride))
        return out


@dataclass(frozen=True)
class SliceLayout:
    """A mapping slice in a core's neuron numbering: element ``e`` is neuron
    ``first_group*P + e - start``."""

    population: str
    start: int
    stop: int
    core: int
    first_group: int
    n_groups: int
    level: int

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True, eq=False)
class CoreLayout:
    """Translation between a core's mapping tables and its image."""

    slices: tuple[SliceLayout, ...]
    axon_first: np.ndarray  #: mapping axon -> its first axon-table entry
    axon_count: np.ndarray  #: mapping axon -> its number of entries (slices it feeds)
    axon_delay: np.ndarray  #: mapping axon -> the delay of its (source, delay) group


@dataclass(frozen=True, eq=False)
class InputPort:
    name: str
    shape: tuple[int, ...]
    offset: int  #: first host element of this input
    perm: np.ndarray | None  #: graph flat index of each hardware element (None: identity)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass(frozen=True, eq=False)
class AcceleratorImage:
    target: str
    params: CoreParams
    cores: tuple[CoreImage, ...]
    layouts: tuple[CoreLayout, ...]
    routes: tuple[RoutingTable, ...]  #: per core
    host_routes: RoutingTable  #: input elements -> (core, axon)
    inputs: tuple[InputPort, ...]
    input_encoding: str  #: "spikes" | "graded"
    input_scale: float
    input_bits: int
    levels: dict[str, int]  #: population (and input: 0) -> level
    output: str  #: the output population
    output_size: int
    output_shape: tuple[int, ...]  #: the graph's Output shape
    output_perm: np.ndarray | None  #: graph flat index of each hardware output element
    multicast: bool = True
    meta: dict = field(default_factory=dict)

    @property
    def max_level(self) -> int:
        return max(self.levels.values(), default=0)

    @property
    def output_slices(self) -> tuple[SliceLayout, ...]:
        return tuple(s for lay in self.layouts for s in lay.slices if s.population == self.output)

    @property
    def host_elements(self) -> int:
        return sum(p.size for p in self.inputs)


def _fail(msg: str) -> BackendError:
    return BackendError(f"FPGA backend: {msg}")


def _signed_fits(a: np.ndarray, bits: int) -> bool:
    a = np.asarray(a)
    return a.size == 0 or (int(a.min()) >= -(1 << (bits - 1)) and int(a.max()) < 1 << (bits - 1))


def _check_signed(a, bits: int, core: int, what: str) -> None:
    if not _signed_fits(a, bits):
        a = np.asarray(a)
        raise _fail(f"core {core}: {what} ranges {int(a.min())}..{int(a.max())}, beyond the "
                    f"{bits}-bit signed field of the accelerator")  # fmt: skip


# ------------------------------------------------------------------------------ parameters


def core_params(target, decay_bits: int, payload_bits: int) -> CoreParams:
    """The core sized from ``target`` (see the module docstring)."""
    f, sc, c = target.fpga, target.synapse_cost, target.core
    p = f.lanes
    return CoreParams(
        neurons=-(-c.neurons // p) * p, lanes=p, weight_bits=sc.word_bits // p,
        state_bits=c.state_bits, axons=c.input_axons,
        weight_words=c.synapse_memory_bits // sc.word_bits, decay_bits=decay_bits,
        payload_bits=payload_bits, profiles=c.neuron_profiles, weight_memory=f.weight_memory,
    )  # fmt: skip


def datapath_params(params: CoreParams, cores) -> CoreParams:
    """``params`` with the datapath sized to the network in ``cores``: ``max_shift`` the
    largest shift an axon uses and ``acc_bits`` the signed width of the largest sum one step's
    events can leave in an accumulator lane (every axon onto the neuron firing once, with the
    largest payload), so the accumulators never wrap; at most ``state_bits``."""
    pmax = (1 << params.payload_bits) - 1
    lo = hi = 0
    for core in cores:
        w = np.asarray(core.weights, np.int64).reshape(len(core.weights), params.lanes)
        pos = np.zeros((params.groups, params.lanes), np.int64)
        neg = np.zeros_like(pos)
        for a in core.axons:
            if a.row_len:
                rows = w[a.row_base : a.row_base + a.row_len] << a.shift
                pos[a.group_base : a.group_base + a.row_len] += np.maximum(rows, 0)
                neg[a.group_base : a.group_base + a.row_len] += np.maximum(-rows, 0)
        hi, lo = max(hi, int(pos.max(initial=0)) * pmax), max(lo, int(neg.max(initial=0)) * pmax)
    bits = max(hi.bit_length(), (lo - 1).bit_length() if lo else 0) + 1
    shift = max((a.shift for core in cores for a in core.axons), default=0)
    return replace(params, max_shift=shift, acc_bits=min(max(bits, 2), params.state_bits))


def _check_target(target) -> None:
    if target.kind != "fpga" or target.fpga is None:
        raise _fail(f"target '{target.name}' is not an FPGA accelerator target (kind "
                    f"{target.kind!r})")  # fmt: skip
    if target.synapse_cost.kind != "dense" or target.synapse_cost.word_bits % target.fpga.lanes:
        raise _fail(f"target '{target.name}': the accelerator stores dense rows of "
                    f"{target.fpga.lanes} weights per word; synapse_cost must be dense with a "
                    "word a multiple of the lanes")  # fmt: skip


def _decay_bits(net) -> int:
    """F: the one decay_bits of every multiplier-decay population (0: none)."""
    fs = {p.node.decay_bits for p in net.populations.values()
          if isinstance(p.node, (N.LIF, N.CubaLIF)) and not p.node.decay_shift}  # fmt: skip
    if len(fs) > 1:
        raise _fail(f"populations use different decay_bits {sorted(fs)}; a core has one "
                    "fixed-point decay width: quantize all with the same decay-bits")  # fmt: skip
    return fs.pop() if fs else 0


def _payload_bits(graph: Graph) -> int:
    if graph.meta.get("input") != "graded":
        return 1
    bits = int(graph.meta["input_bits"])
    if bits > MAX_PAYLOAD_BITS:
        raise _fail(f"graded input of {bits} bits; events carry at most {MAX_PAYLOAD_BITS}-bit "
                    "payloads: quantize with input-bits<=16")  # fmt: skip
    return bits


def _check_population(graph: Graph, pop, S: int) -> None:
    node = pop.node
    where = graph.describe(pop.name)
    if isinstance(node, (N.LI, N.CubaLI)):
        raise _fail(f"population {where} is a {node.kind}: the accelerator routes spikes "
                    "only and cannot read out membranes; end the network with spiking "
                    "neurons")  # fmt: skip
    if isinstance(node, N.Threshold):
        return
    if not isinstance(node, tuple(_KINDS)):
        raise _fail(f"population {where}: kind {node.kind} has no accelerator profile")
    if not node.quantized:
        raise _fail(f"population {where} is not quantised")
    for k in ("gain", "gain_i"):
        if k in pop.params and not np.all(pop.params[k] == 1):
            raise _fail(f"population {where}: input gain '{k}' is not 1 (the accelerator has "
                        "no gain multiplier); run canonicalize and quantize")  # fmt: skip
    widths = [("state_bits", node.state_bits)]
    if isinstance(node, N.CubaLIF):
        widths.append(("current_bits", node.current_bits))
    for what, bits in widths:
        if bits > S or (node.saturate and bits != S):
            need = "saturates at" if node.saturate else "needs"
            raise _fail(f"population {where} {need} {bits}-bit {what.split('_')[0]}s; the "
                        f"accelerator computes and saturates at {S} bits: quantize with "
                        f"state-bits={S}")  # fmt: skip


def _profiles_of(pop, S: int) -> tuple[list[Profile], np.ndarray]:
    """The distinct profiles of a population and each neuron's index into them."""
    node = pop.node
    if isinstance(node, N.Threshold):
        prof = Profile(Kind.LIF, 0, 0, True, Reset.NONE, Timing.IMMEDIATE, node.strict, False)
        return [prof], np.zeros(pop.size, np.int64)
    d = np.asarray(pop.params.get("decay", np.zeros(pop.size)), np.int64)
    di = np.asarray(pop.params.get("decay_i", np.zeros(pop.size)), np.int64)
    if isinstance(node, N.IF):
        d = np.zeros(pop.size, np.int64)
    if node.decay_shift:
        d, di = np.clip(d, -1, S - 1), np.clip(di, -1, S - 1)
    pairs, idx = np.unique(np.stack([d, di], axis=1), axis=0, return_inverse=True)
    profs = [Profile(_KINDS[type(node)], int(a), int(b), bool(node.decay_shift),
                     _RESETS[node.reset], _TIMINGS[node.timing], bool(node.strict),
                     bool(node.saturate)) for a, b in pairs]  # fmt: skip
    return profs, np.asarray(idx, np.int64).reshape(-1)


def _check_decays(profiles, F: int, core: int) -> None:
    for p in profiles:
        for what, v in (("decay", p.decay), ("decay_i", p.decay_i)):
            if not p.decay_shift and not 0 <= v <= 1 << F:
                raise _fail(f"core {core}: {what} multiplier {v} is outside 0..2**{F}")


# ------------------------------------------------------------------------------ levels


def population_levels(net) -> dict[str, int]:
    """Input = 0; a population is 1 + the highest level of its non-delayed sources."""
    levels = {n: 0 for n in net.inputs}
    for name in net.order:
        pop = net.populations[name]
        srcs = [levels[b.source] for b in pop.blocks if b.delay == 0]
        levels[name] = 1 + max(srcs, default=0)
    return levels


# ------------------------------------------------------------------------------ one core


@dataclass
class _CoreBuild:
    core: Core
    P: int
    S: int
    W: int
    slices: list[SliceLayout] = field(default_factory=list)
    axons: list[AxonEntry] = field(default_factory=list)
    words: list[np.ndarray] = field(default_factory=list)  #: rows, (len, P) each
    n_words: int = 0


def _layout_slices(core: Core, P: int, levels: dict[str, int]) -> list[SliceLayout]:
    out, g = [], 0
    for sl in core.slices:
        n = -(-sl.size // P)
        out.append(SliceLayout(sl.population, sl.start, sl.stop, core.index, g, n,
                               levels[sl.population]))  # fmt: skip
        g += n
    return out


def _layer_shift(graph: Graph, net, population: str, source: str, delay: int) -> int:
    shifts = {getattr(graph.nodes[b.layer], "shift", 0) if b.layer else 0
              for b in net.populations[population].blocks
              if b.source == source and b.delay == delay}  # fmt: skip
    return min(shifts, default=0)


def _group_rows(cb: _CoreBuild, graph: Graph, net, params: CoreParams, g) -> np.ndarray:
    """Axon entries and rows of one axon group; returns the entry count per element."""
    n_el = g.elements.size
    cols: list[np.ndarray] = []  # per slice: which elements have synapses
    for si in range(len(cb.slices)):
        m = g.synapses.get(si)
        cols.append(np.zeros(n_el, bool) if m is None else np.diff(m.tocsc().indptr) > 0)
    counts = np.sum(cols, axis=0) if cols else np.zeros(n_el, np.int64)
    shifts = {si: _layer_shift(graph, net, cb.slices[si].population, g.source, g.delay)
              for si in g.synapses}  # fmt: skip
    mats = {si: m.tocsc() for si, m in g.synapses.items()}
    for i in range(n_el):
        for si, lay in enumerate(cb.slices):
            if not cols[si][i]:
                continue
            m = mats[si]
            a, b = m.indptr[i], m.indptr[i + 1]
            rows, w = m.indices[a:b], m.data[a:b].astype(np.int64)
            sh = shifts[si]
            _store_row(cb, params, lay, rows, w, sh, g.source)
    return np.asarray(counts, np.int64)


def _store_row(cb: _CoreBuild, params: CoreParams, lay: SliceLayout, rows, w, sh: int,
               source: str) -> None:  # fmt: skip
    c = cb.core.index
    if sh > params.max_shift:
        raise _fail(f"core {c}: weights from '{source}' onto '{lay.population}' use shift {sh}, "
                    f"beyond the accelerator's {params.max_shift}")  # fmt: skip
    if np.any(w % (1 << sh)):
        raise _fail(f"core {c}: weights from '{source}' onto '{lay.population}' are not "
                    f"multiples of 2**{sh} (the layer's shift)")  # fmt: skip
    stored = w >> sh
    if not _signed_fits(stored, cb.W):
        raise _fail(f"core {c}: weights from '{source}' onto '{lay.population}' need more than "
                    f"the accelerator's {cb.W}-bit lanes ({int(stored.min())}..{int(stored.max())}"
                    f" << {sh}); quantize with weight-bits<={cb.W}")  # fmt: skip
    row = np.zeros((lay.n_groups, cb.P), np.int64)
    row[rows // cb.P, rows % cb.P] = stored
    cb.axons.append(AxonEntry(cb.n_words, lay.n_groups, lay.first_group, sh))
    cb.words.append(row)
    cb.n_words += lay.n_groups


def _neurons(cb: _CoreBuild, net, params: CoreParams, F: int):
    """NeuronInit per core neuron and the core's profiles."""
    S, P, c = cb.S, cb.P, cb.core.index
    top = (1 << (S - 1)) - 1
    th = np.full(params.neurons, top, np.int64)
    bias, rv, ib, prof, dv, di = (np.zeros(params.neurons, np.int64) for _ in range(6))
    profiles: list[Profile] = []
    for lay in cb.slices:
        pop = net.populations[lay.population]
        lo, hi = lay.first_group * P, lay.first_group * P + lay.size
        sl = slice(lay.start, lay.stop)
        p = pop.params
        th[lo:hi] = p["threshold"][sl]
        if isinstance(pop.node, N.CubaLIF):
            bias[lo:hi] = p["bias"][sl]
            ib[lo:hi] = pop.input_bias[sl]
        else:
            bias[lo:hi] = p.get("bias", np.zeros(pop.size, np.int64))[sl] + pop.input_bias[sl]
        if "reset_value" in p:
            rv[lo:hi] = p["reset_value"][sl]
        profs, idx = _profiles_of(pop, S)
        if params.neuron_decays:  # multiplier decays per neuron, the rest in the profiles
            full = [profs[k] for k in idx[sl].tolist()]
            dv[lo:hi] = [q.decay if not q.decay_shift else 0 for q in full]
            di[lo:hi] = [q.decay_i if not q.decay_shift else 0 for q in full]
            profs = [q if q.decay_shift else replace(q, decay=0, decay_i=0) for q in profs]
        ids = np.zeros(len(profs), np.int64)
        for k in np.unique(idx[sl]).tolist():  # only the profiles of this slice's neurons
            if profs[k] not in profiles:
                profiles.append(profs[k])
            ids[k] = profiles.index(profs[k])
        prof[lo:hi] = ids[idx[sl]]
        prof[hi : (lay.first_group + lay.n_groups) * P] = prof[hi - 1]
    if len(profiles) > params.profiles:
        pops = sorted({s.population for s in cb.slices})
        raise _TooManyProfiles(
            f"FPGA backend: core {c} (layers {', '.join(pops)}) needs {len(profiles)} neuron "
            f"profiles; a core has {params.profiles}"
        )
    _check_decays(profiles, F, c)
    if np.any((dv < 0) | (dv > 1 << F) | (di < 0) | (di > 1 << F)):
        raise _fail(f"core {c}: a neuron's multiplier decay is outside 0..2**{F}")
    for what, a in (("threshold", th), ("bias", bias), ("reset_value", rv), ("ibias", ib)):
        _check_signed(a, S, c, what)
    inits = tuple(NeuronInit(*map(int, vals)) for vals in zip(
        th.tolist(), bias.tolist(), rv.tolist(), ib.tolist(), prof.tolist(), dv.tolist(),
        di.tolist(), strict=True))  # fmt: skip
    return inits, tuple(profiles) or (Profile(),)


class _TooManyProfiles(BackendError):
    """A core's neurons differ in more ways than its profile registers hold."""


def _updates(slices: list[SliceLayout]) -> dict[int, tuple[tuple[int, int], ...]]:
    """Per level: (first_group, n_groups) commands, adjacent slices of one level merged."""
    out: dict[int, list[list[int]]] = {}
    for lay in sorted(slices, key=lambda s: s.first_group):
        cmds = out.setdefault(lay.level, [])
        if cmds and cmds[-1][0] + cmds[-1][1] == lay.first_group:
            cmds[-1][1] += lay.n_groups
        else:
            cmds.append([lay.first_group, lay.n_groups])
    return {lv: tuple((a, b) for a, b in cmds) for lv, cmds in sorted(out.items())}


def _build_core(core: Core, graph: Graph, net, params: CoreParams, levels, F: int):
    P, S = params.lanes, params.state_bits
    cb = _CoreBuild(core, P, S, params.weight_bits, _layout_slices(core, P, levels))
    used = sum(s.n_groups for s in cb.slices) * P
    if used > params.neurons:
        raise _fail(f"core {core.index}: its slices take {used} neurons padded to groups of "
                    f"{P}; a core has {params.neurons}")  # fmt: skip
    counts, delays = [], []
    for g in core.groups:
        if g.delay > 1:
            raise _fail(f"core {core.index}: synapses from '{g.source}' have delay {g.delay}; "
                        "the accelerator delays by at most one step (next-step FIFO)")  # fmt: skip
        counts.append(_group_rows(cb, graph, net, params, g))
        delays.append(np.full(g.elements.size, g.delay, np.int64))
    count = np.concatenate(counts) if counts else np.zeros(0, np.int64)
    first = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64) if count.size else count
    if len(cb.axons) > params.axons:
        raise _fail(f"core {core.index}: {len(cb.axons)} axon-table entries "
                    f"({core.input_axons} input axons, split per slice they feed); a core "
                    f"has {params.axons}")  # fmt: skip
    if cb.n_words > params.weight_words:
        raise _fail(f"core {core.index}: its weight rows take {cb.n_words} words; the weight "
                    f"memory has {params.weight_words}")  # fmt: skip
    mem = np.zeros((params.weight_words, P), np.int64)
    if cb.words:
        mem[: cb.n_words] = np.concatenate(cb.words)
    neurons, profiles = _neurons(cb, net, params, F)
    axons = tuple(cb.axons) + (AxonEntry(0, 0, 0, 0),) * (params.axons - len(cb.axons))
    image = CoreImage(params, axons, tuple(map(tuple, mem.tolist())), neurons,
                      profiles, _updates(cb.slices))  # fmt: skip
    delay = np.concatenate(delays) if delays else np.zeros(0, np.int64)
    return image, CoreLayout(tuple(cb.slices), first, count, delay)


# ------------------------------------------------------------------------------ routing


def _targets_per_element(m: Mapping, layouts, src: str, n: int):
    """Per source element: sorted [(delayed, core, first axon, count)]."""
    per: list[list[tuple[int, int, int, int]]] = [[] for _ in range(n)]
    rows = m.routes.get(src)
    if rows is None:
        return per
    for e, core, a in rows.tolist():
        lay = layouts[core]
        k = int(lay.axon_count[a])
        if k:
            per[e].append((int(lay.axon_delay[a]), core, int(lay.axon_first[a]), k))
    for t in per:
        t.sort()
    return per


def _runs(keys: list[int], per: list[list[tuple[int, int, int, int]]], multicast: bool):
    """Route entries of one table: runs of consecutive keys whose targets continue."""
    out: list[RouteEntry] = []
    cur: list | None = None  # [first key, count, targets, last targets]
    for key, tg in zip(keys, per, strict=True):
        if not tg:
            cur = None
            continue
        if (
            cur is not None
            and key == cur[0] + cur[1]
            and [(c, k) for c, _, k in tg] == [(c, k) for c, _, k in cur[3]]
            and all(a == b + k for (_, a, k), (_, b, _) in zip(tg, cur[3], strict=True))
        ):
            cur[1] += 1
            cur[3] = tg
            continue
        cur = [key, 1, tg, tg]
        out.append(cur)  # type: ignore[arg-type]
    entries = []
    for first, count, tg, _ in out:
        targets = tuple(RouteTarget(c, a, k) for c, a, k in tg)
        groups = [targets] if multicast else [(t,) for t in targets]
        entries.extend(RouteEntry(first, count, g) for g in groups)
    return entries


def _table(keys, per, multicast: bool, host_targets=None) -> RoutingTable:
    imm = [[(c, a, k) for d, c, a, k in t if d == 0] for t in per]
    dly = [[(c, a, k) for d, c, a, k in t if d == 1] for t in per]
    if host_targets is not None:
        for i, e in enumerate(host_targets):
            if e >= 0:
                imm[i] = imm[i] + [(HOST, int(e), 1)]
    return RoutingTable(tuple(_runs(keys, imm, multicast)), tuple(_runs(keys, dly, multicast)))


def _core_tables(m: Mapping, layouts, net, multicast: bool, P: int) -> list[RoutingTable]:
    per_core: list[tuple[list, list, list]] = [([], [], []) for _ in m.cores]
    cache: dict[str, list] = {}
    for lay in (s for lo in layouts for s in lo.slices):
        if lay.population not in cache:
            size = net.populations[lay.population].size
            cache[lay.population] = _targets_per_element(m, layouts, lay.population, size)
        per = cache[lay.population][lay.start : lay.stop]
        keys = list(range(lay.first_group * P, lay.first_group * P + lay.size))
        host = list(range(lay.start, lay.stop)) if lay.population == net.output else [-1] * lay.size
        k, p, h = per_core[lay.core]
        k.extend(keys)
        p.extend(per)
        h.extend(host)
    tables = []
    for keys, per, host in per_core:
        order = np.argsort(keys, kind="stable")
        tables.append(_table([keys[i] for i in order], [per[i] for i in order], multicast,
                             [host[i] for i in order]))  # fmt: skip
    return tables


# ------------------------------------------------------------------------------ entry point


def _build_cores(mapping: Mapping, graph: Graph, net, params: CoreParams, levels):
    cores, layouts = [], []
    for core in mapping.cores:
        img, lay = _build_core(core, graph, net, params, levels, params.decay_bits)
        cores.append(img)
        layouts.append(lay)
    return cores, layouts


def build_images(graph: Graph, mapping: Mapping, target) -> AcceleratorImage:
    """The accelerator's memory images for ``mapping`` of the quantised, partitioned ``graph``.

    ``target``: a :class:`~snnc.targets.schema.Target` or a preset name / YAML path.
    """
    from snnc.targets import load_target

    t = load_target(target)
    _check_target(t)
    if not graph.meta.get("quantized"):
        raise _fail("the graph is not quantised")
    net = mapping.network
    if net.output not in net.populations:
        raise _fail(f"the graph's output reads the input '{net.output}' directly; there is "
                    "nothing for the accelerator to compute")  # fmt: skip
    S = t.core.state_bits
    for pop in net.populations.values():
        _check_population(graph, pop, S)
    params = core_params(t, _decay_bits(net), _payload_bits(graph))
    levels = population_levels(net)
    try:
        cores, layouts = _build_cores(mapping, graph, net, params, levels)
    except _TooManyProfiles:  # more distinct decays than profiles: keep them per neuron
        params = replace(params, neuron_decays=True)
        cores, layouts = _build_cores(mapping, graph, net, params, levels)
    params = datapath_params(params, cores)
    cores = [replace(c, params=params) for c in cores]
    tables = _core_tables(mapping, layouts, net, t.multicast, params.lanes)
    for c, tb in enumerate(tables):
        if tb.entries > t.router_entries:
            raise _fail(f"core {c}: {tb.entries} routing table entries (runs of source neurons "
                        f"per destination, delayed and immediate); a core has "
                        f"{t.router_entries}")  # fmt: skip
    inputs, host_keys, host_per, off = [], [], [], 0
    for name, shape in net.inputs.items():
        size = int(np.prod(shape, dtype=np.int64))
        inputs.append(InputPort(name, tuple(shape), off, net.perm.get(name)))
        host_keys.extend(range(off, off + size))
        host_per.extend(_targets_per_element(mapping, layouts, name, size))
        off += size
    host = _table(host_keys, host_per, t.multicast)
    graded = graph.meta.get("input") == "graded"
    out_pop = net.populations[net.output]
    return AcceleratorImage(
        target=t.name, params=params, cores=tuple(cores), layouts=tuple(layouts),
        routes=tuple(tables), host_routes=host, inputs=tuple(inputs),
        input_encoding="graded" if graded else "spikes",
        input_scale=float(graph.meta.get("input_scale", 1.0)) if graded else 1.0,
        input_bits=int(graph.meta.get("input_bits", 1)) if graded else 1,
        levels=levels, output=net.output, output_size=out_pop.size,
        output_shape=tuple(graph.nodes[graph.output_names[0]].shape),
        output_perm=net.perm.get(net.output), multicast=t.multicast,
    )  # fmt: skip


def synapse_matrix(image: AcceleratorImage, core: int) -> sp.csr_matrix:
    """The core's (axon entries, neurons) matrix of effective weights ``stored << shift``,
    read back from its axon table and weight memory."""
    img = image.cores[core]
    P = img.params.lanes
    mem = np.asarray(img.weights, np.int64)
    rows, cols, vals = [], [], []
    for a, e in enumerate(img.axons):
        block = mem[e.row_base : e.row_base + e.row_len] << e.shift
        k, j = np.nonzero(block)
        rows.append(np.full(k.size, a))
        cols.append((e.group_base + k) * P + j)
        vals.append(block[k, j])
    shape = (len(img.axons), img.params.neurons)
    if not rows:
        return sp.csr_matrix(shape, dtype=np.int64)
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=shape, dtype=np.int64)  # fmt: skip
