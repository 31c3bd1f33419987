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


def simulate(mapping: Mapping, graph: Graph, x: np.ndarray, *, record: bool = False):
    """Run the mapped network on time-major input; returns the output like sim.integer."""
    from snnc.sim.reference import _inputs

    net = mapping.network
    xs = {n: _quantize_input(graph, n, v.numpy()).numpy() for n, v in _inputs(graph, x).items()}
    t_steps, batch = next(iter(xs.values())).shape[:2]
    neurons = {}
    for name, pop in net.populations.items():
        if isinstance(pop.node, N.NEURON_TYPES):
            p = {k: torch.tensor(v, dtype=torch.int64) for k, v in pop.params.items()}
            neurons[name] = _Neuron(name, pop.node, p, batch, (pop.size,))
    out_shape = graph.nodes[graph.output_names[0]].shape
    max_delay = max((g.delay for c in mapping.cores for g in c.groups), default=0)
    history: list[dict[str, np.ndarray]] = []  # newest last: source -> (B, n) values
    outs, rec = [], {n: [] for n in net.populations} if record else {}
    for t in range(t_steps):
        now: dict[str, np.ndarray] = {n: xs[n][t].reshape(batch, -1) for n in net.inputs}
        axons: dict[tuple[int, int], np.ndarray] = {}  # (core, delay) -> axon values
        for d in range(1, max_delay + 1):
            if len(history) >= d:
                for src, vals in history[-d].items():
                    for core, buf in _deliver(mapping, src, vals, batch).items():
                        axons[(core, d)] = axons.get((core, d), 0) + buf
        for src in net.inputs:
            for core, buf in _deliver(mapping, src, now[src], batch).items():
                axons[(core, 0)] = axons.get((core, 0), 0) + buf
        for name in net.order:
            pop = net.populations[name]
            acc = np.broadcast_to(pop.input_bias, (batch, pop.size)).copy()
            for core_idx, sl in mapping.slices_of(name):
                core = mapping.cores[core_idx]
                si = core.slices.index(sl)
                for g in core.groups:
                    m = g.synapses.get(si)
                    vals = axons.get((core_idx, g.delay))
                    if m is None or vals is None:
                        continue
                    ev = vals[:, g.first_axon : g.first_axon + g.elements.size]
                    acc[:, sl.start : sl.stop] += (m @ ev.T).T
            if name in neurons:
                out = neurons[name].step(torch.from_numpy(acc), t).numpy()
            else:
                th = torch.tensor(pop.params["threshold"], dtype=torch.int64)
                out = _cmp(torch.from_numpy(acc), th, pop.node.strict).numpy()
            now[name] = out
            for core, buf in _deliver(mapping, name, out, batch).items():
                axons[(core, 0)] = axons.get((core, 0), 0) + buf
            if record:
                rec[name].append(out.reshape(batch, *pop.shape))
        history.append({k: v for k, v in now.items()})
        if len(history) > max_delay:
            history.pop(0)
        outs.append(now[net.output].reshape(batch, *out_shape))
    output = np.stack(outs)
    if not record:
        return output
    return output, {n: np.stack(v) for n, v in rec.items()}
