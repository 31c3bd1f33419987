"""The Loihi 1 simulator: bit-exact against lava-nc 0.10.0's own numbers (tests/fixtures/loihi),
the Semantics switches on hand-computed cases, a naive per-synapse model on random multi-core
configurations, and the errors it raises on bad input or configurations."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from snnc.backends.loihi import config as L
from snnc.errors import SimulationError
from snnc.sim.loihi import simulate

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "loihi"
MIXED, INHIBITORY = 1, 3  # lava.utils.weightutils.SignMode values


def lava_weights(w: np.ndarray, bits: int, sign_mode: int) -> np.ndarray:
    """Lava's PyDenseModelBitAcc: clip_weights(num_bits=8), then truncate_weights."""
    mixed = int(sign_mode == MIXED)
    s = 8 - bits + mixed
    if sign_mode == INHIBITORY:  # negate, clip and truncate the magnitude, negate back
        return -((np.clip(-w, 0, 255) >> s) << s)
    return (np.clip(w, -256 if mixed else 0, 255) >> s) << s


def core(
    k: int,
    syn: list[tuple[int, int, int, int, int]],  # (axon, cx, Wgt, format, Dly)
    n_axons: int,
    cx: list[tuple[int, int, int, int, int, int]],  # (du, dv, vth, bias, bias_exp, refract)
    fmts: list[L.SynapseFmt],
    axons: tuple[L.OutputAxon, ...] = (),
) -> L.CoreConfig:
    """Core ``k`` of chip 0, one profile per distinct (du, dv, refract) and vth."""
    profiles = sorted({(c[0], c[1], c[5]) for c in cx})
    vths = sorted({c[2] for c in cx})
    smap: list[L.SynapseMapEntry | None] = [None] * n_axons
    cols: list[list[int]] = [[], [], [], []]
    for a in range(n_axons):
        mine = [s for s in syn if s[0] == a]
        if mine:
            smap[a] = L.SynapseMapEntry(len(cols[0]), len(mine), 0)
        for _, c, w, f, d in mine:
            for col, val in zip(cols, (c, w, f, d), strict=True):
                col.append(val)
    return L.CoreConfig(
        chip=0,
        core=k,
        cx_profiles=tuple(L.CxProfile(*p) for p in profiles),
        vth_profiles=tuple(vths),
        compartments=tuple(
            L.Compartment(b, e, vths.index(v), profiles.index((du, dv, r)))
            for du, dv, v, b, e, r in cx
        ),
        synapse_fmts=tuple(fmts),
        synapses=L.Synapses(*(tuple(c) for c in cols)),
        synapse_map=tuple(smap),
        axons=axons,
    )


def _span(c: L.CoreConfig) -> tuple[tuple[str, int, int, int], ...]:
    return ((f"layer{c.core}", 0, len(c.compartments), 0),)


def chip(cores: list[L.CoreConfig], n_in: int, payload_bits: int = 0, **sem) -> L.LoihiConfig:
    """Input element e drives axon e of core 0; the output port reads the last core."""
    last = cores[-1]
    refs = tuple(L.CoreRef(0, c.core, f"cores/{c.name}.json", _span(c)) for c in cores)
    return L.LoihiConfig(
        L.ChipConfig(
            target="loihi1",
            chips=1,
            cores_per_chip=128,
            payload_bits=payload_bits,
            cores=refs,
            inputs=(L.Port("in", n_in, tuple(((0, 0, e),) for e in range(n_in))),),
            outputs=(
                L.Port(
                    "out",
                    len(last.compartments),
                    tuple(((0, last.core, i),) for i in range(len(last.compartments))),
                ),
            ),
            layers=tuple((f"layer{c.core}", c.core + 1) for c in cores),
            semantics=L.Semantics(**sem),
        ),
        {(0, c.core): c for c in cores},
    )


