"""One population's Loihi lowering (:func:`plan_layer`): its scale ``2**K``, synapse formats,
threshold, bias (in the register or through the always-on compartment), decays, delays, each
parameter's representation error and the semantic changes Loihi forces. The layout decisions
are in :mod:`snnc.backends.loihi.lower`'s docstring."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from snnc.backends.loihi import formats as F
from snnc.errors import BackendError
from snnc.ir import nodes as N
from snnc.ir.graph import Graph
from snnc.mapping.connectivity import Population

R, TM = N.ResetMode, N.ResetTiming


def _fail(msg: str) -> BackendError:
    return BackendError(f"Loihi backend: {msg}")


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
    #: per neuron, what the bias compartment adds to u each step (IR units, gains applied)
    current_bias: np.ndarray | None = None
    current_bias_format: F.WeightFormat | None = None  #: None: no current bias
    current_bias_dly: int = 0  #: Dly of its synapses (depth - 1)
    #: a LIF/IF bias carried into u by the bias compartment (its register holds 0)
    bias_in_u: bool = False
    #: with ``bias_in_u``: the ``(bias, biasExp)`` the register would hold (netx's bias field;
    #: None when the register cannot hold it at the layer's scale)
    register_bias: tuple[np.ndarray, np.ndarray] | None = None


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

    def __init__(self, g: Graph, net, name: str, t, depth: dict[str, int], graded_max: int,
                 bias_in_u: bool = True) -> None:  # fmt: skip
        self.g, self.net, self.t, self.depth = g, net, t, depth
        self.bias_in_u = bias_in_u
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

    def current_bias(self, b: np.ndarray, refuse: bool = True) -> tuple[F.WeightFormat, int] | None:
        """The synapse format and Dly that carry the bias ``b`` (IR units, gains applied) into
        u from the bias compartment. Not representable (wider than one synapse weight, or deeper
        than ``max_delay + 1``): BackendError when ``refuse`` (a CubaLIF's current), else None."""
        pop = self.pop
        depth, top = self.depth[pop.name], self.t.core.max_delay
        if depth - 1 > top:
            if not refuse:
                return None
            raise _fail(f"{self.where} is at depth {depth}: its input bias (an Affine/Conv bias "
                        f"into its current) must reach u from Loihi step {depth} on, a synaptic "
                        f"delay of {depth - 1} steps from the always-on bias compartment; Loihi "
                        f"delays by 0..{top}: use bias=False on the layers that feed it, or a "
                        "shallower network")  # fmt: skip
        nz = b[b != 0]
        try:
            fmt = F.weight_format(nz, self.t.core.weight_bits, self.where)
        except BackendError:
            if not refuse:
                return None
            tz = F.trailing_zeros(nz)
            raise _fail(
                f"{self.where}: its input bias (an Affine/Conv bias into its current) adds "
                f"{int(nz.min())}..{int(nz.max())} IR units to u at every step; Loihi carries "
                "it as one synapse weight per neuron from the always-on bias compartment, "
                f"q x 2**{tz} with q in -128..127 (0..255 if none is negative): quantize with "
                "fewer weight-bits or frac-bits (biases share the weights' scale), or use "
                "bias=False on the layers that feed it"
            ) from None
        return fmt, depth - 1

    def problem(self, inputs, fmts, bias, cur_bias=None, cur_fmt=None) -> F.ScaleProblem:
        node = self.pop.node
        x = _input_bound(self.net, inputs, self.graded_max)
        if cur_bias is not None:
            x += float(np.abs(cur_bias).max(initial=0))
        theta = np.asarray(self.pop.params["threshold"], np.int64)
        u_bound, v_bound = x, None
        if isinstance(node, N.Threshold):
            v_bound = x + float(np.abs(bias).max(initial=0)) + 1.0
        elif not node.saturate:
            v_bound = 2.0 ** (node.state_bits - 1)
            if isinstance(node, N.CubaLIF) and node.current_bits:
                gain = float(np.abs(self.pop.params.get("gain", np.ones(1))).max())
                u_bound = max(x, 2.0 ** (node.current_bits - 1) * gain)
        formats = (*fmts.values(), *([cur_fmt] if cur_fmt is not None else []))
        return F.ScaleProblem(self.where, theta, bool(node.strict), bias, formats, u_bound,
                              v_bound)  # fmt: skip

    def _scale(self, inputs, fmts, bias, cur, via) -> tuple[F.ScaleProblem, int]:
        cur_fmt = via[0] if via else None
        prob = self.problem(inputs, fmts, bias, cur if via else None, cur_fmt)
        return prob, F.choose_scale(prob)

    def plan(self) -> LayerPlan:
        pop, node, name = self.pop, self.pop.node, self.pop.name
        gain = _gain(self.g, pop)
        inputs = merged_inputs(pop, gain)
        fmts = self.formats(inputs)
        own = np.asarray(pop.params.get("bias", np.zeros(pop.size)), np.int64)
        du, dv, derr = _decays(pop)
        zero = np.zeros(pop.size, np.int64)
        cur, via, moved = zero, None, False
        if isinstance(node, N.CubaLIF):
            bias = own
            if np.any(pop.input_bias):
                cur = gain * np.asarray(pop.input_bias, np.int64)
                via = self.current_bias(cur)
        else:
            bias = own + gain * pop.input_bias
            if (self.bias_in_u and isinstance(node, (N.LIF, N.IF)) and np.any(bias)
                    and np.all(du == F.DECAY_MAX)):  # fmt: skip
                # u keeps no current (u = a << 6): the bias through u reaches v exactly from
                # the first input's step; not representable: the register (from step 0)
                via = self.current_bias(bias, refuse=False)
                cur, moved = (bias, True) if via else (zero, False)
        prob = k = None
        if moved:
            try:
                prob, k = self._scale(inputs, fmts, zero, cur, via)
            except BackendError:  # no scale with the bias synapses: back to the register
                cur, via, moved = zero, None, False
        if prob is None:
            prob, k = self._scale(inputs, fmts, bias, cur, via)
        vth, th_err = F.encode_threshold(prob.theta, prob.strict, k)
        reg = zero if moved else bias
        mant, exp, real = F.encode_bias(reg, k)
        register_bias = None
        if moved:  # what the register would hold (netx's bias)
            try:
                register_bias = F.encode_bias(bias, k)[:2]
            except ValueError:
                register_bias = None
        errors = [F.ParamError(name, "weights", 0.0, 0.0),
                  F.errors_of(name, "threshold", prob.theta, prob.theta + th_err),
                  F.errors_of(name, "bias", reg, real), *derr]  # fmt: skip
        if via is not None:  # a synapse weight: exact by construction
            errors.insert(3, F.errors_of(name, "bias (u)", cur, cur))
        cur_fmt, cur_dly = via if via else (None, 0)
        plan = LayerPlan(name, node.kind, self.depth[name], k, gain, fmts, self.delays(inputs),
                         vth, mant, exp, du, dv, errors, current_bias=cur,
                         current_bias_format=cur_fmt, current_bias_dly=cur_dly,
                         bias_in_u=moved, register_bias=register_bias)  # fmt: skip
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


def plan_layer(g: Graph, net, name: str, t, depth: dict[str, int], graded_max: int,
               bias_in_u: bool = True) -> LayerPlan:  # fmt: skip
    """The :class:`LayerPlan` of population ``name``. ``bias_in_u=False``: a LIF/IF bias stays
    in the register (acting from step 0)."""
    return _LayerLowering(g, net, name, t, depth, graded_max, bias_in_u).plan()
