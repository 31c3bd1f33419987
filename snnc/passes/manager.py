"""Passes, their registry, pipeline specs and the Pipeline that runs them.

A pass is a frozen dataclass whose fields are its options and whose ``name`` is kebab-case;
its docstring states what it requires and ensures. On the command line a pipeline is written
``canonicalize,quantize{weight-bits=4,decay=shift}``.

The Pipeline verifies the graph after every pass, names the passes that ran before a failure
(``'quantize' failed after [canonicalize]: ...``), can print the IR between passes, and times
each pass.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, TextIO

from snnc.errors import IRError, PassError, SnncError
from snnc.ir.graph import Graph
from snnc.ir.verify import verify

REGISTRY: dict[str, type[Pass]] = {}


@dataclass(frozen=True)
class Pass:
    """Base of all passes. Subclasses set ``name`` and implement :meth:`run`."""

    name: ClassVar[str] = ""

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        raise NotImplementedError

    def spec(self) -> str:
        """The pass as written in a pipeline spec, with its non-default options."""
        opts = []
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.default is not dataclasses.MISSING and v == f.default:
                continue
            opts.append(f"{f.name.replace('_', '-')}={_fmt(v)}")
        return self.name + (f"{{{','.join(opts)}}}" if opts else "")


def _fmt(v: object) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def register(cls: type[Pass]) -> type[Pass]:
    """Class decorator: make a pass available by its ``name``."""
    if not cls.name or cls.name in REGISTRY:
        raise ValueError(f"pass name {cls.name!r} empty or taken")
    REGISTRY[cls.name] = cls
    return cls


@dataclass
class PassContext:
    """What passes share: reports for the user and the time each pass took."""

    reports: dict[str, object] = field(default_factory=dict)
    timings: list[tuple[str, float]] = field(default_factory=list)
    #: per-neuron firing rates measured on calibration input: population -> (n,) array
    rates: dict[str, object] = field(default_factory=dict)
    #: derived data passes hand on (e.g. the core mapping), keyed by what it is
    cache: dict[str, object] = field(default_factory=dict)


BUILTIN = ("canonicalize", "quantize", "partition", "place", "route")


def _load_builtin_passes() -> None:
    # importing a pass module registers it
    import importlib

    for mod in BUILTIN:
        try:
            importlib.import_module(f"snnc.passes.{mod}")
        except ModuleNotFoundError as e:
            if e.name != f"snnc.passes.{mod}":
                raise


_SPEC_RE = re.compile(r"\s*([a-z][a-z0-9\-]*)\s*(?:\{([^{}]*)\})?\s*(?:,|$)")


def parse_spec(spec: str) -> list[Pass]:
    """``"canonicalize,quantize{weight-bits=4}"`` -> pass instances, with errors that say why."""
    _load_builtin_passes()
    passes: list[Pass] = []
    pos, spec = 0, spec.strip()
    while pos < len(spec):
        m = _SPEC_RE.match(spec, pos)
        if m is None or m.end() == pos:
            raise PassError(f"pipeline spec {spec!r}: cannot read it from character {pos + 1}")
        name, opts = m.group(1), m.group(2)
        if name not in REGISTRY:
            raise PassError(f"unknown pass '{name}'; available: {', '.join(sorted(REGISTRY))}")
        passes.append(_make(REGISTRY[name], opts or ""))
        pos = m.end()
    return passes


def _make(cls: type[Pass], opts: str) -> Pass:
    fields = {f.name.replace("_", "-"): f for f in dataclasses.fields(cls)}
    kwargs: dict[str, object] = {}
    for item in filter(None, (o.strip() for o in opts.split(","))):
        key, eq, raw = item.partition("=")
        key = key.strip()
        if key not in fields:
            known = ", ".join(sorted(fields)) or "none"
            raise PassError(f"pass '{cls.name}' has no option '{key}' (options: {known})")
        if not eq:
            raise PassError(f"pass '{cls.name}': option '{key}' needs a value ({key}=...)")
        kwargs[fields[key].name] = _convert(cls.name, key, raw.strip(), fields[key])
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, SnncError) as e:
        raise PassError(f"pass '{cls.name}': {e}") from None


def _convert(pass_name: str, key: str, raw: str, f: dataclasses.Field) -> object:
    default = f.default
    kind = type(default) if default is not dataclasses.MISSING and default is not None else str
    try:
        if kind is bool:
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1")
        return kind(raw)
    except ValueError:
        raise PassError(
            f"pass '{pass_name}': option '{key}' expects {kind.__name__}, got {raw!r}"
        ) from None


@dataclass
class Pipeline:
    """Runs passes in order; see the module docstring.

    Parameters
    ----------
    passes
        The passes, in order.
    verify_each
        Run the IR verifier after every pass (on by default).
    print_between
        Stream to print the IR to after every pass (None: do not print).
    """

    passes: Sequence[Pass]
    verify_each: bool = True
    print_between: TextIO | None = None
    on_pass: Callable[[str, Graph], None] | None = None

    @classmethod
    def from_spec(cls, spec: str, **kw) -> Pipeline:
        return cls(parse_spec(spec), **kw)

    def run(self, graph: Graph, ctx: PassContext | None = None) -> Graph:
        ctx = ctx if ctx is not None else PassContext()
        done: list[str] = []
        for p in self.passes:
            t0 = time.perf_counter()
            try:
                graph = p.run(graph, ctx)
                if self.verify_each:
                    verify(graph)
            except IRError as e:
                raise PassError(
                    f"'{p.name}' produced an invalid graph{_after(done)}: {e}"
                ) from None
            except SnncError as e:
                raise PassError(f"'{p.name}' failed{_after(done)}: {e}") from None
            ctx.timings.append((p.name, time.perf_counter() - t0))
            done.append(p.name)
            if self.print_between is not None:
                from snnc.ir.text import print_graph

                print(f"// ----- after '{p.spec()}'", file=self.print_between)
                self.print_between.write(print_graph(graph, elide=True))
            if self.on_pass is not None:
                self.on_pass(p.name, graph)
        return graph

    def spec(self) -> str:
        return ",".join(p.spec() for p in self.passes)


def _after(done: list[str]) -> str:
    return f" after [{', '.join(done)}]" if done else " (first pass)"


def print_timings(ctx: PassContext, out: TextIO = sys.stderr) -> None:
    for name, secs in ctx.timings:
        print(f"  {name:<16} {secs * 1000:8.1f} ms", file=out)