def fixture_config(d) -> L.LoihiConfig:
    """One core per Lava layer; layer k's compartment i sends to axon i of core k + 1."""
    n = int(d["layers"])
    cores = []
    for k in range(n):
        bits, mode = int(d[f"num_weight_bits_{k}"]), int(d[f"sign_mode_{k}"])
        w = lava_weights(d[f"weights_{k}"], bits, mode)
        fmt = L.SynapseFmt(int(d[f"weight_exp_{k}"]), bits, 8, mode == MIXED)
        syn = [(a, i, int(w[i, a]), 0, 0) for a in range(w.shape[1]) for i in range(w.shape[0])]
        cols = [d[f"{p}_{k}"].tolist() for p in ("du", "dv", "vth", "bias_mant", "bias_exp")]
        cx = [(*p, 0) for p in zip(*cols, strict=True)]
        out = tuple(L.OutputAxon(i, 0, k + 1, i) for i in range(w.shape[0])) if k < n - 1 else ()
        cores.append(core(k, syn, w.shape[1], cx, [fmt], out))
    return chip(cores, d["s_in"].shape[1])


def roundtrip(config: L.LoihiConfig, tmp_path: Path) -> L.LoihiConfig:
    """The simulator executes the files, not the objects."""
    L.write(config, tmp_path / "loihi")
    return L.read(tmp_path / "loihi")


def test_at_least_eight_lava_fixtures() -> None:
    assert len(list(FIXTURES.glob("*.npz"))) >= 8, f"Lava fixtures missing in {FIXTURES}"


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.npz")), ids=lambda p: p.stem)
def test_lava_fixture_bit_exact(path: Path, tmp_path: Path) -> None:
    d = np.load(path)
    config = roundtrip(fixture_config(d), tmp_path)
    r = simulate(config, d["s_in"][:, None, :], trace=True, record=True)
    for k in range(int(d["layers"])):
        msg = f"{path.name} layer {k}: {d['description']}"
        np.testing.assert_array_equal(r.u[0, k][:, 0], d[f"u_{k}"], err_msg=msg)
        np.testing.assert_array_equal(r.v[0, k][:, 0], d[f"v_{k}"], err_msg=msg)
        np.testing.assert_array_equal(r.spikes[f"layer{k}"][:, 0], d[f"s_{k}"], err_msg=msg)
    np.testing.assert_array_equal(r.output[:, 0], d[f"s_{int(d['layers']) - 1}"])
    assert r.spike_count == sum(int(d[f"s_{k}"].sum()) for k in range(int(d["layers"])))


NO_SPIKE = (4095, 4095, 131071, 0, 0, 0)  # u = a << 6 each step, v = u: never fires


def u_after(config: L.LoihiConfig, x: np.ndarray, **sem) -> np.ndarray:
    r = simulate(config, x, trace=True, semantics=L.Semantics(**sem) if sem else None)
    return r.u[0, 0]


