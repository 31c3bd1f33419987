"""The IR graph: named nodes, ordered inputs per node, and a read-only parameter store."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from snnc.errors import IRError
from snnc.ir.nodes import Delay, Input, Node, Output, Shape

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True)
    if a.dtype.kind == "f" and a.dtype != np.float32:
        a = a.astype(np.float32)  # float parameters are float32 throughout, as torch's
    a.setflags(write=False)
    return a


class Graph:
    """A dataflow graph of IR nodes.

    Parameters
    ----------
    nodes
        Node name to node, in a deterministic order (printing follows it).
    inputs
        Node name to the ordered names of the nodes feeding it. Several inputs are summed, in
        this order. Nodes absent here have no inputs.
    params
        Node name to parameter name to array. Arrays are copied and made read-only.
    name
        The graph's name.
    meta
        Free-form string/number facts kept with the graph (``dt``, the source file, ...).
    """

    __slots__ = ("nodes", "inputs", "params", "name", "meta", "_shapes")

    def __init__(
        self,
        nodes: Mapping[str, Node],
        inputs: Mapping[str, Sequence[str]] | None = None,
        params: Mapping[str, Mapping[str, np.ndarray]] | None = None,
        *,
        name: str = "graph",
        meta: Mapping[str, object] | None = None,
    ) -> None:
        self.nodes: dict[str, Node] = dict(nodes)
        inputs = inputs or {}
        self.inputs: dict[str, tuple[str, ...]] = {n: tuple(inputs.get(n, ())) for n in self.nodes}
        extra = set(inputs) - set(self.nodes)
        if extra:
            raise IRError(f"inputs given for unknown node(s): {sorted(extra)}")
        params = params or {}
        unknown = set(params) - set(self.nodes)
        if unknown:
            raise IRError(f"parameters given for unknown node(s): {sorted(unknown)}")
        self.params: dict[str, dict[str, np.ndarray]] = {
            n: {k: _frozen(v) for k, v in params.get(n, {}).items()} for n in self.nodes
        }
        self.name = name
        self.meta: dict[str, object] = dict(meta or {})
        self._shapes: dict[str, Shape] | None = None

    # ------------------------------------------------------------------ queries

    @classmethod
    def from_edges(cls, nodes, edges: Iterable[tuple[str, str]], params=None, **kw) -> Graph:
        """Build from an edge list; inputs of a node keep the order of the list."""
        inputs: dict[str, list[str]] = {}
        for src, dst in edges:
            inputs.setdefault(dst, []).append(src)
        return cls(nodes, inputs, params, **kw)

    @property
    def edges(self) -> list[tuple[str, str]]:
        return [(s, d) for d in self.nodes for s in self.inputs[d]]

    def successors(self, name: str) -> list[str]:
        return [d for d in self.nodes for s in self.inputs[d] if s == name]

    @property
    def input_names(self) -> list[str]:
        return [n for n, node in self.nodes.items() if isinstance(node, Input)]

    @property
    def output_names(self) -> list[str]:
        return [n for n, node in self.nodes.items() if isinstance(node, Output)]

    def param(self, name: str, key: str) -> np.ndarray:
        return self.params[name][key]

    def describe(self, name: str) -> str:
        """``'fc1' (Affine, from torch:fc1)`` for messages."""
        node = self.nodes[name]
        where = f", from {node.origin}" if node.origin else ""
        return f"'{name}' ({node.kind}{where})"

    def breaks_cycle(self, name: str) -> bool:
        """True for a Delay whose every element delays by at least one step."""
        node = self.nodes[name]
        if not isinstance(node, Delay) or "steps" not in self.params[name]:
            return False
        steps = self.params[name]["steps"]
        return steps.size > 0 and int(steps.min()) >= 1

    def topo_order(self) -> list[str]:
        """Evaluation order within one time step.

        Edges into cycle-breaking Delays are cut: such a Delay's output at ``t`` depends only on
        earlier steps, so it is evaluated first and takes in its input after the step.
        Raises IRError naming the nodes of a cycle with no such Delay.
        """
        indeg = {n: 0 for n in self.nodes}
        succ: dict[str, list[str]] = {n: [] for n in self.nodes}
        for dst, srcs in self.inputs.items():
            for s in srcs:
                if s not in self.nodes:
                    raise IRError(f"node '{dst}' reads unknown node '{s}'")
                if self.breaks_cycle(dst):
                    continue  # its output at t does not depend on its input at t
                indeg[dst] += 1
                succ[s].append(dst)
        ready = [n for n in self.nodes if indeg[n] == 0]
        order: list[str] = []
        while ready:
            n = ready.pop(0)
            order.append(n)
            for d in succ[n]:
                indeg[d] -= 1
                if indeg[d] == 0:
                    ready.append(d)
        if len(order) != len(self.nodes):
            stuck = [n for n in self.nodes if n not in set(order)]
            raise IRError(
                f"cycle without a one-step Delay through {stuck}: recurrence must pass through "
                "a Delay node whose steps are all >= 1"
            )
        return order

    def shapes(self) -> dict[str, Shape]:
        """Output shape of every node (inferred once, then cached)."""
        if self._shapes is None:
            self._shapes = infer_shapes(self)
        return self._shapes

    # ------------------------------------------------------------------ edits

    def sorted(self) -> Graph:
        """The same graph with its nodes listed in evaluation order (see :meth:`topo_order`)."""
        order = self.topo_order()
        return self.replace(nodes={n: self.nodes[n] for n in order})

    def replace(self, **changes) -> Graph:
        """A new graph with ``nodes``, ``inputs``, ``params``, ``name`` or ``meta`` replaced."""
        kw = dict(
            nodes=self.nodes, inputs=self.inputs, params=self.params, name=self.name,
            meta=self.meta,
        )  # fmt: skip
        kw.update(changes)
        return Graph(kw.pop("nodes"), kw.pop("inputs"), kw.pop("params"), **kw)

    # ------------------------------------------------------------------ equality

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Graph):
            return NotImplemented
        if (self.name, self.meta, self.nodes, self.inputs) != (
            other.name, other.meta, other.nodes, other.inputs,
        ):  # fmt: skip
            return False
        if list(self.nodes) != list(other.nodes):
            return False
        for n in self.nodes:
            a, b = self.params[n], other.params[n]
            if a.keys() != b.keys():
                return False
            for k in a:
                if not arrays_identical(a[k], b[k]):
                    return False
        return True

    def __hash__(self) -> int:  # graphs are compared by value but not used as keys
        raise TypeError("Graph is unhashable")

    def __repr__(self) -> str:
        return f"<Graph {self.name!r}: {len(self.nodes)} nodes, {len(self.edges)} edges>"


def arrays_identical(a: np.ndarray, b: np.ndarray) -> bool:
    """Same dtype, shape and bits (NaN equal to NaN of the same bits)."""
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def infer_shapes(graph: Graph) -> dict[str, Shape]:
    """Output shapes of all nodes; raises IRError listing every problem found."""
    shapes, problems = shape_problems(graph)
    if problems:
        lines = [f"{graph.describe(n)}: {m}" for n, ms in problems.items() for m in ms]
        raise IRError("shape inference failed:\n  " + "\n  ".join(lines))
    return shapes


def shape_problems(graph: Graph) -> tuple[dict[str, Shape], dict[str, list[str]]]:
    """Infer what can be inferred; return the shapes and node name -> problems.

    Works through cycles: a node is inferred once any input's shape is known, and checked
    against all of its inputs at the end. A node downstream of a failed one is not reported.
    """
    shapes: dict[str, Shape] = {}
    failed: set[str] = set()
    problems: dict[str, list[str]] = {}
    pending = list(graph.nodes)
    progress = True
    while pending and progress:
        progress = False
        for n in list(pending):
            node, srcs = graph.nodes[n], graph.inputs[n]
            known = [shapes[s] for s in srcs if s in shapes]
            if srcs and not known:
                if any(s in failed for s in srcs):
                    failed.add(n)
                elif not _has_intrinsic_shape(node):
                    continue
            if n not in failed:
                try:
                    shapes[n] = node.infer_shape(known[0] if known else None, graph.params[n])
                except (IRError, KeyError) as e:
                    msg = f"missing parameter {e}" if isinstance(e, KeyError) else str(e)
                    problems.setdefault(n, []).append(msg)
                    failed.add(n)
            pending.remove(n)
            progress = True
    for n in pending:
        problems.setdefault(n, []).append("shape cannot be inferred: no input reaches it")
    _check_against_inputs(graph, shapes, problems)
    return shapes, problems


def _check_against_inputs(graph: Graph, shapes, problems: dict[str, list[str]]) -> None:
    """Every inferred node against all of its inputs (cycles infer some before them)."""
    for n, srcs in graph.inputs.items():
        if n not in shapes:
            continue
        got = {s: shapes[s] for s in srcs if s in shapes}
        if len(set(got.values())) > 1:
            problems.setdefault(n, []).append(f"inputs disagree on shape: {got}")
        elif got:
            # nodes inferred before their inputs were known (cycles) are checked here
            try:
                graph.nodes[n].infer_shape(next(iter(got.values())), graph.params[n])
            except (IRError, KeyError) as e:
                problems.setdefault(n, []).append(str(e))


def _has_intrinsic_shape(node: Node) -> bool:
    from snnc.ir.nodes import NEURON_TYPES

    return isinstance(node, (Input, Output, *NEURON_TYPES))
