"""The concrete tracer behind :mod:`snnc.frontend.torch`: it runs ``forward`` once and records
which layer feeds which, step by step (see that module's docstring)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from snnc.errors import FrontendError

try:
    import snntorch as snn
except ImportError:  # plain torch models do not need snnTorch
    snn = None

_B, _T = 2, 3  # tracing batch; time steps of the probe input of a time-major forward
_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.AvgPool2d, nn.Flatten, nn.BatchNorm1d,
           nn.BatchNorm2d)  # fmt: skip
_SKIPPED = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
_NEURONS = (snn.Leaky, snn.Synaptic, snn.RLeaky) if snn else ()
#: a neuron's state arguments, each with the index of the output that carries it on
_STATES = {"Leaky": {"mem": 1}, "Synaptic": {"syn": 1, "mem": 2}, "RLeaky": {"spk": 0, "mem": 1}}
_REASONS = {
    "MaxPool": "max pooling has no spike-exact IR equivalent; use nn.AvgPool2d",
    "torch.nn.modules.activation": "a non-spiking activation; layers must exchange spikes, use a "
    "spiking neuron (snn.Leaky) instead",
    "torch.nn.modules.rnn": "a non-spiking recurrent layer; use snn.RLeaky",
    "Lapicque": "its RC discretisation (beta from R, C and time_step, input scaled by "
    "time_step/C) is not mapped; use snn.Leaky",
}
_SUPPORTED = ("nn.Sequential, nn.Linear, nn.Conv1d, nn.Conv2d, nn.AvgPool2d, nn.Flatten, "
              "nn.BatchNorm1d/2d (after Linear/Conv), nn.Dropout, nn.Identity, snn.Leaky, "
              "snn.Synaptic, snn.RLeaky and custom modules built from them")  # fmt: skip
_ALIAS = {"clone", "detach", "contiguous", "float", "to", "cpu", "requires_grad_"}
_META = {"size", "dim", "numel", "__len__", "__get__", "stride", "is_contiguous", "__repr__",
         "__format__", "is_floating_point", "ndimension", "nelement"}  # fmt: skip
_CONST = {"zeros_like", "empty_like", "new_zeros", "new_empty"}  # do not read the values
_ADD = {"add", "__add__", "__radd__", "__iadd__", "add_"}
_MUL = {"mul", "__mul__", "__rmul__", "__imul__", "mul_"}


class _TimeMajor(Exception):
    """The forward indexes its input by time step: trace again with a time-major input."""


def _known(module: nn.Module) -> type | None:
    """The supported class ``module`` is, or inherits from without overriding ``forward``."""
    for cls in (*_LAYERS, *_SKIPPED, *_NEURONS):
        if isinstance(module, cls) and type(module).forward is cls.forward:
            return cls
    return None


@dataclass(eq=False)
class _Call:
    """The ``k``-th call of a leaf layer (= time step ``k``)."""

    path: str
    module: nn.Module
    x: _Val | None  # feed-forward input
    states: dict[str, object]  # name -> None (kept inside), "fresh" (zeros) or a _Val
    in_shape: tuple[int, ...]
    k: int = 0
    out_shape: tuple[int, ...] = ()


@dataclass(eq=False)
class _Val:
    """How a symbolic tensor was made; ``step`` is None for values that do not change in time."""

    op: str  # "input", "call", "flatten", "add", "scale" or "stack"
    shape: tuple[int, ...]  # without the batch dimension
    step: int | None = None
    args: tuple[_Val, ...] = ()
    attrs: tuple = ()  # call: (path, output index); flatten: (start, end); scale: (shape, bytes)
    path: str = ""  # the module whose forward made it
    call: _Call | None = None
    _key: tuple | None = field(default=None, repr=False)

    @property
    def key(self) -> tuple:
        """The value with time folded away: equal keys are one IR node."""
        if self._key is None:
            self._key = (self.op, self.attrs, tuple(a.key for a in self.args))
        return self._key


def _tensors(obj) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple, dict)):
        return [t for o in (obj.values() if isinstance(obj, dict) else obj) for t in _tensors(o)]
    return []


def _arg(args, kwargs, i: int, key: str, default):
    return kwargs.get(key, args[i] if len(args) > i else default)


def _func_name(func) -> str:
    name = getattr(func, "__name__", repr(func))
    for prefix, ns in (("torch", torch), ("torch.nn.functional", nn.functional)):
        if getattr(ns, name, None) is func:
            return f"{prefix}.{name}"
    return "Tensor." + name if hasattr(torch.Tensor, name) else name


def _flatten_dims(in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> tuple[int, int] | None:
    """(start, end) such that flattening ``in_shape`` over them gives ``out_shape``."""
    for s in range(len(in_shape)):
        for e in range(s, len(in_shape)):
            if in_shape[:s] + (math.prod(in_shape[s : e + 1]),) + in_shape[e + 1 :] == out_shape:
                return s, (-1 if e == len(in_shape) - 1 else e)
    return None


class _Trace(TorchFunctionMode):
    """Records layer calls and the tensor functions between them (see the module docstring)."""

    def __init__(self, root: nn.Module, x: torch.Tensor, time_major: bool) -> None:
        super().__init__()
        self.root, self.x, self.time_major = root, x, time_major
        self.vals: dict[int, _Val] = {}
        self.alive: list[torch.Tensor] = []  # keeps traced tensors alive: ids stay unique
        self.ops: list[_Val] = []
        self.calls: dict[str, list[_Call]] = {}
        self.paths, self.pending, self.depth = [""], [], 0  # depth > 0: inside a leaf layer
        self.steps: dict[int, torch.Tensor] = {}
        self.shape = tuple(x.shape[2:] if time_major else x.shape[1:])
        self.input = None if time_major else _Val("input", self.shape)  # per-step input
        self.bind(x, self.input)

    def bind(self, t, val: _Val | None):
        if isinstance(t, torch.Tensor) and val is not None:
            self.vals[id(t)] = val
            self.alive.append(t)
        return t

    def sym(self, t) -> _Val | None:
        return self.vals.get(id(t)) if isinstance(t, torch.Tensor) else None

    def fail(self, msg: str) -> FrontendError:
        path = self.paths[-1]
        where = f"layer '{path}'" if path else f"'{type(self.root).__name__}.forward'"
        return FrontendError(f"{where}: {msg}")

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.depth:
            return func(*args, **kwargs)
        name, flat = getattr(func, "__name__", ""), _tensors((args, kwargs))
        if self.time_major and any(t is self.x for t in flat):
            return self._time_index(func, name, args, kwargs)
        syms = [v for t in flat if (v := self.sym(t)) is not None]
        if not syms or name in _CONST:
            return func(*args, **kwargs)
        if name in ("__getitem__", "unbind") and self.sym(args[0]) is self.input:
            raise _TimeMajor
        out = self._record(func, name, args, kwargs, syms)
        if out is None:
            raise self.fail(
                f"{_func_name(func)} is not supported on a value that depends on the input "
                "(between layers snnc understands x[step], flatten, view/reshape that flattens, "
                "torch.stack (dim 0) of the outputs, + of two layer outputs, * by a constant)"
            )
        return out

    def _record(self, func, name, args, kwargs, syms: list[_Val]):
        if name == "stack" and _arg(args, kwargs, 1, "dim", 0) == 0:
            vals = [self.sym(t) for t in args[0]]
            if all(vals) and len({v.shape for v in vals}) == 1:
                return self._op(func(*args, **kwargs), "stack", vals[0].shape, None, tuple(vals))
        steps = {v.step for v in syms} - {None}  # -1: mixes steps, refused by _check_steps
        step = (steps.pop() if len(steps) == 1 else -1) if steps else None
        if name in _META or name in _ALIAS:
            out = func(*args, **kwargs)
            if name in _META and not _tensors(out):
                return out
            if name in _ALIAS and isinstance(out, torch.Tensor) and out.dtype == torch.float32:
                return self.bind(out, syms[0])
        elif name in ("flatten", "view", "reshape") and self.sym(args[0]):
            return self._reshape(func, name, args, kwargs)
        elif name in _ADD and len(syms) == 2 and kwargs.get("alpha", 1) == 1:
            return self._op(func(*args, **kwargs), "add", syms[0].shape, step, tuple(syms))
        elif name in _MUL and len(syms) == 1:
            return self._scale(func(*args, **kwargs), args, syms[0])
        return None

    def _op(self, out, op, shape, step, args, attrs=()) -> torch.Tensor:
        val = _Val(op, tuple(shape), step, args, attrs, self.paths[-1])
        self.ops.append(val)
        return self.bind(out, val)

    def _time_index(self, func, name, args, kwargs):
        """An op on the time-major input: only ``x[t]``, ``x.unbind(0)`` and metadata."""
        idx = args[1] if name == "__getitem__" else None
        if isinstance(idx, tuple) and all(i in (slice(None), Ellipsis) for i in idx[1:]):
            idx = idx[0]
        if isinstance(idx, torch.Tensor) and idx.ndim == 0 and not idx.is_floating_point():
            idx = int(idx)
        if isinstance(idx, int) and idx >= 0:
            return self._step_input(idx)
        if name == "unbind" and (args[1:] or (0,))[0] == 0:
            return tuple(self._step_input(t) for t in range(self.x.shape[0]))
        if name in _ALIAS and func(*args, **kwargs).dtype == torch.float32:
            return self.x  # x.float(), x.to(device): still the time-major input
        out = func(*args, **kwargs) if name in _META else None
        if out is None or _tensors(out):
            raise self.fail(f"{_func_name(func)} on the time-major input is not supported; "
                            "index it by time step first (x[step])")  # fmt: skip
        return out

    def _step_input(self, t: int) -> torch.Tensor:
        # the probe input is never indexed for real: any step works, whatever T the loop runs
        if t not in self.steps:
            x = torch.zeros(_B, *self.shape, device=self.x.device)
            self.steps[t] = self.bind(x, _Val("input", self.shape, t))
        return self.steps[t]

    def _reshape(self, func, name, args, kwargs) -> torch.Tensor:
        src, v, out = args[0], self.sym(args[0]), None
        if name == "flatten" and _arg(args, kwargs, 1, "start_dim", 0) % src.ndim:
            out = func(*args, **kwargs)
        elif name != "flatten":
            shape = args[1:] or (kwargs.get("shape") or kwargs.get("size"),)
            shape = tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else shape
            try:  # the first entry is the batch, whatever batch size the model was written for
                out = src.reshape(src.shape[0], *shape[1:])
            except (RuntimeError, TypeError):
                pass
        dims = None if out is None else _flatten_dims(v.shape, tuple(out.shape[1:]))
        if dims is None:
            msg = f"only flattening (batch kept) of a {v.shape} value is supported"
            raise self.fail(f"{_func_name(func)}{tuple(args[1:])}: {msg}")
        per = tuple(out.shape[1:])
        return self.bind(out, v) if per == v.shape else self._op(
            out, "flatten", per, v.step, (v,), dims)  # fmt: skip

    def _scale(self, out: torch.Tensor, args, v: _Val) -> torch.Tensor:
        c = torch.as_tensor(next(a for a in args[:2] if self.sym(a) is None)).detach()
        full = (_B, *v.shape)
        if out.dtype != torch.float32 or tuple(out.shape) != full or (
            c.ndim == len(full) and c.shape[0] != 1
        ):  # fmt: skip
            msg = f"is not an element-wise float32 scaling of a {v.shape} value"
            raise self.fail(f"multiplying by a {c.dtype} constant of shape {tuple(c.shape)} {msg}")
        c = c[0] if c.ndim == len(full) else c
        s = np.ascontiguousarray(np.broadcast_to(c.to(torch.float32).cpu().numpy(), v.shape))
        return self._op(out, "scale", v.shape, v.step, (v,), (s.shape, s.tobytes()))

    def pre(self, path: str, leaf: bool, module: nn.Module, args, kwargs) -> None:
        self.paths.append(path)
        if not leaf:
            return
        _check_module_type(module, path)
        if self.time_major and any(t is self.x for t in _tensors((args, kwargs))):
            raise self.fail("is applied to the whole time-major input; index it first (x[step])")
        states: dict[str, object] = {}
        for i, state in enumerate(_STATES.get(getattr(_known(module), "__name__", ""), {})):
            t = args[i + 1] if len(args) > i + 1 else kwargs.get(state)
            states[state] = self.sym(t) or t
            if isinstance(t, torch.Tensor) and self.sym(t) is None:
                if t.numel() and bool(t.any()):
                    raise self.fail(f"initial state '{state}' is not zero; snnc starts from zero")
                states[state] = "fresh"
        x = args[0] if args else None
        shape = tuple(x.shape[1:]) if isinstance(x, torch.Tensor) else ()
        self.pending.append(_Call(path, module, self.sym(x), states, shape))
        self.depth += 1

    def post(self, path: str, leaf: bool, module: nn.Module, args, output) -> None:
        self.paths.pop()
        if not leaf:
            return
        self.depth -= 1
        call = self.pending.pop()
        if isinstance(module, _SKIPPED):
            self.bind(output, call.x)
            return
        calls = self.calls.setdefault(path, [])
        call.k = len(calls)
        calls.append(call)
        outs = output if isinstance(output, tuple) else (output,)
        call.out_shape = tuple(outs[0].shape[1:])
        for i, t in enumerate(outs):
            self.bind(t, _Val("call", tuple(t.shape[1:]), call.k, (), (path, i), path, call))


def _check_module_type(module: nn.Module, path: str) -> None:
    """Refuse a library layer that is not supported, saying why."""
    if _known(module):
        return
    kind = f"{type(module).__module__}.{type(module).__name__}"
    why = next((r for k, r in _REASONS.items() if k in kind), None)
    if why is None and snn is not None and isinstance(module, snn.SpikingNeuron):
        why = "this snnTorch neuron is not supported (snn.Leaky, snn.Synaptic and snn.RLeaky are)"
    why = why or f"module type {kind} is not supported; supported: {_SUPPORTED}"
    raise FrontendError(f"layer '{path}' ({type(module).__name__}): {why}")


def _walk(module: nn.Module, path: str = "", seen=None):
    """(path, module, is_leaf) of the modules to hook; a leaf layer's children are not visited.
    Library modules are leaves (refused unless supported); custom modules are traced through."""
    seen = set() if seen is None else seen
    if id(module) in seen:
        return
    seen.add(id(module))
    lib = type(module).__module__.startswith(("torch.", "snntorch"))
    leaf = bool(_known(module)) or lib and not isinstance(module, nn.Sequential)
    yield path, module, leaf
    if not leaf:
        for name, child in module.named_children():
            yield from _walk(child, f"{path}.{name}" if path else name, seen)


def _run(module: nn.Module, shape: tuple[int, ...], time_major: bool):
    """Trace one forward; every module's attributes (states, train flags) are restored after."""
    device = next(module.parameters(), torch.zeros(0)).device
    x = torch.zeros(_B, *shape, device=device)
    x = x[None].expand(_T, *x.shape) if time_major else x
    tr = _Trace(module, x, time_major)
    saved = {m: (dict(m._buffers), dict(m.__dict__)) for m in module.modules()}
    hooks = []
    try:
        for path, mod, leaf in _walk(module):
            hooks += [mod.register_forward_pre_hook(partial(tr.pre, path, leaf), with_kwargs=True),
                      mod.register_forward_hook(partial(tr.post, path, leaf))]  # fmt: skip
        module.eval()
        with torch.no_grad(), tr:
            result = module(x)
    except (FrontendError, _TimeMajor):
        raise
    except Exception as e:
        msg = f"forward on a zero input {tuple(x.shape)} failed: {type(e).__name__}: {e}"
        raise tr.fail(msg) from e
    finally:
        for h in hooks:
            h.remove()
        for m, (bufs, attrs) in saved.items():
            m._buffers.clear()
            m._buffers.update(bufs)
            m.__dict__.clear()
            m.__dict__.update(attrs)
    return tr, result


