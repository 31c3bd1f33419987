"""Lowering a quantised, partitioned, placed and routed graph to Loihi core configurations.

:func:`lower` turns the graph's :class:`~snnc.mapping.cores.Mapping` into a
:class:`~snnc.backends.loihi.config.LoihiConfig`, with the number formats of
:mod:`snnc.backends.loihi.formats`, and checks every per-core limit of the target.

Layout decisions
----------------

*Cores.* Mapping core ``c`` placed at ``(chip, x, y)`` (the place pass) is core
``y * mesh_width + x`` of ``chip``. Its slices (mapping order) take consecutive compartments.

*Latency.* A Loihi synapse delivers a spike one step after it was sent, plus ``Dly`` steps. A
population's *depth* is the number of steps its spikes lag the IR's: inputs 0, a population
the least ``depth >= 1`` with ``depth >= depth(source) + 1 - d`` for every source already
placed (``d``: the IR delay of that input path). A synapse then gets
``Dly = depth - depth(source) - 1 + d``, so every IR delay is kept exactly (a self-recurrence
through a one-step Delay has ``Dly = 0``); a negative ``Dly`` (feedback from a deeper layer
that the IR delays by too few steps) or one beyond the target's ``max_delay`` is refused.
``ChipConfig.layers`` records each depth: the output of IR step ``t`` appears at Loihi step
``t + depth``.

*Axons.* Input axon ``a`` of a core is the mapping's axon ``a`` (one per source element and IR
delay with synapses there). Its synapses, sorted by compartment, are one contiguous run of the
synapse memory with ``cxBase`` the first compartment it reaches (``CIdx`` relative to it). An
output axon is one mapping route: (source compartment, destination chip, core, axon).

*Profiles and formats.* Per core, in order of first use: one compartment profile per distinct
``(decayU, decayV)``, one threshold profile per distinct ``vth``, one synapse format per
distinct ``(wgtExp, wgtBits, idxBits, isMixed, dlyBits)`` with ``idxBits`` the target's index
bits and ``dlyBits`` 0 without delays, else the bits of the target's ``max_delay``.

*Gains.* An integer input gain (``gain``; ``gain_i*gain`` for CubaLIF) multiplies its neuron's
row of weights and input bias exactly.

*Current biases: the bias compartment.* Loihi adds its ``bias`` register to ``v``; a CubaLIF's
input bias ``b`` (an Affine/Conv bias feeding it, ``Population.input_bias``) is part of the
current: the IR adds ``gain_i*gain*b`` to ``i`` at every step from the input's first. It is
carried by one extra input axon per core holding such neurons (numbered after the mapping's
axons), with one synapse per neuron of weight ``gain_i*gain*b`` at the layer's scale ``K`` in a
synapse format of its own (:func:`~snnc.backends.loihi.formats.weight_format` of the biases; its
``wgtExp`` also bounds ``K``), from an *always-on* compartment: one per chip that needs it, no
synapse reaches it and its bias exceeds its threshold (``bias << biasExp >= (vth << 6) + 1``),
so ``v = bias`` fires and resets it at every step from step 0, whatever its decays. Its spike of
step ``s`` reaches ``u`` at ``s + 1 + Dly``; a layer at depth ``d`` sees the IR's step ``t`` at
Loihi step ``t + d``, so its bias synapses have ``Dly = d - 1`` (``d <= max_delay + 1``, else
refused): exact from the first step. The compartment is appended to the first core of the chip
(in core order) where it breaks no per-core limit, reusing a threshold (one ``vth <= 8189``
leaves room for a larger bias) and a compartment profile (no refractory delay) when it can; else
it takes a free core of its own (``vth`` 1, bias 65, decays 4095). It belongs to no layer: not
in ``ChipConfig.layers`` nor in any core's layer list.

*LIF/IF biases.* A LIF/IF neuron keeps no current (decayU 4095: ``u = a << 6`` each step), so
its bias (own bias plus ``gain*b``) added to ``u`` reaches ``v`` as the register would, but from
Loihi step ``d`` on, with the input: it takes the same path (same format rule and ``Dly``) with
its ``bias`` register 0. Where it is not one synapse weight (or deeper than ``max_delay + 1``,
or no scale fits), it stays in the register instead (warned: it acts from Loihi step 0).
lava-dl's netx keeps either in the neuron's bias field (from step 0, as Lava does).

Refused (BackendError naming the layer, what was found, what Loihi allows and what to do):
non-Loihi targets; populations with non-spiking output (LI, CubaLI); reset 'none' or to a
non-zero value; a CubaLIF current bias wider than one synapse weight (8 bits and a sign, times
the biases' shared power of two) or deeper than ``max_delay + 1``; graded input on a target
without graded spikes, or wider than its payload; the graph's output reading its input; any
number :mod:`~snnc.backends.loihi.formats` cannot represent; delays as above. Limits are checked
per core by :func:`violations` (one error listing every one).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from snnc.backends.loihi import formats as F
from snnc.backends.loihi.config import (
    ChipConfig,
    Compartment,
    CoreConfig,
    CoreRef,
    CxProfile,
    LoihiConfig,
    OutputAxon,
    Port,
    SynapseFmt,
    SynapseMapEntry,
    Synapses,
)
from snnc.backends.loihi.layer import LayerPlan, _fail, plan_layer
from snnc.backends.loihi.limits import CoreUse, _limits, core_usage, violations
from snnc.errors import BackendError
from snnc.ir import nodes as N
from snnc.ir.graph import Graph
from snnc.mapping.connectivity import Population

__all__ = [
    "BiasCompartment",
    "CoreUse",
    "LayerPlan",
    "Lowering",
    "core_usage",
    "lower",
    "violations",
]

R, TM = N.ResetMode, N.ResetTiming


@dataclass(frozen=True)
class BiasCompartment:
    """An always-on compartment (see the module docstring): where it is, its registers, and
    the input axons ``(chip, core, axon)`` it drives."""

    chip: int
    core: int
    cx: int
    bias: int
    bias_exp: int
    vth: int
    targets: tuple[tuple[int, int, int], ...]


@dataclass
class Lowering:
    """A lowered network: the configuration, the target, the plan of each layer, the use of
    each core and the network-wide semantic changes."""

    config: LoihiConfig
    target: object
    layers: dict[str, LayerPlan]
    usage: list
    warnings: list[str]
    bias_compartments: tuple[BiasCompartment, ...] = ()

    @property
    def semantic_changes(self) -> list[str]:
        return [w for p in self.layers.values() for w in p.warnings] + self.warnings


# ------------------------------------------------------------------------------ checks


def _check_target(t) -> None:
    if t.kind != "loihi":
        raise _fail(f"target '{t.name}' is a {t.kind} target; lower to Loihi with --target "
                    "loihi1 or loihi2 (or a kind: loihi YAML)")  # fmt: skip


def _check_population(g: Graph, pop: Population) -> None:
    node, where = pop.node, g.describe(pop.name)
    if isinstance(node, (N.LI, N.CubaLI)):
        raise _fail(f"population {where} outputs its membrane; Loihi compartments send spikes "
                    "only: end the network with spiking neurons (LIF, IF) and read their spike "
                    "counts")  # fmt: skip
    if isinstance(node, N.Threshold):
        return
    if not node.quantized:
        raise _fail(f"population {where} is not quantised; run quantize first")
    if node.reset is R.NONE:
        raise _fail(f"population {where} has reset 'none'; a Loihi compartment always resets v "
                    "to 0 when it spikes: use reset by subtraction or to zero")  # fmt: skip
    rv = pop.params.get("reset_value")
    if node.reset is R.TO_VALUE and rv is not None and np.any(rv != 0):
        raise _fail(f"population {where} resets to {int(rv[rv != 0][0])}; a Loihi "
                    "compartment resets v to 0 only: use a zero reset value (or reset by "
                    "subtraction)")  # fmt: skip


def payload_bits(g: Graph, t) -> int:
    """0 for binary input spikes; the graded input's bits on a target with graded spikes."""
    if g.meta.get("input") != "graded":
        return 0
    bits = int(g.meta["input_bits"])
    if t.spike_payload_bits == 0:
        raise _fail(f"the graph takes graded (multi-bit) input, but target '{t.name}' has binary "
                    "spikes only: rate-code the input and quantize with input=spikes, or use "
                    "--target loihi2 (graded spikes)")  # fmt: skip
    if bits > t.spike_payload_bits:
        top = t.spike_payload_bits
        raise _fail(f"graded input of {bits} bits; spikes of target '{t.name}' carry {top}: "
                    f"quantize with input-bits<={top}")  # fmt: skip
    return bits


