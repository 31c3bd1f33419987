"""Loihi number formats: how the quantised IR's integers become Loihi 1 register values.

The quantised IR (:mod:`snnc.sim.integer`) computes each population in integer *IR units*. A
Loihi compartment computes (REFERENCE §2; lava-nc 0.10.0's bit-accurate models, pinned by the
golden files in ``tests/fixtures/loihi``)::

    a  = (sum of Wgt over the step's spikes) * 2**wgtExp          # seen one step later
    u  = sign(u)*((|u|*(4096 - (decayU + 1))) >> 12) + (a << 6)   # wraps at 24 bits
    v  = sign(v)*((|v|*(4096 - decayV)) >> 12) + u + (bias << biasExp)   # clipped to 24 bits
    spike = v > vth << 6;  then v = 0

Scale
    Each population gets one exponent ``K``: one IR unit of membrane (and of current) is
    ``U = 2**(K + 6)`` Loihi units, i.e. a synapse of IR weight ``m`` must add ``m * 2**K`` to
    the dendritic sum ``a``.

Weights (per population and (source, delay), one synapse format)
    The IR weights ``m`` of the block share ``tz`` trailing zero bits (``m = q << tz``;
    quantize shifts its weights left by frac-bits). ``isMixed`` is 1 when some ``q < 0``;
    ``wgtBits`` is the narrowest width the target allows that holds ``q``
    (``-2**(b-1) .. 2**(b-1)-1`` mixed, ``0 .. 2**b - 1`` excitatory; 7-bit IR weights take
    the 8-bit format on Loihi 1). The stored weight is ``Wgt = q << s`` with
    ``s = 8 - wgtBits + isMixed`` (a multiple of ``2**s`` within -256..255, so Loihi's
    truncation leaves it unchanged) and ``wgtExp = K + tz - s`` (-8..7), so that
    ``Wgt * 2**wgtExp = m * 2**K``. ``K + tz >= 0`` is required: then every synapse adds an
    integer and flooring the scaled sum (Lava) or each synapse (nengo-loihi) is exact.
    Weights wider than 8 bits plus sign (e.g. sums of weights behind a SumPool) are refused.

Threshold
    Loihi fires on ``v > 64*vth``. The IR fires on ``v_IR > θ`` (strict) or ``v_IR >= θ``;
    with ``θ' = θ + 1`` (strict) or ``θ`` (not strict) it fires on ``v_IR >= θ'``. On the IR
    grid (``v = v_IR * U``) every ``vth`` with ``(θ'-1)*U <= 64*vth <= θ'*U - 1`` is exact;
    snnc takes the floor of the middle, ``vth = floor((θ' - 1/2) * U / 64)``: at ``K = 0`` that
    is ``θ`` (strict) or ``θ - 1`` (``>=``); off the grid (a leaky membrane carries the
    fraction bits Loihi's decay keeps) the middle matches the IR's rounding to the nearest
    unit best. ``vth`` must be 1..131071. The error reported is the distance, in IR units,
    from the realised switching point to the exact interval.

Bias
    The IR bias (the neuron's plus the Affine/Conv biases reaching it) becomes
    ``bias << biasExp`` with ``|bias| <= 4095`` and ``biasExp`` 0..7, per compartment: the
    smallest exponent that is exact, else the nearest representable value (error reported);
    beyond ``4095 << 7`` it is refused.

Decays
    A multiplier ``d/2**F`` (or a shift decay ``1 - 2**-k``) keeps the fraction ``f`` of the
    state each step. ``decayV = rint(4096*(1 - f))`` (0..4095; IF: 0) and
    ``decayU = rint(4096*(1 - f)) - DU_OFFSET`` for CubaLIF's current. A population without a
    current (LIF, IF, Threshold) needs ``u`` to forget each step: ``f = 0``, ``decayU = 4095``
    (exact because of Lava's ``+1``; :data:`DU_OFFSET` is the one place that rule lives —
    without it 4095 would keep ``|u| >> 12`` and the error would be reported). ``f = 0`` for
    ``v`` (a Threshold population) is 4095 = ``|v| >> 12`` kept, reported. The errors are of
    the factor ``f``. Loihi rounds each decayed state toward zero at ``1/U`` of an IR unit;
    the IR rounds to the nearest IR unit: a semantic difference, reported as a warning.

Choice of K
    The feasible ``K`` keep every ``wgtExp`` in -8..7 with ``K + tz >= 0``, every ``vth`` in
    1..131071, every bias within ``4095 << 7``, the current's bound ``|u| * U <= 2**23`` (u
    wraps) and, unless the IR population saturates, the membrane's bound
    ``2**(state_bits-1) * U <= 2**23`` (v clips; at the very bottom of that range Loihi's clip
    at ``-(2**23-1)`` differs by one Loihi unit). Among them, the fewest inexact thresholds,
    then the smallest bias error, then ``K`` nearest 0 (larger first): at ``K = 0`` the Loihi
    weights are the IR weights, ``vth`` is the IR threshold and the bias is ``b << 6``, as
    lava-dl's netx files have them. No feasible ``K`` is a refusal naming the conflict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from snnc.errors import BackendError

DECAY_BITS = 12
DECAY_UNITY = 1 << DECAY_BITS
#: Lava decays u by ``4096 - (decayU + 1)`` (lava-nc 0.10.0 ``ds_offset``; the golden files in
#: tests/fixtures/loihi fail without it). The one place the rule lives: set it to 0 for
#: hardware that decays u by ``4096 - decayU``, and the lowering reports the error it causes.
DU_OFFSET = 1
DECAY_MAX = DECAY_UNITY - 1
VTH_SHIFT = 6  #: the threshold is ``vth << 6``, the input ``a << 6``
VTH_MIN, VTH_MAX = 1, (1 << 17) - 1
BIAS_MANT_MAX, BIAS_EXP_MAX = 4095, 7
WGT_EXP_MIN, WGT_EXP_MAX = -8, 7
STATE_LIMIT = 1 << 23  #: |u| and |v| stay below (v clips at 2**23 - 1, u wraps)
MAX_WGT_BITS = 8
K_RANGE = range(-24, 25)


@dataclass(frozen=True)
class ParamError:
    """The representation error of one parameter of one layer (in IR units, or of the decay
    factor), over its neurons; relative to the ideal value (100% where the ideal is 0)."""

    layer: str
    parameter: str
    max_abs: float
    max_rel: float
    unit: str = "IR units"

    def line(self) -> str:
        return (f"{self.layer:<14} {self.parameter:<10} max abs {self.max_abs:.4g} {self.unit}, "
                f"max rel {self.max_rel:.3%}")  # fmt: skip


def errors_of(layer: str, parameter: str, ideal, realised, unit: str = "IR units") -> ParamError:
    ideal = np.asarray(ideal, np.float64).reshape(-1)
    err = np.abs(np.asarray(realised, np.float64).reshape(-1) - ideal)
    rel = np.where(err == 0, 0.0, err / np.maximum(np.abs(ideal), np.maximum(err, 1e-300)))
    return ParamError(layer, parameter, float(err.max(initial=0.0)), float(rel.max(initial=0.0)),
                      unit)  # fmt: skip


# ------------------------------------------------------------------------------------- weights


def trailing_zeros(m: np.ndarray) -> int:
    """The number of trailing zero bits every nonzero value of ``m`` shares (0 for none)."""
    acc = int(np.bitwise_or.reduce(np.abs(np.asarray(m, np.int64)).reshape(-1), initial=0))
    return (acc & -acc).bit_length() - 1 if acc else 0


@dataclass(frozen=True)
class WeightFormat:
    """One synapse format: ``Wgt = (m >> tz) << shift``, ``wgtExp = K + tz - shift``."""

    wgt_bits: int
    is_mixed: bool
    tz: int

    @property
    def shift(self) -> int:
        return MAX_WGT_BITS - self.wgt_bits + int(self.is_mixed)

    def wgt(self, m: np.ndarray) -> np.ndarray:
        return (np.asarray(m, np.int64) >> self.tz) << self.shift

    def wgt_exp(self, k: int) -> int:
        return k + self.tz - self.shift

    def k_range(self) -> tuple[int, int]:
        """The scales K this format allows: wgtExp in -8..7 and every synapse an integer."""
        return max(WGT_EXP_MIN + self.shift - self.tz, -self.tz), WGT_EXP_MAX + self.shift - self.tz


def weight_format(m: np.ndarray, allowed: Sequence[int], where: str) -> WeightFormat:
    """The synapse format of the IR weights ``m`` (see the module docstring)."""
    m = np.asarray(m, np.int64).reshape(-1)
    tz = trailing_zeros(m)
    q = m >> tz
    lo, hi = int(q.min(initial=0)), int(q.max(initial=0))
    mixed = lo < 0
    for b in sorted(b for b in allowed if 1 <= b <= MAX_WGT_BITS):
        if (mixed and -(1 << (b - 1)) <= lo and hi < 1 << (b - 1)) or (not mixed and hi < 1 << b):
            return WeightFormat(b, mixed, tz)
    widths = ", ".join(str(b) for b in allowed if b >= 1)
    raise BackendError(
        f"{where}: synapse weights {lo}..{hi} (x 2**{tz}) need more than the {widths}-bit "
        "formats Loihi stores (8 bits and a sign at most); quantize with weight-bits<=8 (a "
        "SumPool after a weight layer adds weights up: pool before the weights instead)"
    )


# ------------------------------------------------------------------------------------- decays


def decay_factor(node, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The fraction kept per step as ``(numerator, denominator)`` arrays of the IR decay ``d``."""
    d = np.asarray(d, np.int64)
    if node.decay_shift:
        k = np.clip(d, 0, 40)
        den = np.left_shift(np.int64(1), k)
        return np.where(d < 0, 1, den - 1), np.where(d < 0, 1, den)
    return d, np.full(d.shape, 1 << node.decay_bits, np.int64)