def _check_steps(tr: _Trace) -> int:
    """Every layer is called once per step and wired like step 0; returns the number of steps."""
    counts = {p: len(c) for p, c in tr.calls.items()}
    if len(set(counts.values())) != 1:
        msg = f"layers are called {counts} times; each must run once per time step"
        raise FrontendError(f"'{type(tr.root).__name__}': {msg}")
    for path, calls in tr.calls.items():
        for c in calls:
            at, first = f"layer '{path}' at step {c.k}", calls[0].x
            if c.x is None:
                raise FrontendError(f"{at}: its input does not depend on the model input")
            if c.x.step not in (None, c.k) or c.x.key != first.key:
                when = "mixed steps" if c.x.step == -1 else f"step {c.x.step}"
                msg = "a layer called at step k must read values of step k, wired as at step 0"
                raise FrontendError(f"{at}: reads a '{c.x.op}' value of {when}; {msg}")
            for state, v in c.states.items():
                own = (path, _STATES[_known(c.module).__name__][state])
                prev = calls[c.k - 1] if c.k else None
                if not (v is None or v == "fresh" and c.k == 0 or isinstance(v, _Val)
                        and v.call is prev and v.attrs == own):  # fmt: skip
                    msg = "must be zero at step 0 and the layer's own previous output after"
                    raise FrontendError(f"{at}: state '{state}' {msg}")
    return next(iter(counts.values()))


