"""The ``quantize`` pass: float IR -> integer IR with the arithmetic of :mod:`snnc.sim.integer`.

Requires a canonical float graph (``canonicalize`` ran: no AvgPool2d or Scale left, neuron input
gains folded into weights, or one uniform input gain per population, which quantize folds), in
which every neuron population is fed by weight layers
(Affine/Linear/Conv, possibly through SumPool2d, Flatten and Delay) whose inputs are spikes or
the graph's Input.

Ensures, for each population and the weight layers feeding it (a *group*, sharing one scale):

- the membrane is measured in units of ``1/S`` with ``S = s * 2**frac_bits``: ``s`` maps the
  largest weight to the largest ``weight_bits``-bit level (per layer, or per output neuron /
  channel), and the extra ``frac_bits`` give the membrane finer steps than the weights; weights
  become ``rint(w*s)`` (``|.| <= 2**(bits-1)-1``) shifted left by ``frac_bits``; thresholds,
  biases and reset values become ``rint(x*S)``. Scaling a membrane equation leaves its spikes
  unchanged, so the only errors are the roundings, each within half a step;
- decays are fixed-point multipliers ``rint(beta * 2**decay_bits)`` or, with ``decay=shift``,
  shifts ``k`` such that ``beta ~ 1 - 2**-k`` (no multiplier in hardware);
- the membrane and current widths come from interval analysis so that no overflow can happen for
  any input in the declared range; where the user caps the width (``state-bits``) below that, or
  the range is unbounded (no leak), the arithmetic saturates — the report says which.

Graded (multi-bit) input (``input=graded``) is quantised to ``input_bits`` unsigned levels of
``input_max`` and the first layer's weights absorb that scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from snnc.errors import PassError
from snnc.ir import nodes as N
from snnc.ir.graph import Graph
from snnc.passes.manager import Pass, PassContext, register

WEIGHTED = (N.Affine, N.Linear, N.Conv1d, N.Conv2d)
PASS_THROUGH = (N.Delay, N.Flatten, N.SumPool2d)
UNBOUNDED_BITS = 24


@dataclass(frozen=True)
class LayerReport:
    """What quantisation did to one population and the layers feeding it."""

    population: str
    layers: tuple[str, ...]
    scale: tuple[float, float]  #: min and max of s
    weight_bits: int
    frac_bits: int
    max_weight: int
    decay: str
    tau_error: float  #: worst relative error of the time constant (steps), 0 if exact
    threshold: tuple[int, int]
    state_bits: int
    state_range: tuple[float, float]
    saturate: bool
    note: str = ""

    def line(self) -> str:
        sat = "saturating" if self.saturate else "no overflow possible"
        s0, s1 = self.scale
        scale = f"{s0:.4g}" if s0 == s1 else f"{s0:.4g}..{s1:.4g}"
        lo, hi = self.state_range
        rng = "unbounded" if math.isinf(hi) or math.isinf(lo) else f"{lo:.0f}..{hi:.0f}"
        return (
            f"{self.population:<14} scale {scale:<13} w {self.weight_bits}b<<{self.frac_bits} "
            f"(max |w| {self.max_weight}) decay {self.decay:<16} tau err {self.tau_error:6.2%} "
            f"thr {self.threshold[0]}..{self.threshold[1]} state {self.state_bits}b "
            f"[{rng}, {sat}]" + (f"  {self.note}" if self.note else "")
        )


@dataclass(frozen=True)
class QuantReport:
    layers: tuple[LayerReport, ...]
    options: str

    def text(self) -> str:
        return "\n".join([self.options] + ["  " + r.line() for r in self.layers])


@register
@dataclass(frozen=True)
class Quantize(Pass):
    """See the module docstring. Options (kebab-case on the command line) are the fields."""

    name = "quantize"
    weight_bits: int = 8
    granularity: str = "neuron"
    decay: str = "mult"
    decay_bits: int = 12
    frac_bits: int = -1
    state_bits: int = 0
    input: str = "spikes"
    input_bits: int = 8
    input_max: float = 1.0
    saturate: bool = False
    clip: str = "max"

    def __post_init__(self) -> None:
        checks = [
            (1 <= self.weight_bits <= 16, f"weight-bits must be 1..16, got {self.weight_bits}"),
            (self.granularity in ("layer", "neuron"), "granularity must be layer or neuron"),
            (self.decay in ("mult", "shift"), "decay must be mult or shift"),
            (1 <= self.decay_bits <= 24, f"decay-bits must be 1..24, got {self.decay_bits}"),
            (-1 <= self.frac_bits <= 16, f"frac-bits must be 0..16 (-1: auto), got "
                                         f"{self.frac_bits}"),
            (self.state_bits == 0 or 2 <= self.state_bits <= 48,
             f"state-bits must be 2..48 (0: as needed), got {self.state_bits}"),
            (self.input in ("spikes", "graded"), "input must be spikes or graded"),
            (self.clip in ("max", "mse"), "clip must be max or mse"),
            (1 <= self.input_bits <= 16, f"input-bits must be 1..16, got {self.input_bits}"),
            (self.input_max > 0, f"input-max must be positive, got {self.input_max}"),
        ]  # fmt: skip
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)

    @property
    def frac(self) -> int:
        return self.frac_bits if self.frac_bits >= 0 else max(0, 8 - self.weight_bits)

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        if graph.meta.get("quantized"):
            if graph.meta.get("quantize") == self.spec():
                return graph  # idempotent
            raise PassError(f"graph is already quantised ({graph.meta.get('quantize')})")
        if not graph.meta.get("canonical"):
            raise PassError("quantize needs a canonical graph: run canonicalize first "
                            "(--passes canonicalize,quantize)")  # fmt: skip
        q = _Quantizer(self, graph)
        out = q.run()
        ctx.reports[self.name] = QuantReport(tuple(q.reports), self.spec())
        return out


@dataclass
class _Group:
    populations: list[str] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)


class _Quantizer:
    def __init__(self, opts: Quantize, g: Graph) -> None:
        self.o, self.g = opts, g
        self.params = {n: dict(p) for n, p in g.params.items()}
        self.nodes = dict(g.nodes)
        self.reports: list[LayerReport] = []
        self.levels = max(1, 2 ** (opts.weight_bits - 1) - 1)
        self.s_in = (2**opts.input_bits - 1) / opts.input_max if opts.input == "graded" else 1.0

    def fail(self, name: str, msg: str) -> PassError:
        return PassError(f"{self.g.describe(name)}: {msg}")

    # ------------------------------------------------------------------ structure

    def _feeding_layers(self, pop: str) -> list[str]:
        """Weight layers on the input paths of a population (through pass-through nodes)."""
        out, todo = [], list(self.g.inputs[pop])
        while todo:
            n = todo.pop()
            node = self.g.nodes[n]
            if isinstance(node, WEIGHTED):
                out.append(n)
            elif isinstance(node, PASS_THROUGH):
                todo += self.g.inputs[n]
            else:
                raise self.fail(
                    pop,
                    f"its input from {self.g.describe(n)} reaches it without a "
                    "weight layer; the integer membrane is scaled by its weights",
                )
        return sorted(set(out), key=list(self.g.nodes).index)

    def _layer_source(self, layer: str) -> str:
        """'spikes' or 'input' for what a weight layer reads (through pass-through nodes)."""
        kinds, todo = set(), list(self.g.inputs[layer])
        while todo:
            n = todo.pop()
            node = self.g.nodes[n]
            if isinstance(node, N.Input):
                kinds.add("input")
            elif node.spiking:
                kinds.add("spikes")
            elif isinstance(node, PASS_THROUGH):
                todo += self.g.inputs[n]
            else:
                raise self.fail(
                    layer,
                    f"reads {self.g.describe(n)}, which is neither spikes nor "
                    "the graph input; the integer pipeline cannot scale it",
                )
        if kinds == {"input", "spikes"} and self.o.input == "graded":
            raise self.fail(layer, "mixes graded input with spikes")
        return "input" if "input" in kinds else "spikes"

    def _groups(self) -> list[_Group]:
        pops = [n for n, node in self.g.nodes.items()
                if isinstance(node, (*N.NEURON_TYPES, N.Threshold))]  # fmt: skip
        owner: dict[str, int] = {}
        groups: list[_Group] = []
        for p in pops:
            layers = self._feeding_layers(p)
            ids = sorted({owner[la] for la in layers if la in owner})
            grp = groups[ids[0]] if ids else _Group()
            if not ids:
                groups.append(grp)
            for other in ids[1:]:  # merge groups sharing a layer
                grp.populations += groups[other].populations
                grp.layers += groups[other].layers
                groups[other] = _Group()
            grp.populations.append(p)
            grp.layers += [la for la in layers if la not in grp.layers]
            gid = groups.index(grp)
            for la in grp.layers:
                owner[la] = gid
        return [g for g in groups if g.populations]

    # ------------------------------------------------------------------ scales

    def _in_scale(self, layer: str) -> float:
        return self.s_in if self._layer_source(layer) == "input" else 1.0

    def _scale(self, grp: _Group) -> tuple[np.ndarray | float, str]:
        """Per-layer scalar, or per-output-neuron array shaped like the population."""
        note = ""
        if self.o.granularity == "neuron":
            per = self._per_neuron(grp)
            if per is not None:
                return per, note
            note = "per-layer scale (per-neuron needs one population fed directly)"
        s = math.inf
        for la in grp.layers:
            w = np.abs(self.g.params[la]["weight"].astype(np.float64))
            if self.o.weight_bits == 1:
                m = float(w.mean()) if w.size else 0.0
                cand = 1.0 / m if m > 0 else math.inf
            else:
                m = float(self._clip(w.reshape(1, -1))[0])
                cand = self.levels / m if m > 0 else math.inf
            s = min(s, cand * self._in_scale(la))
        return (1.0 if math.isinf(s) else s), note

    def _clip(self, w: np.ndarray) -> np.ndarray:
        """Per row of |weights|, the value mapped to the top level.

        ``clip=max``: the largest, so no weight is clipped and every rounding error is within half
        a step. ``clip=mse``: of 32 fractions of the largest, the one whose quantisation (with
        clipping) has the least squared error — at 2 or 3 bits a few large weights would
        otherwise leave most others at zero.
        """
        top = w.max(axis=1, initial=0.0)
        if self.o.clip == "max" or w.size == 0:
            return top
        best, best_err = top.copy(), np.full(top.shape, np.inf)
        for f in np.linspace(0.15, 1.0, 32):
            c = np.maximum(top * f, 1e-300)[:, None]
            q = np.clip(np.rint(w * self.levels / c), 0, self.levels) * c / self.levels
            err = ((w - q) ** 2).sum(axis=1)
            better = err < best_err
            best = np.where(better, c[:, 0], best)
            best_err = np.where(better, err, best_err)
        return np.where(top > 0, best, 0.0)

    def _per_neuron(self, grp: _Group):
        if len(grp.populations) != 1 or self.o.weight_bits == 1:
            return None
        pop = grp.populations[0]
        shape = self.g.shapes()[pop]
        s = np.full(shape, np.inf)
        for la in grp.layers:
            if self.g.shapes()[la] != shape or self.g.successors(la) != [pop]:
                return None
            w = np.abs(self.g.params[la]["weight"].astype(np.float64))
            m = self._clip(w.reshape(w.shape[0], -1))  # per output row / channel
            cand = np.where(m > 0, self.levels / np.maximum(m, 1e-300), np.inf)
            cand = cand * self._in_scale(la)
            s = np.minimum(s, cand.reshape((-1,) + (1,) * (len(shape) - 1)))
        return np.where(np.isinf(s), 1.0, s)

    # ------------------------------------------------------------------ run

    def run(self) -> Graph:
        for grp in self._groups():
            self._quantize_group(grp)
        meta = dict(self.g.meta, quantized=True, quantize=self.o.spec(), input=self.o.input)
        if self.o.input == "graded":
            meta.update(input_scale=self.s_in, input_bits=self.o.input_bits)
        return self.g.replace(nodes=self.nodes, params=self.params, meta=meta)

    def _group_gain(self, grp: _Group) -> float:
        """The input gain every population of the group applies (folded into the weights)."""
        gains = set()
        for pop in grp.populations:
            p = self.g.params[pop]
            key = "gain_i" if "gain_i" in p else "gain" if "gain" in p else None
            if key is None:
                gains.add(1.0)
                continue
            if "gain_i" in p and not np.all(p["gain"] == 1):
                raise self.fail(pop, "its current-to-voltage gain is not 1; run canonicalize")
            g = np.unique(p[key])
            if g.size != 1:
                raise self.fail(pop, f"input gain '{key}' varies over its neurons and "
                                     "canonicalize could not fold it into the weights")  # fmt: skip
            gains.add(float(g[0]))
        if len(gains) != 1:
            msg = f"populations sharing weight layers have different input gains {sorted(gains)}"
            raise self.fail(grp.populations[0], msg)
        gain = gains.pop()
        if gain == 0:
            raise self.fail(grp.populations[0], "input gain 0: the population ignores its input")
        return gain

    def _quantize_group(self, grp: _Group) -> None:
        gain = self._group_gain(grp)
        s, note = self._scale(grp)
        s = np.asarray(s, dtype=np.float64) / abs(gain)
        big = 2.0**self.o.frac
        max_w = 0
        for la in grp.layers:
            max_w = max(max_w, self._quantize_layer(la, s, big, gain))
        for pop in grp.populations:
            self._quantize_population(pop, grp, np.asarray(s, dtype=np.float64) * big, max_w, note)

    def _row_scale(self, layer: str, s) -> np.ndarray:
        """The group scale as seen by the layer's output rows/channels."""
        w = self.g.params[layer]["weight"]
        sa = np.asarray(s, dtype=np.float64)
        rows = sa.reshape(-1)[: w.shape[0]] if sa.ndim else np.full(w.shape[0], float(sa))
        return rows.reshape((-1,) + (1,) * (w.ndim - 1))

    def _quantize_layer(self, la: str, s, big: float, gain: float) -> int:
        p = self.g.params[la]
        rows = self._row_scale(la, s) * gain  # the consumers' input gain folds into the weights
        w = p["weight"].astype(np.float64)
        if self.o.weight_bits == 1:
            wq = np.where(w * gain >= 0, 1, -1)
        else:
            wq = np.clip(np.rint(w * rows / self._in_scale(la)), -self.levels, self.levels)
        wq = wq.astype(np.int64)
        new = {"weight": (wq << self.o.frac).astype(np.int32)}
        if "bias" in p:
            new["bias"] = np.rint(p["bias"].astype(np.float64) * rows.reshape(-1) * big)
            new["bias"] = new["bias"].astype(np.int64)
        self.params[la] = new
        node = self.nodes[la]
        attrs = {**node.attrs(), "bits": self.o.weight_bits, "shift": self.o.frac}
        self.nodes[la] = type(node)(**attrs, origin=node.origin)
        return int(np.abs(wq).max(initial=0))

    def _decay(self, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
        """Integer decay parameter, the decay it realises, and a description."""
        beta = np.clip(beta.astype(np.float64), 0.0, 1.0)
        if self.o.decay == "shift":
            with np.errstate(divide="ignore"):
                k = np.where(beta >= 1, -1, np.rint(-np.log2(np.maximum(1 - beta, 1e-300))))
            k = np.clip(k, -1, 30).astype(np.int64)
            real = np.where(k < 0, 1.0, 1 - 2.0 ** -np.maximum(k, 0).astype(np.float64))
            ks = sorted(set(k.reshape(-1).tolist()))
            return k, real, "1-2^-" + ",".join(map(str, ks[:3])) + ("..." if len(ks) > 3 else "")
        f = self.o.decay_bits
        d = np.clip(np.rint(beta * 2**f), 0, 2**f).astype(np.int64)
        ds = sorted(set(d.reshape(-1).tolist()))
        desc = f"{'/'.join(map(str, ds[:2]))}{'...' if len(ds) > 2 else ''}/2^{f}"
        return d, d / 2.0**f, desc

    def _quantize_population(self, pop: str, grp: _Group, big_s: np.ndarray, max_w: int,
                             note: str) -> None:  # fmt: skip
        node, p = self.g.nodes[pop], self.g.params[pop]
        shape = self.g.shapes()[pop]
        S = np.broadcast_to(big_s, shape)

        def q(x) -> np.ndarray:
            return np.rint(np.broadcast_to(x.astype(np.float64), shape) * S).astype(np.int64)

        if isinstance(node, N.Threshold):
            th = q(p["threshold"])
            self.params[pop] = {"threshold": th}
            self.reports.append(self._report(pop, grp, S, max_w, "-", 0.0, th, 0, (0, 1), False,
                                             note))  # fmt: skip
            return
        new: dict[str, np.ndarray] = {k: np.ones(shape, np.int64) for k in ("gain", "gain_i")
                                      if k in p}  # fmt: skip
        tau_err, desc = 0.0, "none"
        realised = {}
        for k in ("decay", "decay_i"):
            if k in p:
                new[k], realised[k], desc = self._decay(p[k])
                tau_err = max(tau_err, _tau_error(p[k], realised[k]))
        new["bias"] = q(p["bias"])
        for k in ("threshold", "reset_value"):
            if k in p:
                new[k] = q(p[k])
        x_lo, x_hi = self._input_range(pop)
        (lo, hi), (ilo, ihi) = _membrane_range(node, new, realised, x_lo, x_hi)
        bits, sat = self._width(pop, "membrane", lo, hi)
        cbits, csat = self._width(pop, "current", ilo, ihi) if "decay_i" in p else (0, False)
        fields = dict(state_bits=bits, current_bits=cbits, saturate=sat or csat,
                      decay_bits=self.o.decay_bits if self.o.decay == "mult" else 0,
                      decay_shift=self.o.decay == "shift")  # fmt: skip
        self.nodes[pop] = type(node)(**{**node.attrs(), **fields, "origin": node.origin})
        self.params[pop] = new
        th = new.get("threshold", np.zeros(1, np.int64))
        self.reports.append(self._report(pop, grp, S, max_w, desc, tau_err, th, bits, (lo, hi),
                                         sat or csat, note))  # fmt: skip

    def _report(self, pop, grp, S, max_w, desc, tau_err, th, bits, rng, sat, note) -> LayerReport:
        s = np.asarray(S, dtype=np.float64) / 2.0**self.o.frac
        return LayerReport(
            pop, tuple(grp.layers), (float(s.min()), float(s.max())), self.o.weight_bits,
            self.o.frac, max_w, desc, tau_err, (int(th.min()), int(th.max())), bits,
            (float(rng[0]), float(rng[1])), sat, note,
        )  # fmt: skip

    def _width(self, pop: str, what: str, lo: float, hi: float) -> tuple[int, bool]:
        """Signed width holding [lo, hi], and whether it must saturate.

        An unbounded range (no leak) saturates at ``state-bits`` (default 24); a bounded one that
        does not fit a user's ``state-bits`` is an error unless ``saturate`` is set.
        """
        if math.isinf(lo) or math.isinf(hi):
            return (self.o.state_bits or UNBOUNDED_BITS), True
        need = max(int(math.ceil(math.log2(max(hi + 1, -lo, 1)))) + 1, 2)
        if self.o.state_bits and need > self.o.state_bits:
            if not self.o.saturate:
                raise self.fail(pop, f"its {what} ranges over {lo:.0f}..{hi:.0f}, which needs "
                                     f"{need} bits, but state-bits={self.o.state_bits}; raise "
                                     "state-bits, use fewer weight-bits or frac-bits, or pass "
                                     "saturate=true to saturate")  # fmt: skip
            return self.o.state_bits, True
        return max(need, self.o.state_bits), False

    def _input_range(self, pop: str) -> tuple[float, float]:
        """Bounds of the integer input sum a population receives in one step."""
        lo = hi = 0.0
        for src in self.g.inputs[pop]:
            a, b = self._value_range(src)
            lo, hi = lo + a, hi + b
        return lo, hi

    def _value_range(self, n: str) -> tuple[float, float]:
        node = self.g.nodes[n]
        if isinstance(node, N.Input):
            return (0.0, float(2**self.o.input_bits - 1) if self.o.input == "graded" else 1.0)
        if node.spiking:
            return 0.0, 1.0
        if isinstance(node, (N.Delay, N.Flatten)):
            return self._sum_ranges(self.g.inputs[n])
        if isinstance(node, N.SumPool2d):
            a, b = self._sum_ranges(self.g.inputs[n])
            k = node.kernel[0] * node.kernel[1]
            return min(a * k, 0.0), b * k
        if isinstance(node, WEIGHTED):
            a, b = self._sum_ranges(self.g.inputs[n])  # inputs are non-negative here
            p = self.params[n]
            w = p["weight"].astype(np.float64).reshape(p["weight"].shape[0], -1)
            pos, neg = np.clip(w, 0, None).sum(1), np.clip(w, None, 0).sum(1)
            bias = p["bias"].astype(np.float64) if "bias" in p else 0.0
            return float((neg * b + pos * a + bias).min()), float((pos * b + neg * a + bias).max())
        raise self.fail(n, "unexpected node on a weight path")

    def _sum_ranges(self, srcs) -> tuple[float, float]:
        lo = hi = 0.0
        for s in srcs:
            a, b = self._value_range(s)
            lo, hi = lo + a, hi + b
        return lo, hi


def _tau_error(beta: np.ndarray, real: np.ndarray) -> float:
    beta = np.clip(beta.astype(np.float64), 0, 1)
    ok = (beta > 0) & (beta < 1) & (real > 0) & (real < 1)
    if not ok.any():
        return 0.0 if np.array_equal(beta, real) else 1.0
    tau, tq = -1 / np.log(beta[ok]), -1 / np.log(real[ok])
    return float(np.max(np.abs(tq - tau) / tau))


def _geometric(c: float, beta: float) -> float:
    """Sup of the sequence x' = beta*x + c from 0 (c > 0): c/(1-beta), infinite when beta = 1."""
    if c <= 0:
        return 0.0
    return math.inf if beta >= 1 else c / (1 - beta)


def _membrane_range(node, p, realised, x_lo, x_hi):
    """Bounds of the membrane (before and after reset) and of the current, as in sim.integer.

    Closed forms of the interval recurrences; ``slack`` covers the rounding of an inexact decay.
    """

    def slack(key):
        return 0.0 if np.all(realised.get(key, np.ones(1)) == 1) else 1.0

    i_range = (0.0, 0.0)
    if "decay_i" in p:
        bi, si = float(np.max(realised["decay_i"])), slack("decay_i")
        i_range = (-_geometric(si - x_lo, bi), _geometric(x_hi + si, bi))
        x_lo, x_hi = i_range
    beta = 1.0 if isinstance(node, N.IF) else float(np.max(realised["decay"]))
    sl = 0.0 if isinstance(node, N.IF) else slack("decay")
    c_hi = x_hi + float(p["bias"].max()) + sl
    c_lo = x_lo + float(p["bias"].min()) - sl
    if isinstance(node, (N.LI, N.CubaLI)):
        return (-_geometric(-c_lo, beta), _geometric(c_hi, beta)), i_range
    th_lo, th_hi = float(p["threshold"].min()), float(p["threshold"].max())
    r_lo, r_hi = float(p["reset_value"].min()), float(p["reset_value"].max())
    reset, timing = node.reset, node.timing
    delayed_subtract = reset is N.ResetMode.SUBTRACT and timing is not N.ResetTiming.IMMEDIATE
    sub = max(th_hi, 0.0) if delayed_subtract else 0.0
    lo = -_geometric(sub - c_lo, beta)
    if reset is N.ResetMode.TO_VALUE:
        lo = min(lo, r_lo)
    top = max(th_hi, 0.0)
    if reset is N.ResetMode.NONE:
        hi = _geometric(c_hi, beta)
    elif reset is N.ResetMode.TO_VALUE:
        # below threshold the state stays <= threshold; above it, it becomes the reset value
        hi = max(top, r_hi)
    elif timing is N.ResetTiming.IMMEDIATE:
        hi = max(top, _geometric(c_hi - th_lo, beta) if c_hi > th_lo else 0.0)
    else:  # NEXT_STEP / GATED subtract: the state may exceed the threshold for a step
        hi = max(beta * top + c_hi, _geometric(c_hi - th_lo, beta) if c_hi > th_lo else 0.0)
        if timing is N.ResetTiming.GATED:
            hi += top
    u_hi = beta * max(hi, 0.0) + c_hi
    u_lo = beta * min(lo, 0.0) + c_lo - sub
    return (min(lo, u_lo, th_lo, r_lo), max(hi, u_hi, th_hi, r_hi)), i_range
