"""Accuracy of a model on a test split, in float and in the integer arithmetic it will run with.

:func:`evaluate` rate-codes the test images of a data set (:mod:`snnc.datasets`), runs the float
reference simulator on the graph as loaded and the bit-exact integer simulator on the graph after
a pass pipeline (by default ``canonicalize,quantize{weight-bits=8}``), and compares them:

- accuracy of each engine; a prediction is the output neuron with the most spikes over the run
  (ties: the lowest index), or, for a non-spiking output (LI), the largest summed output;
- agreement: the fraction of output spike entries ``(T, N, outputs)`` that are identical, and the
  fraction of images given the same class;
- firing rates: mean spikes per neuron per step of every spiking node, for each engine;
- the passes' reports (``quantize`` scales, widths, decay errors) and timings.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

import numpy as np

from snnc import datasets
from snnc.errors import SnncError
from snnc.ir import nodes as N
from snnc.ir.graph import Graph

if TYPE_CHECKING:
    from snnc.passes.manager import Pipeline

ENGINES = ("reference", "integer")
EVAL_ENGINES = (*ENGINES, "both")

#: called after each batch with (engine, images done by that engine, images per engine)
ProgressFn = Callable[[str, int, int], None]


@dataclass
class EngineResult:
    """What one engine did on the test images."""

    engine: str
    graph: Graph
    output: np.ndarray  #: ``(T, N, *out_shape)`` as the simulator returned it
    predictions: np.ndarray  #: ``(N,)`` predicted classes
    accuracy: float
    firing_rates: dict[str, float]  #: spiking node -> mean spikes per neuron per step
    seconds: float


@dataclass
class EvalResult:
    """Everything :func:`evaluate` measured; :meth:`to_dict` for JSON, :meth:`text` for people."""

    model: str
    dataset: str
    images: int
    steps: int
    seed: int
    passes: str | None  #: the pipeline the integer engine ran (None: no integer engine)
    engines: dict[str, EngineResult]
    labels: np.ndarray
    spike_agreement: float | None = None  #: fraction of identical output entries
    prediction_agreement: float | None = None  #: fraction of images with the same class
    reports: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def accuracy(self, engine: str) -> float | None:
        e = self.engines.get(engine)
        return e.accuracy if e is not None else None

    @property
    def difference_points(self) -> float | None:
        """Integer minus float accuracy, in percentage points."""
        a, b = self.accuracy("reference"), self.accuracy("integer")
        return None if a is None or b is None else 100.0 * (b - a)

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready data (no arrays)."""
        return {
            "model": self.model,
            "dataset": self.dataset,
            "split": "test",
            "images": self.images,
            "steps": self.steps,
            "seed": self.seed,
            "passes": self.passes,
            "engines": list(self.engines),
            "accuracy": {k: e.accuracy for k, e in self.engines.items()},
            "difference_points": self.difference_points,
            "agreement": {
                "output_spikes": self.spike_agreement,
                "predictions": self.prediction_agreement,
            },
            "firing_rates": {k: e.firing_rates for k, e in self.engines.items()},
            "reports": self.reports,
            "timings": self.timings,
            "images_per_second": {
                k: (self.images / e.seconds if e.seconds > 0 else None)
                for k, e in self.engines.items()
            },
        }

    def text(self) -> str:
        """The human-readable summary ``snnc eval`` prints."""
        lines = [
            f"eval {self.model} on {self.dataset} (test split): {self.images} images x "
            f"{self.steps} steps, input seed {self.seed}"
        ]
        if self.passes is not None:
            lines.append(f"integer engine after passes: {self.passes}")
        acc = "   ".join(f"{k} {e.accuracy:.4f}" for k, e in self.engines.items())
        if self.difference_points is not None:
            acc += f"   difference {self.difference_points:+.2f} points"
        lines.append(f"accuracy   {acc}")
        if self.prediction_agreement is not None:
            spikes = (
                "n/a (non-spiking output)"
                if self.spike_agreement is None
                else f"{self.spike_agreement:.2%} of entries identical"
            )
            lines.append(
                f"agreement  output spikes {spikes}, predicted classes "
                f"{self.prediction_agreement:.2%}"
            )
        lines += self._rate_table()
        for name, text in self.reports.items():
            lines.append(f"{name} report:")
            lines += ["  " + ln for ln in text.splitlines()]
        lines.append("timings    " + ", ".join(self._timing_parts()))
        return "\n".join(lines) + "\n"

    def _rate_table(self) -> list[str]:
        names: list[str] = []
        for e in self.engines.values():
            names += [n for n in e.firing_rates if n not in names]
        if not names:
            return []
        width = max(12, *(len(n) for n in names))
        head = "".join(f"{k:>12}" for k in self.engines)
        out = ["firing rates (spikes per neuron per step):", f"  {'node':<{width}}{head}"]
        for n in names:
            cells = "".join(
                f"{e.firing_rates[n]:>12.4f}" if n in e.firing_rates else f"{'-':>12}"
                for e in self.engines.values()
            )
            out.append(f"  {n:<{width}}{cells}")
        return out

    def _timing_parts(self) -> list[str]:
        parts = [f"{k} {v:.2f} s" for k, v in self.timings.items() if k not in self.engines]
        for k, e in self.engines.items():
            rate = f" ({self.images / e.seconds:,.0f} images/s)" if e.seconds > 0 else ""
            parts.append(f"{k} {e.seconds:.2f} s{rate}")
        return parts