def test_weight_exp_floors_the_sum_or_each_synapse() -> None:
    # Lava: (sum Wgt) >> 2 << 6; nengo-loihi: each Wgt * 2**(6 - 2) = 16 Wgt, nothing floored
    syn = [(a, 0, w, 0, 0) for a, w in enumerate((3, 3, 3, -2))]
    fmt = L.SynapseFmt(wgt_exp=-2, wgt_bits=8, idx_bits=8, is_mixed=False)
    config = chip([core(0, syn, 4, [NO_SPIKE], [fmt])], 4)
    x = np.zeros((3, 1, 4), np.uint8)
    x[0], x[1, 0, 0] = 1, 1  # all four axons at step 0, axon 0 (Wgt 3) alone at step 1
    assert u_after(config, x)[:, 0, 0].tolist() == [0, (7 >> 2) << 6, (3 >> 2) << 6]  # 64, 0
    assert u_after(config, x, weight_exp="synapse")[:, 0, 0].tolist() == [0, 7 * 16, 3 * 16]
    # below wgtExp -6 nengo-loihi floors each synapse: wgtExp -8 is Wgt >> 2 on u's scale
    syn = [(a, 0, w, 0, 0) for a, w in enumerate((3, 3, -1))]
    fmt8 = L.SynapseFmt(wgt_exp=-8, wgt_bits=8, idx_bits=8, is_mixed=False)
    config = chip([core(0, syn, 3, [NO_SPIKE], [fmt8])], 3)
    x = np.zeros((2, 1, 3), np.uint8)
    x[0] = 1
    assert u_after(config, x)[:, 0, 0].tolist() == [0, (5 >> 8) << 6]  # 0
    # 0 + 0 - 1 per synapse (flooring the u-scale sum would give 5 >> 2 = 1)
    assert u_after(config, x, weight_exp="synapse")[:, 0, 0].tolist() == [0, -1]
    # graded payloads multiply Wgt first: 1*3 + 1*3 + 1*3 + 2*1 = 11 at step 0, 2*3 at step 1
    syn = [(a, 0, 1, 0, 0) for a in range(3)] + [(3, 0, 2, 0, 0)]
    graded = chip([core(0, syn, 4, [NO_SPIKE], [fmt])], 4, payload_bits=2)
    g = np.array([[[3, 3, 3, 1]], [[0, 0, 0, 3]], [[0, 0, 0, 0]]])
    assert u_after(graded, g)[:, 0, 0].tolist() == [0, (11 >> 2) << 6, (6 >> 2) << 6]
    assert u_after(graded, g, weight_exp="synapse")[:, 0, 0].tolist() == [0, 176, 96]
    # graded below wgtExp -6 (-7: >> 1 per synapse event): 3 x (3 >> 1) + (-1 >> 1), -3 >> 1
    syn = [(a, 0, 1, 0, 0) for a in range(3)] + [(3, 0, -1, 0, 0)]
    fmt7 = L.SynapseFmt(wgt_exp=-7, wgt_bits=8, idx_bits=8, is_mixed=False)
    graded = chip([core(0, syn, 4, [NO_SPIKE], [fmt7])], 4, payload_bits=2)
    assert u_after(graded, g)[:, 0, 0].tolist() == [0, (8 >> 7) << 6, (-3 >> 7) << 6]
    assert u_after(graded, g, weight_exp="synapse")[:, 0, 0].tolist() == [0, 3 - 1, -2]


def test_input_wrap_21_wraps_the_dendritic_sum() -> None:
    # wgtExp 7: Wgt 255 is 255 * 2**13 = 2088960 on u's scale (< 2**21), Wgt 128 is 2**20
    syn = [(0, 0, 255, 0, 0)] * 2 + [(1, 0, 128, 0, 0)] * 2  # duplicate (axon, cx) pairs
    syn += [(2, 1, 128, 0, 0), (3, 2, 255, 0, 0)]
    keep = (-1, 4095, 131071)  # decayU -1 keeps u; v decays by 1/4096; vth << 6 = 8388544
    cx = [NO_SPIKE, (*keep, 0, 0, 0), (*keep, 4095, 7, 0)]  # cx 2: bias 4095 << 7 = 524160
    config = chip([core(0, syn, 4, cx, [L.SynapseFmt(7, 8, 8, False)])], 4)
    x = np.zeros((9, 1, 4), np.uint8)
    x[0, 0, 0] = x[1, 0, 1] = 1
    x[:8, 0, 2] = x[:4, 0, 3] = 1
    lava = simulate(config, x, trace=True, record=True)
    nengo = simulate(config, x, trace=True, semantics=L.Semantics(input_wrap_21=True))
    # cx 0: q = 2 * 2088960 = 4177920 wraps to 4177920 - 2**22 = -16384 (wrapping the sum
    # before << 6, 65280, would not), and q = 2**21 wraps to -2**21; Lava keeps both
    assert lava.u[0, 0][:4, 0, 0].tolist() == [0, 4177920, 1 << 21, 0]
    assert nengo.u[0, 0][:4, 0, 0].tolist() == [0, -16384, -(1 << 21), 0]
    # cx 1: u integrates 2**20 per step to 2**23 at step 8: U_BITS wraps it to -2**23,
    # Lava keeps +2**23
    assert lava.u[0, 0][:, 0, 1].tolist() == [k << 20 for k in range(9)]
    assert nengo.u[0, 0][:, 0, 1].tolist() == [k << 20 for k in range(8)] + [-(1 << 23)]
    # cx 2: u = 2088960 k up to 8355840; u + bias = 8880000 at step 4 wraps to -7897216
    # (nengo-loihi's u2), where Lava's v saturates at 2**23 - 1 and spikes
    u = [0, 2088960, 4177920, 6266880, 8355840, 8355840]
    assert lava.u[0, 0][:6, 0, 2].tolist() == nengo.u[0, 0][:6, 0, 2].tolist() == u
    v = [524160, 2613247, 4702717, 6792188]  # u + bias + v >> 12 (127, 637, 1148)
    assert lava.v[0, 0][:6, 0, 2].tolist() == [*v, 0, 0]
    assert nengo.v[0, 0][:6, 0, 2].tolist() == [*v, 1658 - 7897216, -1927 - 7897216]
    assert lava.spikes["layer0"][:, 0, 2].tolist() == [0] * 4 + [1] * 5
    assert nengo.spike_count == 0 and nengo.synops == lava.synops == 16