def _decay(num, den, offset: int) -> tuple[np.ndarray, np.ndarray]:
    ideal = np.asarray(num, np.float64) / np.asarray(den, np.float64)
    code = np.rint(DECAY_UNITY * (1.0 - ideal)) - offset
    code = np.clip(code, 0, DECAY_MAX).astype(np.int64)
    return code, (DECAY_UNITY - code - offset) / DECAY_UNITY


def encode_decay_v(num, den) -> tuple[np.ndarray, np.ndarray]:
    """``decayV`` of the kept fraction ``num/den`` and the fraction it realises."""
    return _decay(num, den, 0)


def encode_decay_u(num, den) -> tuple[np.ndarray, np.ndarray]:
    """``decayU`` of the kept fraction ``num/den`` and the fraction it realises."""
    return _decay(num, den, DU_OFFSET)


# ------------------------------------------------------------------------------------- threshold


def _scaled(x: np.ndarray, e: int) -> np.ndarray:
    """``floor(x * 2**e)`` for integers ``x`` (exact)."""
    x = np.asarray(x, np.int64)
    return x << e if e >= 0 else x >> -e


def encode_threshold(theta: np.ndarray, strict: bool, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``vth`` per neuron at scale ``k`` and its error in IR units (0 when exact on the grid)."""
    e = k + VTH_SHIFT
    t1 = np.asarray(theta, np.int64) + (1 if strict else 0)  # fires on v_IR >= t1
    vth = _scaled(2 * t1 - 1, e - 7)  # floor((t1 - 1/2) * 2**e / 64)
    u = 2.0**e
    point = vth * 64.0 / u  # the realised switching point in IR units
    lo, hi = t1 - 1.0, t1 - 1.0 / u
    err = np.maximum(lo - point, 0.0) + np.maximum(point - hi, 0.0)
    return vth, err


# ------------------------------------------------------------------------------------- bias


def encode_bias(b: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(bias, biasExp, realised IR bias)`` per neuron at scale ``k``; raises ValueError when a
    bias exceeds ``4095 << 7`` Loihi units."""
    b = np.asarray(b, np.int64).reshape(-1)
    e = k + VTH_SHIFT
    target = b.astype(np.float64) * 2.0**e
    mant = np.zeros(b.shape, np.int64)
    exp = np.full(b.shape, -1, np.int64)
    for x in range(BIAS_EXP_MAX + 1):  # the smallest exact exponent
        m = target / 2.0**x
        ok = (exp < 0) & (m == np.rint(m)) & (np.abs(m) <= BIAS_MANT_MAX)
        mant, exp = np.where(ok, m, mant).astype(np.int64), np.where(ok, x, exp)
    for x in range(BIAS_EXP_MAX + 1):  # else the smallest exponent that holds it, rounded
        m = np.rint(target / 2.0**x)
        ok = (exp < 0) & (np.abs(m) <= BIAS_MANT_MAX)
        mant, exp = np.where(ok, m, mant).astype(np.int64), np.where(ok, x, exp)
    if (exp < 0).any():
        raise ValueError(f"{int(np.abs(b).max())} IR units = {np.abs(target).max():.0f} Loihi "
                         f"units > 4095 << 7")  # fmt: skip
    mant = np.where(b == 0, 0, mant)
    exp = np.where(b == 0, 0, exp)
    return mant, exp, mant * 2.0**exp / 2.0**e


# ------------------------------------------------------------------------------------- scale


@dataclass(frozen=True)
class ScaleProblem:
    """What one population asks of its scale K."""

    where: str
    theta: np.ndarray | None  #: IR thresholds (None: no threshold)
    strict: bool
    bias: np.ndarray  #: IR biases per neuron
    formats: tuple[WeightFormat, ...]
    u_bound: float  #: max |u| in IR units (u wraps at 24 bits: hard)
    v_bound: float | None  #: max |v| in IR units when it is a proof (hard), else None


def _score(p: ScaleProblem, k: int):
    """(inexact thresholds, bias error, distance from K = 0, -K), or a reason it is infeasible."""
    u = 2.0 ** (k + VTH_SHIFT)
    for f in p.formats:
        lo, hi = f.k_range()
        if not lo <= k <= hi:
            return "a weight exponent outside -8..7 or weights below one unit"
    if p.u_bound * u > STATE_LIMIT:
        return "the input current would wrap u's 24 bits"
    if p.v_bound is not None and p.v_bound * u > STATE_LIMIT:
        return "the membrane range would exceed v's 24 bits"
    inexact = 0
    if p.theta is not None:
        vth, err = encode_threshold(p.theta, p.strict, k)
        if vth.size and (int(vth.min()) < VTH_MIN or int(vth.max()) > VTH_MAX):
            return "vth outside 1..131071"
        inexact = int(np.count_nonzero(err))
    try:
        _, _, real = encode_bias(p.bias, k)
    except ValueError:
        return "a bias beyond 4095 << 7"
    berr = float(np.abs(real - p.bias).max(initial=0.0))
    return (inexact, berr, abs(k), -k)


def choose_scale(p: ScaleProblem) -> int:
    """The scale K of a population (see the module docstring); BackendError when none fits."""
    scores, reasons = {}, {}
    for k in K_RANGE:
        s = _score(p, k)
        (reasons if isinstance(s, str) else scores)[k] = s
    if scores:
        return min(scores, key=lambda k: scores[k])
    th = "" if p.theta is None else f"thresholds {int(p.theta.min())}..{int(p.theta.max())}, "
    why = sorted({r for r in reasons.values()})
    raise BackendError(
        f"{p.where}: no Loihi scale represents it ({th}max |bias| "
        f"{int(np.abs(p.bias).max(initial=0))}, |input| up to {p.u_bound:.0f} IR units); every "
        f"scale 2**K gives one of: {'; '.join(why)}. Quantize with fewer weight bits or "
        "frac-bits, or a smaller threshold-to-weight ratio"
    )
