#!/usr/bin/env python3
"""Golden Loihi-1 fixtures from Intel's Lava (lava-nc 0.10.0), bit-accurate process models.

Run this INSIDE a Python 3.10 virtual environment that has lava-nc 0.10.0 (recipe in
tests/fixtures/loihi/README.md); the project itself never imports Lava:

    /work/lava310/bin/python tools/lava_fixtures.py --out tests/fixtures/loihi [--only a,b]

Every case is a spike source (Lava ``io.source.RingBuffer``) -> ``Dense`` -> ``LIF`` (optionally
repeated: -> ``Dense`` -> ``LIF`` ...), run with ``Loihi1SimCfg(select_tag="fixed_pt")`` so that
Lava picks ``PyDenseModelBitAcc`` and ``PyLifModelBitAcc`` (checked after compiling). The run is
one step at a time; after every step the LIF's ``u`` and ``v`` are read with ``Var.get()`` and
its spikes are taken from a sink ``io.sink.RingBuffer`` (which stores step t's spikes in column
t), so ``u[t]``, ``v[t]`` and ``s[t]`` are all of the same step t.

Lava's LIF takes ONE ``du``, ``dv`` and ``vth`` per process. A layer whose neurons have different
(du, dv, vth) is run as several LIF processes, one per distinct triple, each fed by its own
``Dense`` (the layer's weight rows for those neurons, same num_weight_bits / weight_exp /
sign_mode) from the same presynaptic port; the results are put back in neuron order. Neurons of
one layer never interact, so this is exactly one layer with per-neuron du, dv and vth. Only the
last layer of a case may be split this way.

Each case is also computed by ``reference()`` below, a plain-integer statement of the semantics
(written from Lava's source, see the README); the script asserts that Lava and it agree on every
u, v and s, that Lava's truncated weights (read back from the Dense after the run) equal the
reference's, and that the property each case claims (a wrap, a clip, v landing exactly on the
threshold, ...) really happened.

Output: ``<out>/<case>.npz`` (np.savez_compressed) with, per layer k = 0, 1, ...:
``weights_k`` int64 (n_out, n_in) as given to Dense, ``num_weight_bits_k``, ``weight_exp_k``,
``sign_mode_k`` 0-d int64 (Lava SignMode values: 0 NULL, 1 MIXED, 2 EXCITATORY, 3 INHIBITORY),
``du_k``, ``dv_k``, ``vth_k``, ``bias_mant_k``, ``bias_exp_k`` int64 (n_out,), ``u_k``, ``v_k``
int64 (T, n_out), ``s_k`` int8 (T, n_out); plus ``s_in`` int8 (T, n_in) time-major, ``layers``
0-d int64 and ``description`` 0-d str. A file whose arrays already equal the new ones is left
untouched, so re-running the script leaves the committed files byte-identical.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# lava.utils.weightutils.SignMode (an Enum; checked against Lava in check_lava_enum()).
NULL, MIXED, EXCITATORY, INHIBITORY = 0, 1, 2, 3

UV_MAX = 2**23  # u and v are 24-bit
V_LIMIT = UV_MAX - 1  # v is clipped to +-(2**23 - 1)


# ----------------------------------------------------------------------------- case description
@dataclass
class Layer:
    weights: np.ndarray  # int64 (n_out, n_in), as given to Lava's Dense
    num_weight_bits: int
    weight_exp: int
    sign_mode: int
    du: np.ndarray  # int64 (n_out,)
    dv: np.ndarray
    vth: np.ndarray
    bias_mant: np.ndarray
    bias_exp: np.ndarray


def layer(
    weights,
    *,
    sign_mode: int,
    du,
    dv,
    vth,
    num_weight_bits: int = 8,
    weight_exp: int = 0,
    bias_mant=0,
    bias_exp=0,
) -> Layer:
    w = np.asarray(weights, dtype=np.int64)
    assert w.ndim == 2
    n = w.shape[0]

    def per_neuron(x) -> np.ndarray:
        return np.broadcast_to(np.asarray(x, dtype=np.int64), (n,)).copy()

    return Layer(
        weights=w,
        num_weight_bits=int(num_weight_bits),
        weight_exp=int(weight_exp),
        sign_mode=int(sign_mode),
        du=per_neuron(du),
        dv=per_neuron(dv),
        vth=per_neuron(vth),
        bias_mant=per_neuron(bias_mant),
        bias_exp=per_neuron(bias_exp),
    )


@dataclass
class Case:
    name: str
    description: str
    s_in: np.ndarray  # int8 (T, n_in)
    layers: list[Layer]
    check: Callable[[list[dict]], None]


def spikes(T: int, n: int, p: float, seed: int) -> np.ndarray:
    """A fixed pseudo-random binary train, time-major (T, n)."""
    return (np.random.default_rng(seed).random((T, n)) < p).astype(np.int8)


# ----------------------------------------------------------------------------- the semantics
def effective_weights(L: Layer) -> np.ndarray:
    """Lava's PyDenseModelBitAcc: clip_weights(num_bits=8) then truncate_weights."""
    mixed = int(L.sign_mode == MIXED)
    shift = 8 - L.num_weight_bits + mixed
    w = L.weights.copy()
    if L.sign_mode == INHIBITORY:  # magnitudes, truncated toward zero
        m = np.clip(-w, 0, 255)
        return -((m >> shift) << shift)
    w = np.clip(w, -256 if mixed else 0, 255)
    return (w >> shift) << shift  # arithmetic shift: negatives round toward -inf


