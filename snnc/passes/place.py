"""The ``place`` pass: put the cores on the target's mesh so that traffic x hops is small.

Requires a partitioned graph. Ensures ``meta['placement']`` lists ``(chip, x, y)`` for every
core (flattened into one tuple). Traffic between two cores is the number of (source neuron,
destination core) routes between them, each weighted by the neuron's firing rate when
calibration rates are known (``--calibrate``) and 1 otherwise; the host, which injects the
input, sits beside position (0, 0) of chip 0. Placement starts from a snake order over the mesh
(cores are numbered in network order, so neighbours in the network start as neighbours on the
mesh) and then makes the best pairwise swap (empty positions included) while it lowers the
total traffic x hops, a bounded number of times. Deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from snnc.ir.graph import Graph
from snnc.mapping.cores import HOST, Mapping, mapping_of, source_cores
from snnc.passes.manager import Pass, PassContext, register

CHIP_HOP = 8  #: an inter-chip link counts as this many on-chip hops


def slots(target) -> list[tuple[int, int, int]]:
    """All (chip, x, y) positions in snake order."""
    w, h = target.mesh
    out = []
    for chip in range(target.chips):
        for y in range(h):
            xs = range(w) if y % 2 == 0 else range(w - 1, -1, -1)
            out += [(chip, x, y) for x in xs]
    return out


def traffic(m: Mapping, rates: dict) -> np.ndarray:
    """(cores + 1, cores + 1) matrix; the last row/column is the host."""
    n = len(m.cores)
    t = np.zeros((n + 1, n + 1))
    for src, rows in m.routes.items():
        if rows.size == 0:
            continue
        from_core = source_cores(m, src)[rows[:, 0]]
        from_core = np.where(from_core == HOST, n, from_core)
        r = np.asarray(rates.get(src, np.ones(m.network.source_size(src)))).reshape(-1)
        np.add.at(t, (from_core, rows[:, 1]), r[rows[:, 0]])
    return t


def distances(pos: np.ndarray) -> np.ndarray:
    """Hops between positions (rows: chip, x, y); the host is the last row."""
    chip, x, y = pos[:, 0:1], pos[:, 1:2], pos[:, 2:3]
    return (np.abs(x - x.T) + np.abs(y - y.T) + CHIP_HOP * np.abs(chip - chip.T)).astype(float)


def improve(t: np.ndarray, pos: np.ndarray, n_movable: int, rounds: int) -> np.ndarray:
    """Best-swap hill climbing over the first ``n_movable`` rows of ``pos``."""
    s = t + t.T
    for _ in range(rounds):
        d = distances(pos)
        a = s @ d
        diag = np.diag(a)
        delta = (a - diag[:, None]) + (a.T - diag[None, :]) + 2 * s * d
        delta = delta[:n_movable, :n_movable]
        i, j = np.unravel_index(np.argmin(delta), delta.shape)
        if delta[i, j] >= -1e-9:
            break
        pos[[i, j]] = pos[[j, i]]
    return pos


@register
@dataclass(frozen=True)
class Place(Pass):
    """See the module docstring."""

    name = "place"
    target: str = "fpga"
    rounds: int = 200

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        from snnc.targets import load_target

        t = load_target(self.target)
        m = mapping_of(graph, ctx.cache)
        n = len(m.cores)
        all_slots = slots(t)
        # cores first, then the empty slots (swappable), then the host (fixed)
        pos = np.array([*all_slots, (0, -1, 0)], dtype=np.int64)
        tr = np.zeros((len(pos), len(pos)))
        core_t = traffic(m, ctx.rates)
        tr[:n, :n] = core_t[:n, :n]
        tr[-1, :n], tr[:n, -1] = core_t[n, :n], core_t[:n, n]
        before = float((tr * distances(pos)).sum())
        pos = improve(tr, pos, len(all_slots), self.rounds)
        after = float((tr * distances(pos)).sum())
        placement = tuple(int(v) for p in pos[:n] for v in p)
        ctx.reports[self.name] = PlaceReport(n, before, after)
        return graph.replace(meta=dict(graph.meta, placement=placement))


@dataclass(frozen=True)
class PlaceReport:
    cores: int
    cost_before: float
    cost_after: float

    def text(self) -> str:
        return (f"place: {self.cores} cores; traffic x hops {self.cost_before:.6g} in snake "
                f"order, {self.cost_after:.6g} after swaps")  # fmt: skip


def placement_of(graph: Graph) -> np.ndarray:
    """(cores, 3) array of (chip, x, y) from ``meta['placement']``."""
    from snnc.errors import PassError

    p = graph.meta.get("placement")
    if p is None:
        raise PassError("the graph is not placed: run the place pass first")
    return np.asarray(p, dtype=np.int64).reshape(-1, 3)
