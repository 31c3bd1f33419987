"""Deterministic text form of the IR and its parser: ``parse(print_graph(g)) == g``.

::

    snnc.ir 1
    graph "mlp"
    meta dt = 0.001
    %input = Input {shape = [64], origin = "torch:input"}
    %fc1 = Affine {origin = "torch:fc1"} (%input)  # -> [32]
      weight = f32[32, 64] [0.25, -0.5, ...]
      bias = f32[32] splat 0
    %lif1 = LIF {reset = subtract, timing = next_step, strict = true} (%fc1)  # -> [32]
      ...

Nodes appear in graph order; each lists its inputs in summation order, then its parameters in
name order. Float values are printed with the fewest digits that read back to the same value.
``#`` starts a comment. With ``elide=True`` (for people), large arrays are summarised and the
text no longer parses.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterator

import numpy as np

from snnc.errors import IRError, ParseError
from snnc.ir.graph import Graph
from snnc.ir.nodes import NODE_TYPES, Node

VERSION = 1
DTYPES = {
    "f16": np.float16, "f32": np.float32, "f64": np.float64, "bool": np.bool_,
    "i8": np.int8, "i16": np.int16, "i32": np.int32, "i64": np.int64,
    "u8": np.uint8, "u16": np.uint16, "u32": np.uint32, "u64": np.uint64,
}  # fmt: skip
DTYPE_NAMES = {np.dtype(v): k for k, v in DTYPES.items()}
ELIDE_OVER = 16
#: fields printed only when set (they describe quantised arithmetic; 0/False is the default)
QUANT_FIELDS = (
    "partition", "bits", "shift", "decay_bits", "decay_shift", "state_bits", "current_bits",
    "saturate",
)  # fmt: skip


# ----------------------------------------------------------------------------- printing


def format_scalar(x: object) -> str:
    """Shortest text that reads back to the same value of the same dtype."""
    if isinstance(x, (bool, np.bool_)):
        return "true" if x else "false"
    if isinstance(x, (np.floating, float)):
        return str(x) if isinstance(x, np.floating) else repr(x)
    return str(int(x))  # type: ignore[call-overload]


def _format_value(v: object) -> str:
    if isinstance(v, enum.Enum):
        return str(v.value)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(_format_value(e) for e in v) + "]"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _format_array(a: np.ndarray, elide: bool) -> str:
    dt = DTYPE_NAMES.get(a.dtype)
    if dt is None:
        raise IRError(f"parameter dtype {a.dtype} has no text form")
    head = f"{dt}[{', '.join(str(d) for d in a.shape)}]"
    flat = a.reshape(-1)
    if (
        flat.size > 1
        and (flat.view(np.uint8).reshape(flat.size, -1) == flat[:1].view(np.uint8)).all()
    ):
        return f"{head} splat {format_scalar(flat[0])}"
    if elide and flat.size > ELIDE_OVER:
        f = flat.astype(np.float64)
        return f"{head} {{min = {f.min():.6g}, max = {f.max():.6g}, mean = {f.mean():.6g}}}"
    return f"{head} [" + ", ".join(format_scalar(x) for x in flat) + "]"


def _shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def print_graph(g: Graph, *, elide: bool = False, marks: dict[str, str] | None = None) -> str:
    """The text form of ``g``.

    Parameters
    ----------
    elide
        Summarise arrays of more than 16 elements (min/max/mean); the result does not parse.
    marks
        Node name to a message, printed under that node as ``^^^ message`` (the verifier uses
        this to point at failing nodes).
    """
    try:
        shapes = g.shapes()
    except IRError:
        shapes = {}
    lines = [f"snnc.ir {VERSION}", f"graph {json.dumps(g.name)}"]
    for k in sorted(g.meta):
        lines.append(f"meta {k} = {_format_value(g.meta[k])}")
    for name, node in g.nodes.items():
        attrs = [f"{k} = {_format_value(v)}" for k, v in node.attrs().items()
                 if not (k in QUANT_FIELDS and not v)]  # fmt: skip
        if node.origin:
            attrs.append(f"origin = {json.dumps(node.origin)}")
        line = f"%{name} = {node.kind} {{{', '.join(attrs)}}}"
        if g.inputs[name]:
            line += " (" + ", ".join(f"%{s}" for s in g.inputs[name]) + ")"
        if name in shapes:
            line += f"  # -> {_shape_text(shapes[name])}"
        lines.append(line)
        for key in sorted(g.params[name]):
            lines.append(f"  {key} = {_format_array(g.params[name][key], elide)}")
        if marks and name in marks:
            lines.append(f"  ^^^ {marks[name]}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- parsing

_TOKEN = re.compile(
    r"""(?P<ws>[ \t\r\n]+|\#[^\n]*)
      |(?P<str>"(?:[^"\\]|\\.)*")
      |(?P<name>%[A-Za-z_][A-Za-z0-9_.\-]*)
      |(?P<num>[-+]?(?:inf|nan|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?![A-Za-z_]))
      |(?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
      |(?P<punct>[=\{\}\(\)\[\],])""",
    re.VERBOSE,
)


class _Tokens:
    def __init__(self, text: str) -> None:
        self.toks: list[tuple[str, str, int]] = list(self._lex(text))
        self.i = 0

    @staticmethod
    def _lex(text: str) -> Iterator[tuple[str, str, int]]:
        pos, line = 0, 1
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None:
                raise ParseError(f"line {line}: unexpected character {text[pos]!r}")
            kind = m.lastgroup
            if kind != "ws":
                yield kind, m.group(), line  # type: ignore[misc]
            line += m.group().count("\n")
            pos = m.end()

    def peek(self) -> tuple[str, str, int]:
        return self.toks[self.i] if self.i < len(self.toks) else ("eof", "", -1)

    def next(self, kind: str | None = None, value: str | None = None) -> str:
        k, v, line = self.peek()
        if (kind and k != kind) or (value is not None and v != value):
            want = value or kind
            raise ParseError(f"line {line}: expected {want}, found {v or 'end of text'!r}")
        self.i += 1
        return v


def _scalar(tok: str, kind: str) -> object:
    if kind == "str":
        return json.loads(tok)
    if kind == "ident":
        return {"true": True, "false": False}.get(tok, tok)
    if re.fullmatch(r"[-+]?\d+", tok):
        return int(tok)
    return float(tok)


def _value(t: _Tokens) -> object:
    if t.peek()[1] == "[":
        t.next()
        items = []
        while t.peek()[1] != "]":
            items.append(_value(t))
            if t.peek()[1] == ",":
                t.next()
        t.next("punct", "]")
        return tuple(items)
    kind, tok, line = t.peek()
    if kind not in ("str", "ident", "num"):
        raise ParseError(f"line {line}: expected a value, found {tok!r}")
    t.next()
    return _scalar(tok, kind)


def _array(t: _Tokens) -> np.ndarray:
    kind, dt, line = t.peek()
    if dt not in DTYPES:
        raise ParseError(f"line {line}: unknown dtype {dt!r}; expected one of {sorted(DTYPES)}")
    t.next()
    shape = _value(t)
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ParseError(f"line {line}: bad array shape {shape!r}")
    dtype = np.dtype(DTYPES[dt])
    size = int(np.prod(shape, dtype=np.int64))
    if t.peek()[1] == "splat":
        t.next()
        k, tok, _ = t.peek()
        t.next()
        return np.full(shape, _parse_numbers([tok], dtype)[0], dtype=dtype)
    if t.peek()[1] == "{":
        raise ParseError(f"line {line}: parameter values were elided; print without elide")
    t.next("punct", "[")
    vals: list[str] = []
    while t.peek()[1] != "]":
        k, tok, ln = t.peek()
        if k not in ("num", "ident"):
            raise ParseError(f"line {ln}: expected a number, found {tok!r}")
        vals.append(tok)
        t.next()
        if t.peek()[1] == ",":
            t.next()
    t.next("punct", "]")
    if len(vals) != size:
        raise ParseError(
            f"line {line}: array of shape {shape} needs {size} values, has {len(vals)}"
        )
    return _parse_numbers(vals, dtype).reshape(shape)


def _parse_numbers(vals: list[str], dtype: np.dtype) -> np.ndarray:
    try:
        if dtype.kind == "b":
            return np.array([v == "true" for v in vals], dtype=dtype)
        if dtype.kind in "iu":
            return np.array([int(v) for v in vals], dtype=dtype)
        return np.array(vals, dtype=np.float64 if dtype == np.float64 else str).astype(dtype)
    except (ValueError, OverflowError) as e:
        raise ParseError(f"bad {dtype} value: {e}") from e


def _list(t: _Tokens, open_: str, close: str, item) -> list:
    t.next("punct", open_)
    out = []
    while t.peek()[1] != close:
        out.append(item())
        if t.peek()[1] == ",":
            t.next()
    t.next("punct", close)
    return out


def _attr(t: _Tokens) -> tuple[str, object]:
    key = t.next("ident")
    t.next("punct", "=")
    return key, _value(t)


def _node(t: _Tokens, name: str, line: int):
    """``= Kind {attrs} (inputs)`` and the parameter lines after it."""
    t.next("punct", "=")
    kind = t.next("ident")
    cls = NODE_TYPES.get(kind)
    if cls is None:
        raise ParseError(f"line {line}: unknown node type {kind!r} for %{name}")
    attrs = dict(_list(t, "{", "}", lambda: _attr(t)))
    try:
        node = cls(**attrs)
    except (TypeError, ValueError, IRError) as e:
        raise ParseError(f"line {line}: %{name} = {kind}: {e}") from e
    srcs = _list(t, "(", ")", lambda: t.next("name")[1:]) if t.peek()[1] == "(" else []
    params: dict[str, np.ndarray] = {}
    while t.peek()[0] == "ident":
        key = t.next("ident")
        t.next("punct", "=")
        params[key] = _array(t)
    return node, srcs, params


def parse(text: str) -> Graph:
    """Read the text form back into a Graph. Raises ParseError with the line on failure."""
    t = _Tokens(text)
    t.next("ident", "snnc.ir")
    version = t.next("num")
    if version != str(VERSION):
        raise ParseError(f"IR text version {version}; this snnc reads version {VERSION}")
    t.next("ident", "graph")
    gname = json.loads(t.next("str"))
    meta: dict[str, object] = {}
    while t.peek()[1] == "meta":
        t.next()
        key = t.next("ident")
        t.next("punct", "=")
        meta[key] = _value(t)
    nodes: dict[str, Node] = {}
    inputs: dict[str, list[str]] = {}
    params: dict[str, dict[str, np.ndarray]] = {}
    while t.peek()[0] != "eof":
        _, _, line = t.peek()
        name = t.next("name")[1:]
        if name in nodes:
            raise ParseError(f"line {line}: node %{name} defined twice")
        nodes[name], inputs[name], params[name] = _node(t, name, line)
    try:
        return Graph(nodes, inputs, params, name=gname, meta=meta)
    except IRError as e:
        raise ParseError(str(e)) from e
