"""JSON + ``.npz`` form of the IR: ``load(save(g)) == g``.

``save(g, "net.json")`` writes ``net.json`` (structure) and ``net.npz`` (arrays, keyed
``node/param``). Both are written atomically.
"""

from __future__ import annotations

import enum
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from snnc.errors import IRError, ParseError
from snnc.ir.graph import Graph
from snnc.ir.nodes import NODE_TYPES, Node

FORMAT = "snnc.ir"
VERSION = 1


def _jsonable(v: object) -> object:
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, tuple):
        return [_jsonable(e) for e in v]
    return v


def _from_json(v: object) -> object:
    if isinstance(v, list):
        return tuple(_from_json(e) for e in v)
    return v


def to_dict(g: Graph) -> dict:
    """The JSON-able structure of ``g`` (arrays referenced by ``node/param`` keys)."""
    nodes = []
    for name, node in g.nodes.items():
        nodes.append(
            {
                "name": name,
                "type": node.kind,
                "attrs": {k: _jsonable(v) for k, v in node.attrs().items()},
                "origin": node.origin,
                "inputs": list(g.inputs[name]),
                "params": {k: f"{name}/{k}" for k in sorted(g.params[name])},
            }
        )
    return {"format": FORMAT, "version": VERSION, "name": g.name, "meta": g.meta, "nodes": nodes}


def from_dict(d: dict, arrays: dict[str, np.ndarray], where: str = "graph") -> Graph:
    """Inverse of :func:`to_dict`; ``arrays`` maps ``node/param`` keys to arrays."""
    try:
        if d.get("format") != FORMAT or d.get("version") != VERSION:
            raise ParseError(
                f"{where}: not an snnc IR file (format {d.get('format')!r} version "
                f"{d.get('version')!r}; expected {FORMAT!r} version {VERSION})"
            )
        nodes: dict[str, Node] = {}
        inputs: dict[str, list[str]] = {}
        params: dict[str, dict[str, np.ndarray]] = {}
        for entry in d["nodes"]:
            name, kind = entry["name"], entry["type"]
            cls = NODE_TYPES.get(kind)
            if cls is None:
                raise ParseError(f"{where}: node '{name}' has unknown type {kind!r}")
            attrs = {k: _from_json(v) for k, v in entry["attrs"].items()}
            try:
                nodes[name] = cls(origin=entry.get("origin", ""), **attrs)
            except (TypeError, ValueError, IRError) as e:
                raise ParseError(f"{where}: node '{name}' ({kind}): {e}") from e
            inputs[name] = list(entry.get("inputs", []))
            params[name] = {}
            for k, key in entry.get("params", {}).items():
                if key not in arrays:
                    raise ParseError(f"{where}: array {key!r} of node '{name}' is missing")
                params[name][k] = arrays[key]
        meta = {k: _from_json(v) for k, v in d.get("meta", {}).items()}
        return Graph(nodes, inputs, params, name=d["name"], meta=meta)
    except (KeyError, TypeError, AttributeError) as e:
        raise ParseError(f"{where}: malformed IR structure ({type(e).__name__}: {e})") from e


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(g: Graph, path: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``g`` to ``path`` (JSON) and the same name with ``.npz`` (arrays)."""
    path = Path(path)
    npz_path = path.with_suffix(".npz")
    d = to_dict(g)
    d["arrays"] = npz_path.name
    arrays = {f"{n}/{k}": a for n in g.nodes for k, a in g.params[n].items()}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    _atomic_write(npz_path, buf.getvalue())
    _atomic_write(path, (json.dumps(d, indent=1, sort_keys=True) + "\n").encode())
    return path, npz_path


def load(path: str | os.PathLike) -> Graph:
    """Read a graph written by :func:`save`."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ParseError(f"{path}: cannot read IR JSON: {e}") from e
    if not isinstance(d, dict):
        raise ParseError(f"{path}: expected a JSON object with the snnc IR")
    npz_path = path.with_name(str(d.get("arrays", path.with_suffix(".npz").name)))
    try:
        with np.load(npz_path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise ParseError(f"{npz_path}: cannot read the IR's arrays: {e}") from e
    return from_dict(d, arrays, where=str(path))
