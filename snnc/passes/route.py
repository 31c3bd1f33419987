"""The ``route`` pass: routing tables, their sizes, output axons and link loads.

Requires a partitioned, placed graph. Each core's routing table maps ranges of its neurons to
destination cores and axon offsets: a run of consecutive source neurons whose spikes go to the
same destination (and, with multicast, the same set of destinations) is one entry, since the
destination axons of consecutive sources are consecutive (:mod:`snnc.mapping.cores`). The host's
table routes the graph's input the same way. Table entries and output axons (one per
(source neuron, destination core) pair) are checked against the target; what does not fit is a
ResourceError naming the core, the layer and the numbers.

Packets travel by dimension-order routing: first along x, then along y, then over the chip
links. This cannot deadlock: every packet takes all its x hops before any y hop, so the channel
dependency graph has no cycle (Dally & Seitz, 1987); chip links come last, in one direction
of a line of chips, and add no cycle either. The pass ensures ``meta['routed'] = True`` and
reports per-core use against every limit and the load of every link.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from snnc.errors import ResourceError
from snnc.ir.graph import Graph
from snnc.mapping.cores import HOST, Mapping, mapping_of, source_cores
from snnc.passes.manager import Pass, PassContext, register
from snnc.passes.place import placement_of, traffic


def table_entries(m: Mapping, multicast: bool) -> dict[int, int]:
    """Routing table entries per source core (HOST for the input)."""
    entries: dict[int, int] = {}
    for src, rows in m.routes.items():
        if rows.size == 0:
            continue
        owner = source_cores(m, src)
        if multicast:
            # one entry per run of consecutive sources with the same destination set; a set is
            # identified by a sum of fixed random 63-bit keys of its cores
            keys = np.random.default_rng(0).integers(1, 2**62, len(m.cores), dtype=np.int64)
            uniq = np.unique(rows[:, :2], axis=0)
            sig = np.zeros(owner.size, np.int64)
            np.add.at(sig, uniq[:, 0], keys[uniq[:, 1]])
            e = np.unique(uniq[:, 0])
            new_run = np.ones(e.size, bool)
            new_run[1:] = ~((e[1:] == e[:-1] + 1) & (sig[e[1:]] == sig[e[:-1]])
                            & (owner[e[1:]] == owner[e[:-1]]))  # fmt: skip
            for core, count in zip(*np.unique(owner[e[new_run]], return_counts=True), strict=True):
                entries[int(core)] = entries.get(int(core), 0) + int(count)
            continue
        order = np.lexsort((rows[:, 0], rows[:, 1]))
        r = rows[order]
        new_run = np.ones(len(r), bool)
        new_run[1:] = ~((r[1:, 1] == r[:-1, 1]) & (r[1:, 0] == r[:-1, 0] + 1)
                        & (owner[r[1:, 0]] == owner[r[:-1, 0]]))  # fmt: skip
        for core, count in zip(*np.unique(owner[r[new_run, 0]], return_counts=True), strict=True):
            entries[int(core)] = entries.get(int(core), 0) + int(count)
    return entries


def output_axons(m: Mapping) -> dict[int, int]:
    out: dict[int, int] = {}
    for src, rows in m.routes.items():
        if src in m.network.populations and rows.size:
            pairs = np.unique(rows[:, :2], axis=0)
            owner = source_cores(m, src)[pairs[:, 0]]
            for core, count in zip(*np.unique(owner, return_counts=True), strict=True):
                out[int(core)] = out.get(int(core), 0) + int(count)
    return out


def xy_links(a, b) -> list[tuple[tuple[int, int, int], tuple[int, int, int]]]:
    """The links a packet crosses from position a to b: x first, then y, then chips."""
    links = []
    chip, x, y = a
    while x != b[1]:
        nx = x + (1 if b[1] > x else -1)
        links.append(((chip, x, y), (chip, nx, y)))
        x = nx
    while y != b[2]:
        ny = y + (1 if b[2] > y else -1)
        links.append(((chip, x, y), (chip, x, ny)))
        y = ny
    while chip != b[0]:
        nc = chip + (1 if b[0] > chip else -1)
        links.append(((chip, x, y), (nc, x, y)))
        chip = nc
    return links


@dataclass(frozen=True)
class CoreUse:
    core: int
    position: tuple[int, int, int]
    populations: str
    neurons: int
    input_axons: int
    synapses: int
    synapse_bits: int
    output_axons: int
    table_entries: int


@dataclass(frozen=True)
class RouteReport:
    target: str
    limits: dict
    cores: tuple[CoreUse, ...]
    link_loads: dict
    host_entries: int
    fit: str
    rates: str = "spikes per step if every neuron fired every step; --calibrate measures rates"

    def text(self) -> str:
        lim = self.limits
        lines = [self.fit, f"cores on '{self.target}' (used / limit):",
                 f"  {'core':>4} {'pos':<10} {'neurons':>13} {'in axons':>13} {'synapse bits':>23} "
                 f"{'out axons':>13} {'routes':>11}  populations"]  # fmt: skip
        for c in self.cores:
            lines.append(
                f"  {c.core:>4} {str(c.position):<10} {c.neurons:>6}/{lim['neurons']:<6} "
                f"{c.input_axons:>6}/{lim['input_axons']:<6} "
                f"{c.synapse_bits:>11,}/{lim['synapse_memory_bits']:<11,} "
                f"{c.output_axons:>6}/{lim['output_axons']:<6} "
                f"{c.table_entries:>5}/{lim['router_entries']:<5}  {c.populations}"
            )
        loads = sorted(self.link_loads.values(), reverse=True)
        if loads:
            mean = sum(loads) / len(loads)
            lines.append(f"links: {len(loads)} used, load max {loads[0]:.4g}, mean {mean:.4g} "
                         f"({self.rates})")  # fmt: skip
        lines.append(f"host routing entries: {self.host_entries}; dimension-order routing "
                     "(x, then y, then chips): deadlock-free")  # fmt: skip
        return "\n".join(lines)

    def to_json(self) -> str:
        d = {
            "target": self.target, "limits": self.limits, "fit": self.fit,
            "cores": [c.__dict__ for c in self.cores], "host_entries": self.host_entries,
            "links": [{"from": list(a), "to": list(b), "load": v}
                      for (a, b), v in sorted(self.link_loads.items())],
        }  # fmt: skip
        return json.dumps(d, indent=1, default=list)


@register
@dataclass(frozen=True)
class Route(Pass):
    """See the module docstring."""

    name = "route"
    target: str = "fpga"

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        from snnc.passes.partition import _Costs
        from snnc.targets import load_target

        t = load_target(self.target)
        m = mapping_of(graph, ctx.cache)
        pos = placement_of(graph)
        entries = table_entries(m, t.multicast)
        outs = output_axons(m)
        bits = {n: node.bits for n, node in graph.nodes.items() if getattr(node, "bits", 0)}
        costs = _Costs(m.network, t, bits)
        uses = []
        for core in m.cores:
            u = None
            for sl in core.slices:
                su = costs.usage(m.network.populations[sl.population], sl.start, sl.stop)
                u = su if u is None else u.add(su)
            use = CoreUse(core.index, tuple(int(v) for v in pos[core.index]),
                          ",".join(sorted({s.population for s in core.slices})), core.neurons,
                          core.input_axons, core.synapses, costs.memory(u),
                          outs.get(core.index, 0), entries.get(core.index, 0))  # fmt: skip
            self._check(use, t, graph)
            uses.append(use)
        loads = self._loads(m, pos, ctx.rates)
        fit = ctx.reports["partition"].text() if "partition" in ctx.reports else ""
        limits = {"neurons": t.core.neurons, "input_axons": t.core.input_axons,
                  "output_axons": t.core.output_axons,
                  "synapse_memory_bits": t.core.synapse_memory_bits,
                  "router_entries": t.router_entries}  # fmt: skip
        rates = "spikes per step at the calibration input's firing rates" if ctx.rates else \
            RouteReport.rates  # fmt: skip
        ctx.reports[self.name] = RouteReport(t.name, limits, tuple(uses), loads,
                                             entries.get(HOST, 0), fit, rates)  # fmt: skip
        return graph.replace(meta=dict(graph.meta, routed=True))

    def _check(self, use: CoreUse, t, g: Graph) -> None:
        checks = (
            ("routing table entries", use.table_entries, t.router_entries),
            ("output axons", use.output_axons, t.core.output_axons),
        )
        for what, used, limit in checks:
            if used > limit:
                raise ResourceError(
                    f"core {use.core} (layers {use.populations}) needs {used:,} {what}; a core "
                    f"of target '{t.name}' has {limit:,}: split the layer over more cores, "
                    "use a target with multicast routing, or a smaller fan-out"
                )

    def _loads(self, m: Mapping, pos: np.ndarray, rates) -> dict:
        tr = traffic(m, rates)
        n = len(m.cores)
        host = (0, -1, 0)
        loads: dict = {}
        for a, b in zip(*np.nonzero(tr), strict=True):
            if a == b:
                continue
            pa = host if a == n else tuple(int(v) for v in pos[a])
            pb = host if b == n else tuple(int(v) for v in pos[b])
            for link in xy_links(pa, pb):
                loads[link] = loads.get(link, 0.0) + float(tr[a, b])
        return loads