def predict(output: np.ndarray) -> np.ndarray:
    """Classes from time-major output ``(T, N, *shape)``: the most spikes (or largest sum) wins.

    The same sum over time serves spiking outputs (spike counts) and non-spiking ones (LI: the
    summed membrane).
    ``np.argmax`` picks the lowest index among ties, so an image with no output spike at all is
    class 0 -- counted wrong unless it is a zero.
    """
    out = np.asarray(output)
    t, n = out.shape[:2]
    totals = out.reshape(t, n, -1).astype(np.float64).sum(axis=0)
    return totals.argmax(axis=1)


def output_is_spiking(graph: Graph) -> bool:
    """Whether the graph's (first) output carries spikes."""
    out = graph.output_names[0]
    return graph.nodes[graph.inputs[out][0]].spiking


def spiking_nodes(graph: Graph) -> list[str]:
    """Nodes whose output is spikes, excluding the graph boundary."""
    return [n for n, node in graph.nodes.items()
            if node.spiking and not isinstance(node, (N.Input, N.Output))]  # fmt: skip


def run_engine(
    engine: str,
    graph: Graph,
    x: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int = 500,
    progress: ProgressFn | None = None,
) -> EngineResult:
    """Simulate ``graph`` on ``x`` ``(T, N, *shape)`` in batches and score it against labels."""
    if engine == "integer":
        from snnc.sim.integer import simulate
    elif engine == "reference":
        from snnc.sim.reference import simulate
    else:
        raise SnncError(f"unknown engine {engine!r}; available: {', '.join(ENGINES)}")
    watch = spiking_nodes(graph)
    sizes = {n: int(np.prod(s)) for n, s in graph.shapes().items()}
    counts = dict.fromkeys(watch, 0.0)
    outs = []
    n_images = x.shape[1]
    t0 = time.perf_counter()
    for start in range(0, n_images, batch_size):
        out, rec = simulate(graph, x[:, start : start + batch_size], record=True)
        outs.append(out)
        for n in watch:
            counts[n] += float(rec[n].sum(dtype=np.float64))
        del rec
        if progress is not None:
            progress(engine, min(start + batch_size, n_images), n_images)
    seconds = time.perf_counter() - t0
    output = np.concatenate(outs, axis=1)
    steps = x.shape[0]
    rates = {n: counts[n] / (steps * n_images * sizes[n]) for n in watch}
    pred = predict(output)
    return EngineResult(engine, graph, output, pred, float(np.mean(pred == labels)), rates, seconds)