def _decay(x: int, d: int) -> int:
    """sign(x) * ((|x| * (4096 - d)) >> 12): the magnitude is truncated, i.e. toward zero."""
    m = (abs(x) * (4096 - d)) >> 12
    return m if x >= 0 else -m


def reference(s_in: np.ndarray, layers: list[Layer]) -> list[dict]:
    """Plain-integer Loihi-1 semantics as Lava 0.10.0's bit-accurate models compute them.

    Per layer and step t (0-based; the input of a layer is s_in or the previous layer's s):
      a[t] = 0 for t == 0, else (W_eff @ x[t-1]) << weight_exp   (>> -weight_exp, floor, if < 0)
      u[t] = wrap(decay(u[t-1], du + 1) + (a[t] << 6))   wrap: > 2**23 -> -2**24, <= -2**23 -> +2**24
      v'   = clip(decay(v[t-1], dv) + u[t] + (bias_mant << bias_exp), -(2**23-1), 2**23-1)
      s[t] = v' > (vth << 6);  v[t] = 0 if s[t] else v'
    Also returns the internal a, u before wrapping and v before clipping/reset, for the checks.
    """
    out = []
    x = s_in.astype(np.int64)
    for L in layers:
        T = x.shape[0]
        n = L.weights.shape[0]
        w = effective_weights(L)
        bias = [int(m) << int(e) for m, e in zip(L.bias_mant, L.bias_exp, strict=True)]
        u = [0] * n
        v = [0] * n
        rec = {k: np.zeros((T, n), np.int64) for k in ("a", "u", "u_raw", "v", "v_raw", "v_pre")}
        rec["s"] = np.zeros((T, n), np.int8)
        rec["w_eff"] = w
        for t in range(T):
            for i in range(n):
                acc = int(w[i] @ x[t - 1]) if t > 0 else 0
                a = acc << L.weight_exp if L.weight_exp >= 0 else acc >> -L.weight_exp
                u_raw = _decay(u[i], int(L.du[i]) + 1) + (a << 6)
                if u_raw > UV_MAX:
                    u[i] = u_raw - 2 * UV_MAX
                elif u_raw <= -UV_MAX:
                    u[i] = u_raw + 2 * UV_MAX
                else:
                    u[i] = u_raw
                v_raw = _decay(v[i], int(L.dv[i])) + u[i] + bias[i]
                v_pre = min(max(v_raw, -V_LIMIT), V_LIMIT)
                spike = v_pre > (int(L.vth[i]) << 6)
                v[i] = 0 if spike else v_pre
                rec["a"][t, i], rec["u_raw"][t, i], rec["u"][t, i] = a, u_raw, u[i]
                rec["v_raw"][t, i], rec["v_pre"][t, i], rec["v"][t, i] = v_raw, v_pre, v[i]
                rec["s"][t, i] = spike
        out.append(rec)
        x = rec["s"].astype(np.int64)
    return out


# ----------------------------------------------------------------------------- running Lava
def check_lava_enum() -> None:
    from lava.utils.weightutils import SignMode

    got = {m.name: m.value for m in SignMode}
    want = {"NULL": NULL, "MIXED": MIXED, "EXCITATORY": EXCITATORY, "INHIBITORY": INHIBITORY}
    assert got == want, f"Lava's SignMode changed: {got}"


def _groups(L: Layer) -> list[np.ndarray]:
    """Neuron indices per distinct (du, dv, vth), in order of first appearance."""
    keys = list(zip(L.du.tolist(), L.dv.tolist(), L.vth.tolist(), strict=True))
    firsts = list(dict.fromkeys(keys))
    return [np.array([i for i, k in enumerate(keys) if k == f]) for f in firsts]