def test_refractory_holds_v_for_refract_delay_steps() -> None:
    # q = 50 << 6 = 3200 a step from step 1, no leak (decayV 0), vth << 6 = 6400; cx 0 has
    # refractDelay 3, cx 1 refractDelay 1 (ref_count = 1 - 1 = 0: never held)
    cx = [(4095, 0, 100, 0, 0, 3), (4095, 0, 100, 0, 0, 1)]
    syn = [(0, 0, 50, 0, 0), (0, 1, 50, 0, 0)]
    config = chip([core(0, syn, 1, cx, [L.SynapseFmt(0, 8, 8, False)])], 1)
    x = np.ones((10, 1, 1), np.uint8)
    free = simulate(config, x, trace=True)
    held = simulate(config, x, trace=True, semantics=L.Semantics(refractory=True))
    assert free.v[0, 0][:, 0, 0].tolist() == [0, 3200, 6400, 0, 3200, 6400, 0, 3200, 6400, 0]
    assert free.output[:, 0, 0].tolist() == [0, 0, 0, 1, 0, 0, 1, 0, 0, 1]
    # fires at 3; v computed then zeroed at 4 and 5 (ref_count 2, 1); restarts from 0 at 6
    assert held.v[0, 0][:, 0, 0].tolist() == [0, 3200, 6400, 0, 0, 0, 3200, 6400, 0, 0]
    assert held.output[:, 0, 0].tolist() == [0, 0, 0, 1, 0, 0, 0, 0, 1, 0]
    np.testing.assert_array_equal(held.v[0, 0][:, 0, 1], free.v[0, 0][:, 0, 1])
    np.testing.assert_array_equal(held.u[0, 0], free.u[0, 0])  # u integrates regardless
    assert held.u[0, 0][:, 0, 0].tolist() == [0] + [3200] * 9


def test_synapse_delay_delivers_later() -> None:
    fmt = [L.SynapseFmt(0, 8, 8, False)]
    x = np.zeros((6, 1, 1), np.uint8)
    x[0] = 1
    u = [u_after(chip([core(0, [(0, 0, 7, 0, d)], 1, [NO_SPIKE], fmt)], 1), x) for d in (0, 2)]
    assert u[0][:, 0, 0].tolist() == [0, 7 << 6, 0, 0, 0, 0]
    assert u[1][:, 0, 0].tolist() == [0, 0, 0, 7 << 6, 0, 0]


def test_ports_split_the_input_and_a_core_may_have_no_synapses() -> None:
    fmt = [L.SynapseFmt(0, 8, 8, False)]
    a = core(0, [(0, 0, 200, 0, 0), (1, 1, 200, 0, 0)], 2, [(4095, 4095, 100, 0, 0, 0)] * 2, fmt)
    b = core(1, [], 0, [(0, 0, 10, 1000, 0, 0)], fmt)  # bias only: fires every step
    config = chip([a, b], 2)
    ports = (L.Port("p", 1, (((0, 0, 0),),)), L.Port("q", 1, (((0, 0, 1),),)))
    outs = (config.chip.outputs[0], L.Port("first", 2, (((0, 0, 0),), ((0, 0, 1),))))
    chip_ = dataclasses.replace(config.chip, inputs=ports, outputs=outs[::-1])
    x = np.zeros((4, 2, 2), np.uint8)
    x[0, 0, 0] = x[1, 1, 1] = 1  # batch 0 on port p at step 0, batch 1 on port q at step 1
    r = simulate(L.LoihiConfig(chip_, config.cores), x, record=True)
    assert r.output is r.outputs["first"]
    assert r.output[:, 0].tolist() == [[0, 0], [1, 0], [0, 0], [0, 0]]
    assert r.output[:, 1].tolist() == [[0, 0], [0, 0], [0, 1], [0, 0]]
    assert r.outputs["out"].sum() == 8 and r.spikes["layer1"].sum() == 8
    assert r.synops == 2 and r.spike_count == 10


