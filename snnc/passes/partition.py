"""The ``partition`` pass: split every population over cores so that every per-core limit holds.

Requires a quantised graph. Ensures every population (neurons or Threshold) has a
``partition`` of ``(core, start, stop)`` slices of its flattened neurons (for a conv population,
flattened channel-major, so a slice is a group of output channels or a band of rows of one
channel, whose input axons include the halo it reads), that every core respects the target's
limits on neurons, input axons, synapse memory (with the target's cost model), neuron and
threshold profiles and synapse formats, and that the total fits the target's cores.

Each population gets the fewest equal slices that each fit a core (where a limit on distinct
values per core binds — neuron or threshold profiles, synapse formats — the longest slices from
the front, when they are no more); slices are then packed
next-fit into cores in evaluation order, so that small populations share cores and neighbours
in the network share cores (less traffic). What cannot fit is a ``ResourceError`` naming the
layer, the limit, the numbers and what would make it fit — before anything is generated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from snnc.errors import ResourceError
from snnc.ir import nodes as N
from snnc.ir.graph import Graph
from snnc.mapping.connectivity import Network, Population, build_network
from snnc.passes.manager import Pass, PassContext, register


@dataclass
class _Usage:
    """What a set of slices costs a core."""

    neurons: int = 0
    counts: dict[tuple[str, int, int], np.ndarray] = field(default_factory=dict)
    profiles: set = field(default_factory=set)
    thresholds: set = field(default_factory=set)
    formats: set = field(default_factory=set)
    #: dense storage (the FPGA accelerator, snnc/rtl/ARCHITECTURE.md): every slice is padded to
    #: whole groups of lanes and has its own weight row and axon-table entry per input axon
    padded: int = 0
    dense_bits: int = 0
    split_axons: int = 0

    def add(self, other: _Usage) -> _Usage:
        counts = dict(self.counts)
        for k, v in other.counts.items():
            counts[k] = counts[k] + v if k in counts else v
        return _Usage(
            self.neurons + other.neurons, counts, self.profiles | other.profiles,
            self.thresholds | other.thresholds, self.formats | other.formats,
            self.padded + other.padded, self.dense_bits + other.dense_bits,
            self.split_axons + other.split_axons,
        )  # fmt: skip


class _Costs:
    """Evaluates slices and cores against a target's per-core limits."""

    def __init__(self, net: Network, target, bits: dict[str, int]) -> None:
        self.net, self.t, self.bits = net, target, bits
        self.lanes = target.fpga.lanes if target.fpga is not None else 1

    def usage(self, pop: Population, start: int, stop: int) -> _Usage:
        u = _Usage(neurons=stop - start)
        groups = math.ceil((stop - start) / self.lanes)
        u.padded = groups * self.lanes
        for b in pop.blocks:
            sub = b.matrix[start:stop]
            n_src = b.matrix.shape[1]
            key = (b.source, b.delay, self.bits.get(b.layer, 1))
            c = np.bincount(sub.indices, minlength=n_src)
            u.counts[key] = u.counts[key] + c if key in u.counts else c
            u.formats.add(self.bits.get(b.layer, 1))
        sc = self.t.synapse_cost
        for (_, _, wbits), c in u.counts.items():
            used = int(np.count_nonzero(c))
            u.split_axons += used
            u.dense_bits += (
                used * groups * math.ceil(self.lanes * wbits / sc.word_bits) * sc.word_bits
            )
        p = pop.params
        if self.t.kind == "fpga" and not getattr(pop.node, "decay_shift", True):
            # the accelerator keeps multiplier decays per neuron when they outnumber its
            # profiles (snnc/backends/fpga/images.py): one profile per population kind
            node = pop.node
            u.profiles = {
                (
                    node.kind,
                    *(getattr(node, k, None) for k in ("reset", "timing", "strict", "saturate")),
                )
            }
        elif "decay" in p or "decay_i" in p:
            d = p.get("decay", np.zeros(pop.size))[start:stop]
            di = p.get("decay_i", np.zeros(pop.size))[start:stop]
            u.profiles = {
                (pop.node.kind,) + t for t in set(zip(d.tolist(), di.tolist(), strict=True))
            }
        if "threshold" in p:
            u.thresholds = set(p["threshold"][start:stop].tolist())
        return u

    def axons(self, u: _Usage) -> int:
        if self.t.synapse_cost.kind == "dense":
            return u.split_axons
        return int(sum(np.count_nonzero(c) for c in u.counts.values()))

    def memory(self, u: _Usage) -> int:
        sc = self.t.synapse_cost
        if sc.kind == "dense":
            return u.dense_bits
        total = 0
        for key, c in u.counts.items():
            per = key[2] + sc.index_bits + sc.delay_bits + sc.tag_bits
            n = c[c > 0].astype(np.int64)
            words = -(-(n * per + sc.header_bits) // sc.word_bits)
            total += int(words.sum()) * sc.word_bits
        return total

    def violation(self, u: _Usage) -> tuple[str, int, int] | None:
        """The first limit ``u`` breaks, as (limit, used, allowed), or None."""
        c = self.t.core
        checks = [
            ("neurons", u.padded if self.t.synapse_cost.kind == "dense" else u.neurons, c.neurons),
            ("input axons", self.axons(u), c.input_axons),
            ("synapse memory bits", self.memory(u), c.synapse_memory_bits),
            ("neuron profiles", len(u.profiles), c.neuron_profiles),
            ("threshold profiles", len(u.thresholds), c.threshold_profiles or 1 << 62),
            ("synapse formats", len(u.formats), c.synapse_formats or 1 << 62),
        ]
        return next(((n, used, lim) for n, used, lim in checks if used > lim), None)


#: limits on distinct values per core, not on amounts
_SET_LIMITS = ("neuron profiles", "threshold profiles", "synapse formats")


def _greedy(size: int, fits) -> list[tuple[int, int]]:
    """Slices from the front, each the longest ``[a, b)`` with ``fits(a, b)`` (a slice of one
    neuron fits; ``fits`` is monotone in ``b``)."""
    out, a = [], 0
    while a < size:
        lo, hi = a + 1, size
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if fits(a, mid) else (lo, mid - 1)
        out.append((a, lo))
        a = lo
    return out


def _split(size: int, k: int) -> list[tuple[int, int]]:
    edges = [round(i * size / k) for i in range(k + 1)]
    return [(a, b) for a, b in zip(edges, edges[1:], strict=False) if b > a]


@dataclass(frozen=True)
class LayerFit:
    population: str
    neurons: int
    slices: int
    binding: str  #: the limit that set the number of slices
    detail: str


@register
@dataclass(frozen=True)
class Partition(Pass):
    """See the module docstring. ``target``: a preset name or a target YAML path."""

    name = "partition"
    target: str = "fpga"

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        from snnc.targets import load_target

        t = load_target(self.target)
        net = build_network(graph)
        bits = {n: node.bits for n, node in graph.nodes.items() if getattr(node, "bits", 0)}
        _check_formats(graph, t)
        costs = _Costs(net, t, bits)
        fits, slices = {}, {}
        for name in net.order:
            slices[name], fits[name] = self._slice(graph, net.populations[name], costs, t)
        assignment = self._refine(graph, net, slices, fits, costs, t, ctx)
        fits = list(fits.values())
        nodes = dict(graph.nodes)
        for pop, sl in assignment.items():
            node = nodes[pop]
            nodes[pop] = type(node)(**{**node.attrs(), "partition": tuple(sl)}, origin=node.origin)
        n_cores = 1 + max(c for sl in assignment.values() for c, _, _ in sl)
        ctx.reports[self.name] = PartitionReport(t.name, tuple(fits), n_cores, t.cores * t.chips)
        meta = dict(graph.meta, target=t.name, cores=n_cores)
        meta.pop("placement", None)
        return graph.replace(nodes=nodes, meta=meta)

    def _refine(self, g: Graph, net: Network, slices, fits, costs, t, ctx):
        """Pack; while a core would need more output axons or routing entries than it has
        (which depends on how its consumers are split), split its populations finer."""
        from snnc.mapping.cores import build_mapping
        from snnc.passes.route import output_axons, table_entries

        for _ in range(16):
            assignment = self._pack(net, slices, costs, t, g)
            m = build_mapping(net, assignment)
            outs, entries = output_axons(m), table_entries(m, t.multicast)
            over: dict[str, tuple[float, str]] = {}
            for core in m.cores:
                for what, used, lim in (
                    ("output axons", outs.get(core.index, 0), t.core.output_axons),
                    ("routing table entries", entries.get(core.index, 0), t.router_entries),
                ):
                    if used > lim:
                        for sl in core.slices:
                            f = max(over.get(sl.population, (1.0, ""))[0], used / lim)
                            over[sl.population] = (f, what)
            if not over:
                ctx.cache.update(mapping=m, mapping_key=repr(sorted(assignment.items())))
                return assignment
            for pop, (factor, what) in over.items():
                size = net.populations[pop].size
                k = len(slices[pop])
                if k >= size:
                    raise ResourceError(
                        f"layer {g.describe(pop)}: even one neuron per core needs more {what} "
                        f"than a core of target '{t.name}' has; reduce its fan-out or use a "
                        "target with multicast routing"
                    )
                k = min(size, max(k + 1, math.ceil(k * factor)))
                slices[pop] = _split(size, k)
                fits[pop] = LayerFit(pop, size, k, what, f"{k} slice(s) of ~{math.ceil(size / k)}"
                                     " neurons")  # fmt: skip
        raise ResourceError(f"no partition for target '{t.name}' keeps the routing limits")

    def _slice(self, g: Graph, pop: Population, costs: _Costs, t):
        lower = max(1, math.ceil(pop.size / t.core.neurons))

        def first_problem(k: int):
            for a, b in _split(pop.size, k):
                v = costs.violation(costs.usage(pop, a, b))
                if v is not None:
                    return v
            return None

        if (v := first_problem(pop.size)) is not None:
            raise ResourceError(_cannot_fit(g, pop, t, v))
        k, problem = lower, first_problem(lower)
        binding = "neurons" if lower > 1 else "none (one core)"
        if problem is not None:
            hi = lower
            while first_problem(hi) is not None:
                hi = min(pop.size, hi * 2)
            lo = max(lower, hi // 2)
            while lo < hi:
                mid = (lo + hi) // 2
                lo, hi = (mid + 1, hi) if first_problem(mid) is not None else (lo, mid)
            k, binding = lo, problem[0]
        if binding in _SET_LIMITS:
            # distinct values per core (decays, thresholds, formats) do not fall evenly over
            # equal slices: the longest slices that fit, so the last ones can share a core
            sl = _greedy(pop.size, lambda a, b: costs.violation(costs.usage(pop, a, b)) is None)
            if len(sl) <= k:
                k = len(sl)
                detail = f"{k} slice(s) of up to {max(b - a for a, b in sl)} neurons"
                return sl, LayerFit(pop.name, pop.size, k, binding, detail)
        detail = f"{k} slice(s) of ~{math.ceil(pop.size / k)} neurons"
        return _split(pop.size, k), LayerFit(pop.name, pop.size, k, binding, detail)

    def _pack(self, net: Network, slices, costs: _Costs, t, g: Graph):
        assignment: dict[str, list[tuple[int, int, int]]] = {}
        core, used = -1, None
        limit = t.cores * t.chips
        for name in net.order:
            pop = net.populations[name]
            for a, b in slices[name]:
                u = costs.usage(pop, a, b)
                merged = used.add(u) if used is not None else None
                if merged is None or costs.violation(merged) is not None:
                    core, merged = core + 1, u
                    if core >= limit:
                        raise ResourceError(_too_many_cores(g, name, t, limit))
                used = merged
                assignment.setdefault(name, []).append((core, a, b))
        return assignment


def _check_formats(g: Graph, t) -> None:
    for n, node in g.nodes.items():
        bits = getattr(node, "bits", 0)
        if (
            isinstance(node, (N.Affine, N.Linear, N.Conv1d, N.Conv2d))
            and bits not in t.core.weight_bits
        ):
            raise ResourceError(
                f"layer {g.describe(n)} has {bits}-bit weights; target '{t.name}' stores "
                f"{', '.join(map(str, t.core.weight_bits))}-bit weights: quantize with "
                f"weight-bits={max(b for b in t.core.weight_bits if b <= max(bits, 1))}"
            )
        if isinstance(node, N.NEURON_TYPES) and node.state_bits > t.core.state_bits:
            raise ResourceError(
                f"layer {g.describe(n)} needs {node.state_bits}-bit membranes; target "
                f"'{t.name}' has {t.core.state_bits}: quantize with fewer weight-bits or "
                f"frac-bits, or state-bits={t.core.state_bits},saturate=true"
            )


def _cannot_fit(g: Graph, pop: Population, t, v) -> str:
    limit, used, allowed = v
    return (
        f"layer {g.describe(pop.name)} ({pop.size} neurons): even one neuron per core needs "
        f"{used:,} {limit}, and a core of target '{t.name}' has {allowed:,}; use fewer "
        "weight bits, a sparser or smaller layer, or a target with larger cores"
    )


def _too_many_cores(g: Graph, name: str, t, limit: int) -> str:
    return (
        f"layer {g.describe(name)} does not fit: the network needs more than the {limit} "
        f"cores of target '{t.name}' ({t.cores} per chip x {t.chips} chip(s)); use fewer "
        "weight bits, a smaller network, or a larger target (more chips, larger cores)"
    )


@dataclass(frozen=True)
class PartitionReport:
    target: str
    layers: tuple[LayerFit, ...]
    cores: int
    available: int

    def text(self) -> str:
        lines = [f"partition for '{self.target}': {self.cores} of {self.available} cores"]
        for f in self.layers:
            lines.append(f"  {f.population:<16} {f.neurons:>8} neurons  {f.detail:<32} "
                         f"binding limit: {f.binding}")  # fmt: skip
        return "\n".join(lines)
