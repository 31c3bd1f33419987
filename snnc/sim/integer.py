"""Bit-exact integer simulator of the quantised IR: the arithmetic every backend must match.

All values are integers. Per time step, nodes run in topological order (cycle-breaking Delays
first) on ``x``, the sum of a node's inputs:

- Input: spikes pass as 0/1 (the graph's ``meta['input']`` is ``"spikes"``); graded input
  (``"graded"``) is quantised as ``clip(rint(x * input_scale), 0, 2**input_bits - 1)``.
- Affine ``W@x + b``, Linear ``W@x``, Conv1d/Conv2d, SumPool2d: exact integer sums.
  Flatten, Delay, Output: as in the float IR. Threshold: ``x > threshold`` (``>=``).
- Neurons, with ``decay(v, d)`` = ``(v*d + 2**(F-1)) >> F`` (``F = decay_bits``; ``>>`` is an
  arithmetic shift, i.e. floor) or, with ``decay_shift``, ``v - (v >> d)`` (``d < 0``: ``v``)::

      i = clamp_i(decay(i, decay_i) + gain_i*x)             # CubaLI, CubaLIF
      v = decay(v, decay) + gain*x + bias                   # x is i for Cuba*; IF: no decay
      NEXT_STEP: v = v - threshold*s[t-1]  (SUBTRACT)  or  reset_value where s[t-1] (TO_VALUE)
      v = clamp_v(v)
      IMMEDIATE: s = v > threshold; then v - threshold / reset_value where s
      GATED:     r = v[t-1] > threshold; m = v - r*threshold; s = m > threshold;
                 v = m - (s - r)*threshold

  ``clamp`` saturates to the signed ``state_bits``/``current_bits`` width when the node says
  ``saturate``; otherwise the quantiser proved the value fits, and the simulator checks it
  (an overflow is an error naming the node and step, since the hardware would wrap).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from snnc.errors import SimulationError
from snnc.ir import nodes as N
from snnc.ir.graph import Graph
from snnc.ir.nodes import ResetTiming
from snnc.ir.verify import verify
from snnc.sim.reference import _apply_reset, _compare, _Delay, _inputs, _sum, run_steps

_EXACT = {torch.float32: 2.0**24, torch.float64: 2.0**53}


def is_quantized(graph: Graph) -> bool:
    return bool(graph.meta.get("quantized"))


def _decay(v: torch.Tensor, d: torch.Tensor, node) -> torch.Tensor:
    if node.decay_shift:
        k = d.clamp(min=0)
        return torch.where(d < 0, v, v - (v >> k))
    f = node.decay_bits
    return (v * d + (1 << (f - 1))) >> f


class _Neuron:
    def __init__(self, name: str, node, p: Mapping[str, torch.Tensor], batch: int, shape) -> None:
        self.name, self.node, self.p = name, node, p
        z = torch.zeros((batch, *shape), dtype=torch.int64)
        self.v, self.i, self.s = z.clone(), z.clone(), z.clone()
        self.vlim = _limits(node.state_bits)
        self.ilim = _limits(node.current_bits)

    def _clamp(self, x: torch.Tensor, lim, what: str, t: int) -> torch.Tensor:
        if self.node.saturate:
            return x.clamp(*lim)
        if bool(((x < lim[0]) | (x > lim[1])).any()):
            bad = int(x.abs().max())
            raise SimulationError(
                f"overflow in '{self.name}' at step {t}: |{what}| reached {bad}, beyond its "
                f"{self.node.state_bits if what == 'v' else self.node.current_bits}-bit width; "
                "re-quantise with a larger state width or saturation"
            )
        return x

    def step(self, x: torch.Tensor, t: int) -> torch.Tensor:
        node, p = self.node, self.p
        if isinstance(node, (N.CubaLI, N.CubaLIF)):
            self.i = self._clamp(_decay(self.i, p["decay_i"], node) + p["gain_i"] * x, self.ilim,
                                 "i", t)  # fmt: skip
            x = self.i
        v = self.v if isinstance(node, N.IF) else _decay(self.v, p["decay"], node)
        v = v + p["gain"] * x + p["bias"]
        if isinstance(node, (N.LI, N.CubaLI)):
            self.v = self._clamp(v, self.vlim, "v", t)
            return self.v
        th = p["threshold"]
        if node.timing is ResetTiming.NEXT_STEP:
            v = _apply_reset(v, self.s, node.reset, p)
        v = self._clamp(v, self.vlim, "v", t)
        if node.timing is ResetTiming.GATED:
            r = (self.v > th).to(torch.int64)
            m = v - r * th
            s = _cmp(m, th, node.strict)
            v = m - (s - r) * th
        else:
            s = _cmp(v, th, node.strict)
            if node.timing is ResetTiming.IMMEDIATE:
                v = _apply_reset(v, s, node.reset, p)
        self.v, self.s = v, s
        return s


def _limits(bits: int) -> tuple[int, int]:
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if bits else (-(1 << 62), 1 << 62)


def _cmp(v, th, strict: bool) -> torch.Tensor:
    return _compare(v, th, strict, torch.int64)


def value_bounds(graph: Graph) -> dict[str, float]:
    """An upper bound on ``|value|`` each node can output (used to pick exact float kernels)."""
    bounds: dict[str, float] = {}
    in_max = float(2 ** int(graph.meta.get("input_bits", 1)) - 1)
    # twice: the second round sees what cycle-breaking Delays read
    for n in graph.topo_order() * 2:
        node, p = graph.nodes[n], graph.params[n]
        srcs = [bounds.get(s, 2.0**62) for s in graph.inputs[n]]
        x = sum(srcs) if srcs else 0.0
        if isinstance(node, N.Input):
            b = in_max if graph.meta.get("input") == "graded" else 1.0
        elif node.spiking:
            b = 1.0
        elif isinstance(node, N.NEURON_TYPES):
            b = float(2 ** (node.state_bits - 1)) if node.state_bits else 2.0**62
        elif isinstance(node, (N.Affine, N.Linear, N.Conv1d, N.Conv2d)):
            w = np.abs(p["weight"].astype(np.float64))
            rows = w.reshape(w.shape[0], -1).sum(axis=1).max(initial=0)
            b = rows * x + (float(np.abs(p["bias"]).max(initial=0)) if "bias" in p else 0.0)
        elif isinstance(node, N.SumPool2d):
            b = x * node.kernel[0] * node.kernel[1]
        else:
            b = x
        bounds[n] = b
    return bounds


def _layer(node, x: torch.Tensor, p) -> torch.Tensor:
    if isinstance(node, (N.Affine, N.Linear)):
        return F.linear(x, p["weight"], p.get("bias"))
    if isinstance(node, N.Conv2d):
        return F.conv2d(x, p["weight"], p.get("bias"), node.stride, node.padding, node.dilation,
                        node.groups)  # fmt: skip
    if isinstance(node, N.Conv1d):
        return F.conv1d(x, p["weight"], p.get("bias"), node.stride, node.padding, node.dilation,
                        node.groups)  # fmt: skip
    return F.avg_pool2d(x, node.kernel, node.stride, node.padding, divisor_override=1)


class _Exact:
    """A weight layer or pool computed in the cheapest float type that is exact for it."""

    def __init__(self, name: str, node, p, bound: float) -> None:
        self.node = node
        self.dtype = next((d for d, lim in _EXACT.items() if bound < lim), None)
        if self.dtype is None:
            raise SimulationError(
                f"'{name}': sums up to {bound:.3g} cannot be computed exactly (> 2**53)"
            )
        self.p = {k: torch.tensor(np.asarray(a), dtype=self.dtype) for k, a in p.items()}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = _layer(self.node, x.to(self.dtype), self.p)
        return y.round().to(torch.int64)


def _quantize_input(graph: Graph, name: str, a: np.ndarray) -> torch.Tensor:
    if graph.meta.get("input") == "graded":
        top = 2 ** int(graph.meta["input_bits"]) - 1
        q = np.clip(np.rint(a.astype(np.float64) * float(graph.meta["input_scale"])), 0, top)
        return torch.from_numpy(q.astype(np.int64))
    if not np.all((a == 0) | (a == 1)):
        raise SimulationError(
            f"input for '{name}' is not binary spikes, but the graph was quantised for spike "
            "input; quantise with input=graded for direct-encoded (multi-valued) input"
        )
    return torch.from_numpy(a.astype(np.int64))


def simulate(
    graph: Graph, x: np.ndarray | Mapping[str, np.ndarray], *, record: bool = False
) -> np.ndarray | tuple[np.ndarray, dict[str, np.ndarray]]:
    """Run a quantised graph on time-major input ``(T, B, *shape)``; integer outputs (int64).

    Same calling convention as :func:`snnc.sim.reference.simulate`.
    """
    verify(graph)
    if not is_quantized(graph):
        raise SimulationError(
            f"graph '{graph.name}' is not quantised; run the quantize pass (e.g. --passes "
            "canonicalize,quantize) or use the reference engine"
        )
    xs = {n: _quantize_input(graph, n, v.numpy()) for n, v in _inputs(graph, x).items()}
    t_steps, batch = next(iter(xs.values())).shape[:2]
    shapes, bounds = graph.shapes(), value_bounds(graph)
    ops: dict[str, object] = {}
    for n, node in graph.nodes.items():
        p = graph.params[n]
        if isinstance(node, N.NEURON_TYPES):
            tp = {k: torch.tensor(np.asarray(a, dtype=np.int64)) for k, a in p.items()}
            ops[n] = _Neuron(n, node, tp, batch, shapes[n])
        elif isinstance(node, (N.Affine, N.Linear, N.Conv1d, N.Conv2d, N.SumPool2d)):
            src = sum(bounds[s] for s in graph.inputs[n])
            ops[n] = _Exact(n, node, p, _bound_after(node, p, src))
        elif isinstance(node, N.Delay):
            ops[n] = _Delay(p["steps"], batch, shapes[n], dtype=torch.int64)
    delays = {n: op for n, op in ops.items() if isinstance(op, _Delay)}
    return run_steps(
        graph, t_steps, lambda n, t, vals: _eval(graph, n, t, vals, xs, ops), delays, record
    )


def _bound_after(node, p, src: float) -> float:
    if isinstance(node, N.SumPool2d):
        return src * node.kernel[0] * node.kernel[1]
    w = np.abs(p["weight"].astype(np.float64))
    b = float(np.abs(p["bias"]).max(initial=0)) if "bias" in p else 0.0
    return float(w.reshape(w.shape[0], -1).sum(axis=1).max(initial=0)) * src + b


def _eval(graph: Graph, n: str, t: int, vals, xs, ops) -> torch.Tensor:
    node = graph.nodes[n]
    if isinstance(node, N.Input):
        return xs[n][t]
    if isinstance(node, N.Delay):
        srcs = [vals[s] for s in graph.inputs[n] if s in vals]
        return ops[n].read(_sum(srcs) if srcs and not graph.breaks_cycle(n) else None)
    x = _sum([vals[s] for s in graph.inputs[n]])
    if isinstance(node, N.NEURON_TYPES):
        return ops[n].step(x, t)
    if n in ops:
        return ops[n](x)
    if isinstance(node, N.Flatten):
        nd = x.dim() - 1
        return torch.flatten(x, node.start_dim % nd + 1, node.end_dim % nd + 1)
    if isinstance(node, N.Threshold):
        th = torch.tensor(np.asarray(graph.params[n]["threshold"], dtype=np.int64))
        return _cmp(x, th, node.strict)
    if isinstance(node, N.Output):
        return x
    raise SimulationError(f"integer simulator cannot execute {node.kind} ('{n}')")