def depths(net) -> dict[str, int]:
    """Steps each population's spikes lag the IR's (inputs: 0); see the module docstring."""
    depth = dict.fromkeys(net.inputs, 0)
    for name in net.order:
        need = [depth[b.source] + 1 - b.delay for b in net.populations[name].blocks
                if b.source in depth]  # fmt: skip
        depth[name] = max([1, *need])
    return depth


# ------------------------------------------------------------------------------ one core


def core_location(placement: np.ndarray, t) -> dict[int, tuple[int, int]]:
    """Mapping core -> (chip, core on the chip) from the place pass's (chip, x, y)."""
    w = t.mesh[0]
    return {i: (int(c), int(y) * w + int(x)) for i, (c, x, y) in enumerate(placement)}


def _has_current_bias(p: LayerPlan, sl) -> bool:
    return p.current_bias_format is not None and bool(np.any(p.current_bias[sl.start : sl.stop]))


class _CoreBuilder:
    def __init__(self, mcore, plans: dict[str, LayerPlan], mapping, loc, t):
        self.m, self.plans, self.mapping, self.loc, self.t = mcore, plans, mapping, loc, t
        self.offsets = np.cumsum([0] + [s.size for s in mcore.slices]).tolist()
        self.fmts: list[SynapseFmt] = []
        self.bias_slices = [si for si, sl in enumerate(mcore.slices)
                            if _has_current_bias(plans[sl.population], sl)]  # fmt: skip
        #: the input axon from the bias compartment (after the mapping's), or None
        self.bias_axon = mcore.input_axons if self.bias_slices else None

    def compartments(self):
        cxs, profiles, vths = [], [], []
        for sl in self.m.slices:
            p = self.plans[sl.population]
            for i in range(sl.start, sl.stop):
                prof = CxProfile(int(p.decay_u[i]), int(p.decay_v[i]))
                if prof not in profiles:
                    profiles.append(prof)
                if int(p.vth[i]) not in vths:
                    vths.append(int(p.vth[i]))
                vi, pi = vths.index(int(p.vth[i])), profiles.index(prof)
                cxs.append(Compartment(int(p.bias[i]), int(p.bias_exp[i]), vi, pi))
        return tuple(profiles), tuple(vths), tuple(cxs)

    def fmt_id(self, f: F.WeightFormat, k: int, dly: int) -> int:
        dly_bits = 0 if dly == 0 else max(1, self.t.core.max_delay.bit_length())
        sf = SynapseFmt(f.wgt_exp(k), f.wgt_bits, self.t.synapse_cost.index_bits, f.is_mixed,
                        dly_bits)  # fmt: skip
        if sf not in self.fmts:
            self.fmts.append(sf)
        return self.fmts.index(sf)

    def bias_columns(self) -> list[np.ndarray]:
        """The synapses of the bias axon: one per neuron with a current bias."""
        cols = []
        for si in self.bias_slices:
            sl = self.m.slices[si]
            p = self.plans[sl.population]
            b = p.current_bias[sl.start : sl.stop]
            rows = np.flatnonzero(b)
            fid = self.fmt_id(p.current_bias_format, p.k, p.current_bias_dly)
            n = rows.size
            cols.append(np.stack([np.full(n, self.bias_axon), self.offsets[si] + rows,
                                  p.current_bias_format.wgt(b[rows]), np.full(n, fid),
                                  np.full(n, p.current_bias_dly)], axis=1))  # fmt: skip
        return cols

    def synapse_columns(self):
        cols = []  # (axon, cx, wgt, fmt, dly)
        for grp in self.m.groups:
            key = (grp.source, grp.delay)
            for si, mat in sorted(grp.synapses.items()):
                sl = self.m.slices[si]
                p = self.plans[sl.population]
                c = mat.tocoo()
                w = c.data.astype(np.int64) * p.gain[sl.start + c.row]
                keep = w != 0
                if not keep.any():
                    continue
                fid = self.fmt_id(p.formats[key], p.k, p.delays[key])
                n = int(keep.sum())
                cols.append(np.stack([grp.first_axon + c.col[keep], self.offsets[si] + c.row[keep],
                                      p.formats[key].wgt(w[keep]), np.full(n, fid),
                                      np.full(n, p.delays[key])], axis=1))  # fmt: skip
        cols += self.bias_columns()
        if not cols:
            return np.zeros((0, 5), np.int64)
        a = np.concatenate(cols).astype(np.int64)
        return a[np.lexsort((a[:, 1], a[:, 0]))]

    def synapses(self):
        a = self.synapse_columns()
        n_axons = self.m.input_axons + (self.bias_axon is not None)
        smap: list[SynapseMapEntry | None] = [None] * n_axons
        starts = np.searchsorted(a[:, 0], np.arange(n_axons + 1))
        cidx = a[:, 1].copy()
        for ax in range(n_axons):
            lo, hi = int(starts[ax]), int(starts[ax + 1])
            if hi > lo:
                base = int(a[lo:hi, 1].min())
                cidx[lo:hi] -= base
                smap[ax] = SynapseMapEntry(lo, hi - lo, base)
        syn = Synapses(*(tuple(int(v) for v in col) for col in (cidx, a[:, 2], a[:, 3], a[:, 4])))
        return syn, tuple(smap)

    def axons(self):
        out = []
        for si, sl in enumerate(self.m.slices):
            rows = self.mapping.routes.get(sl.population)
            if rows is None or rows.size == 0:
                continue
            sel = rows[(rows[:, 0] >= sl.start) & (rows[:, 0] < sl.stop)]
            for e, core, ax in sel.tolist():
                chip, k = self.loc[core]
                out.append(OutputAxon(self.offsets[si] + e - sl.start, chip, k, int(ax)))
        return tuple(sorted(out, key=lambda o: (o.cx, o.chip, o.core, o.axon)))

    def build(self) -> tuple[CoreConfig, CoreRef]:
        chip, core = self.loc[self.m.index]
        profiles, vths, cxs = self.compartments()
        syn, smap = self.synapses()
        cfg = CoreConfig(chip, core, profiles, vths, cxs, tuple(self.fmts), syn, smap,
                         self.axons())  # fmt: skip
        layers = tuple((s.population, s.start, s.stop, self.offsets[i])
                       for i, s in enumerate(self.m.slices))  # fmt: skip
        return cfg, CoreRef(chip, core, f"cores/{cfg.name}.json", layers)


