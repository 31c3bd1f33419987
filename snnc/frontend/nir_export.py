"""IR -> NIR export (``snnc convert``), the inverse of :mod:`snnc.frontend.nir`.

Parameters are written as float64 so that importing the file again with the same ``dt`` gives
back the same float32 IR. What NIR cannot state — reset by subtraction, reset in the next step,
``>=`` — is written as the nearest NIR (reset to ``v_reset``) plus node metadata
(``snnc.reset``, ``snnc.timing``, ``snnc.strict``) that snnc reads back exactly; other tools
see the approximation, and :func:`to_nir` lists those nodes in its notes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from snnc.errors import FrontendError
from snnc.ir import nodes as N
from snnc.ir.graph import Graph
from snnc.ir.verify import verify


def _f64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _neuron(node: N.Node, p: dict, dt: float):
    import nir

    if isinstance(node, (N.CubaLI, N.CubaLIF)):
        tau_syn = dt / (1 - _f64(p["decay_i"]))
        tau_mem = dt / (1 - _f64(p["decay"]))
        kw = dict(
            tau_syn=tau_syn, tau_mem=tau_mem, r=_f64(p["gain"]) * tau_mem / dt,
            v_leak=_f64(p["bias"]) * tau_mem / dt, w_in=_f64(p["gain_i"]) * tau_syn / dt,
        )  # fmt: skip
        if isinstance(node, N.CubaLI):
            return nir.CubaLI(**kw)
        return nir.CubaLIF(**kw, v_threshold=_f64(p["threshold"]), v_reset=_f64(p["reset_value"]))
    if isinstance(node, N.IF):
        if np.any(p["bias"] != 0):
            raise FrontendError("an IF population with a bias has no NIR equivalent")
        return nir.IF(r=_f64(p["gain"]) / dt, v_threshold=_f64(p["threshold"]),
                      v_reset=_f64(p["reset_value"]))  # fmt: skip
    decay = _f64(p["decay"])
    if isinstance(node, N.LI) and np.all(decay == 1) and np.all(p["bias"] == 0):
        return nir.I(r=_f64(p["gain"]) / dt)
    tau = dt / (1 - decay)
    kw = dict(tau=tau, r=_f64(p["gain"]) * tau / dt, v_leak=_f64(p["bias"]) * tau / dt)
    if isinstance(node, N.LI):
        return nir.LI(**kw)
    return nir.LIF(**kw, v_threshold=_f64(p["threshold"]), v_reset=_f64(p["reset_value"]))


def _convert(name: str, node: N.Node, p: dict, in_shape, dt: float):  # noqa: C901
    import nir

    if isinstance(node, N.NEURON_TYPES):
        if isinstance(node, (N.LIF, N.CubaLIF)) and np.any(_f64(p["decay"]) >= 1):
            raise FrontendError(
                f"node '{name}': a decay of 1 (no leak) has no finite NIR time constant; "
                "use an IF population"
            )
        return _neuron(node, p, dt)
    if isinstance(node, N.Input):
        return nir.Input(input_type={"input": np.array(node.shape)})
    if isinstance(node, N.Output):
        return nir.Output(output_type={"output": np.array(node.shape)})
    if isinstance(node, N.Affine):
        return nir.Affine(weight=_f64(p["weight"]), bias=_f64(p["bias"]))
    if isinstance(node, N.Linear):
        return nir.Linear(weight=_f64(p["weight"]))
    if isinstance(node, N.Scale):
        return nir.Scale(scale=_f64(p["scale"]) * np.ones(in_shape))
    if isinstance(node, N.Threshold):
        return nir.Threshold(threshold=_f64(p["threshold"]))
    if isinstance(node, N.Conv2d):
        w = _f64(p["weight"])
        return nir.Conv2d(
            input_shape=tuple(in_shape[1:]), weight=w, stride=node.stride, padding=node.padding,
            dilation=node.dilation, groups=node.groups,
            bias=_f64(p["bias"]) if "bias" in p else np.zeros(w.shape[0]),
        )  # fmt: skip
    if isinstance(node, N.Conv1d):
        w = _f64(p["weight"])
        return nir.Conv1d(
            input_shape=in_shape[1], weight=w, stride=node.stride, padding=node.padding,
            dilation=node.dilation, groups=node.groups,
            bias=_f64(p["bias"]) if "bias" in p else np.zeros(w.shape[0]),
        )  # fmt: skip
    if isinstance(node, (N.SumPool2d, N.AvgPool2d)):
        cls = nir.SumPool2d if isinstance(node, N.SumPool2d) else nir.AvgPool2d
        return cls(kernel_size=np.array(node.kernel), stride=np.array(node.stride),
                   padding=np.array(node.padding))  # fmt: skip
    if isinstance(node, N.Flatten):
        return nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=node.start_dim,
                           end_dim=node.end_dim)  # fmt: skip
    if isinstance(node, N.Delay):
        return nir.Delay(delay=_f64(p["steps"]) * dt)
    raise FrontendError(f"node '{name}' ({node.kind}) has no NIR equivalent")


def _implicit_delays(g: Graph) -> set[str]:
    """One-step Delays inside a cycle whose only job is NIR's implicit recurrent delay."""
    out = set()
    for n, node in g.nodes.items():
        if not isinstance(node, N.Delay) or len(g.inputs[n]) != 1:
            continue
        steps = g.params[n]["steps"]
        if steps.size and np.all(steps == 1) and _on_cycle(g, n):
            out.add(n)
    return out


