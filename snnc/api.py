"""The public Python API: :func:`load` a model into the IR, :func:`simulate` it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from snnc.errors import FrontendError, SimulationError, SnncError
from snnc.ir.graph import Graph
from snnc.ir.verify import verify

MODEL_SUFFIXES = {
    ".nir": "NIR graph (nir.write)",
    ".pt": "PyTorch module or state dict (torch.save)",
    ".pth": "PyTorch module or state dict (torch.save)",
    ".json": "snnc IR (JSON + .npz, snnc.ir.save)",
    ".snnc": "snnc IR text (snnc inspect --params)",
}
ENGINES = ("reference",)


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
    """Read a time-major input array ``(T, B, *shape)`` from ``.npy`` or ``.npz`` (key ``input``)."""
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


def simulate(
    model: object, x: np.ndarray, *, engine: str = "reference", record: bool = False, **load_kw
):
    """Simulate ``model`` (anything :func:`load` takes) on time-major input ``x``.

    Returns the output ``(T, B, *shape)`` as float32 and, with ``record``, every node's
    output by name.
    """
    if engine not in ENGINES:
        raise SimulationError(f"unknown engine {engine!r}; available: {', '.join(ENGINES)}")
    x = np.asarray(x)
    if not isinstance(model, Graph) and load_kw.get("input_shape") is None and x.ndim >= 3:
        load_kw["input_shape"] = tuple(x.shape[2:])
    graph = load(model, **load_kw)
    from snnc.sim.reference import simulate as ref

    return ref(graph, x, record=record)