# ------------------------------------------------------------------------------ bias compartment


ALWAYS_ON_PROFILE = CxProfile(F.DECAY_MAX, F.DECAY_MAX)  #: of a bias compartment of its own


def always_on_bias(vth: int) -> tuple[int, int] | None:
    """The smallest ``(bias, biasExp)`` with ``bias << biasExp >= (vth << 6) + 1``: a compartment
    no synapse reaches then has ``v = bias << biasExp`` and fires at every step (v is reset to 0
    each time and u stays 0, whatever its decays). None when ``vth`` is too large for a bias."""
    need = (vth << F.VTH_SHIFT) + 1
    for e in range(F.BIAS_EXP_MAX + 1):
        m = -(-need >> e)  # ceil(need / 2**e)
        if m <= F.BIAS_MANT_MAX:
            return m, e
    return None


def _fits(cfg: CoreConfig, t) -> bool:
    use = core_usage(cfg, t)
    return all(getattr(use, attr) <= lim for _, attr, lim in _limits(t))


def _with_bias_compartment(cfg: CoreConfig, targets, t) -> CoreConfig | None:
    """``cfg`` with an always-on compartment appended that drives ``targets``, reusing a
    threshold and a compartment profile where it can; None where it breaks a per-core limit."""
    vths, profiles = list(cfg.vth_profiles), list(cfg.cx_profiles)
    usable = [v for v in vths if always_on_bias(v) is not None]
    vth = min(usable) if usable else 1
    if vth not in vths:
        vths.append(vth)
    free = [q for q in profiles if q.refract_delay == 0]
    prof = ALWAYS_ON_PROFILE if ALWAYS_ON_PROFILE in free or not free else free[0]
    if prof not in profiles:
        profiles.append(prof)
    bias, exp = always_on_bias(vth)
    cx = len(cfg.compartments)
    new = replace(cfg, cx_profiles=tuple(profiles), vth_profiles=tuple(vths),
                  compartments=(*cfg.compartments,
                                Compartment(bias, exp, vths.index(vth), profiles.index(prof))),
                  axons=(*cfg.axons, *(OutputAxon(cx, *d) for d in targets)))  # fmt: skip
    return new if _fits(new, t) else None


