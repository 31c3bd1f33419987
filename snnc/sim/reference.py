"""Float reference simulator: executes the IR, batched and time-major.

The arithmetic is float32 through torch, in the order the node docstrings state, so that a
model from snnTorch simulates to the very same bits as snnTorch's own forward: a neuron first
decays its state, then adds each input in the graph's order, then its bias.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from snnc.errors import SimulationError
from snnc.ir import nodes as N
from snnc.ir.graph import Graph
from snnc.ir.nodes import ResetMode, ResetTiming
from snnc.ir.verify import verify


class _Neuron:
    """State and update of one neuron population for a batch."""

    def __init__(self, node: N.Node, p: Mapping[str, torch.Tensor], batch: int, shape) -> None:
        self.node, self.p = node, p
        zeros = torch.zeros((batch, *shape), dtype=torch.float32)
        self.v = zeros.clone()
        self.i = zeros.clone()
        self.s = zeros.clone()  # last step's spikes (for NEXT_STEP / GATED resets)

    def step(self, xs: list[torch.Tensor]) -> torch.Tensor:
        node, p = self.node, self.p
        if isinstance(node, (N.CubaLI, N.CubaLIF)):
            i = p["decay_i"] * self.i
            for x in xs:
                i = i + p["gain_i"] * x
            self.i = i
            xs = [i]
        v = self.v if isinstance(node, N.IF) else p["decay"] * self.v
        for x in xs:
            v = v + p["gain"] * x
        v = v + p["bias"]
        if isinstance(node, (N.LI, N.CubaLI)):
            self.v = v
            return v
        return self._fire(v)

    def _fire(self, v: torch.Tensor) -> torch.Tensor:
        node, p = self.node, self.p
        th = p["threshold"]
        timing, reset = node.timing, node.reset
        if timing is ResetTiming.NEXT_STEP:
            v = _apply_reset(v, self.s, reset, p)
        if timing is ResetTiming.GATED:
            r = (self.v > th).to(torch.float32)
            m = v - r * th
            s = _compare(m, th, node.strict)
            v = m - (s - r) * th
        else:
            s = _compare(v, th, node.strict)
            if timing is ResetTiming.IMMEDIATE:
                v = _apply_reset(v, s, reset, p)
        self.v, self.s = v, s
        return s


def _compare(v: torch.Tensor, th: torch.Tensor, strict: bool, dtype=torch.float32) -> torch.Tensor:
    return (v > th if strict else v >= th).to(dtype)


def _apply_reset(v, s, reset: ResetMode, p) -> torch.Tensor:
    if reset is ResetMode.SUBTRACT:
        return v - s * p["threshold"]
    if reset is ResetMode.TO_VALUE:
        return torch.where(s > 0, p["reset_value"].expand_as(v), v)
    return v


class _Delay:
    """Ring of past inputs; element k outputs its input from ``steps[k]`` steps ago."""

    def __init__(self, steps: np.ndarray, batch: int, shape, dtype=torch.float32) -> None:
        self.steps = torch.as_tensor(steps.astype(np.int64))
        self.depth = int(steps.max(initial=0))
        # newest first
        self.hist = [torch.zeros((batch, *shape), dtype=dtype) for _ in range(self.depth)]

    def read(self, x_now: torch.Tensor | None) -> torch.Tensor:
        out = torch.zeros_like(self.hist[0]) if self.hist else torch.zeros_like(x_now)
        for d in range(self.depth + 1):
            mask = self.steps == d
            if not bool(mask.any()):
                continue
            src = x_now if d == 0 else self.hist[d - 1]
            out = torch.where(mask, src, out)
        return out

    def push(self, x: torch.Tensor) -> None:
        if self.depth:
            self.hist = [x, *self.hist[:-1]]


def _stateless(node: N.Node, x: torch.Tensor, p: Mapping[str, torch.Tensor]) -> torch.Tensor:
    if isinstance(node, N.Affine):
        return F.linear(x, p["weight"], p["bias"])
    if isinstance(node, N.Linear):
        return F.linear(x, p["weight"])
    if isinstance(node, N.Scale):
        return x * p["scale"]
    if isinstance(node, N.Conv2d):
        return F.conv2d(x, p["weight"], p.get("bias"), node.stride, node.padding,
                        node.dilation, node.groups)  # fmt: skip
    if isinstance(node, N.Conv1d):
        return F.conv1d(x, p["weight"], p.get("bias"), node.stride, node.padding,
                        node.dilation, node.groups)  # fmt: skip
    if isinstance(node, N.SumPool2d):
        return F.avg_pool2d(x, node.kernel, node.stride, node.padding, divisor_override=1)
    if isinstance(node, N.AvgPool2d):
        return F.avg_pool2d(x, node.kernel, node.stride, node.padding)
    if isinstance(node, N.Flatten):
        n = x.dim() - 1
        s = node.start_dim % n + 1
        e = node.end_dim % n + 1
        return torch.flatten(x, s, e)
    if isinstance(node, N.Threshold):
        return _compare(x, p["threshold"], node.strict)
    if isinstance(node, N.Output):
        return x
    raise SimulationError(f"reference simulator cannot execute {node.kind}")


def simulate(
    graph: Graph, x: np.ndarray | Mapping[str, np.ndarray], *, record: bool = False
) -> np.ndarray | tuple[np.ndarray, dict[str, np.ndarray]]:
    """Run ``graph`` on time-major input.

    Parameters
    ----------
    graph
        A float IR graph (verified here).
    x
        ``(T, B, *input_shape)``; or a mapping from Input node name to such arrays.
    record
        Also return every node's output, ``{name: (T, B, *shape)}``.

    Returns
    -------
    The first Output node's values ``(T, B, *shape)`` as float32 (spikes are 0.0/1.0), and the
    recordings when ``record`` is set.
    """
    verify(graph)
    xs = _inputs(graph, x)
    t_steps, batch = next(iter(xs.values())).shape[:2]
    shapes = graph.shapes()
    params = {
        n: {k: torch.tensor(np.asarray(a, dtype=np.float32)) for k, a in graph.params[n].items()}
        for n in graph.nodes
    }
    state: dict[str, object] = {}
    for n, node in graph.nodes.items():
        if isinstance(node, N.NEURON_TYPES):
            state[n] = _Neuron(node, params[n], batch, shapes[n])
        elif isinstance(node, N.Delay):
            state[n] = _Delay(graph.params[n]["steps"], batch, shapes[n])
    delays = {n: st for n, st in state.items() if isinstance(st, _Delay)}
    with torch.no_grad():
        return run_steps(
            graph, t_steps, lambda n, t, vals: _eval(graph, n, t, vals, xs, params, state),
            delays, record,
        )  # fmt: skip


def run_steps(graph: Graph, t_steps: int, evaluate, delays: Mapping[str, _Delay], record: bool):
    """The time loop of both simulators: per step, ``evaluate(node, t, values)`` every node in
    evaluation order, then hand every Delay the sum of its inputs; return the first Output's
    values ``(T, ...)`` as numpy and, with ``record``, every node's."""
    order, out_name = graph.topo_order(), graph.output_names[0]
    rec: dict[str, list[torch.Tensor]] = {n: [] for n in graph.nodes} if record else {}
    outs = []
    for t in range(t_steps):
        vals: dict[str, torch.Tensor] = {}
        for n in order:
            vals[n] = evaluate(n, t, vals)
        for n, d in delays.items():
            d.push(_sum([vals[s] for s in graph.inputs[n]]))
        outs.append(vals[out_name])
        for n in rec:
            rec[n].append(vals[n])
    output = torch.stack(outs).numpy()
    if not record:
        return output
    return output, {n: torch.stack(v).numpy() for n, v in rec.items()}


