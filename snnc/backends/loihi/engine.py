"""Running a Loihi build directory: ``snnc simulate BUILD --engine loihi|integer``.

:func:`open_build` reads a build written by ``snnc compile --target loihi1|loihi2`` (its compiled
graph, target and ``loihi/`` configuration, read back with
:func:`snnc.backends.loihi.config.read`), and :func:`run` executes it:

- ``integer``: :mod:`snnc.sim.integer` on the compiled graph (the contract);
- ``loihi``: :func:`snnc.sim.loihi.simulate` on the configuration files.

*Alignment.* Each layer adds one step of synaptic latency on Loihi, so the output of IR step
``t`` appears at Loihi step ``t + D`` (``D``: the output layer's depth, ``ChipConfig.layers``).
The ``loihi`` engine runs ``T + D`` steps, the last ``D`` with zero input, and drops the first
``D``: its output is ``(T, B, ...)`` like the integer engine's, step for step comparable. Recorded
layers are aligned by their own depth.

The input is what the integer engine takes: spikes (0/1), or graded values that are quantised as
the graph's input (``input_scale``, ``input_bits``) and sent as graded spike payloads (Loihi 2).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from snnc.errors import SimulationError, SnncError

__all__ = ["ENGINES", "LoihiBuild", "LoihiRun", "first_divergence", "is_loihi_build",
           "open_build", "output_depth", "output_layer", "run"]  # fmt: skip

ENGINES = ("loihi", "integer")


@dataclass
class LoihiBuild:
    directory: Path
    graph: object
    target: object
    config: object


@dataclass
class LoihiRun:
    engine: str
    output: np.ndarray  #: (T, B, *output shape), aligned with the integer engine
    seconds: float
    depth: int = 0  #: steps dropped from the front (loihi engine)
    spikes: dict = field(default_factory=dict)  #: layer -> (T, B, n) when recorded
    synops: int | None = None
    spike_count: int | None = None


def _target_of(d: Path):
    from snnc.targets import load_target

    try:
        manifest = json.loads((d / "build.json").read_text())
        return load_target(manifest["options"]["target"])
    except (OSError, ValueError, KeyError) as e:
        raise SnncError(f"{d}: not a readable build directory ({e}); expected the output of "
                        "snnc compile") from None  # fmt: skip


def is_loihi_build(path) -> bool:
    d = Path(path)
    return (d / "build.json").is_file() and _target_of(d).kind == "loihi"


def open_build(path) -> LoihiBuild:
    """The compiled graph, target and configuration of a Loihi build directory."""
    from snnc.backends.loihi.config import read
    from snnc.ir.serialize import load

    d = Path(path)
    target = _target_of(d)
    if target.kind != "loihi":
        raise SnncError(f"{d}: a build for '{target.name}' ({target.kind}), not a Loihi target")
    return LoihiBuild(d, load(d / "model.json"), target, read(d / "loihi"))


def _flat_input(graph, x: np.ndarray) -> np.ndarray:
    from snnc.sim.integer import _quantize_input

    names = graph.input_names
    if len(names) != 1:
        raise SimulationError(f"the loihi engine runs graphs with one input; this one has {names}")
    shape = tuple(graph.nodes[names[0]].shape)
    x = np.asarray(x)
    if x.ndim < 2 or tuple(x.shape[2:]) not in (shape, (int(np.prod(shape)),)):
        dims = ", ".join(map(str, shape))
        raise SimulationError(f"input of shape {x.shape}; expected (T, B, {dims})")
    q = _quantize_input(graph, names[0], x).numpy()
    return q.reshape(q.shape[0], q.shape[1], -1)


def output_layer(chip) -> str:
    """The layer whose compartments the (first) output port reads."""
    c, k, cx = chip.outputs[0].where[0][0]
    ref = next(r for r in chip.cores if (r.chip, r.core) == (c, k))
    return next(name for name, a, b, first in ref.layers if first <= cx < first + b - a)


def output_depth(chip) -> int:
    """Steps the output lags the IR's (the output layer's depth)."""
    return dict(chip.layers)[output_layer(chip)]


def _loihi(build: LoihiBuild, x: np.ndarray, record: bool, semantics=None) -> LoihiRun:
    from snnc.sim.loihi import simulate

    chip = build.config.chip
    depth = dict(chip.layers)
    port = chip.outputs[0]
    d = output_depth(chip)
    xi = _flat_input(build.graph, x)
    t_steps = xi.shape[0]
    padded = np.concatenate([xi, np.zeros((d, *xi.shape[1:]), xi.dtype)])
    t0 = time.perf_counter()
    res = simulate(build.config, padded, record=record, semantics=semantics)
    seconds = time.perf_counter() - t0
    out_shape = tuple(build.graph.nodes[port.name].shape)
    out = np.asarray(res.outputs[port.name])[d:].reshape(t_steps, xi.shape[1], *out_shape)
    spikes = {n: _graph_order(build.graph, n, np.asarray(s)[depth[n] : depth[n] + t_steps])
              for n, s in (res.spikes or {}).items()}  # fmt: skip
    return LoihiRun("loihi", out, seconds, d, spikes, _int(res, "synops"),
                    _int(res, "spike_count"))  # fmt: skip


def _graph_order(graph, name: str, s: np.ndarray) -> np.ndarray:
    """A layer's spikes (T, B, n) in core order -> (T, B, *shape) in the graph's order."""
    from snnc.mapping.connectivity import pixel_major

    shape = tuple(graph.shapes()[name])
    perm = pixel_major(shape)
    if perm is not None:
        out = np.empty_like(s)
        out[:, :, perm] = s
        s = out
    return s.reshape(*s.shape[:2], *shape)


def _int(res, key: str) -> int | None:
    v = getattr(res, key, None)
    return None if v is None else int(np.sum(v))


def run(build: LoihiBuild, engine: str, x, *, record: bool = False, semantics=None) -> LoihiRun:
    """Run input ``x`` (time-major, as :mod:`snnc.sim.integer` takes it) on ``build``.

    ``semantics``: a :class:`~snnc.backends.loihi.config.Semantics` overriding the build's rules
    (engine ``loihi``)."""
    if engine == "loihi":
        return _loihi(build, x, record, semantics)
    if engine == "integer":
        from snnc.sim.integer import simulate

        t0 = time.perf_counter()
        r = simulate(build.graph, x, record=record)
        out, rec = r if record else (r, {})
        layers = dict(build.config.chip.layers)  # the populations, as the loihi engine records
        rec = {n: v for n, v in rec.items() if n in layers}
        return LoihiRun("integer", out, time.perf_counter() - t0, 0, rec)
    raise SnncError(f"engine '{engine}': a Loihi build runs on engines {', '.join(ENGINES)}")


def first_divergence(a: LoihiRun, b: LoihiRun, layer: str) -> str | None:
    """``None`` when the outputs agree; else the first step, input and neuron where they differ
    and how much of the output agrees."""
    if a.output.shape != b.output.shape:
        return f"output shapes differ: {a.output.shape} ({a.engine}) vs {b.output.shape}"
    t, n = a.output.shape[:2]
    oa, ob = a.output.reshape(t, n, -1), b.output.reshape(t, n, -1)
    diff = np.argwhere(oa != ob)
    if not diff.size:
        return None
    s, i, k = (int(v) for v in diff[0])
    pa, pb = oa.sum(axis=0).argmax(axis=1), ob.sum(axis=0).argmax(axis=1)
    return (f"first divergence at step {s}, input {i}, layer '{layer}', neuron {k}: {a.engine} "
            f"{int(oa[s, i, k])}, {b.engine} {int(ob[s, i, k])}; {np.mean(oa == ob):.2%} of the "
            f"output agrees, {np.mean(pa == pb):.2%} of the predictions")  # fmt: skip
