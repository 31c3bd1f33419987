"""The verifier: collects every violation of the IR's invariants, then raises one error.

The error's message lists the problems and then the IR text with each failing node marked.
"""

from __future__ import annotations

import numpy as np

from snnc.errors import IRError
from snnc.ir.graph import NAME_RE, Graph, shape_problems
from snnc.ir.nodes import Input, Output


def problems(g: Graph) -> dict[str, list[str]]:
    """Node name (or ``""`` for the graph) to the list of its violations."""
    out: dict[str, list[str]] = {}

    def add(name: str, msg: str) -> None:
        out.setdefault(name, []).append(msg)

    for name in g.nodes:
        _check_edges(g, name, add)
        _check_params(g, name, add)
    if not g.input_names:
        add("", "graph has no Input node")
    if not g.output_names:
        add("", "graph has no Output node")
    if not out:
        try:
            g.topo_order()
        except IRError as e:
            add("", str(e))
        for name, msgs in shape_problems(g)[1].items():
            for m in msgs:
                add(name, m)
    return out


def _check_edges(g: Graph, name: str, add) -> None:
    node, srcs = g.nodes[name], g.inputs[name]
    if not NAME_RE.match(name):
        add(name, f"invalid node name {name!r}")
    for s in srcs:
        if s not in g.nodes:
            add(name, f"reads unknown node '{s}'")
    if isinstance(node, Input) and srcs:
        add(name, "an Input takes no inputs")
    if not isinstance(node, Input) and not srcs:
        add(name, f"{node.kind} has no inputs")
    if isinstance(node, Output) and g.successors(name):
        add(name, f"an Output feeds {g.successors(name)}")


def _check_params(g: Graph, name: str, add) -> None:
    node = g.nodes[name]
    have = g.params[name]
    for k in node.PARAMS:
        if k not in have:
            add(name, f"missing parameter '{k}'")
    for k, a in have.items():
        if k not in node.PARAMS and k not in node.OPTIONAL:
            add(name, f"unknown parameter '{k}' for {node.kind}")
            continue
        if k in node.INT_PARAMS and a.dtype.kind not in "iu":
            add(name, f"parameter '{k}' must be integer, is {a.dtype}")
        elif a.dtype.kind not in "fiub":
            add(name, f"parameter '{k}' has dtype {a.dtype}")
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
            add(name, f"parameter '{k}' has {bad} NaN or infinite value(s)")


def verify(g: Graph) -> Graph:
    """Raise IRError listing every problem of ``g`` (with the marked IR text); return ``g``."""
    found = problems(g)
    if not found:
        return g
    from snnc.ir.text import print_graph

    lines = [f"graph '{g.name}' is invalid:"]
    for name, msgs in found.items():
        where = g.describe(name) if name in g.nodes else "graph"
        lines += [f"  {where}: {m}" for m in msgs]
    marks = {n: "; ".join(m) for n, m in found.items() if n in g.nodes}
    try:
        text = print_graph(g, elide=True, marks=marks)
    except IRError:
        text = ""
    raise IRError("\n".join(lines) + ("\n\n" + text if text else ""))