def place_bias_compartments(cores: dict, refs: list, targets, t) -> list[BiasCompartment]:
    """One always-on compartment per chip with ``targets`` (``(chip, core, axon)`` input axons
    of the bias): on the first core of the chip that takes it within its limits, else on a free
    core. Updates ``cores`` and ``refs`` in place."""
    out = []
    for chip in sorted({c for c, _, _ in targets}):
        dests = sorted(d for d in targets if d[0] == chip)
        host = None
        for key in sorted(k for k in cores if k[0] == chip):
            host = _with_bias_compartment(cores[key], dests, t)
            if host is not None:
                break
        if host is None:
            used = {k for c, k in cores if c == chip}
            free = [k for k in range(t.cores) if k not in used]
            empty = CoreConfig(chip, free[0], (), (), (), (), Synapses(), (), ()) if free else None
            host = _with_bias_compartment(empty, dests, t) if free else None
            if host is None:
                raise _fail(f"chip {chip}: the input biases into CubaLIF currents need an "
                            f"always-on compartment driving {len(dests)} core(s), and no core "
                            "of the chip has a compartment, output axons and profiles to spare "
                            "for it, nor is one free: use a target with more cores or chips, or "
                            "bias=False on the layers that feed CubaLIF neurons")  # fmt: skip
            refs.append(CoreRef(chip, free[0], f"cores/{host.name}.json", ()))
        cores[host.chip, host.core] = host
        c, cx = host.compartments[-1], len(host.compartments) - 1
        vth = host.vth_profiles[c.vth_profile]
        out.append(BiasCompartment(chip, host.core, cx, c.bias, c.bias_exp, vth, tuple(dests)))
    return out


