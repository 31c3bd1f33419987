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

Refused (BackendError naming the layer, what was found, what Loihi allows and what to do):
non-Loihi targets; populations with non-spiking output (LI, CubaLI); reset 'none' or to a
non-zero value; Affine/Conv biases into a CubaLIF current; graded input on a target without
graded spikes, or wider than its payload; the graph's output reading its input; any number
:mod:`~snnc.backends.loihi.formats` cannot represent; delays as above. Limits are checked per
core by :func:`violations` (one error listing every one).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

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
from snnc.backends.loihi.limits import CoreUse, core_usage, violations
from snnc.errors import BackendError
from snnc.ir import nodes as N
from snnc.ir.graph import Graph
from snnc.mapping.connectivity import Population

__all__ = ["CoreUse", "LayerPlan", "Lowering", "core_usage", "lower", "violations"]

R, TM = N.ResetMode, N.ResetTiming


@dataclass
class LayerPlan:
    """How one population is lowered: its scale, formats and per-neuron registers (mapping
    order), the representation errors and the semantic changes."""

    name: str
    kind: str
    depth: int
    k: int
    gain: np.ndarray
    formats: dict[tuple[str, int], F.WeightFormat]
    delays: dict[tuple[str, int], int]  #: (source, IR delay) -> Dly
    vth: np.ndarray
    bias: np.ndarray
    bias_exp: np.ndarray
    decay_u: np.ndarray
    decay_v: np.ndarray
    errors: list[F.ParamError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Lowering:
    """A lowered network: the configuration, the target, the plan of each layer, the use of
    each core and the network-wide semantic changes."""

    config: LoihiConfig
    target: object
    layers: dict[str, LayerPlan]
    usage: list
    warnings: list[str]

    @property
    def semantic_changes(self) -> list[str]:
        return [w for p in self.layers.values() for w in p.warnings] + self.warnings


def _fail(msg: str) -> BackendError:
    return BackendError(f"Loihi backend: {msg}")


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
    if isinstance(node, N.CubaLIF) and np.any(pop.input_bias != 0):
        raise _fail(f"population {where} is a CubaLIF whose input has a bias (from an Affine or "
                    "Conv bias); Loihi adds biases to v, not to the current u: use bias=False "
                    "on the layers that feed it, or LIF neurons")  # fmt: skip


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


# ------------------------------------------------------------------------------ one layer


def merged_inputs(pop: Population, gain: np.ndarray) -> dict[tuple[str, int], sp.csr_matrix]:
    """Per (source, IR delay): the population's synapses (rows scaled by the gain)."""
    out: dict[tuple[str, int], sp.csr_matrix] = {}
    for b in pop.blocks:
        key = (b.source, b.delay)
        out[key] = b.matrix if key not in out else (out[key] + b.matrix).tocsr()
    scale = sp.diags(gain.astype(np.int64), dtype=np.int64)
    return {k: (scale @ m).tocsr() for k, m in out.items()}


def _gain(g: Graph, pop: Population) -> np.ndarray:
    p = pop.params
    gain = np.ones(pop.size, np.int64)
    for key in ("gain", "gain_i"):
        if key in p:
            gain = gain * np.asarray(p[key], np.int64)
    if np.any(gain == 0):
        raise _fail(f"population {g.describe(pop.name)} has an input gain of 0")
    return gain


def _input_bound(net, inputs, graded_max: int) -> float:
    """Max |input sum| of one step over the population's neurons (IR units)."""
    pos = neg = 0.0
    for (src, _), m in inputs.items():
        top = 1.0 if src in net.populations else float(graded_max)
        a = m.tocsr()
        pos = pos + np.asarray(a.maximum(0).sum(axis=1)).reshape(-1) * top
        neg = neg + np.asarray((-a).maximum(0).sum(axis=1)).reshape(-1) * top
    return float(np.max(np.maximum(pos, neg), initial=0.0))


def _decays(pop: Population) -> tuple[np.ndarray, np.ndarray, list[F.ParamError]]:
    """decayU, decayV per neuron and their errors (of the kept fraction)."""
    node, p, n = pop.node, pop.params, pop.size
    zeros, ones = np.zeros(n, np.int64), np.ones(n, np.int64)
    if isinstance(node, N.CubaLIF):
        u_num, u_den = F.decay_factor(node, p["decay_i"])
    else:
        u_num, u_den = zeros, ones  # no current: u forgets every step
    if isinstance(node, N.IF):
        v_num, v_den = ones, ones
    elif isinstance(node, N.Threshold):
        v_num, v_den = zeros, ones  # stateless
    else:
        v_num, v_den = F.decay_factor(node, p["decay"])
    du, u_real = F.encode_decay_u(u_num, u_den)
    dv, v_real = F.encode_decay_v(v_num, v_den)
    unit = "of the factor"
    errs = [F.errors_of(pop.name, "decayU", u_num / u_den, u_real, unit),
            F.errors_of(pop.name, "decayV", v_num / v_den, v_real, unit)]  # fmt: skip
    return du, dv, errs


class _LayerLowering:
    """Lowers one population (see :func:`plan_layer`)."""

    def __init__(self, g: Graph, net, name: str, t, depth: dict[str, int], graded_max: int):
        self.g, self.net, self.t, self.depth = g, net, t, depth
        self.pop = net.populations[name]
        self.where = f"population {g.describe(name)}"
        self.graded_max = graded_max

    def formats(self, inputs) -> dict[tuple[str, int], F.WeightFormat]:
        return {key: F.weight_format(m.data, self.t.core.weight_bits,
                                     f"{self.where}, input from '{key[0]}'")
                for key, m in inputs.items() if m.nnz}  # fmt: skip

    def delays(self, inputs) -> dict[tuple[str, int], int]:
        out = {}
        mine = self.depth[self.pop.name]
        for src, d in inputs:
            dly = mine - self.depth[src] - 1 + d
            if dly < 0 or dly > self.t.core.max_delay:
                raise _fail(
                    f"{self.where}: its input from '{src}' (IR delay {d}) needs a synaptic delay "
                    f"of {dly} steps on Loihi (each layer adds one step: '{src}' lags by "
                    f"{self.depth[src]}, this layer by {mine}); Loihi delays by 0.."
                    f"{self.t.core.max_delay}: delay feedback from deeper layers by at least "
                    "their depth difference + 1 steps")  # fmt: skip
            out[(src, d)] = dly
        return out

    def problem(self, inputs, fmts, bias) -> F.ScaleProblem:
        node = self.pop.node
        x = _input_bound(self.net, inputs, self.graded_max)
        theta = np.asarray(self.pop.params["threshold"], np.int64)
        u_bound, v_bound = x, None
        if isinstance(node, N.Threshold):
            v_bound = x + float(np.abs(bias).max(initial=0)) + 1.0
        elif not node.saturate:
            v_bound = 2.0 ** (node.state_bits - 1)
            if isinstance(node, N.CubaLIF) and node.current_bits:
                gain = float(np.abs(self.pop.params.get("gain", np.ones(1))).max())
                u_bound = max(x, 2.0 ** (node.current_bits - 1) * gain)
        return F.ScaleProblem(self.where, theta, bool(node.strict), bias, tuple(fmts.values()),
                              u_bound, v_bound)  # fmt: skip

    def plan(self) -> LayerPlan:
        pop, node, name = self.pop, self.pop.node, self.pop.name
        gain = _gain(self.g, pop)
        inputs = merged_inputs(pop, gain)
        fmts = self.formats(inputs)
        own = np.asarray(pop.params.get("bias", np.zeros(pop.size)), np.int64)
        bias = own + gain * pop.input_bias if not isinstance(node, N.CubaLIF) else own
        prob = self.problem(inputs, fmts, bias)
        k = F.choose_scale(prob)
        vth, th_err = F.encode_threshold(prob.theta, prob.strict, k)
        mant, exp, real = F.encode_bias(bias, k)
        du, dv, derr = _decays(pop)
        errors = [F.ParamError(name, "weights", 0.0, 0.0),
                  F.errors_of(name, "threshold", prob.theta, prob.theta + th_err),
                  F.errors_of(name, "bias", bias, real), *derr]  # fmt: skip
        plan = LayerPlan(name, node.kind, self.depth[name], k, gain, fmts, self.delays(inputs),
                         vth, mant, exp, du, dv, errors)  # fmt: skip
        plan.warnings = semantic_changes(node, pop, plan, prob)
        return plan


def semantic_changes(node, pop: Population, plan: LayerPlan, prob: F.ScaleProblem) -> list[str]:
    """What the hardware forces on one layer (reported, not refused)."""
    name, out = f"'{pop.name}'", []
    leaky = bool(np.any(plan.decay_v != 0))
    if np.any(plan.bias != 0):
        out.append(f"{name}: its bias acts from Loihi step 0, {plan.depth} step(s) before its "
                   "first input arrives; the IR adds it from the input's first step")  # fmt: skip
    if isinstance(node, N.Threshold):
        out.append(f"{name}: the stateless Threshold keeps |v| >> 12 of a step without a spike "
                   "(decayV 4095)")  # fmt: skip
        return out
    if node.reset is R.SUBTRACT:
        out.append(f"{name}: reset by subtraction (v - threshold) becomes Loihi's reset to 0")
    if node.timing is not TM.IMMEDIATE:
        out.append(f"{name}: the {node.timing.value} reset becomes Loihi's immediate reset")
    if leaky:
        ir = "subtracts v >> k (a floor)" if node.decay_shift else "rounds to the nearest unit"
        out.append(f"{name}: the leak truncates toward zero at 2^-{plan.k + 6} of an IR unit on "
                   f"Loihi; the IR {ir}")  # fmt: skip
        if not node.strict:
            out.append(f"{name}: '>=' threshold becomes '>' with vth between two IR units "
                       "(exact on whole IR units only)")  # fmt: skip
    if node.saturate:
        lim = f"+-2^{17 - plan.k} IR units"
        out.append(f"{name}: the IR saturates v at +-2^{node.state_bits - 1}; Loihi clips it at "
                   f"{lim}")  # fmt: skip
        if isinstance(node, N.CubaLIF):
            out.append(f"{name}: the IR saturates the current at +-2^{node.current_bits - 1}; "
                       f"Loihi's u wraps at {lim}")  # fmt: skip
    return out


def plan_layer(g: Graph, net, name: str, t, depth: dict[str, int], graded_max: int) -> LayerPlan:
    """The :class:`LayerPlan` of population ``name``."""
    return _LayerLowering(g, net, name, t, depth, graded_max).plan()


# ------------------------------------------------------------------------------ one core


def core_location(placement: np.ndarray, t) -> dict[int, tuple[int, int]]:
    """Mapping core -> (chip, core on the chip) from the place pass's (chip, x, y)."""
    w = t.mesh[0]
    return {i: (int(c), int(y) * w + int(x)) for i, (c, x, y) in enumerate(placement)}


class _CoreBuilder:
    def __init__(self, mcore, plans: dict[str, LayerPlan], mapping, loc, t):
        self.m, self.plans, self.mapping, self.loc, self.t = mcore, plans, mapping, loc, t
        self.offsets = np.cumsum([0] + [s.size for s in mcore.slices]).tolist()
        self.fmts: list[SynapseFmt] = []

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

    def fmt_id(self, p: LayerPlan, key) -> int:
        f, dly = p.formats[key], p.delays[key]
        dly_bits = 0 if dly == 0 else max(1, self.t.core.max_delay.bit_length())
        sf = SynapseFmt(f.wgt_exp(p.k), f.wgt_bits, self.t.synapse_cost.index_bits, f.is_mixed,
                        dly_bits)  # fmt: skip
        if sf not in self.fmts:
            self.fmts.append(sf)
        return self.fmts.index(sf)

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
                fid = self.fmt_id(p, key)
                n = int(keep.sum())
                cols.append(np.stack([grp.first_axon + c.col[keep], self.offsets[si] + c.row[keep],
                                      p.formats[key].wgt(w[keep]), np.full(n, fid),
                                      np.full(n, p.delays[key])], axis=1))  # fmt: skip
        if not cols:
            return np.zeros((0, 5), np.int64)
        a = np.concatenate(cols).astype(np.int64)
        return a[np.lexsort((a[:, 1], a[:, 0]))]

    def synapses(self):
        a = self.synapse_columns()
        n_axons = self.m.input_axons
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
    cores, refs = {}, []
    for mcore in mapping.cores:
        cfg, ref = _CoreBuilder(mcore, plans, mapping, loc, t).build()
        cores[cfg.chip, cfg.core] = cfg
        refs.append(ref)
    refs.sort(key=lambda r: (r.chip, r.core))
    chip = ChipConfig(t.name, t.chips, t.cores, bits, tuple(refs), input_ports(net, mapping, loc),
                      (output_port(graph, net, mapping, loc),),
                      tuple((n, depth[n]) for n in net.order))  # fmt: skip
    config = LoihiConfig(chip, {(r.chip, r.core): cores[r.chip, r.core] for r in refs})
    bad = violations(config, t)
    if bad:
        raise _fail(f"the configuration breaks {len(bad)} limit(s) of target '{t.name}':\n  "
                    + "\n  ".join(bad))  # fmt: skip
    usage = [core_usage(config.cores[r.chip, r.core], t) for r in refs]
    out = net.output
    notes = [f"each layer adds one step of synaptic latency: the output '{out}' lags the input "
             f"by {depth[out]} step(s); the loihi engine runs T + {depth[out]} steps and drops "
             f"the first {depth[out]}"]  # fmt: skip
    return Lowering(config, t, plans, usage, notes)