def _on_cycle(g: Graph, start: str) -> bool:
    todo, seen = list(g.successors(start)), set()
    while todo:
        n = todo.pop()
        if n == start:
            return True
        if n not in seen:
            seen.add(n)
            todo += g.successors(n)
    return False


def to_nir(g: Graph, *, dt: float | None = None) -> tuple[object, list[str]]:
    """Export ``g`` as a ``nir.NIRGraph``; returns it and notes about approximations."""
    import nir

    verify(g)
    dt = float(dt if dt is not None else g.meta.get("dt", 1e-4))
    shapes = g.shapes()
    implicit = _implicit_delays(g)
    nodes, edges, notes = {}, [], []
    for n, node in g.nodes.items():
        if n in implicit:
            continue
        in_shape = shapes[g.inputs[n][0]] if g.inputs[n] else None
        nn_ = _convert(n, node, dict(g.params[n]), in_shape, dt)
        md = {"snnc.origin": node.origin} if node.origin else {}
        if isinstance(node, (N.LIF, N.IF, N.CubaLIF)):
            if node.reset is not N.ResetMode.TO_VALUE or node.timing is not N.ResetTiming.IMMEDIATE:
                md["snnc.reset"] = node.reset.value
                md["snnc.timing"] = node.timing.value
                notes.append(
                    f"'{n}': reset {node.reset.value} ({node.timing.value}) is not expressible in "
                    "NIR; written as reset to v_reset, exact semantics kept in snnc metadata"
                )
            if not node.strict:
                md["snnc.strict"] = "false"
                notes.append(f"'{n}': '>=' threshold written as NIR's '>'")
        srcs = [(g.inputs[s][0] if s in implicit else s) for s in g.inputs[n]]
        delayed = [s for s in g.inputs[n] if s in implicit]
        if delayed:
            md["snnc.delay_in"] = delayed[0]
        if md:
            nn_.metadata = md
        nodes[n] = nn_
        edges += [(s, n) for s in srcs]
    graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": dt, "producer": "snnc"})
    return graph, notes


def write_nir(g: Graph, path: str | os.PathLike, *, dt: float | None = None) -> list[str]:
    """Write ``g`` as a ``.nir`` file, atomically; returns the notes of :func:`to_nir`."""
    import nir

    graph, notes = to_nir(g, dt=dt)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        nir.write(tmp, graph)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return notes
