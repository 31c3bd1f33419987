"""Loihi number formats: each parameter's encoding round-trips exactly where it can, reports the
error it makes where it cannot, and refuses what Loihi cannot hold, saying why."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snnc.backends.loihi import formats as F
from snnc.errors import BackendError
from snnc.ir import nodes as N

SETTINGS = settings(max_examples=80, deadline=None)
LOIHI1_BITS = (0, 1, 2, 3, 4, 5, 6, 8)


# ------------------------------------------------------------------------------------ weights


@st.composite
def weight_blocks(draw):
    bits = draw(st.integers(1, 8))
    lo = -(1 << (bits - 1)) if draw(st.booleans()) else 0
    hi = (1 << (bits - 1)) - 1 if lo < 0 else (1 << bits) - 1
    q = draw(st.lists(st.integers(lo, hi).filter(lambda v: v != 0), min_size=1, max_size=30))
    return np.asarray(q, np.int64) << draw(st.integers(0, 6))


@SETTINGS
@given(weight_blocks(), st.integers(-12, 12))
def test_stored_weight_times_exponent_is_the_ir_weight_times_the_scale(m, k) -> None:
    f = F.weight_format(m, LOIHI1_BITS, "x")
    wgt = f.wgt(m)
    # a multiple of the format's step, within -256..255: Lava's truncation leaves it unchanged
    assert np.all(wgt % (1 << f.shift) == 0) and wgt.min() >= -256 and wgt.max() <= 255
    assert f.is_mixed == bool(m.min() < 0) and f.wgt_bits != 7
    lo, hi = f.k_range()
    if lo <= k <= hi:
        e = f.wgt_exp(k)
        assert F.WGT_EXP_MIN <= e <= F.WGT_EXP_MAX
        a = wgt << e if e >= 0 else wgt >> -e  # exact: no bit is floored away
        assert np.array_equal(a, m << k if k >= 0 else m >> -k)
        assert np.array_equal(a * 2.0**-k, m.astype(float))


def test_weight_format_picks_the_narrowest_allowed_width() -> None:
    assert F.weight_format(np.array([-3, 2]), LOIHI1_BITS, "x") == F.WeightFormat(3, True, 0)
    assert F.weight_format(np.array([7, 1]), LOIHI1_BITS, "x") == F.WeightFormat(3, False, 0)
    # quantize's frac-bits shift is taken out: 4-bit weights << 4
    assert F.weight_format(np.array([-7, 5]) << 4, LOIHI1_BITS, "x") == F.WeightFormat(4, True, 4)
    # 7-bit weights take Loihi 1's 8-bit format; Loihi 2 (estimate) has 7
    assert F.weight_format(np.array([-64, 63]), LOIHI1_BITS, "x").wgt_bits == 8
    assert F.weight_format(np.array([-64, 63]), (1, 2, 3, 4, 5, 6, 7, 8), "x").wgt_bits == 7
    # 8-bit mixed: Wgt = 2q, wgtExp = -1 at K = 0 (the MNIST layers)
    f = F.weight_format(np.array([-127, 127]), LOIHI1_BITS, "x")
    assert (f.shift, f.wgt_exp(0), f.wgt(np.array([-127, 127])).tolist()) == (1, -1, [-254, 254])


def test_weights_beyond_eight_bits_and_a_sign_are_refused_with_the_range() -> None:
    with pytest.raises(BackendError, match=r"layer 'p': synapse weights -300\.\.5 .*weight-bits"):
        F.weight_format(np.array([-300, 5]), LOIHI1_BITS, "layer 'p'")


# ------------------------------------------------------------------------------------ decays


def _lif(**kw) -> N.LIF:
    return N.LIF(decay_bits=kw.get("bits", 12), decay_shift=kw.get("shift", False), state_bits=16)


def test_twelve_bit_multipliers_are_exact_and_full_decay_of_v_is_not() -> None:
    d = np.arange(0, 4097)
    num, den = F.decay_factor(_lif(), d)
    dv, real = F.encode_decay_v(num, den)
    assert np.array_equal(dv[1:], 4096 - d[1:])  # decayV = 4096 - d for d >= 1
    assert np.array_equal(real[1:], d[1:] / 4096)
    assert dv[0] == 4095 and real[0] == 1 / 4096  # d = 0 keeps |v| >> 12: error 1/4096
    err = F.errors_of("l", "decayV", num / den, real, "of the factor")
    assert (err.max_abs, err.max_rel) == (1 / 4096, 1.0)


def test_u_forgets_every_step_with_decay_u_4095_under_lavas_plus_one() -> None:
    du, real = F.encode_decay_u(np.zeros(1, np.int64), np.ones(1, np.int64))
    assert F.DU_OFFSET == 1 and du.tolist() == [4095] and real.tolist() == [0.0]
    # a CubaLIF current decay d/4096 is decayU = 4095 - d for d >= 1 (d = 4096: no leak, -1,
    # which a 12-bit field cannot hold: 0 with error 1/4096)
    d = np.array([1, 2048, 3686, 4095, 4096])
    du, real = F.encode_decay_u(*F.decay_factor(_lif(), d))
    assert du.tolist() == [4094, 2047, 409, 0, 0]
    assert np.allclose(real, [1 / 4096, 0.5, 3686 / 4096, 4095 / 4096, 4095 / 4096])


@SETTINGS
@given(st.integers(13, 20), st.integers(0, 2**20))
def test_finer_multipliers_round_to_the_nearest_12_bit_decay(bits: int, d: int) -> None:
    d = min(d, 1 << bits)
    num, den = F.decay_factor(_lif(bits=bits), np.array([d]))
    dv, real = F.encode_decay_v(num, den)
    err = abs(float(real[0]) - d / 2**bits)
    # below 1/4096 only 1/4096 is left (decayV 4095: v never decays fully)
    assert err <= 0.5 / 4096 + 1e-15 or (d < 2 ** (bits - 12) and dv[0] == 4095)


def test_shift_decays_are_exact_up_to_twelve_bits() -> None:
    k = np.array([-1, 0, 1, 4, 12, 14])
    num, den = F.decay_factor(_lif(shift=True), k)
    dv, real = F.encode_decay_v(num, den)
    assert dv.tolist() == [0, 4095, 2048, 256, 1, 0]
    assert real.tolist()[:5] == [1.0, 1 / 4096, 0.5, 15 / 16, 4095 / 4096]
    assert abs(real[5] - (1 - 2.0**-14)) == pytest.approx(2.0**-14)


# ------------------------------------------------------------------------------------ threshold


@SETTINGS
@given(st.integers(1, 100_000), st.booleans(), st.integers(0, 6))
def test_threshold_fires_exactly_as_the_ir_on_whole_ir_units(theta, strict, k) -> None:
    vth, err = F.encode_threshold(np.array([theta]), strict, k)
    if vth[0] > F.VTH_MAX:
        return
    assert err[0] == 0
    u = 1 << (k + 6)
    v = np.arange(theta - 5, theta + 6)
    loihi = v * u > 64 * int(vth[0])
    ir = v > theta if strict else v >= theta
    assert np.array_equal(loihi, ir)


def test_threshold_at_k0_is_theta_or_theta_minus_one_and_the_middle_above() -> None:
    assert F.encode_threshold(np.array([316]), True, 0)[0].tolist() == [316]
    assert F.encode_threshold(np.array([316]), False, 0)[0].tolist() == [315]
    # K = 1: the middle between the last silent and the first firing IR unit
    assert F.encode_threshold(np.array([316]), True, 1)[0].tolist() == [633]


def test_threshold_below_the_grid_reports_its_error_in_ir_units() -> None:
    # K = -2: U = 16, one vth step is 4 IR units; 317 cannot be a switching point
    vth, err = F.encode_threshold(np.array([316, 319]), True, -2)
    assert vth.tolist() == [79, 79]
    assert err.tolist() == [0.0, 3.0]  # fires above 316 instead of above 319


# ------------------------------------------------------------------------------------ bias


@SETTINGS
@given(st.integers(-(4095 << 7), 4095 << 7), st.integers(-6, 4))
def test_bias_is_exact_when_representable_else_nearest(b_loihi: int, k: int) -> None:
    e = k + 6
    b = int(b_loihi / 2**e)  # toward zero: an IR bias whose Loihi value is at most 4095 << 7
    mant, exp, real = F.encode_bias(np.array([b]), k)
    assert abs(int(mant[0])) <= 4095 and 0 <= int(exp[0]) <= 7
    assert int(mant[0]) << int(exp[0]) == pytest.approx(real[0] * 2**e)
    step = 2.0 ** int(exp[0]) / 2**e  # one mantissa step in IR units
    assert abs(real[0] - b) <= step / 2
    exact = any((b << e) % (1 << x) == 0 and abs((b << e) >> x) <= 4095 for x in range(8))
    assert (real[0] == b) == exact


def test_bias_picks_the_smallest_exact_exponent_and_refuses_beyond_4095_shl_7() -> None:
    mant, exp, _ = F.encode_bias(np.array([0, 41, -41, 100, 8190]), 0)
    assert list(zip(mant.tolist(), exp.tolist(), strict=True)) == [
        (0, 0), (2624, 0), (-2624, 0), (3200, 1), (4095, 7)
    ]  # fmt: skip
    with pytest.raises(ValueError, match="4095 << 7"):
        F.encode_bias(np.array([8191]), 0)


# ------------------------------------------------------------------------------------ scale


MIXED8 = F.WeightFormat(8, True, 0)


def _problem(theta=316, bias=(0,), u=40_000.0, v=2.0**17, fmt=MIXED8):
    return F.ScaleProblem("layer 'l'", np.array([theta]), True, np.array(bias), (fmt,), u, v)


def test_scale_prefers_k0_where_everything_is_exact() -> None:
    assert F.choose_scale(_problem()) == 0
    # a 16-bit membrane leaves room above 0, but 0 is preferred (netx's scale)
    assert F.choose_scale(_problem(v=2.0**15)) == 0


def test_scale_goes_below_zero_for_large_ranges_and_thresholds() -> None:
    # a 20-bit membrane needs K <= -2; frac-bits 4 (tz 4) keeps the weights exact down to -4
    p = _problem(theta=4000, v=2.0**19, u=2.0**19, fmt=F.WeightFormat(4, True, 4))
    assert F.choose_scale(p) == -2
    # a threshold beyond 131071 at K = 0 takes the largest K that holds it
    assert F.choose_scale(_problem(theta=400_000, fmt=F.WeightFormat(4, True, 4), v=None)) == -2


def test_no_feasible_scale_is_refused_naming_the_conflict() -> None:
    with pytest.raises(BackendError, match=r"layer 'l': no Loihi scale .*vth outside 1\.\.131071"):
        F.choose_scale(_problem(theta=10_000_000, v=None))
    with pytest.raises(BackendError, match="wrap u's 24 bits"):
        F.choose_scale(_problem(u=2.0**30))