def _as_int(a) -> np.ndarray:
    a = np.asarray(a)
    r = np.rint(a).astype(np.int64)
    assert np.array_equal(r, a), "Lava returned a non-integer value"
    return r


def run_lava(s_in: np.ndarray, layers: list[Layer]) -> list[dict]:
    """Run the case in Lava step by step; per layer: u, v (T, n) int64, s (T, n) int8, w_eff."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi1SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIF
    from lava.utils.weightutils import SignMode

    T = s_in.shape[0]
    src = Source(data=s_in.T.astype(np.int32))  # Lava's layout: (n_in, T)
    pre = src.s_out
    built = []  # per layer: [(idx, dense, lif, sink), ...]
    for k, L in enumerate(layers):
        groups = _groups(L)
        assert len(groups) == 1 or k == len(layers) - 1, "only the last layer may be split"
        parts = []
        for idx in groups:
            i0 = idx[0]
            dense = Dense(
                weights=L.weights[idx].copy(),
                weight_exp=L.weight_exp,
                num_weight_bits=L.num_weight_bits,
                sign_mode=SignMode(L.sign_mode),
            )
            lif = LIF(
                shape=(len(idx),),
                du=int(L.du[i0]),
                dv=int(L.dv[i0]),
                vth=int(L.vth[i0]),
                bias_mant=L.bias_mant[idx].copy(),
                bias_exp=L.bias_exp[idx].copy(),
            )
            sink = Sink(shape=(len(idx),), buffer=T)
            pre.connect(dense.s_in)
            dense.a_out.connect(lif.a_in)
            lif.s_out.connect(sink.a_in)
            parts.append((idx, dense, lif, sink))
        built.append(parts)
        pre = parts[0][2].s_out

    n_of = [L.weights.shape[0] for L in layers]
    u = [np.zeros((T, n), np.int64) for n in n_of]
    v = [np.zeros((T, n), np.int64) for n in n_of]
    cfg = Loihi1SimCfg(select_tag="fixed_pt")
    try:
        for t in range(T):
            src.run(condition=RunSteps(num_steps=1), run_cfg=cfg)
            for k, parts in enumerate(built):
                for idx, _, lif, _ in parts:
                    u[k][t, idx] = _as_int(lif.u.get())
                    v[k][t, idx] = _as_int(lif.v.get())
        out = []
        for k, parts in enumerate(built):
            s = np.zeros((T, n_of[k]), np.int8)
            w_eff = np.zeros_like(layers[k].weights)
            for idx, dense, lif, sink in parts:
                assert lif.model_class.__name__ == "PyLifModelBitAcc", lif.model_class
                assert dense.model_class.__name__ == "PyDenseModelBitAcc", dense.model_class
                s[:, idx] = _as_int(sink.data.get()).T
                w_eff[idx] = _as_int(dense.weights.get())  # truncated in the first run_spk
            out.append({"u": u[k], "v": v[k], "s": s, "w_eff": w_eff})
    finally:
        src.stop()
    return out


# ----------------------------------------------------------------------------- checks helpers
def _any(cond: np.ndarray, what: str) -> None:
    assert np.any(cond), f"expected to happen at least once: {what}"


def _first(mask: np.ndarray) -> int:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else -1


# ----------------------------------------------------------------------------- the cases
def case_mixed_8bit() -> Case:
    W = [
        [37, -64, 101, -3, 300, 12],
        [-90, 55, -1, 77, -20, 129],
        [5, 1, -128, 64, 33, -300],
        [255, -256, 17, -17, 99, -99],
        [-45, 80, -60, 45, 0, 71],
    ]
    L = layer(W, sign_mode=MIXED, num_weight_bits=8, du=1000, dv=300, vth=280)

    def check(r):
        w = r[0]["w_eff"]
        _any(np.asarray(W) % 2 != 0, "odd weights given")
        assert w[1, 2] == -2 and w[2, 1] == 0, "8-bit mixed drops the LSB, floor for negatives"
        assert w[0, 4] == 254 and w[2, 5] == -256, "clipped to [-256, 255] then truncated"
        _any(r[0]["u"] < 0, "negative u")
        assert (r[0]["s"].sum(0) > 0).sum() >= 2, "at least two neurons spike"

    return Case(
        "mixed_8bit",
        "mixed-sign 8-bit weights (odd values lose their LSB, 300/-300 clip), wexp 0, du 1000 dv 300",
        spikes(24, 6, 0.4, seed=1),
        [L],
        check,
    )


def case_weight_bits_6() -> Case:
    W = [
        [13, -13, 100, -7, 7],
        [250, -250, 60, -1, 33],
        [-90, 45, 19, -19, 127],
        [70, -3, -60, 20, 9],
    ]
    L = layer(W, sign_mode=MIXED, num_weight_bits=6, du=800, dv=500, vth=120)

    def check(r):
        w = r[0]["w_eff"]
        assert np.all(w % 8 == 0), "6-bit mixed: multiples of 2**3"
        assert w[0, 0] == 8 and w[0, 1] == -16 and w[0, 3] == -8 and w[0, 4] == 0
        assert w[1, 3] == -8, "-1 floors to -8"
        _any(np.asarray(W) % 8 != 0, "weights not multiples of the step")
        _any(r[0]["s"] == 1, "a spike")

    return Case(
        "weight_bits_6",
        "6-bit mixed-sign weights (truncation step 8, floor for negatives), wexp 0",
        spikes(24, 5, 0.45, seed=2),
        [L],
        check,
    )


def case_weight_bits_4() -> Case:
    W = [
        [15, 17, 31, 100, 255],
        [8, 16, 47, 200, 3],
        [255, 254, 33, 0, 79],
        [64, 65, 127, 128, 1],
    ]
    L = layer(W, sign_mode=EXCITATORY, num_weight_bits=4, du=600, dv=900, vth=900)

    def check(r):
        w = r[0]["w_eff"]
        assert np.all(w % 16 == 0), "4-bit excitatory: multiples of 2**4"
        assert w[0].tolist() == [0, 16, 16, 96, 240] and w[1, 0] == 0
        _any(r[0]["s"] == 1, "a spike")

    return Case(
        "weight_bits_4",
        "4-bit excitatory weights (truncation step 16: 15->0, 17->16, 255->240), wexp 0",
        spikes(24, 5, 0.45, seed=3),
        [L],
        check,
    )


def _weight_exp_case(wexp: int, W, vth: int, seed: int, p: float) -> Case:
    L = layer(W, sign_mode=MIXED, num_weight_bits=8, weight_exp=wexp, du=1200, dv=700, vth=vth)

    def check(r):
        acc = r[0]["w_eff"] @ spikes_in.T.astype(np.int64)  # (n, T): sums before the shift
        if wexp < 0:
            _any((acc < 0) & (acc % (1 << -wexp) != 0), "a negative sum that floors")
            _any((acc > 0) & (acc % (1 << -wexp) != 0), "a positive sum that truncates")
        else:
            assert np.array_equal(r[0]["a"][1:], (acc.T << wexp)[:-1])
        _any(r[0]["s"] == 1, "a spike")
        assert not np.all(r[0]["s"] == 1), "not spiking every step"

    spikes_in = spikes(24, 4, p, seed=seed)
    sign = "m" if wexp < 0 else "p"
    return Case(
        f"weight_exp_{sign}{abs(wexp)}",
        f"weight_exp {wexp} ({'>> floor' if wexp < 0 else '<<'}) on mixed 8-bit weights",
        spikes_in,
        [L],
        check,
    )


def case_weight_exp_m2() -> Case:
    W = [[-3, 5, -7, 2], [9, -11, 6, -1], [-2, -2, 13, 7], [30, -25, -5, 3]]
    return _weight_exp_case(-2, W, vth=2, seed=4, p=0.5)


def case_weight_exp_m5() -> Case:
    W = [[-100, 70, -33, 45], [127, -64, 90, -17], [-255, 200, 31, -9], [61, 61, -122, 5]]
    return _weight_exp_case(-5, W, vth=3, seed=5, p=0.5)


def case_weight_exp_p2() -> Case:
    W = [[-100, 70, -33, 45], [127, -64, 90, -17], [-255, 200, 31, -9], [61, 61, -122, 5]]
    return _weight_exp_case(2, W, vth=800, seed=6, p=0.5)


def case_weight_exp_p5() -> Case:
    W = [[-100, 70, -33, 45], [127, -64, 90, -17], [-255, 200, 31, -9], [61, 61, -122, 5]]
    return _weight_exp_case(5, W, vth=6000, seed=7, p=0.5)


def case_decays() -> Case:
    pairs = [(0, 0), (4095, 0), (0, 4095), (4095, 4095), (410, 2047), (2047, 410)]
    W, du, dv = [], [], []
    for d_u, d_v in pairs:
        W += [[120, 60, -30, 90], [-120, -60, 30, -90]]
        du += [d_u, d_u]
        dv += [d_v, d_v]
    L = layer(W, sign_mode=MIXED, num_weight_bits=8, du=du, dv=dv, vth=1500)

    def check(r):
        rec = r[0]
        u, v, a = rec["u"], rec["v"], rec["a"]
        du_, dv_ = L.du, L.dv
        for i in np.flatnonzero(du_ == 4095):
            assert np.array_equal(u[:, i], a[:, i] << 6), "du 4095: u keeps no memory"
        for i in np.flatnonzero(dv_ == 4095):
            kept = np.sign(v[:-1, i]) * (np.abs(v[:-1, i]) >> 12)
            assert np.array_equal(rec["v_pre"][1:, i] - u[1:, i], kept), "dv 4095 keeps |v|>>12"
            _any(kept != 0, "dv 4095: a nonzero |v| >> 12 carried over")
        for i in np.flatnonzero(dv_ == 0):
            keep = rec["v_pre"][1:, i] - u[1:, i]
            assert np.array_equal(keep, v[:-1, i]), "dv 0: v does not decay"
        for i in np.flatnonzero(du_ == 0):
            prev = u[:-1, i]
            _any(
                (np.abs(prev) >= 4096) & (u[1:, i] - (a[1:, i] << 6) != prev),
                "du 0 still decays u by 1/4096",
            )
        neg = (u[:-1] < 0) & ((np.abs(u[:-1]) * (4095 - du_)) % 4096 != 0) & (du_ < 4095)
        _any(neg, "a negative u whose decay rounds toward zero (not floor)")
        _any(rec["v"] < 0, "negative v")
        _any(rec["s"] == 1, "a spike")

    return Case(
        "decays",
        "per-neuron (du, dv) in (0,0) (4095,0) (0,4095) (4095,4095) (410,2047) (2047,410), "
        "positive and negative drive",
        spikes(24, 4, 0.4, seed=8),
        [L],
        check,
    )


def case_bias() -> Case:
    W = np.zeros((7, 3), np.int64)
    W[5] = [40, -20, 10]
    W[6] = [-60, 30, 25]
    mant = [500, -300, 4095, 1, 37, 250, -4096]
    exp_ = [3, 2, 7, 6, 5, 1, 4]
    L = layer(
        W,
        sign_mode=MIXED,
        num_weight_bits=8,
        du=2047,
        dv=410,
        vth=100,
        bias_mant=mant,
        bias_exp=exp_,
    )

    def check(r):
        s, v = r[0]["s"], r[0]["v"]
        only_bias = np.flatnonzero(~W.any(axis=1))
        assert s[:, only_bias].sum(0).max() >= 3, "a bias-only neuron spikes repeatedly"
        assert s[:, 3].sum() == 0 and v[-1, 3] > 0, "bias 1<<6: below threshold, charging"
        assert np.all(s[:, 2] == 1), "bias 4095<<7 exceeds vth<<6 every step"
        _any(v[:, 1] < 0, "negative bias")
        assert set(exp_) >= {1, 2, 3, 4, 5, 6, 7}

    return Case(
        "bias",
        "bias_mant << bias_exp for bias_exp 1..7, positive and negative, 5 of 7 neurons bias-only",
        spikes(20, 3, 0.4, seed=9),
        [L],
        check,
    )


def case_exact_threshold() -> Case:
    # vth 10 -> 640.  Neurons 0-2: bias only, du 4095, dv 0 (v integrates the bias).
    # Neurons 3-5: synaptic only, du = dv = 4095 (v = u = a << 6 on the step after an input).
    W = [[0, 0], [0, 0], [0, 0], [10, 0], [11, 0], [4, 6]]
    L = layer(
        W,
        sign_mode=EXCITATORY,
        num_weight_bits=8,
        du=[4095, 4095, 4095, 4095, 4095, 4095],
        dv=[0, 0, 0, 4095, 4095, 4095],
        vth=10,
        bias_mant=[160, 20, 161, 0, 0, 0],
        bias_exp=[0, 3, 0, 0, 0, 0],
    )
    s_in = np.zeros((16, 2), np.int8)
    s_in[[1, 6, 11], 0] = 1
    s_in[[1, 6, 12], 1] = 1

    def check(r):
        v, s = r[0]["v"], r[0]["s"]
        thr = 10 << 6
        for i in (0, 1, 5):
            _any((v[:, i] == thr) & (s[:, i] == 0), f"neuron {i}: v == vth<<6 with no spike")
        assert v[3, 0] == thr and s[3, 0] == 0 and s[4, 0] == 1, "bias 160: 640 holds, 800 fires"
        assert r[0]["v_pre"][3, 2] == 644 and s[3, 2] == 1, "bias 161: 644 > 640 fires"
        assert v[2, 3] == thr and s[2, 3] == 0 and s[2, 4] == 1, "a 10 holds, a 11 fires"

    return Case(
        "exact_threshold",
        "v lands exactly on vth<<6 (640) with no spike (spike is strict v > vth<<6), via bias "
        "and via synaptic input; one more unit fires",
        s_in,
        [L],
        check,
    )


def case_u_wrap() -> Case:
    # wexp 7: a = sum * 128, u gains a << 6 = sum * 2**13.  sum 1024 -> exactly 2**23.
    W = [
        [254, 254, 254, 254, 8],  # du 4095: u = +2**23 exactly (kept)
        [-256, -256, -256, -256, 0],  # du 4095: u = -2**23, wraps to +2**23
        [254, 254, 254, 254, 254],  # du 0: accumulates past +2**23, wraps negative
        [-256, -256, -256, -256, -256],  # du 0: accumulates past -2**23, wraps positive
        [100, -50, 30, 20, 0],  # du 0: moderate, no wrap
    ]
    L = layer(
        W,
        sign_mode=MIXED,
        num_weight_bits=8,
        weight_exp=7,
        du=[4095, 4095, 0, 0, 0],
        dv=4095,
        vth=131071,
    )
    s_in = np.zeros((14, 5), np.int8)
    s_in[0:4] = 1
    s_in[5] = [1, 1, 1, 1, 0]
    s_in[7:10] = 1

    def check(r):
        u, u_raw = r[0]["u"], r[0]["u_raw"]
        _any((u[:, 0] == UV_MAX) & (u_raw[:, 0] == UV_MAX), "u == +2**23 is kept (no wrap)")
        _any((u_raw[:, 1] == -UV_MAX) & (u[:, 1] == UV_MAX), "u == -2**23 wraps to +2**23")
        _any((u_raw[:, 2] > UV_MAX) & (u[:, 2] < 0), "positive overflow wraps negative")
        _any((u_raw[:, 3] < -UV_MAX) & (u[:, 3] > 0), "negative overflow wraps positive")
        _any(r[0]["v_pre"] == V_LIMIT, "v clipped at 2**23 - 1")
        _any(r[0]["s"] == 1, "a spike (v clipped at 2**23-1 > 131071 << 6)")

    return Case(
        "u_wrap",
        "u wraps past 2**23 (wexp 7, du 0 and du 4095; +2**23 is kept, -2**23 wraps to +2**23), "
        "dv 4095, vth 131071",
        s_in,
        [L],
        check,
    )


def case_v_saturation() -> Case:
    W = [[200, 150, 100], [-200, -150, -100], [200, 150, 100], [-200, 100, 0]]
    L = layer(
        W,
        sign_mode=MIXED,
        num_weight_bits=8,
        weight_exp=4,
        du=1500,
        dv=0,
        vth=[131072, 131072, 131071, 131072],
        bias_mant=[0, 0, 0, -4096],
        bias_exp=[0, 0, 0, 7],
    )

    def check(r):
        v, vp, s = r[0]["v"], r[0]["v_pre"], r[0]["s"]
        assert s[:, [0, 1, 3]].sum() == 0, "vth 131072: never spikes"
        assert np.sum(v[:, 0] == V_LIMIT) >= 3, "v held at +(2**23 - 1)"
        assert np.sum(v[:, 1] == -V_LIMIT) >= 3, "v held at -(2**23 - 1)"
        _any(r[0]["v_raw"][:, 0] > V_LIMIT, "v_raw beyond the clip")
        _any((vp[:, 2] == V_LIMIT) & (s[:, 2] == 1), "v clipped to 2**23-1 > 131071<<6 fires")
        _any(v[:, 3] == -V_LIMIT, "negative bias alone saturates")

    return Case(
        "v_saturation",
        "v clipped to +-(2**23 - 1) with dv 0 (vth 131072, just outside Loihi's 17 bits, so no "
        "spike); with vth 131071 the clipped v fires",
        spikes(24, 3, 0.6, seed=10),
        [L],
        check,
    )


def case_excitatory() -> Case:
    W = [[255, 1, 77, 128, -20], [3, 5, 7, 9, 11], [0, 254, 101, 33, 65], [90, 0, 0, 150, 200]]
    L = layer(W, sign_mode=EXCITATORY, num_weight_bits=8, du=300, dv=1000, vth=1500)

    def check(r):
        w = r[0]["w_eff"]
        assert np.array_equal(w, np.clip(np.asarray(W), 0, 255)), "8-bit excitatory: exact"
        assert w[0, 4] == 0, "a negative weight clips to 0"
        _any(r[0]["s"] == 1, "a spike")

    return Case(
        "excitatory",
        "sign_mode EXCITATORY, 8-bit: odd weights kept exactly, 255 kept, -20 clips to 0",
        spikes(24, 5, 0.45, seed=11),
        [L],
        check,
    )


def case_inhibitory() -> Case:
    W = [
        [-5, -255, -1, -64, 30],
        [-3, -17, -128, -200, 0],
        [0, 0, 0, 0, 0],
        [-77, -9, -2, -33, -101],
    ]
    L = layer(
        W,
        sign_mode=INHIBITORY,
        num_weight_bits=7,
        du=700,
        dv=600,
        vth=90,
        bias_mant=[300, 300, 300, 500],
        bias_exp=[4, 5, 2, 3],
    )

    def check(r):
        w = r[0]["w_eff"]
        assert w[0].tolist() == [-4, -254, 0, -64, 0], "7-bit inhibitory truncates toward zero"
        assert w[3, 0] == -76 and w[3, 4] == -100
        _any(r[0]["a"] < 0, "inhibitory input arrives")
        _any(r[0]["s"] == 1, "a spike (bias against inhibition)")

    return Case(
        "inhibitory",
        "sign_mode INHIBITORY, 7-bit: magnitudes truncated toward zero (-5 -> -4), 30 clips to 0, "
        "bias drives",
        spikes(24, 5, 0.45, seed=12),
        [L],
        check,
    )


def case_two_layer() -> Case:
    W0 = [
        [90, -40, 60, 20, -10, 70],
        [-30, 110, 25, -60, 80, 15],
        [50, 50, -90, 40, 30, -20],
        [10, -20, 30, 120, -50, 60],
        [-70, 40, 90, -10, 100, 5],
    ]
    W1 = [[60, 45, 0, 30, 17], [5, 70, 90, 11, 40], [33, 0, 61, 80, 25]]
    L0 = layer(W0, sign_mode=MIXED, num_weight_bits=8, du=1500, dv=800, vth=110)
    L1 = layer(W1, sign_mode=EXCITATORY, num_weight_bits=6, weight_exp=1, du=4095, dv=1000, vth=200)
    s_in = spikes(26, 6, 0.35, seed=13)
    s_in[:3] = 0
    s_in[3] = [1, 0, 1, 0, 0, 1]

    def check(r):
        u0, s0, u1 = r[0]["u"], r[0]["s"], r[1]["u"]
        assert _first(s_in.any(1)) == 3 and _first((u0 != 0).any(1)) == 4, "one-step delay, L0"
        drive1 = (r[1]["w_eff"] @ s0.T.astype(np.int64)).T  # what L1 sees one step later
        t1 = _first((drive1 != 0).any(1))
        assert t1 >= 4 and _first((u1 != 0).any(1)) == t1 + 1, "one-step delay, L1"
        _any(r[1]["s"] == 1, "layer 1 spikes")

    return Case(
        "two_layer",
        "Dense -> LIF -> Dense -> LIF: each Dense adds one step of delay; layer 1 6-bit "
        "excitatory, wexp 1",
        s_in,
        [L0, L1],
        check,
    )


def case_random_a() -> Case:
    rng = np.random.default_rng(2024)
    n_in, n = 8, 6
    W = rng.integers(-256, 256, size=(n, n_in))
    combos = [(137, 3001, 90), (2900, 45, 160), (4095, 1234, 40)]
    pick = [combos[i % 3] for i in range(n)]
    L = layer(
        W,
        sign_mode=MIXED,
        num_weight_bits=5,
        weight_exp=-1,
        du=[p[0] for p in pick],
        dv=[p[1] for p in pick],
        vth=[p[2] for p in pick],
        bias_mant=rng.integers(-400, 400, size=n),
        bias_exp=rng.integers(0, 8, size=n),
    )

    def check(r):
        assert (r[0]["s"].sum(0) > 0).sum() >= 2, "at least two neurons spike"
        _any(r[0]["u"] < 0, "negative u")

    return Case(
        "random_a",
        "seeded random: mixed 5-bit weights, wexp -1, per-neuron (du, dv, vth), random bias",
        spikes(30, n_in, 0.3, seed=14),
        [L],
        check,
    )


def case_random_deep() -> Case:
    rng = np.random.default_rng(7)
    sizes = [6, 6, 5, 4]
    specs = [
        dict(sign_mode=MIXED, num_weight_bits=8, weight_exp=0, du=800, dv=300, vth=700),
        dict(sign_mode=MIXED, num_weight_bits=7, weight_exp=1, du=3000, dv=100, vth=1000),
        dict(sign_mode=EXCITATORY, num_weight_bits=5, weight_exp=-1, du=0, dv=2000, vth=700),
    ]
    layers = []
    for k, spec in enumerate(specs):
        lo = 0 if spec["sign_mode"] == EXCITATORY else -120
        W = rng.integers(lo, 200, size=(sizes[k + 1], sizes[k]))
        layers.append(layer(W, bias_mant=rng.integers(-50, 100, size=sizes[k + 1]), **spec))

    def check(r):
        for k in range(3):
            _any(r[k]["s"] == 1, f"layer {k} spikes")

    return Case(
        "random_deep",
        "three layers 6-6-5-4, seeded random weights (mixed 8-bit, mixed 7-bit wexp 1, "
        "excitatory 5-bit wexp -1), du 0 in the last layer",
        spikes(30, 6, 0.35, seed=15),
        layers,
        check,
    )


CASES: list[Callable[[], Case]] = [
    case_mixed_8bit,
    case_weight_bits_6,
    case_weight_bits_4,
    case_weight_exp_m2,
    case_weight_exp_m5,
    case_weight_exp_p2,
    case_weight_exp_p5,
    case_decays,
    case_bias,
    case_exact_threshold,
    case_u_wrap,
    case_v_saturation,
    case_excitatory,
    case_inhibitory,
    case_two_layer,
    case_random_a,
    case_random_deep,
]


# ----------------------------------------------------------------------------- writing
def fixture_arrays(case: Case, lava: list[dict]) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {
        "description": np.array(case.description),
        "s_in": case.s_in.astype(np.int8),
        "layers": np.array(len(case.layers), dtype=np.int64),
    }
    for k, (L, rec) in enumerate(zip(case.layers, lava, strict=True)):
        arrays[f"weights_{k}"] = L.weights.astype(np.int64)
        for name in ("num_weight_bits", "weight_exp", "sign_mode"):
            arrays[f"{name}_{k}"] = np.array(getattr(L, name), dtype=np.int64)
        for name in ("du", "dv", "vth", "bias_mant", "bias_exp"):
            arrays[f"{name}_{k}"] = getattr(L, name).astype(np.int64)
        arrays[f"u_{k}"] = rec["u"].astype(np.int64)
        arrays[f"v_{k}"] = rec["v"].astype(np.int64)
        arrays[f"s_{k}"] = rec["s"].astype(np.int8)
    return arrays


def same_arrays(path: Path, arrays: dict[str, np.ndarray]) -> bool:
    if not path.exists():
        return False
    with np.load(path) as old:
        if set(old.files) != set(arrays):
            return False
        return all(
            old[k].dtype == a.dtype and old[k].shape == a.shape and np.array_equal(old[k], a)
            for k, a in arrays.items()
        )


def build(case: Case) -> dict[str, np.ndarray]:
    assert case.s_in.ndim == 2 and set(np.unique(case.s_in)) <= {0, 1}
    assert 10 <= case.s_in.shape[0] <= 30
    ref = reference(case.s_in, case.layers)
    lava = run_lava(case.s_in, case.layers)
    for k, (lv, rf) in enumerate(zip(lava, ref, strict=True)):
        assert np.array_equal(lv["w_eff"], rf["w_eff"]), f"{case.name} layer {k}: weights"
        for key in ("u", "v", "s"):
            if not np.array_equal(lv[key], rf[key]):
                t, i = np.argwhere(lv[key] != rf[key])[0]
                raise AssertionError(
                    f"{case.name} layer {k}: Lava {key}[{t},{i}]={lv[key][t, i]} "
                    f"reference {rf[key][t, i]}"
                )
    case.check(ref)
    return fixture_arrays(case, lava)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("tests/fixtures/loihi"))
    ap.add_argument("--only", default="", help="comma-separated case names")
    args = ap.parse_args(argv)

    import lava

    assert sys.version_info[:2] == (3, 10), "lava-nc 0.10.0 needs Python 3.10"
    version = getattr(lava, "__version__", None)
    if version is None:
        from importlib.metadata import version as dist_version

        version = dist_version("lava-nc")
    assert version == "0.10.0", f"expected lava-nc 0.10.0, got {version}"
    check_lava_enum()

    only = {s for s in args.only.split(",") if s}
    args.out.mkdir(parents=True, exist_ok=True)
    for make in CASES:
        case = make()
        if only and case.name not in only:
            continue
        arrays = build(case)
        path = args.out / f"{case.name}.npz"
        if same_arrays(path, arrays):
            state = "unchanged"
        else:
            buf = io.BytesIO()
            np.savez_compressed(buf, **arrays)
            path.write_bytes(buf.getvalue())
            state = "written"
        spikes_per_layer = [int(arrays[f"s_{k}"].sum()) for k in range(len(case.layers))]
        T, n_in = case.s_in.shape
        print(f"{case.name:16s} T={T} n_in={n_in} spikes/layer={spikes_per_layer} {state}")
    print(f"lava-nc {version}, numpy {np.__version__}, Python {sys.version.split()[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
