"""The public Python API: :func:`load` a model into the IR, :func:`simulate` it."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from snnc.errors import FrontendError, PassError, SimulationError, SnncError
from snnc.ir.graph import Graph
from snnc.ir.verify import verify

if TYPE_CHECKING:
    from snnc.passes.manager import PassContext, Pipeline

MODEL_SUFFIXES = {
    ".nir": "NIR graph (nir.write)",
    ".pt": "PyTorch module or state dict (torch.save)",
    ".pth": "PyTorch module or state dict (torch.save)",
    ".json": "snnc IR (JSON + .npz, snnc.ir.save)",
    ".snnc": "snnc IR text (snnc inspect --params)",
}
ENGINES = ("reference", "integer")
#: the pipeline run before the integer engine when the user names none
DEFAULT_PASSES = "canonicalize,quantize{weight-bits=8}"


def load(
    model: object,
    *,
    dt: float | None = None,
    input_shape: tuple[int, ...] | None = None,
    trust_pickle: bool = False,
    model_def: str | None = None,
    notes: list[str] | None = None,
    nir_flavor: str | None = None,
) -> Graph:
    """Load a model into the IR.

    Parameters
    ----------
    model
        A path (``.nir``, ``.pt``/``.pth``, ``.json`` IR, ``.snnc`` IR text), a
        ``torch.nn.Module``, a ``nir.NIRGraph`` or an IR ``Graph``.
    dt
        Time step in seconds for NIR's continuous-time graphs (see :mod:`snnc.frontend.nir`).
    input_shape
        Input shape without batch and time, for torch modules whose first layer does not say.
    trust_pickle, model_def
        How a ``.pt`` may be unpickled (see :mod:`snnc.frontend.safeload`).
    notes
        Receives remarks a user should see (the ``dt`` chosen, approximations).
    nir_flavor
        Whose exporter wrote a NIR graph (see :mod:`snnc.frontend.nir_flavors`).
    """
    if isinstance(model, Graph):
        return verify(model)
    if isinstance(model, (str, os.PathLike)):
        return _load_path(Path(model), dt, input_shape, trust_pickle, model_def, notes,
                          nir_flavor)  # fmt: skip
    import torch

    if isinstance(model, torch.nn.Module):
        from snnc.frontend.torch import from_torch

        return from_torch(model, input_shape)
    try:
        import nir

        if isinstance(model, nir.NIRGraph):
            from snnc.frontend.nir import from_nir

            return from_nir(model, dt=dt, notes=notes, flavor=nir_flavor)
    except ImportError:
        pass
    raise FrontendError(
        f"cannot load a {type(model).__name__}: expected a path, torch.nn.Module, "
        "nir.NIRGraph or snnc IR Graph"
    )


def _load_path(path: Path, dt, input_shape, trust_pickle, model_def, notes, flavor) -> Graph:
    suffix = path.suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        kinds = ", ".join(f"{k} ({v})" for k, v in MODEL_SUFFIXES.items())
        raise FrontendError(f"{path}: unknown model file type {suffix!r}; snnc reads {kinds}")
    if not path.exists():
        raise FrontendError(f"{path}: no such file")
    if path.is_dir():
        raise FrontendError(f"{path}: is a directory; expected a {MODEL_SUFFIXES[suffix]} file")
    if suffix == ".nir":
        from snnc.frontend.nir import load_nir_file

        return load_nir_file(path, dt=dt, notes=notes, flavor=flavor)
    if suffix in (".pt", ".pth"):
        from snnc.frontend.safeload import load_torch_file
        from snnc.frontend.torch import from_torch

        module = load_torch_file(path, trust_pickle=trust_pickle, model_def=model_def)
        try:
            return from_torch(module, input_shape, name=path.stem)
        except FrontendError as e:
            raise FrontendError(f"{path}: {e}") from None
    if suffix == ".json":
        from snnc.ir.serialize import load as load_json

        return verify(load_json(path))
    from snnc.ir.text import parse

    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise FrontendError(f"{path}: cannot read IR text: {e}") from None
    try:
        return verify(parse(text))
    except SnncError as e:
        raise type(e)(f"{path}: {e}") from None


def load_input(path: str | os.PathLike) -> np.ndarray:
    """Read time-major input ``(T, B, *shape)`` from ``.npy`` or ``.npz`` (key ``input``)."""
    path = Path(path)
    if not path.is_file():
        raise SimulationError(f"{path}: no such input file (expected a .npy array (T, B, ...))")
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:
                if "input" not in data.files:
                    raise SimulationError(f"{path}: the .npz has no 'input' array ({data.files})")
                data = data["input"]
    except (OSError, ValueError, EOFError) as e:
        raise SimulationError(f"{path}: not a readable .npy/.npz array: {e}") from None
    if data.dtype.kind not in "biuf":
        raise SimulationError(f"{path}: input must be numeric, has dtype {data.dtype}")
    return data


def compile_passes(
    graph: Graph, spec: str | None = None, weight_bits: int | None = None, print_between=None
) -> tuple[Graph, PassContext]:
    """Run a pass pipeline on a graph; the one way the CLI and the API apply ``--passes``.

    Parameters
    ----------
    graph
        The graph to transform (not modified).
    spec
        A pipeline spec such as ``"canonicalize,quantize{weight-bits=4}"``; ``None`` means
        :data:`DEFAULT_PASSES`. An empty spec runs no pass.
    weight_bits
        Sets the ``weight-bits`` option of every ``quantize`` pass in the pipeline. Giving it
        together with a spec whose ``quantize`` says a different ``weight-bits`` is an error, and
        so is giving it for a pipeline without ``quantize``.
    print_between
        A stream to print the IR to after every pass (None: do not).

    Returns
    -------
    The transformed graph and the :class:`~snnc.passes.manager.PassContext` holding the passes'
    reports (``ctx.reports["quantize"].text()``) and timings.

    Raises
    ------
    PassError
        The spec cannot be read, the options conflict, or a pass failed.
    """
    from snnc.passes.manager import PassContext

    ctx = PassContext()
    p = pipeline(spec, weight_bits)
    p.print_between = print_between
    return p.run(graph, ctx), ctx


def pipeline(spec: str | None = None, weight_bits: int | None = None) -> Pipeline:
    """The :class:`~snnc.passes.manager.Pipeline` that :func:`compile_passes` runs.

    Its ``spec()`` is the pipeline as it will run, e.g. ``canonicalize,quantize{weight-bits=4}``.
    """
    from snnc.passes.manager import Pipeline, parse_spec

    text = DEFAULT_PASSES if spec is None else spec
    passes = parse_spec(text)
    if weight_bits is not None:
        passes = _with_weight_bits(passes, text, weight_bits, explicit_spec=spec is not None)
    return Pipeline(passes)


# ``weight-bits=N`` inside a quantize pass's braces, as the user wrote it
_WEIGHT_BITS_RE = re.compile(r"\bquantize\s*\{[^{}]*\bweight-bits\s*=\s*([^,}\s]*)")


def _with_weight_bits(passes: list, spec: str, bits: int, *, explicit_spec: bool) -> list:
    from snnc.passes.quantize import Quantize

    if not any(isinstance(p, Quantize) for p in passes):
        raise PassError(f"--weight-bits {bits} needs a quantize pass, but the pipeline "
                        f"{spec!r} has none (add quantize to --passes)")  # fmt: skip
    if explicit_spec:
        for written in _WEIGHT_BITS_RE.findall(spec):
            if not written.isdigit() or int(written) != bits:
                raise PassError(
                    f"--weight-bits {bits} conflicts with quantize{{weight-bits={written}}} in "
                    f"--passes {spec!r}; give the width in one place only"
                )
    out = []
    for p in passes:
        if isinstance(p, Quantize):
            try:
                p = dataclasses.replace(p, weight_bits=bits)
            except (TypeError, ValueError) as e:
                raise PassError(f"--weight-bits {bits}: {e}") from None
        out.append(p)
    return out


def simulate(
    model: object,
    x: np.ndarray,
    *,
    engine: str = "reference",
    record: bool = False,
    passes: str | None = None,
    weight_bits: int | None = None,
    **load_kw,
):
    """Simulate ``model`` (anything :func:`load` takes) on time-major input ``x``.

    Parameters
    ----------
    model, x
        The model and its input ``(T, B, *input_shape)``.
    engine
        ``"reference"`` (float) or ``"integer"`` (bit-exact quantised arithmetic).
    record
        Also return every node's output by name.
    passes, weight_bits
        The pipeline run first (see :func:`compile_passes`). The integer engine runs
        :data:`DEFAULT_PASSES` when neither is given, unless the model is already quantised; the
        reference engine runs passes only when asked, and only float ones.
    **load_kw
        Passed to :func:`load`.

    Returns
    -------
    The output ``(T, B, *shape)`` -- float32 from the reference engine, int64 from the integer
    one -- and, with ``record``, every node's output by name.
    """
    if engine not in ENGINES:
        raise SimulationError(f"unknown engine {engine!r}; available: {', '.join(ENGINES)}")
    x = np.asarray(x)
    if not isinstance(model, Graph) and load_kw.get("input_shape") is None and x.ndim >= 3:
        load_kw["input_shape"] = tuple(x.shape[2:])
    graph = prepare(load(model, **load_kw), engine, passes, weight_bits)
    if engine == "integer":
        from snnc.sim.integer import simulate as run
    else:
        from snnc.sim.reference import simulate as run
    return run(graph, x, record=record)


def prepare(
    graph: Graph, engine: str, passes: str | None = None, weight_bits: int | None = None
) -> Graph:
    """The graph an engine runs: the pipeline applied as :func:`simulate` describes."""
    quantized = bool(graph.meta.get("quantized"))
    if passes is not None or weight_bits is not None:
        graph, _ = compile_passes(graph, passes, weight_bits)
    elif engine == "integer" and not quantized:
        graph, _ = compile_passes(graph)
    if engine == "reference" and graph.meta.get("quantized"):
        raise SimulationError(
            f"graph '{graph.name}' is quantised ({graph.meta.get('quantize')}); the reference "
            "engine runs float graphs: use engine 'integer'"
        )
    return graph
