"""Simulates a partitioned network from its cores' own tables and routes.

Spikes travel as events: each source element that fires is looked up in the route table and
delivered to (core, axon) pairs; each core multiplies the events on its axons with its synapse
table. The neuron arithmetic is that of :mod:`snnc.sim.integer`, so the result must equal the
unpartitioned integer simulation spike for spike — which the tests check, and which checks the
partition, the tables and the routes at once.
"""

from __future__ import annotations

import numpy as np
import torch

from snnc.ir import nodes as N
from snnc.ir.graph import Graph
from snnc.mapping.cores import Mapping
from snnc.sim.integer import _cmp, _Neuron, _quantize_input


def _deliver(mapping: Mapping, src: str, values: np.ndarray, batch: int) -> dict[int, np.ndarray]:
    """Per destination core: (B, core input axons) values on its axons from ``src``."""
    rows = mapping.routes.get(src)
    out: dict[int, np.ndarray] = {}
    if rows is None or rows.size == 0:
        return out
    for core in np.unique(rows[:, 1]):
        r = rows[rows[:, 1] == core]
        buf = out.setdefault(
            int(core), np.zeros((batch, mapping.cores[core].input_axons), np.int64)
        )
        buf[:, r[:, 2]] = values[:, r[:, 0]]
    return out


class _Run:
    """One simulation: neuron states, spike history and the axon values of the current step."""

    def __init__(self, mapping: Mapping, batch: int) -> None:
        self.m, self.batch = mapping, batch
        self.neurons = {}
        for name, pop in mapping.network.populations.items():
            if isinstance(pop.node, N.NEURON_TYPES):
                p = {k: torch.tensor(v, dtype=torch.int64) for k, v in pop.params.items()}
                self.neurons[name] = _Neuron(name, pop.node, p, batch, (pop.size,))
        self.max_delay = max((g.delay for c in mapping.cores for g in c.groups), default=0)
        self.history: list[dict[str, np.ndarray]] = []  # newest last: source -> (B, n)
        self.axons: dict[tuple[int, int], np.ndarray] = {}  # (core, delay) -> axon values

    def send(self, src: str, values: np.ndarray, delay: int) -> None:
        for core, buf in _deliver(self.m, src, values, self.batch).items():
            self.axons[(core, delay)] = self.axons.get((core, delay), 0) + buf

    def start_step(self, inputs: dict[str, np.ndarray]) -> None:
        self.axons = {}
        for d in range(1, min(self.max_delay, len(self.history)) + 1):
            for src, vals in self.history[-d].items():
                self.send(src, vals, d)
        for src, vals in inputs.items():
            self.send(src, vals, 0)

    def population(self, name: str, t: int) -> np.ndarray:
        """Accumulate what the cores holding ``name`` receive, then update its neurons."""
        pop = self.m.network.populations[name]
        acc = np.broadcast_to(pop.input_bias, (self.batch, pop.size)).copy()
        for core_idx, sl in self.m.slices_of(name):
            core = self.m.cores[core_idx]
            si = core.slices.index(sl)
            for g in core.groups:
                syn, vals = g.synapses.get(si), self.axons.get((core_idx, g.delay))
                if syn is not None and vals is not None:
                    ev = vals[:, g.first_axon : g.first_axon + g.elements.size]
                    acc[:, sl.start : sl.stop] += (syn @ ev.T).T
        if name in self.neurons:
            out = self.neurons[name].step(torch.from_numpy(acc), t).numpy()
        else:
            th = torch.tensor(pop.params["threshold"], dtype=torch.int64)
            out = _cmp(torch.from_numpy(acc), th, pop.node.strict).numpy()
        self.send(name, out, 0)
        return out

    def end_step(self, now: dict[str, np.ndarray]) -> None:
        self.history.append(now)
        if len(self.history) > self.max_delay:
            self.history.pop(0)


def simulate(mapping: Mapping, graph: Graph, x: np.ndarray, *, record: bool = False):
    """Run the mapped network on time-major input; returns the output like sim.integer."""
    from snnc.sim.reference import _inputs

    net = mapping.network
    xs = {n: _quantize_input(graph, n, v.numpy()).numpy() for n, v in _inputs(graph, x).items()}
    t_steps, batch = next(iter(xs.values())).shape[:2]
    run = _Run(mapping, batch)
    out_shape = graph.nodes[graph.output_names[0]].shape
    outs, rec = [], {n: [] for n in net.populations} if record else {}
    for t in range(t_steps):
        now = {n: net.to_hardware(n, xs[n][t].reshape(batch, -1)) for n in net.inputs}
        run.start_step(now)
        for name in net.order:
            now[name] = run.population(name, t)
            if record:
                shape = net.populations[name].shape
                rec[name].append(net.to_graph(name, now[name]).reshape(batch, *shape))
        run.end_step(now)
        outs.append(net.to_graph(net.output, now[net.output]).reshape(batch, *out_shape))
    output = np.stack(outs)
    if not record:
        return output
    return output, {n: np.stack(v) for n, v in rec.items()}
