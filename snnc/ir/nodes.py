"""IR node types: small frozen dataclasses; their arrays live in the graph's parameter store.

Every node is discrete-time. At each time step ``t`` a node receives ``x[t]``, the element-wise
sum of its inputs (in the order the graph lists them), and produces ``y[t]``. Node names follow
NIR. Shapes carry no batch or time dimension.

Each node declares the parameters it reads (``PARAMS``; ``OPTIONAL`` may be absent) and infers
its output shape from its input shape and those parameters.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np

from snnc.errors import IRError

Shape = tuple[int, ...]


class ResetMode(enum.Enum):
    """What a spike does to the membrane."""

    SUBTRACT = "subtract"  #: v <- v - threshold
    TO_VALUE = "to_value"  #: v <- reset_value
    NONE = "none"  #: v unchanged


class ResetTiming(enum.Enum):
    """When the reset caused by a spike is applied.

    ``IMMEDIATE``: in the step of the spike, after the comparison (NIR, Norse, Loihi).
    ``NEXT_STEP``: in the following step, after that step's input has been integrated and before
    its comparison (snnTorch ``reset_delay=True``, its default). With ``SUBTRACT`` the threshold
    is subtracted undecayed; with ``TO_VALUE`` the integrated value, new input included, is
    replaced (snnTorch ``Synaptic``/``RLeaky`` with ``reset_mechanism="zero"``).
    ``GATED``: snnTorch ``reset_delay=False`` with subtraction. With ``r = v[t-1] > threshold``
    (the membrane after the previous reset), ``m = integrate(v) - r*threshold``,
    ``s = m > threshold`` and ``v[t] = m - (s - r)*threshold``.
    """

    IMMEDIATE = "immediate"
    NEXT_STEP = "next_step"
    GATED = "gated"


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    """Base of all nodes. ``origin`` says where the node came from (NIR node, torch module)."""

    origin: str = ""

    PARAMS: ClassVar[tuple[str, ...]] = ()
    OPTIONAL: ClassVar[tuple[str, ...]] = ()
    #: integer parameters (all others are floating point before quantisation)
    INT_PARAMS: ClassVar[tuple[str, ...]] = ()

    @property
    def kind(self) -> str:
        return type(self).__name__

    def attrs(self) -> dict[str, object]:
        """The node's fields other than ``origin``, in declaration order."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "origin"}

    def infer_shape(self, in_shape: Shape | None, params: Mapping[str, np.ndarray]) -> Shape:
        """Output shape for the given input shape; raises IRError on a mismatch."""
        raise NotImplementedError(type(self).__name__)

    @property
    def is_source(self) -> bool:
        return False

    @property
    def spiking(self) -> bool:
        """True when the output is binary spikes."""
        return False

    @property
    def stateful(self) -> bool:
        return False


def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise IRError(msg)


def _shape_tuple(value: object, what: str) -> Shape:
    try:
        out = tuple(int(v) for v in value)  # type: ignore[union-attr]
    except TypeError as e:
        raise IRError(f"{what} must be a tuple of integers, got {value!r}") from e
    _need(all(v >= 0 for v in out), f"{what} must not be negative, got {out}")
    return out


def _pair(value: object, what: str, minimum: int) -> tuple[int, int]:
    out = _shape_tuple(value, what)
    _need(len(out) == 2, f"{what} must have two entries, got {out}")
    _need(min(out) >= minimum, f"{what} must be >= {minimum}, got {out}")
    return out  # type: ignore[return-value]


# --------------------------------------------------------------------------- graph boundary


@dataclass(frozen=True, slots=True, kw_only=True)
class Input(Node):
    """Graph input: ``y[t] = input[t]`` (spikes or graded values)."""

    shape: Shape

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", _shape_tuple(self.shape, "Input.shape"))

    @property
    def is_source(self) -> bool:
        return True

    def infer_shape(self, in_shape, params):
        _need(in_shape is None, "Input takes no inputs")
        return self.shape


@dataclass(frozen=True, slots=True, kw_only=True)
class Output(Node):
    """Graph output: ``y[t] = x[t]``."""

    shape: Shape

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", _shape_tuple(self.shape, "Output.shape"))

    def infer_shape(self, in_shape, params):
        _need(in_shape == self.shape, f"Output expects shape {self.shape}, gets {in_shape}")
        return self.shape


# --------------------------------------------------------------------------- stateless maps