def _overflow(x: int, bits: int) -> int:
    """nengo-loihi's overflow_signed on one integer: low ``bits`` bits, minus bit ``bits``."""
    return (x & ((1 << bits) - 1)) - (x & (1 << bits))


def naive(config: L.LoihiConfig, x: np.ndarray, sem: L.Semantics | None = None) -> dict:
    """The module docstring's equations, one synapse and one compartment at a time."""
    sem = sem or L.Semantics()
    T, B = x.shape[:2]
    cores = config.cores
    u = {k: np.zeros((T, B, len(c.compartments)), np.int64) for k, c in cores.items()}
    v = {k: np.zeros_like(a) for k, a in u.items()}
    s = {k: np.zeros_like(a) for k, a in u.items()}
    for b in range(B):
        due: dict = {}  # (core, arrival step, cx, format or "q") -> raw sum or u-scale input
        st = {k: [[0, 0, 0] for _ in c.compartments] for k, c in cores.items()}
        for t in range(T):
            for k, c in cores.items():
                for i, cc in enumerate(c.compartments):
                    a = sum(
                        due.get((k, t, i, f), 0) >> -fm.wgt_exp
                        if fm.wgt_exp < 0
                        else due.get((k, t, i, f), 0) << fm.wgt_exp
                        for f, fm in enumerate(c.synapse_fmts)
                    )
                    q = (a << 6) + due.get((k, t, i, "q"), 0)
                    p = c.cx_profiles[cc.cx_profile]
                    uu, vv, ref = st[k][i]
                    uu = int(np.sign(uu)) * ((abs(uu) * (4095 - p.decay_u)) >> 12)
                    bias = cc.bias << cc.bias_exp
                    if sem.input_wrap_21:
                        uu = _overflow(uu + _overflow(q, 21), 23)
                        u2 = _overflow(uu + bias, 23)
                    else:
                        uu += q
                        uu = uu - (1 << 24) if uu > 1 << 23 else uu
                        uu = uu + (1 << 24) if uu <= -(1 << 23) else uu
                        u2 = uu + bias
                    vv = int(np.sign(vv)) * ((abs(vv) * (4096 - p.decay_v)) >> 12)
                    vv = min(max(vv + u2, 1 - (1 << 23)), (1 << 23) - 1)
                    vv = 0 if sem.refractory and ref > 0 else vv
                    fire = vv > c.vth_profiles[cc.vth_profile] << 6
                    vv = 0 if fire else vv
                    ref = max((p.refract_delay if fire else ref) - 1, 0)
                    st[k][i] = [uu, vv, ref]
                    u[k][t, b, i], v[k][t, b, i], s[k][t, b, i] = uu, vv, fire
            hits = [((0, 0), e, x[t, b, e]) for e in range(x.shape[2]) if x[t, b, e]]
            for k, c in cores.items():
                hits += [((o.chip, o.core), o.axon, 1) for o in c.axons if s[k][t, b, o.cx]]
            for k, axon, pay in hits:
                c, e = cores[k], cores[k].synapse_map[axon]
                for j in range(e.synapse_ptr, e.synapse_ptr + e.synapse_len) if e else ():
                    key = (k, t + 1 + c.synapses.dly[j], e.cx_base + c.synapses.cidx[j])
                    w, f = c.synapses.wgt[j] * int(pay), c.synapses.fmt[j]
                    if sem.weight_exp == "synapse":  # each synapse onto u's scale
                        sh = 6 + c.synapse_fmts[f].wgt_exp
                        key, w = (*key, "q"), w << sh if sh >= 0 else w >> -sh
                    else:
                        key += (f,)
                    due[key] = due.get(key, 0) + w
    return {"u": u, "v": v, "s": s}


NENGO = {"weight_exp": "synapse", "input_wrap_21": True, "refractory": True}


