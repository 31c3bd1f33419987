"""Partition + place + route of a ~100,000-neuron, ~10-million-synapse network on Loihi-class
cores, timed. Prints the time of each pass, the cores used and the lower bound on cores from
total neurons and total synapse memory.

The network is a convolutional stack (sparse, local connectivity, as a large SNN is in
practice): input 4x64x64 -> three 8x64x64 LIF layers (3x3, 5x5, 3x3 convolutions, 'same'
padding) -> a 26x16x16 LIF readout (4x4 convolution, stride 4). It needs more than one
Loihi chip, so the target is Loihi 1 cores on a board of 4 chips.

Run: python benchmarks/partition.py
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from snnc.ir import Graph
from snnc.ir import nodes as N
from snnc.passes.manager import PassContext, Pipeline, parse_spec
from snnc.targets import load_target, target_to_dict


def lif(shape, rng) -> dict[str, np.ndarray]:
    p = dict(decay=0.9, gain=1.0, bias=0.0, threshold=1.0, reset_value=0.0)
    # one threshold per layer: Loihi cores hold only 8 threshold profiles
    return {k: np.full(shape, v, np.float32) for k, v in p.items()}


def network(seed: int = 0) -> Graph:
    rng = np.random.default_rng(seed)
    nodes = {"input": N.Input(shape=(4, 64, 64))}
    inputs, params = {}, {}
    prev, c_in = "input", 4
    for i, k in enumerate((3, 5, 3), start=1):
        conv, neu = f"conv{i}", f"lif{i}"
        nodes[conv] = N.Conv2d(padding=(k // 2, k // 2))
        nodes[neu] = N.LIF(reset="subtract", timing="next_step")
        inputs[conv], inputs[neu] = [prev], [conv]
        w = rng.normal(0, 0.3, (8, c_in, k, k)).astype(np.float32)
        params[conv] = {"weight": w, "bias": np.zeros(8, np.float32)}
        params[neu] = lif((8, 64, 64), rng)
        prev, c_in = neu, 8
    # readout: a strided 4x4 convolution to 26 maps of 16x16
    nodes["conv4"] = N.Conv2d(stride=(4, 4))
    nodes["out"] = N.LIF(reset="subtract", timing="next_step")
    nodes["output"] = N.Output(shape=(26, 16, 16))
    inputs |= {"conv4": [prev], "out": ["conv4"], "output": ["out"]}
    params["conv4"] = {"weight": rng.normal(0, 0.1, (26, 8, 4, 4)).astype(np.float32),
                       "bias": np.zeros(26, np.float32)}  # fmt: skip
    params["out"] = lif((26, 16, 16), rng)
    return Graph(nodes, inputs, params, name="bench", meta={"canonical": True})


def board(chips: int, directory: Path) -> Path:
    """Loihi 1 cores on a board of ``chips`` chips, as a target file."""
    d = target_to_dict(load_target("loihi1"))
    d.update(name=f"loihi1-x{chips}", chips=chips)
    d.pop("source", None)
    path = directory / f"loihi1-x{chips}.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


def main() -> int:
    g = network()
    tmp = Path(tempfile.mkdtemp())
    path = board(4, tmp)
    t = load_target(path)
    q = Pipeline(parse_spec("quantize{weight-bits=8}")).run(g, PassContext())
    from snnc.mapping.connectivity import build_network

    t0 = time.perf_counter()
    net = build_network(q)
    t_net = time.perf_counter() - t0
    neurons = sum(p.size for p in net.populations.values())
    synapses = sum(b.matrix.nnz for p in net.populations.values() for b in p.blocks)
    ctx = PassContext()
    spec = ",".join(f"{p}{{target={path}}}" for p in ("partition", "place", "route"))
    t0 = time.perf_counter()
    out = Pipeline(parse_spec(spec)).run(q, ctx)
    elapsed = time.perf_counter() - t0
    uses = ctx.reports["route"].cores
    per_syn = 8 + t.synapse_cost.index_bits
    lower = max(math.ceil(neurons / t.core.neurons),
                math.ceil(synapses * per_syn / t.core.synapse_memory_bits))  # fmt: skip
    print(f"network: {neurons:,} neurons, {synapses:,} synapses (8-bit weights)")
    print(f"target: {t.name} ({t.cores} cores x {t.chips} chips, {t.core.neurons} neurons and "
          f"{t.core.synapse_memory_bits:,} synapse bits per core)")  # fmt: skip
    print(f"connectivity extraction: {t_net:.2f} s")
    for name, secs in ctx.timings:
        print(f"  {name:<10} {secs:6.2f} s")
    print(f"partition + place + route: {elapsed:.2f} s (target < 30 s)")
    print(f"cores used: {len(uses)}; lower bound from neurons and synapse memory: {lower}")
    print(f"max per core: {max(u.neurons for u in uses)} neurons, "
          f"{max(u.synapse_bits for u in uses):,} synapse bits, "
          f"{max(u.input_axons for u in uses)} input axons")  # fmt: skip
    print(f"chips used: {len({p[0] for p in np.asarray(out.meta['placement']).reshape(-1, 3)})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