def _pick_output(tr: _Trace, result, n_steps: int) -> _Val:
    """The first returned per-step spike value (the element of a ``torch.stack`` over steps)."""
    why = "returns nothing that depends on its input"
    for v in filter(None, map(tr.sym, _tensors(result))):
        per_step = v.op == "stack" and len(v.args) == n_steps and len({a.key for a in v.args}) == 1
        if not (per_step and all(a.step in (k, None) for k, a in enumerate(v.args))
                or v.op != "stack" and n_steps == 1):  # fmt: skip
            why = f"runs {n_steps} steps but returns no torch.stack of one value per step"
            continue
        elem = src = v.args[0] if v.op == "stack" else v
        while src.op == "flatten":
            src = src.args[0]
        neuron = src.op == "call" and isinstance(src.call.module, _NEURONS)
        if neuron and src.attrs[1] == 0:
            return elem
        if neuron:
            why = (
                f"returns the membrane/synaptic state (output {src.attrs[1]}) of layer "
                f"'{src.attrs[0]}' rather than spikes; snnc compiles spiking outputs"
            )
        elif not why.startswith("returns the"):
            what = f"layer '{src.path}'" if src.op == "call" else f"a {src.op}"
            why = f"returns the output of {what}, not the spikes of a neuron"
    raise FrontendError(f"'{type(tr.root).__name__}': forward {why}")


def _err(path: str, msg: str) -> FrontendError:
    return FrontendError(f"layer '{path}': {msg}")
