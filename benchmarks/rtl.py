"""Figures of the FPGA accelerator: cycles per step against the memory-port bound, and the
resources and fmax of one neuron core after Yosys + nextpnr (YoWASP).

Cycles come from the cycle-accurate model (``snnc/sim/cycle.py``), which the RTL matches cycle
for cycle in ``tests/rtl/test_top.py``; the workload is the MNIST 784-128-10 network of
``examples/mnist`` on the 1000-image test split (first ``--images``), T = 25.

The synthesised core is the device preset's: 256 neurons, 24-bit state, 1024 input axons, a
64-bit weight word (UP5K: 8 lanes of 8-bit weights, 16K words in the 4 SPRAM blocks, loaded by
the host; ECP5-25K: 16 lanes of 4-bit weights, 4,096 words of block RAM), wrapped so that every
port comes from one pin.

Run: python benchmarks/rtl.py [--images N] [--no-synth]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cycle_figures(images: int) -> None:
    from snnc import datasets
    from snnc.backends.fpga.images import build_images
    from snnc.build import compile_model
    from snnc.mapping.cores import mapping_of
    from snnc.sim.cycle import simulate
    from snnc.targets import load_target

    x_all, _ = datasets.load("mnist", "test")
    x = datasets.rate_encode(x_all[:images], 25, 0)
    print(f"MNIST 784-128-10, {images} test images, T = 25")
    print("| target | cores | cycles/step (mean) | bound/step | measured/bound | cycles/image "
          "| us/image at target clock |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name in ("ice40-up5k", "ecp5-25k"):
        t = load_target(name)
        r = compile_model(ROOT / "examples" / "mnist" / "model.pt", target=name)
        img = build_images(r.graph, mapping_of(r.graph), t)
        res = simulate(img, x.reshape(25, images, -1), graph=r.graph)
        per_image = res.cycles.sum(axis=0).mean()
        us = per_image / t.fpga.clock_mhz
        ratio = res.cycles.sum() / res.bound.sum()
        print(f"| {name} | {len(img.cores)} | {res.cycles.mean():.1f} | {res.bound.mean():.1f} "
              f"| {ratio:.4f} | {per_image:,.0f} | {us:.0f} |")  # fmt: skip
    print("(published Spiker+ on MNIST 784-128-10: 7,612 logic cells, 780 us per image)\n")


def core_design(mixed: bool, device: str):
    from snnc.rtl.core import NeuronCore
    from snnc.rtl.params import (
        AxonEntry,
        CoreImage,
        CoreParams,
        Kind,
        NeuronInit,
        Profile,
        Reset,
        Timing,
    )
    from snnc.rtl.synth import PinWrapper
    from snnc.targets import load_target

    rng = random.Random(0)
    # the weight memory of the device's preset: 4 SPRAM on the UP5K, block RAM on the ECP5
    t = load_target(device)
    n, lanes, axons = t.core.neurons, t.fpga.lanes, t.core.input_axons
    wbits = t.synapse_cost.word_bits // lanes
    words = t.core.synapse_memory_bits // t.synapse_cost.word_bits
    params = CoreParams(n, lanes, wbits, 24, axons, words, 12, 1, 4, 3,
                        weight_memory=t.fpga.weight_memory)  # fmt: skip
    lo, hi = -(1 << (wbits - 1)), (1 << (wbits - 1)) - 1
    weights = tuple(tuple(rng.randint(lo, hi) for _ in range(lanes)) for _ in range(words))
    rl = min(32, n // lanes)  # a row of up to 32 words, within the core's groups
    table = tuple(AxonEntry((a * rl) % (words - rl), rl, 0, 0) for a in range(axons))
    prof = (Profile(Kind.LIF, 3686, 0, False, Reset.SUBTRACT, Timing.NEXT_STEP),)
    if mixed:
        prof += (Profile(Kind.CUBALIF, 3686, 2048, False, Reset.TO_VALUE, Timing.IMMEDIATE),)
    neurons = tuple(NeuronInit(rng.randint(100, 1000), rng.randint(-10, 10), 0, 0,
                               k % len(prof)) for k in range(n))  # fmt: skip
    return PinWrapper.around(NeuronCore(CoreImage(params, table, weights, neurons, prof)))


def synth_figures() -> None:
    from snnc.rtl.synth import synthesize

    print("One neuron core of each preset (256 neurons, 24-bit state, a 64-bit weight word: 8"
          " lanes of 8 bits on the UP5K, 16 of 4 bits on the ECP5; the pipeline of"
          " ARCHITECTURE.md):")  # fmt: skip
    for mixed, what in ((False, "LIF profiles (as MNIST compiles)"),
                        (True, "LIF + CubaLIF profiles (two multipliers more)")):  # fmt: skip
        print(f" {what}:")
        for device in ("ice40-up5k", "ecp5-25k"):
            d = core_design(mixed, device)
            t0 = time.perf_counter()
            r = synthesize(d, [d.pin_in, d.pin_out], device)
            print(f"  {r.line()}  [{time.perf_counter() - t0:.0f} s]")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--no-synth", action="store_true")
    args = ap.parse_args()
    cycle_figures(args.images)
    if not args.no_synth:
        synth_figures()
    return 0


if __name__ == "__main__":
    sys.exit(main())
