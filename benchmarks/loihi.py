"""The Loihi backend end to end on MNIST 784-128-10 (examples/mnist, the quantisation benchmark's
network): compile for loihi1 (and loihi2, whose limits are estimates), run the configuration
files with ``--engine loihi`` (snnc/sim/loihi.py) on the test images and compare with the
integer simulator: accuracy, agreement, cores used, synapse memory per core, compile time.

A control run explains the difference: the integer simulator on the same graph with Loihi's
reset (to 0, at once) instead of snnTorch's (subtract the threshold, next step).

Run: python benchmarks/loihi.py [--images N]  (defaults: all 1000 test images, T = 25)
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGETS = ("loihi1", "loihi2")
MODEL = ROOT / "examples" / "mnist" / "model.pt"


def one_target(name: str, x: np.ndarray, labels: np.ndarray, work: Path) -> dict:
    from snnc.backends.loihi import engine as L
    from snnc.build import compile_model
    from snnc.eval import predict

    t0 = time.perf_counter()
    result = compile_model(MODEL, target=name, output=work / name)
    compile_s = time.perf_counter() - t0
    build = L.open_build(work / name)
    runs = {e: L.run(build, e, x) for e in ("integer", "loihi")}
    pred = {e: predict(r.output) for e, r in runs.items()}
    low = result.loihi
    return {
        "target": name,
        "compile_s": compile_s,
        "cores": len(low.usage),
        "available": low.target.total_cores,
        "memory": [u.synapse_bits for u in low.usage],
        "limit": low.target.core.synapse_memory_bits,
        "acc": {e: float(np.mean(p == labels)) for e, p in pred.items()},
        "agree": float(np.mean(pred["loihi"] == pred["integer"])),
        "spikes_agree": float(np.mean(runs["loihi"].output == runs["integer"].output)),
        "seconds": {e: r.seconds for e, r in runs.items()},
        "synops": runs["loihi"].synops,
        "warnings": low.semantic_changes,
        "graph": result.graph,
    }


def loihi_reset_control(graph, x: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of the integer simulator with Loihi's reset: to 0, in the step of the spike."""
    from snnc.eval import predict
    from snnc.ir import nodes as N
    from snnc.sim.integer import simulate

    nodes = dict(graph.nodes)
    for n, node in graph.nodes.items():
        if isinstance(node, (N.LIF, N.IF, N.CubaLIF)):
            nodes[n] = dataclasses.replace(node, reset=N.ResetMode.TO_VALUE,
                                           timing=N.ResetTiming.IMMEDIATE)  # fmt: skip
    return float(np.mean(predict(simulate(graph.replace(nodes=nodes), x)) == labels))


def main() -> int:
    from snnc import datasets

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    args = ap.parse_args()
    images, labels = datasets.load("mnist", "test")
    labels = labels[: args.images]
    x = datasets.rate_encode(images[: args.images], 25, 0).reshape(25, args.images, -1)
    print(f"MNIST 784-128-10 ({MODEL.relative_to(ROOT)}), {args.images} test images, T = 25")
    with tempfile.TemporaryDirectory(prefix="snnc-loihi-bench-") as tmp:
        rows = [one_target(name, x, labels, Path(tmp)) for name in TARGETS]
    print("| target | compile | cores used | synapse memory per core (bits) | sim/integer | "
          "--engine loihi | difference | same prediction | same output spikes |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        mem = ", ".join(f"{m:,}" for m in r["memory"])
        a, b = r["acc"]["integer"], r["acc"]["loihi"]
        print(f"| {r['target']} | {r['compile_s']:.1f} s | {r['cores']} of {r['available']} | "
              f"{mem} of {r['limit']:,} | {a:.1%} | {b:.1%} | {100 * (b - a):+.1f} points | "
              f"{r['agree']:.1%} | {r['spikes_agree']:.1%} |")  # fmt: skip
    r = rows[0]
    sec = r["seconds"]
    print(f"\nloihi engine: {sec['loihi']:.2f} s for {args.images} images ({r['synops']:,} "
          f"synaptic events); integer engine {sec['integer']:.2f} s")  # fmt: skip
    control = loihi_reset_control(r["graph"], x, labels)
    print(f"control: sim/integer with Loihi's reset (to 0, at once): {control:.1%} "
          f"(--engine loihi: {r['acc']['loihi']:.1%})")  # fmt: skip
    print(f"\nsemantic changes on {r['target']} (summary.txt warnings):")
    for w in r["warnings"]:
        print(f"  {w}")
    print("(loihi2: per-core limits and graded spikes are estimates from Intel's briefs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
