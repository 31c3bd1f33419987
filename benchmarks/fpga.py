"""The FPGA backend end to end on MNIST 784-128-10 (examples/mnist, the quantisation benchmark's
network): compile to Verilog, run the Verilog in Verilator on the test images and compare with
the integer simulator, cycles and microseconds per image, the Verilator harness's speed, and the
whole accelerator after Yosys + nextpnr (LUTs, RAM, fmax) or the resource it runs out of, and
the time from the model to the board's bitstream.

Run: python benchmarks/fpga.py [--images N] [--no-synth]  (defaults: all 1000 test images, T=25)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGETS = ("ice40-up5k", "ecp5-25k")
MODEL = ROOT / "examples" / "mnist" / "model.pt"


def one_target(name: str, x: np.ndarray, work: Path, synth: bool) -> dict:
    from snnc.backends.fpga import engines as E
    from snnc.build import compile_model

    t0 = time.perf_counter()
    compile_model(MODEL, target=name, output=work / name)
    compile_s = time.perf_counter() - t0
    build = E.open_build(work / name)
    t0 = time.perf_counter()
    E.run(build, "verilator", x[:, :1])  # builds (or reuses) the harness
    build_s = time.perf_counter() - t0
    v = E.run(build, "verilator", x)
    ref = E.run(build, "integer", x)
    same = int(np.all(v.output == ref.output, axis=tuple(i for i in range(v.output.ndim)
                                                       if i != 1)).sum())  # fmt: skip
    per_image = v.cycles.sum(axis=0)
    row = {
        "target": name, "compile_s": compile_s, "harness_build_s": build_s,
        "identical": same, "images": x.shape[1], "cycles_image": float(per_image.mean()),
        "us_image": float(per_image.mean() / build.target.fpga.clock_mhz),
        "mcps": v.sim_cycles / v.seconds / 1e6, "sim_cycles": v.sim_cycles,
        "cores": len(build.image.cores), "clock": build.target.fpga.clock_mhz,
    }  # fmt: skip
    if synth:
        row["synth"] = synthesise(build, work / f"{name}-synth")
        row["bitstream"] = bitstream(name, work / f"{name}-board")
    return row


def bitstream(name: str, work: Path) -> str:
    """snnc compile --bitstream for the target's board, timed from the model."""
    from snnc.backends.fpga.board import BOARDS
    from snnc.build import compile_model
    from snnc.errors import SnncError

    board = next(b for b, (_, _, preset) in BOARDS.items() if preset == name)
    t0 = time.perf_counter()
    try:
        r = compile_model(MODEL, target=name, output=work, board=board)
    except SnncError as e:
        return f"{board}: {str(e).splitlines()[0]} ({time.perf_counter() - t0:.0f} s)"
    return f"{r.bitstream.line()}; {time.perf_counter() - t0:.0f} s from the model"


def synthesise(build, work: Path) -> str:
    from snnc.backends.fpga.emit import accelerator
    from snnc.errors import SnncError
    from snnc.rtl.synth import PinWrapper, synthesize

    w = PinWrapper.around(accelerator(build.image))
    device = build.target.fpga.device
    try:
        r = synthesize(w, [w.pin_in, w.pin_out], device, workdir=work)
    except SnncError as e:
        last = [ln for ln in str(e).splitlines() if "ERROR" in ln or "Unable" in ln]
        return f"{device}: does not fit / failed: {(last or [str(e)])[-1].strip()}", None
    return r.line(), r.fmax_mhz


def main() -> int:
    from snnc import datasets

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--no-synth", action="store_true")
    args = ap.parse_args()
    images, _ = datasets.load("mnist", "test")
    x = datasets.rate_encode(images[: args.images], 25, 0).reshape(25, args.images, -1)
    print(f"MNIST 784-128-10 ({MODEL.relative_to(ROOT)}), {args.images} test images, T = 25")
    rows = []
    with tempfile.TemporaryDirectory(prefix="snnc-fpga-bench-") as tmp:
        for name in TARGETS:
            rows.append(one_target(name, x, Path(tmp), not args.no_synth))
    print("| target | cores | model -> Verilog | Verilator == integer | cycles/image | "
          "us/image at the target clock | Verilator speed |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['target']} | {r['cores']} | {r['compile_s']:.1f} s | {r['identical']} of "
              f"{r['images']} images | {r['cycles_image']:,.0f} | {r['us_image']:.0f} | "
              f"{r['mcps']:.2f} M cycles/s ({r['sim_cycles']:,} cycles) |")  # fmt: skip
    print(
        "(Verilator harness build, first time: "
        + ", ".join(f"{r['target']} {r['harness_build_s']:.0f} s" for r in rows)
        + ")"
    )
    print("(published Spiker+ on MNIST 784-128-10: 7,612 logic cells, 780 us per image)")
    if not args.no_synth:
        print("\nWhole accelerator after Yosys + nextpnr (every port driven from one pin):")
        for r in rows:
            line, fmax = r["synth"]
            clk = min(fmax or 0.0, r["clock"])
            at = f"; at {clk:.1f} MHz: {r['cycles_image'] / clk:.0f} us/image" if fmax else ""
            print(f"  {line}{at}")
        print("\nsnnc compile --bitstream (the board top: accelerator + UART link, board clock):")
        for r in rows:
            print(f"  {r['bitstream']}")
        with tempfile.TemporaryDirectory(prefix="snnc-fpga-bench-") as tmp:
            # the board that takes the 2-core design the ULX3S-25F cannot
            print(f"  {bitstream('ecp5-85k', Path(tmp) / 'ecp5-85k-board')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