def evaluate(
    graph: Graph,
    dataset: str,
    *,
    engine: str = "both",
    passes: str | None = None,
    weight_bits: int | None = None,
    steps: int | None = None,
    limit: int | None = None,
    batch_size: int = 500,
    seed: int = 0,
    model_name: str = "",
    progress: ProgressFn | None = None,
    notes: list[str] | None = None,
) -> EvalResult:
    """Accuracy and agreement of the float and integer engines on a data set's test split.

    Parameters
    ----------
    graph
        The float graph as loaded (the reference engine runs it unchanged).
    dataset
        ``"digits"`` or ``"mnist"`` (see :mod:`snnc.datasets`).
    engine
        ``"reference"``, ``"integer"`` or ``"both"``.
    passes, weight_bits
        The pipeline the integer engine runs first (:func:`snnc.api.compile_passes`; default
        ``canonicalize,quantize{weight-bits=8}``). A graph that is already quantised runs as it
        is unless they are given.
    steps
        Time steps of the rate code (default: the data set's, 20 for digits, 25 for MNIST).
    limit
        Evaluate only the first ``limit`` test images.
    batch_size
        Images simulated at once (memory vs. speed; results do not depend on it).
    seed
        Seed of the rate code.
    model_name
        How the model is named in the summary.
    progress
        Called after each batch (see :data:`ProgressFn`).
    notes
        Receives remarks for the user (options that had no effect).
    """
    from snnc.api import compile_passes, pipeline

    if engine not in EVAL_ENGINES:
        raise SnncError(f"unknown engine {engine!r}; available: {', '.join(EVAL_ENGINES)}")
    if batch_size < 1 or (limit is not None and limit < 1):
        raise SnncError("batch size and limit must be at least 1")
    names = list(ENGINES) if engine == "both" else [engine]
    d = datasets.info(dataset)
    steps = steps or d.default_steps
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    images, labels = datasets.load(dataset, "test")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    inputs = graph.input_names
    if len(inputs) != 1:
        raise SnncError(f"eval needs a model with one input; this one has {inputs}")
    images = datasets.fit_to_input(images, graph.nodes[inputs[0]].shape, dataset)
    x = datasets.rate_encode(images, steps, seed)
    timings["data"] = time.perf_counter() - t0

    quantized = bool(graph.meta.get("quantized"))
    if "reference" in names and quantized:
        raise SnncError(f"the model is already quantised ({graph.meta.get('quantize')}); only "
                        "--engine integer can run it")  # fmt: skip
    if "integer" not in names and (passes is not None or weight_bits is not None):
        if notes is not None:
            notes.append("--passes/--weight-bits configure the integer engine; not used here")
    graphs = {"reference": graph}
    reports: dict[str, str] = {}
    spec = None
    if "integer" in names:
        if quantized and passes is None and weight_bits is None:
            graphs["integer"] = graph
            spec = f"none (the model was quantised as {graph.meta.get('quantize')})"
        else:
            t0 = time.perf_counter()
            graphs["integer"], ctx = compile_passes(graph, passes, weight_bits)
            timings["passes"] = time.perf_counter() - t0
            spec = spec_text(pipeline(passes, weight_bits))
            reports = {k: _report_text(r) for k, r in ctx.reports.items()}

    results = {
        e: run_engine(e, graphs[e], x, labels, batch_size=batch_size, progress=progress)
        for e in names
    }
    res = EvalResult(model_name or graph.name, dataset, len(labels), steps, seed, spec, results,
                     labels, reports=reports, timings=timings)  # fmt: skip
    if len(results) == 2:
        ref, qnt = results["reference"], results["integer"]
        res.prediction_agreement = float(np.mean(ref.predictions == qnt.predictions))
        if output_is_spiking(ref.graph) and ref.output.shape == qnt.output.shape:
            res.spike_agreement = float(np.mean(ref.output == qnt.output))
    return res


def spec_text(pipe: Pipeline) -> str:
    """A pipeline's spec that always states the quantize weight width (even the default 8)."""
    from snnc.passes.quantize import Quantize

    parts = []
    for p in pipe.passes:
        text = p.spec()
        if isinstance(p, Quantize) and "weight-bits=" not in text:
            opts = text[len(p.name) + 1 : -1] if text.endswith("}") else ""
            text = f"{p.name}{{weight-bits={p.weight_bits}{',' + opts if opts else ''}}}"
        parts.append(text)
    return ",".join(parts)


def _report_text(report: object) -> str:
    text = getattr(report, "text", None)
    return text() if callable(text) else str(report)


class Progress:
    """Progress on a stream: a ``\\r``-rewritten line on a terminal, else a line per 25%.

    Parameters
    ----------
    total
        Units of work in the whole run (images x engines).
    stream
        Where to write (stderr by default).
    min_seconds
        Stay silent until the run has lasted this long: short runs print nothing.
    """

    def __init__(self, total: int, stream: TextIO | None = None, min_seconds: float = 1.0) -> None:
        self.total, self.stream = max(total, 1), stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.min_seconds = min_seconds
        self.done: dict[str, int] = {}
        self.quarter = 0
        self.shown = False
        self.t0 = time.perf_counter()

    def __call__(self, engine: str, done: int, per_engine: int) -> None:
        self.done[engine] = done
        frac = sum(self.done.values()) / self.total
        secs = time.perf_counter() - self.t0
        if secs < self.min_seconds:
            return
        msg = f"eval: {engine} {done}/{per_engine} images ({frac:.0%} of the run, {secs:.1f} s)"
        if self.tty:
            self.stream.write(f"\r{msg}\x1b[K")
            self.stream.flush()
            self.shown = True
        elif int(frac * 4) > self.quarter:
            self.quarter = int(frac * 4)
            print(msg, file=self.stream, flush=True)

    def close(self) -> None:
        """Clear the terminal line (the summary follows on stdout)."""
        if self.tty and self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