# ------------------------------------------------------------------------------ ports


def _graph_index(net, name: str, n: int) -> np.ndarray:
    p = net.perm.get(name)
    return np.arange(n) if p is None else np.asarray(p)


def input_ports(net, mapping, loc) -> tuple[Port, ...]:
    ports = []
    for name in net.inputs:
        n = net.source_size(name)
        gi = _graph_index(net, name, n)
        where: list[list[tuple[int, int, int]]] = [[] for _ in range(n)]
        rows = mapping.routes.get(name, np.zeros((0, 3), np.int64))
        for e, core, ax in rows.tolist():
            where[int(gi[e])].append((*loc[core], int(ax)))
        ports.append(Port(name, n, tuple(tuple(sorted(w)) for w in where)))
    return tuple(ports)


def output_port(g: Graph, net, mapping, loc) -> Port:
    pop = net.populations[net.output]
    gi = _graph_index(net, pop.name, pop.size)
    where: list[tuple] = [()] * pop.size
    for core in mapping.cores:
        off = 0
        for sl in core.slices:
            if sl.population == pop.name:
                for e in range(sl.start, sl.stop):
                    where[int(gi[e])] = ((*loc[core.index], off + e - sl.start),)
            off += sl.size
    return Port(g.output_names[0], pop.size, tuple(where))


# ------------------------------------------------------------------------------ entry point


def _checked_inputs(g: Graph, mapping, t):
    from snnc.passes.place import placement_of

    if not g.meta.get("quantized"):
        raise _fail("the graph is not quantised; compile it with snnc compile --target loihi1")
    if not g.meta.get("routed"):
        raise _fail("the graph is not partitioned, placed and routed; compile it with snnc "
                    f"compile --target {t.name}")  # fmt: skip
    if mapping is None:
        from snnc.mapping.cores import mapping_of

        mapping = mapping_of(g)
    net = mapping.network
    if net.output not in net.populations:
        raise _fail(f"the graph's output reads the input '{net.output}' directly; there is "
                    "nothing for the cores to compute")  # fmt: skip
    for pop in net.populations.values():
        _check_population(g, pop)
    return mapping, net, placement_of(g)