def _sum(values: list[torch.Tensor]) -> torch.Tensor:
    out = values[0]
    for v in values[1:]:
        out = out + v
    return out


def _eval(graph, n, t, vals, xs, params, state) -> torch.Tensor:
    node = graph.nodes[n]
    if isinstance(node, N.Input):
        return xs[n][t]
    if isinstance(node, N.Delay):
        srcs = [vals[s] for s in graph.inputs[n] if s in vals]
        return state[n].read(_sum(srcs) if srcs and not graph.breaks_cycle(n) else None)
    srcs = [vals[s] for s in graph.inputs[n]]
    if isinstance(node, N.NEURON_TYPES):
        return state[n].step(srcs)
    return _stateless(node, _sum(srcs), params[n])


def _inputs(graph: Graph, x) -> dict[str, torch.Tensor]:
    names = graph.input_names
    if not isinstance(x, Mapping):
        if len(names) != 1:
            raise SimulationError(f"graph has inputs {names}: pass a mapping name -> array")
        x = {names[0]: x}
    out = {}
    for n in names:
        if n not in x:
            raise SimulationError(f"no input given for Input node '{n}'")
        a = np.asarray(x[n])
        want = graph.nodes[n].shape
        if a.ndim != len(want) + 2 or tuple(a.shape[2:]) != tuple(want):
            raise SimulationError(
                f"input for '{n}' has shape {a.shape}; expected (T, B, {', '.join(map(str, want))})"
                " (time-major: time steps, batch, then the input's shape)"
            )
        if not np.all(np.isfinite(a)):
            raise SimulationError(f"input for '{n}' contains NaN or infinite values")
        out[n] = torch.from_numpy(a.astype(np.float32, copy=False))
    if len({v.shape[:2] for v in out.values()}) > 1:
        raise SimulationError("all inputs must share T and B")
    return out
