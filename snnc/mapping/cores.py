"""What each core stores once the populations are split over cores, and the routes between them.

A partition assigns every population a list of slices ``(core, start, stop)`` of its flattened
neurons. From it follow, deterministically:

- per core, its *input axons*: one per (source, delay, source element) that has at least one
  synapse onto the core's neurons, numbered in (source, delay, element) order;
- per core, its synapse table: for each input axon, the (neuron, weight) pairs it drives —
  every synapse of the network is stored in exactly the core that holds its target neuron;
- per source element, its routes: the (destination core, axon) pairs its spikes must reach.
  Input elements are routed from the host.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from snnc.mapping.connectivity import Network

HOST = -1  #: the core number of the host, which injects the graph's input


@dataclass(frozen=True)
class Slice:
    population: str
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass
class AxonGroup:
    """The input axons of one core that carry one (source, delay)."""

    source: str
    delay: int
    elements: np.ndarray  #: source element of each axon, ascending
    first_axon: int  #: core-local number of the first axon of the group
    #: per target slice of the core: sparse (slice neurons, axons of this group) weights
    synapses: dict[int, sp.csc_matrix] = field(default_factory=dict)


@dataclass
class Core:
    index: int
    slices: list[Slice] = field(default_factory=list)
    groups: list[AxonGroup] = field(default_factory=list)

    @property
    def neurons(self) -> int:
        return sum(s.size for s in self.slices)

    @property
    def input_axons(self) -> int:
        return sum(g.elements.size for g in self.groups)

    @property
    def synapses(self) -> int:
        return sum(m.nnz for g in self.groups for m in g.synapses.values())


@dataclass
class Mapping:
    network: Network
    cores: list[Core]
    #: source name -> (element, destination core, axon) rows, sorted by element
    routes: dict[str, np.ndarray]

    def slices_of(self, population: str) -> list[tuple[int, Slice]]:
        return [(c.index, s) for c in self.cores for s in c.slices if s.population == population]


def build_mapping(net: Network, assignment: dict[str, list[tuple[int, int, int]]]) -> Mapping:
    """Core tables and routes for ``assignment``: population -> [(core, start, stop), ...]."""
    n_cores = 1 + max((c for sl in assignment.values() for c, _, _ in sl), default=-1)
    cores = [Core(i) for i in range(n_cores)]
    for pop in net.order:
        for core, start, stop in assignment[pop]:
            cores[core].slices.append(Slice(pop, start, stop))
    routes: dict[str, list[np.ndarray]] = {}
    for core in cores:
        _fill_core(net, core, routes)
    merged = {}
    for src, rows in routes.items():
        r = np.concatenate(rows) if rows else np.zeros((0, 3), np.int64)
        merged[src] = r[np.lexsort((r[:, 2], r[:, 1], r[:, 0]))]
    return Mapping(net, cores, merged)


def _fill_core(net: Network, core: Core, routes: dict[str, list[np.ndarray]]) -> None:
    # the rows of every block that land in this core, per (source, delay)
    parts: dict[tuple[str, int], list[tuple[int, sp.csr_matrix]]] = {}
    for si, sl in enumerate(core.slices):
        for b in net.populations[sl.population].blocks:
            parts.setdefault((b.source, b.delay), []).append((si, b.matrix[sl.start : sl.stop]))
    axon = 0
    for src, delay in sorted(parts, key=lambda k: (k[0], k[1])):
        used = np.unique(np.concatenate([m.indices for _, m in parts[(src, delay)]]))
        if used.size == 0:
            continue
        group = AxonGroup(src, delay, used.astype(np.int64), axon)
        for si, m in parts[(src, delay)]:
            sub = m[:, used].tocsc()
            group.synapses[si] = (group.synapses[si] + sub).tocsc() if si in group.synapses \
                else sub  # fmt: skip
        core.groups.append(group)
        routes.setdefault(src, []).append(
            np.stack([used, np.full(used.size, core.index), axon + np.arange(used.size)], axis=1)
        )
        axon += used.size


def assignment_of(graph) -> dict[str, list[tuple[int, int, int]]]:
    """The partition stated on the graph's population nodes."""
    from snnc.errors import PassError

    out = {n: list(node.partition) for n, node in graph.nodes.items()
           if getattr(node, "partition", ())}  # fmt: skip
    if not out:
        raise PassError("the graph is not partitioned: run the partition pass first")
    return out


def mapping_of(graph, cache: dict | None = None) -> Mapping:
    """The Mapping of a partitioned graph (cached in ``cache`` under the partition)."""
    from snnc.mapping.connectivity import build_network

    assignment = assignment_of(graph)
    key = repr(sorted(assignment.items()))
    if cache is not None and cache.get("mapping_key") == key:
        return cache["mapping"]
    m = build_mapping(build_network(graph), assignment)
    if cache is not None:
        cache.update(mapping=m, mapping_key=key)
    return m


def source_cores(m: Mapping, source: str) -> np.ndarray:
    """The core holding each element of ``source`` (HOST for the graph's inputs)."""
    if source not in m.network.populations:
        return np.full(m.network.source_size(source), HOST, np.int64)
    out = np.empty(m.network.populations[source].size, np.int64)
    for core, sl in m.slices_of(source):
        out[sl.start : sl.stop] = core
    return out