@dataclass(frozen=True, slots=True, kw_only=True)
class _Weighted(Node):
    """A layer with weights. After quantisation (integer weights) ``bits`` is the stored width
    and every weight is a ``bits``-bit signed integer shifted left by ``shift``."""

    bits: int = 0
    shift: int = 0

    def _check_quant(self) -> None:
        _need(
            0 <= self.bits <= 16 and 0 <= self.shift <= 24,
            f"{type(self).__name__}: bits {self.bits} / shift {self.shift} out of range",
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Affine(_Weighted):
    """``y = W x + b`` over the last dimension; weight ``(out, in)``, bias ``(out,)``."""

    PARAMS = ("weight", "bias")

    def __post_init__(self) -> None:
        self._check_quant()

    def infer_shape(self, in_shape, params):
        w, b = params["weight"], params["bias"]
        _need(w.ndim == 2, f"weight must be 2-D (out, in), has shape {w.shape}")
        _need(b.shape == (w.shape[0],), f"bias shape {b.shape} != ({w.shape[0]},)")
        _need(
            in_shape is not None and len(in_shape) >= 1 and in_shape[-1] == w.shape[1],
            f"weight {w.shape} expects input (..., {w.shape[1]}), gets {in_shape}",
        )
        return in_shape[:-1] + (w.shape[0],)


@dataclass(frozen=True, slots=True, kw_only=True)
class Linear(_Weighted):
    """``y = W x`` over the last dimension; weight ``(out, in)``."""

    PARAMS = ("weight",)

    def __post_init__(self) -> None:
        self._check_quant()

    def infer_shape(self, in_shape, params):
        w = params["weight"]
        _need(w.ndim == 2, f"weight must be 2-D (out, in), has shape {w.shape}")
        _need(
            in_shape is not None and len(in_shape) >= 1 and in_shape[-1] == w.shape[1],
            f"weight {w.shape} expects input (..., {w.shape[1]}), gets {in_shape}",
        )
        return in_shape[:-1] + (w.shape[0],)


@dataclass(frozen=True, slots=True, kw_only=True)
class Scale(Node):
    """``y = s * x`` element-wise; ``scale`` broadcasts against the input shape."""

    PARAMS = ("scale",)

    def infer_shape(self, in_shape, params):
        s = params["scale"]
        try:
            out = np.broadcast_shapes(tuple(in_shape), s.shape)
        except (ValueError, TypeError):
            out = None
        _need(out == tuple(in_shape or ()), f"scale {s.shape} does not fit input {in_shape}")
        return tuple(in_shape)


def _conv_out(size: int, k: int, stride: int, pad: int, dil: int) -> int:
    return (size + 2 * pad - dil * (k - 1) - 1) // stride + 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Conv1d(_Weighted):
    """1-D convolution (cross-correlation as torch): weight ``(C_out, C_in/groups, k)``."""

    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int = 1

    PARAMS = ("weight",)
    OPTIONAL = ("bias",)

    def __post_init__(self) -> None:
        _need(
            self.stride >= 1 and self.dilation >= 1 and self.groups >= 1 and self.padding >= 0,
            f"Conv1d: bad stride/padding/dilation/groups {self.attrs()}",
        )
        self._check_quant()

    def infer_shape(self, in_shape, params):
        w = params["weight"]
        _need(w.ndim == 3, f"weight must be (C_out, C_in/groups, k), has shape {w.shape}")
        _need(in_shape is not None and len(in_shape) == 2, f"input must be (C, L), is {in_shape}")
        c, n = in_shape
        _need(
            c == w.shape[1] * self.groups and w.shape[0] % self.groups == 0,
            f"weight {w.shape} with groups={self.groups} does not fit {c} input channels",
        )
        if "bias" in params:
            _need(params["bias"].shape == (w.shape[0],), "bias must be (C_out,)")
        out = _conv_out(n, w.shape[2], self.stride, self.padding, self.dilation)
        _need(out >= 1, f"input length {n} too small for kernel {w.shape[2]}")
        return (w.shape[0], out)


@dataclass(frozen=True, slots=True, kw_only=True)
class Conv2d(_Weighted):
    """2-D convolution (cross-correlation as torch): weight ``(C_out, C_in/groups, kh, kw)``."""

    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    PARAMS = ("weight",)
    OPTIONAL = ("bias",)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stride", _pair(self.stride, "Conv2d.stride", 1))
        object.__setattr__(self, "padding", _pair(self.padding, "Conv2d.padding", 0))
        object.__setattr__(self, "dilation", _pair(self.dilation, "Conv2d.dilation", 1))
        _need(int(self.groups) >= 1, f"Conv2d.groups must be >= 1, got {self.groups}")
        self._check_quant()

    def infer_shape(self, in_shape, params):
        w = params["weight"]
        _need(w.ndim == 4, f"weight must be (C_out, C_in/groups, kh, kw), has shape {w.shape}")
        _need(
            in_shape is not None and len(in_shape) == 3, f"input must be (C, H, W), is {in_shape}"
        )
        c, h, wd = in_shape
        _need(
            c == w.shape[1] * self.groups and w.shape[0] % self.groups == 0,
            f"weight {w.shape} with groups={self.groups} does not fit {c} input channels",
        )
        if "bias" in params:
            _need(params["bias"].shape == (w.shape[0],), "bias must be (C_out,)")
        oh = _conv_out(h, w.shape[2], self.stride[0], self.padding[0], self.dilation[0])
        ow = _conv_out(wd, w.shape[3], self.stride[1], self.padding[1], self.dilation[1])
        _need(oh >= 1 and ow >= 1, f"input {h}x{wd} too small for kernel {w.shape[2:]}")
        return (w.shape[0], oh, ow)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Pool2d(Node):
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        name = type(self).__name__
        object.__setattr__(self, "kernel", _pair(self.kernel, f"{name}.kernel", 1))
        object.__setattr__(self, "stride", _pair(self.stride, f"{name}.stride", 1))
        object.__setattr__(self, "padding", _pair(self.padding, f"{name}.padding", 0))

    def infer_shape(self, in_shape, params):
        _need(
            in_shape is not None and len(in_shape) == 3, f"input must be (C, H, W), is {in_shape}"
        )
        c, h, w = in_shape
        oh = _conv_out(h, self.kernel[0], self.stride[0], self.padding[0], 1)
        ow = _conv_out(w, self.kernel[1], self.stride[1], self.padding[1], 1)
        _need(oh >= 1 and ow >= 1, f"input {h}x{w} too small for kernel {self.kernel}")
        return (c, oh, ow)


@dataclass(frozen=True, slots=True, kw_only=True)
class SumPool2d(_Pool2d):
    """Sum over each window (zero padding)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AvgPool2d(_Pool2d):
    """Sum over each window divided by ``kh*kw`` (padding counts, as torch's default)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Flatten(Node):
    """Merge dimensions ``start_dim..end_dim`` (counted without batch; negative from the end)."""

    start_dim: int = 0
    end_dim: int = -1

    def infer_shape(self, in_shape, params):
        _need(in_shape is not None, "Flatten needs an input")
        n = len(in_shape)
        s = self.start_dim + n if self.start_dim < 0 else self.start_dim
        e = self.end_dim + n if self.end_dim < 0 else self.end_dim
        _need(
            0 <= s <= e < n, f"Flatten dims {self.start_dim}..{self.end_dim} invalid for {in_shape}"
        )
        merged = int(np.prod(in_shape[s : e + 1], dtype=np.int64))
        return in_shape[:s] + (merged,) + in_shape[e + 1 :]


@dataclass(frozen=True, slots=True, kw_only=True)
class Delay(Node):
    """``y[t] = x[t - d]`` per element, ``d = steps`` (integers >= 0), zero before the start.

    A Delay whose every step is >= 1 breaks a cycle: recurrence is an edge through one.
    """

    PARAMS = ("steps",)
    INT_PARAMS = ("steps",)

    @property
    def stateful(self) -> bool:
        return True

    def infer_shape(self, in_shape, params):
        d = params["steps"]
        _need(d.shape == tuple(in_shape or ()), f"steps {d.shape} != input shape {in_shape}")
        _need(bool(np.all(d >= 0)), "delay steps must be >= 0")
        return tuple(in_shape)


def _slices(value) -> tuple[tuple[int, int, int], ...]:
    out = tuple(tuple(int(v) for v in s) for s in value)
    _need(
        all(len(s) == 3 and 0 <= s[1] < s[2] and s[0] >= 0 for s in out),
        f"partition slices must be (core, start, stop) with start < stop, got {value!r}",
    )
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Threshold(Node):
    """``y = x > threshold`` (``>=`` when not strict); stateless."""

    strict: bool = True
    partition: tuple[tuple[int, int, int], ...] = ()
    PARAMS = ("threshold",)

    def __post_init__(self) -> None:
        object.__setattr__(self, "partition", _slices(self.partition))

    @property
    def spiking(self) -> bool:
        return True

    def infer_shape(self, in_shape, params):
        th = params["threshold"]
        _need(th.shape == tuple(in_shape or ()), f"threshold {th.shape} != input {in_shape}")
        return tuple(in_shape)


# --------------------------------------------------------------------------- neurons


@dataclass(frozen=True, slots=True, kw_only=True)
class _Neuron(Node):
    """Shared shape rule: every parameter has exactly the neuron population's shape.

    Quantised populations (integer parameters) also state their arithmetic; see
    :mod:`snnc.sim.integer` for the exact rules. ``decay_bits`` F: a decay ``d`` multiplies as
    ``(v*d + 2**(F-1)) >> F``; with ``decay_shift`` the decay is ``v - (v >> k)`` with ``k`` the
    decay parameter (``k < 0``: no leak). ``state_bits``/``current_bits``: the signed width of
    the membrane/current; with ``saturate`` the value is clipped to it after integration,
    otherwise the quantiser proved it cannot overflow.
    """

    decay_bits: int = 0
    decay_shift: bool = False
    state_bits: int = 0
    current_bits: int = 0
    saturate: bool = False
    #: after partitioning: ``(core, start, stop)`` slices of the flattened population
    partition: tuple[tuple[int, int, int], ...] = ()

    def infer_shape(self, in_shape, params):
        shapes = {k: params[k].shape for k in self.PARAMS}
        pop = next(iter(shapes.values()))
        bad = {k: s for k, s in shapes.items() if s != pop}
        _need(not bad, f"parameters disagree on the population shape: {shapes}")
        _need(
            in_shape is None or tuple(in_shape) == pop,
            f"population of shape {pop} gets input of shape {in_shape}",
        )
        return pop

    @property
    def stateful(self) -> bool:
        return True

    def __post_init__(self) -> None:
        self._check_quant()

    def _check_quant(self) -> None:
        object.__setattr__(self, "partition", _slices(self.partition))
        _need(
            0 <= self.decay_bits <= 24
            and 0 <= self.state_bits <= 62
            and 0 <= self.current_bits <= 62,
            f"{type(self).__name__}: decay_bits/state_bits/current_bits out of range",
        )

    @property
    def quantized(self) -> bool:
        return self.state_bits > 0


@dataclass(frozen=True, slots=True, kw_only=True)
class _Spiking(_Neuron):
    reset: ResetMode = ResetMode.TO_VALUE
    timing: ResetTiming = ResetTiming.IMMEDIATE
    strict: bool = True

    def __post_init__(self) -> None:
        _Neuron._check_quant(self)
        object.__setattr__(self, "reset", ResetMode(self.reset))
        object.__setattr__(self, "timing", ResetTiming(self.timing))
        if self.timing is ResetTiming.GATED:
            _need(self.reset is ResetMode.SUBTRACT, "timing 'gated' needs reset 'subtract'")

    @property
    def spiking(self) -> bool:
        return True


@dataclass(frozen=True, slots=True, kw_only=True)
class LI(_Neuron):
    """Leaky integrator, output is the membrane: ``v[t] = decay*v[t-1] + gain*x[t] + bias``."""

    PARAMS = ("decay", "gain", "bias")


@dataclass(frozen=True, slots=True, kw_only=True)
class CubaLI(_Neuron):
    """Current-based leaky integrator, output is the membrane.

    ``i[t] = decay_i*i[t-1] + gain_i*x[t]``; ``v[t] = decay*v[t-1] + gain*i[t] + bias``.
    """

    PARAMS = ("decay_i", "gain_i", "decay", "gain", "bias")


@dataclass(frozen=True, slots=True, kw_only=True)
class LIF(_Spiking):
    """Leaky integrate-and-fire, output is spikes.

    ``v = decay*v[t-1] + gain*x[t] + bias``; then, by ``timing`` (see ResetTiming),
    ``s[t] = v > threshold`` (``>=`` unless strict) and the ``reset``:
    ``v - threshold`` (SUBTRACT), ``reset_value`` (TO_VALUE) or nothing (NONE).
    """

    PARAMS = ("decay", "gain", "bias", "threshold", "reset_value")


@dataclass(frozen=True, slots=True, kw_only=True)
class IF(_Spiking):
    """Integrate-and-fire: LIF without leak, ``v = v[t-1] + gain*x[t] + bias``."""

    PARAMS = ("gain", "bias", "threshold", "reset_value")


@dataclass(frozen=True, slots=True, kw_only=True)
class CubaLIF(_Spiking):
    """Current-based LIF: ``i[t] = decay_i*i[t-1] + gain_i*x[t]``, then LIF driven by ``i[t]``.

    ``v = decay*v[t-1] + gain*i[t] + bias``; fire and reset as LIF. The reset touches ``v`` only.
    """

    PARAMS = ("decay_i", "gain_i", "decay", "gain", "bias", "threshold", "reset_value")


NODE_TYPES: dict[str, type[Node]] = {
    cls.__name__: cls
    for cls in (
        Input, Output, Affine, Linear, Scale, Conv1d, Conv2d, SumPool2d, AvgPool2d, Flatten,
        Delay, Threshold, LI, CubaLI, LIF, IF, CubaLIF,
    )
}  # fmt: skip

NEURON_TYPES = (LI, CubaLI, LIF, IF, CubaLIF)

__all__ = [
    "Shape", "ResetMode", "ResetTiming", "Node", "NODE_TYPES", "NEURON_TYPES",
    *NODE_TYPES,
]  # fmt: skip