def _configure(graph: Graph, net, mapping, plans, loc, bits: int, t):
    """The cores and chip file of ``plans``: (config, refs, bias axons, bias compartments)."""
    depth = {n: p.depth for n, p in plans.items()}
    cores, refs, bias_axons = {}, [], []
    for mcore in mapping.cores:
        b = _CoreBuilder(mcore, plans, mapping, loc, t)
        cfg, ref = b.build()
        cores[cfg.chip, cfg.core] = cfg
        refs.append(ref)
        if b.bias_axon is not None:
            bias_axons.append((cfg.chip, cfg.core, b.bias_axon))
    always_on = place_bias_compartments(cores, refs, bias_axons, t)
    refs.sort(key=lambda r: (r.chip, r.core))
    chip = ChipConfig(t.name, t.chips, t.cores, bits, tuple(refs), input_ports(net, mapping, loc),
                      (output_port(graph, net, mapping, loc),),
                      tuple((n, depth[n]) for n in net.order))  # fmt: skip
    config = LoihiConfig(chip, {(r.chip, r.core): cores[r.chip, r.core] for r in refs})
    return config, refs, bias_axons, always_on


def lower(graph: Graph, target, mapping=None) -> Lowering:
    """The Loihi configuration of a compiled graph (``snnc compile --target loihi1``).

    ``target``: a :class:`~snnc.targets.schema.Target` or a preset name / YAML path;
    ``mapping``: the graph's :func:`~snnc.mapping.cores.mapping_of` if already built.
    """
    from snnc.targets import load_target

    t = load_target(target)
    _check_target(t)
    mapping, net, placement = _checked_inputs(graph, mapping, t)
    bits = payload_bits(graph, t)
    graded_max = (1 << bits) - 1 if bits else 1
    depth = depths(net)
    plans = {n: plan_layer(graph, net, n, t, depth, graded_max) for n in net.order}
    loc = core_location(placement, t)
    try:
        built = _configure(graph, net, mapping, plans, loc, bits, t)
        bad = violations(built[0], t)
    except BackendError:  # no room for the always-on compartment
        if not any(p.bias_in_u for p in plans.values()):
            raise
        bad = ["no room for the bias compartment"]
    if bad and any(p.bias_in_u for p in plans.values()):
        # the partitioner does not count the bias synapses and compartment: where they break a
        # limit, the LIF/IF biases go back to the registers (from step 0, warned)
        plans = {n: plan_layer(graph, net, n, t, depth, graded_max, bias_in_u=False)
                 for n in net.order}  # fmt: skip
        built = _configure(graph, net, mapping, plans, loc, bits, t)
        bad = violations(built[0], t)
    config, refs, bias_axons, always_on = built
    if bad and bias_axons:
        where = ", ".join(f"chip {c} core {k}" for c, k, _ in bias_axons)
        bad.append(f"(the input axon of the always-on bias compartment, carrying the biases "
                   f"into u, is counted on {where})")  # fmt: skip
    if bad:
        raise _fail(f"the configuration breaks {len(bad)} limit(s) of target '{t.name}':\n  "
                    + "\n  ".join(bad))  # fmt: skip
    usage = [core_usage(config.cores[r.chip, r.core], t) for r in refs]
    out = net.output
    notes = [f"each layer adds one step of synaptic latency: the output '{out}' lags the input "
             f"by {depth[out]} step(s); the loihi engine runs T + {depth[out]} steps and drops "
             f"the first {depth[out]}"]  # fmt: skip
    cuba = ", ".join(
        f"'{n}'" for n, p in plans.items() if p.current_bias_format and not p.bias_in_u
    )
    moved = ", ".join(f"'{n}'" for n, p in plans.items() if p.bias_in_u)
    if always_on:
        where = "; ".join(f"chip {b.chip} core {b.core} compartment {b.cx}" for b in always_on)
        what = " and ".join(x for x in (cuba and f"the input biases into the currents of {cuba}",
                                        moved and f"the biases of {moved}") if x)  # fmt: skip
        netx = (
            "lava-dl's netx has no such compartment: no loihi/network.net for this network"
            if cuba
            else "lava-dl's netx keeps these biases in the neuron bias, from step 0"
        )
        notes.append(f"{what} come from an always-on compartment ({where}) through "
                     "synapses delayed by the layer's depth - 1: exact from the first step "
                     f"({netx})")  # fmt: skip
    return Lowering(config, t, plans, usage, notes, tuple(always_on))
