"""``snnc compile``: model -> passes -> build directory, written atomically.

A build directory holds ``build.json`` (the manifest: inputs with their hashes, options, tool
versions, and the hash of every file written), the compiled IR (``model.snnc`` text and
``model.json`` + ``model.npz``), ``report.txt`` (every pass's report) and ``fit.json`` (per-core
use and link loads). It is assembled in a temporary directory beside the destination and moved
into place only when complete, so a failed or interrupted build leaves nothing half-written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from snnc.errors import SnncError
from snnc.ir.graph import Graph
from snnc.passes.manager import PassContext, Pipeline, parse_spec


def default_spec(target, weight_bits: int | None = None) -> str:
    """The pipeline a target gets unless ``--passes`` says otherwise."""
    allowed = [b for b in target.core.weight_bits if b >= 1]
    bits = weight_bits if weight_bits is not None else (8 if 8 in allowed else max(allowed))
    # per-neuron scales give per-neuron thresholds; cores with few threshold profiles need one
    # scale per layer
    gran = "layer" if target.core.threshold_profiles else "neuron"
    q = f"quantize{{weight-bits={bits},granularity={gran}}}"
    where = f"target={target.source or target.name}"
    return f"canonicalize,{q},partition{{{where}}},place{{{where}}},route{{{where}}}"


@dataclass
class BuildResult:
    graph: Graph
    ctx: PassContext
    spec: str
    directory: Path | None = None
    files: dict[str, str] = field(default_factory=dict)
    image: object = None  #: the FPGA memory images, when the build wrote them
    bitstream: object = None  #: the BitstreamResult, when a board was given and it built
    summary: str | None = None  #: the FPGA report's text, when a sample input was given
    loihi: object = None  #: the Loihi lowering (snnc/backends/loihi/lower.py), for a Loihi build

    def report(self) -> str:
        parts = []
        reports = self.ctx.reports
        for name, rep in reports.items():
            if name == "route":
                continue
            if name == "partition" and "route" in reports:
                rep = reports["route"]  # which includes the fit report, per core
            parts.append(rep.text() if hasattr(rep, "text") else str(rep))
        return "\n\n".join(parts) + "\n"


def calibration_rates(graph: Graph, x: np.ndarray) -> dict[str, np.ndarray]:
    """Per-neuron spikes per step of every spiking population of a quantised graph on ``x``."""
    from snnc.sim.integer import simulate

    _, rec = simulate(graph, x, record=True)
    rates = {}
    for n, node in graph.nodes.items():
        if node.spiking:
            v = rec[n].reshape(rec[n].shape[0], rec[n].shape[1], -1)
            rates[n] = v.mean(axis=(0, 1))
    for n in graph.input_names:
        v = np.asarray(x, dtype=np.float64)
        rates[n] = v.reshape(v.shape[0], v.shape[1], -1).mean(axis=(0, 1))
    return rates


def run_passes(graph: Graph, spec: str, calibrate: np.ndarray | None = None) -> BuildResult:
    """Run ``spec``; with calibration input, measure firing rates once the graph is quantised."""
    passes = parse_spec(spec)
    ctx = PassContext()
    if calibrate is not None:
        split = next((i for i, p in enumerate(passes) if p.name == "partition"), len(passes))
        graph = Pipeline(passes[:split]).run(graph, ctx)
        ctx.rates.update(calibration_rates(graph, calibrate))
        passes = passes[split:]
    graph = Pipeline(passes).run(graph, ctx)
    return BuildResult(graph, ctx, spec)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("snnc", "numpy", "torch", "nir", "snntorch", "amaranth"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def write_build(result: BuildResult, out: Path, *, inputs: dict, options: dict, extra=None) -> None:
    """Write the build directory ``out`` atomically (replacing an earlier build there).

    ``extra`` is a callable ``extra(tmpdir) -> None`` that adds backend files before the
    manifest is written.
    """
    from snnc.ir.serialize import save
    from snnc.ir.text import print_graph

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "model.snnc").write_text(print_graph(result.graph))
        save(result.graph, tmp / "model.json")
        (tmp / "report.txt").write_text(result.report())
        if "route" in result.ctx.reports:
            (tmp / "fit.json").write_text(result.ctx.reports["route"].to_json() + "\n")
        if extra is not None:
            extra(tmp)
        files = {p.relative_to(tmp).as_posix(): _sha256(p) for p in sorted(tmp.rglob("*"))
                 if p.is_file()}  # fmt: skip
        manifest = {
            "format": "snnc.build", "version": 1, "inputs": inputs, "options": options,
            "passes": result.spec, "versions": _versions(), "files": files,
            "timings_s": {name: round(t, 4) for name, t in result.ctx.timings},
        }  # fmt: skip
        (tmp / "build.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        result.files = files
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        result.directory = out
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def input_record(path) -> dict:
    p = Path(path)
    if p.is_file():
        return {"path": str(p), "sha256": _sha256(p)}
    return {"path": str(p)}


def compile_model(
    model,
    *,
    target: str = "fpga",
    output=None,
    passes: str | None = None,
    weight_bits: int | None = None,
    calibrate=None,
    sample=None,
    board: str | None = None,
    yaml: bool = False,
    **load_kw,
) -> BuildResult:
    """Load, run the target's pipeline (or ``passes``) and, with ``output``, write the build.

    For an FPGA target the build also holds the accelerator (``snnc/backends/fpga/emit.py``)
    and, with a ``sample`` input (default: the calibration input), ``summary.txt`` and
    ``report.html`` (``snnc/backends/fpga/report.py``) from simulating it. With ``board``
    (``snnc/backends/fpga/board.py``) it builds the bitstream into ``bitstream/``; when the
    toolchain fails or the design does not fit, the build is written without the bitstream but
    with ``bitstream/toolchain.log``, and the error is raised afterwards.

    For a Loihi target the build holds ``loihi/chip.json`` and ``loihi/cores/*.json`` (with
    ``yaml`` also ``.yaml`` beside each), lava-dl's ``loihi/network.net`` where netx can describe
    the network, and ``summary.txt`` (``snnc/backends/loihi/``)."""
    from snnc.api import load, load_input, pipeline
    from snnc.targets import load_target

    t = load_target(target)
    # --weight-bits sets the quantize option of --passes, as for the other commands
    if passes is not None:
        spec = pipeline(passes, weight_bits).spec()
    else:
        spec = default_spec(t, weight_bits)
    graph = load(model, **load_kw)
    x = load_input(calibrate) if calibrate is not None else None
    result = run_passes(graph, spec, x)
    if output is not None:
        inputs = {"model": input_record(model) if isinstance(model, (str, os.PathLike)) else
                  {"object": type(model).__name__}}  # fmt: skip
        if calibrate is not None:
            inputs["calibrate"] = input_record(calibrate)
        sample = calibrate if sample is None else sample
        if sample is not None:
            inputs["sample"] = input_record(sample)
        extra = None
        failed: list[Exception] = []
        if t.kind == "fpga":
            xs = load_input(sample) if sample is not None else None

            def extra(tmp: Path) -> None:
                _fpga_files(result, t, tmp, xs, board, failed)

        elif t.kind == "loihi":

            def extra(tmp: Path) -> None:
                _loihi_files(result, t, tmp, yaml)

        if board is not None and t.kind != "fpga":
            raise SnncError(f"--board {board}: target '{t.name}' is not an FPGA target")
        if yaml and t.kind != "loihi":
            raise SnncError(f"--yaml: target '{t.name}' is not a Loihi target; YAML copies are "
                            "written for Loihi configurations")  # fmt: skip
        options = {"target": target, "passes": spec} | ({"board": board} if board else {})
        options |= {"yaml": True} if yaml else {}
        write_build(result, Path(output), inputs=inputs, options=options, extra=extra)
        if failed:
            raise failed[0]
    return result


def _fpga_files(result: BuildResult, target, tmp: Path, sample, board, failed: list) -> None:
    """The accelerator's Verilog and memory files, with a board its bitstream, and with a
    sample input its report (which then includes the bitstream's utilisation and fmax)."""
    from snnc.backends.fpga.emit import emit

    image, _ = emit(result.graph, target, tmp)
    result.image = image
    if board is not None:
        from snnc.backends.fpga.board import BOARDS, build_bitstream

        if board in BOARDS and BOARDS[board][2] != target.name:
            raise SnncError(
                f"--board {board} carries the {BOARDS[board][2]} device; compile for "
                f"--target {BOARDS[board][2]} (this build is for '{target.name}')"
            )
        try:
            result.bitstream = build_bitstream(image, board, tmp / "bitstream")
        except SnncError as e:  # the build is still written, with the toolchain's log
            failed.append(e)
        if result.bitstream is not None:
            (tmp / "bitstream" / "result.txt").write_text(result.bitstream.line() + "\n")
    if sample is not None:
        from snnc.backends.fpga.report import fpga_report

        rep = fpga_report(result.graph, image, target, sample, synth=_synth_of(result.bitstream))
        result.summary = rep.text()
        bs = result.bitstream
        if bs is not None:  # the bitstream runs at the board's clock, not the target's
            result.summary += (
                f"on the board    {rep.cycles_per_input / bs.target_mhz:,.2f} µs/input "
                f"at the {bs.target_mhz:g} MHz board clock ({bs.board})\n"
            )
        (tmp / "summary.txt").write_text(result.summary)
        (tmp / "report.html").write_text(rep.html())


def _loihi_files(result: BuildResult, target, tmp: Path, yaml: bool) -> None:
    """``loihi/`` (chip and core configurations, netx) and ``summary.txt``."""
    from snnc.backends.loihi import lower, write
    from snnc.backends.loihi.netx import export_netx
    from snnc.backends.loihi.report import summary
    from snnc.mapping.cores import mapping_of

    mapping = mapping_of(result.graph, result.ctx.cache)
    low = lower(result.graph, target, mapping)
    result.loihi = low
    write(low.config, tmp / "loihi", yaml_too=yaml)
    try:
        layers = export_netx(low, mapping.network, tmp / "loihi" / "network.net")
        netx = f"loihi/network.net written (lava-dl netx HDF5, {len(layers) - 1} dense layer(s))"
    except SnncError as e:
        netx = f"loihi/network.net not written: {e}"
    result.summary = summary(low, netx=netx)
    (tmp / "summary.txt").write_text(result.summary)


def _synth_of(bitstream):
    """The bitstream's figures as the report's synthesis result."""
    if bitstream is None:
        return None
    from snnc.rtl.synth import SynthResult

    family = "ice40" if "ICESTORM_LC" in bitstream.utilisation else "ecp5"
    return SynthResult.of(bitstream.board, family, bitstream.utilisation, bitstream.fmax_mhz,
                          bitstream.target_mhz)  # fmt: skip