@pytest.mark.parametrize("rules", ["lava", "nengo"])
@pytest.mark.parametrize("seed", range(4))
def test_random_multicore_configs_match_a_naive_model(
    seed: int, rules: str, tmp_path: Path
) -> None:
    rng = np.random.default_rng(seed)
    fmts = [L.SynapseFmt(-3, 6, 8, True), L.SynapseFmt(1, 5, 8, False), L.SynapseFmt(0, 8, 8, True)]
    sem: dict = {}
    if rules == "nengo":  # also a format floored per synapse and one that overflows Q_BITS
        fmts += [L.SynapseFmt(-7, 8, 8, False), L.SynapseFmt(7, 8, 8, True)]
        sem = NENGO
    sizes = [6, 9, 7, 4]
    cores = []
    for k in range(3):
        syn = []
        for a in range(sizes[k]):
            for i in rng.choice(sizes[k + 1], 4, replace=False):
                f = int(rng.integers(len(fmts)))
                step = 1 << (8 - fmts[f].wgt_bits + fmts[f].is_mixed)
                lo = -256 if fmts[f].is_mixed else 0
                w = int(rng.integers(lo // step, 256 // step)) * step
                syn.append((a, int(i), w, f, int(rng.integers(3))))
        cx = [(int(rng.integers(-1, 4096)), int(rng.integers(0, 4096)), int(rng.integers(1, 60)),
               int(rng.integers(-200, 200)), int(rng.integers(0, 3)),
               int(rng.integers(0, 4)) if sem else 0)
              for _ in range(sizes[k + 1])]  # fmt: skip
        out = tuple(L.OutputAxon(i, 0, k + 1, i) for i in range(sizes[k + 1])) if k < 2 else ()
        cores.append(core(k, syn, sizes[k], cx, fmts, out))
    config = roundtrip(chip(cores, sizes[0], **sem), tmp_path)  # the rules come from the file
    x = (rng.random((25, 3, sizes[0])) < 0.4).astype(np.uint8)
    r = simulate(config, x, trace=True, record=True)
    want = naive(config, x, L.Semantics(**sem))
    for k in config.cores:
        np.testing.assert_array_equal(r.u[k], want["u"][k])
        np.testing.assert_array_equal(r.v[k], want["v"][k])
        np.testing.assert_array_equal(r.spikes[f"layer{k[1]}"], want["s"][k])
    assert r.spike_count == sum(int(a.sum()) for a in want["s"].values()) > 0


def small() -> L.LoihiConfig:
    return chip([core(0, [(0, 0, 7, 0, 0)], 2, [NO_SPIKE], [L.SynapseFmt(0, 8, 8, False)])], 2)


def test_errors_name_the_port_or_core_and_what_was_expected() -> None:
    with pytest.raises(SimulationError, match=r"port 'in'.*value 2.*binary spikes \(0 or 1\)"):
        simulate(small(), np.array([[[0, 2]]]))
    with pytest.raises(SimulationError, match=r"port 'in'.*value 0\.5 at step 1, batch 0"):
        simulate(small(), np.array([[[0, 1]], [[0.5, 1]]]))
    with pytest.raises(SimulationError, match=r"shape \(4, 1, 3\).*\(T, B, 2\).*'in' \(2\)"):
        simulate(small(), np.zeros((4, 1, 3)))
    with pytest.raises(SimulationError, match=r"input port 'in'.*integer payloads 0 \.\. 3"):
        graded = dataclasses.replace(small().chip, payload_bits=2)
        simulate(L.LoihiConfig(graded, small().cores), [[4, 0]])
    bad = core(0, [(0, 0, 7, 0, 0)], 1, [NO_SPIKE], [L.SynapseFmt(0, 6, 8, True)])
    want = (
        r"chip0_core0: synapse 0 has Wgt 7.*Fmt 0 \(wgtBits 6, isMixed 1\).*of 8 in -256 \.\. 255"
    )
    with pytest.raises(SimulationError, match=want):
        simulate(chip([bad], 1), np.zeros((2, 1, 1)))
    assert simulate(small(), np.ones((3, 2), bool)).output.shape == (3, 1, 1)  # B omitted
