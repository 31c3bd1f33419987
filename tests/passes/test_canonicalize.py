"""The canonicalize pass: each rewrite by its exact result, and by identical spikes before/after.

Weights are dyadic (multiples of 1/64) and folded factors powers of two, so every sum a neuron
sees is exact in float32 whatever the summation order: pruning columns or scaling by 2^k cannot
change a single bit, and the spike trains must be identical. Where a fold multiplies by a factor
that is not a power of two (a 3x3 pool, a folded layer chain) the two graphs round differently,
so a spike whose membrane lands within an ulp of the threshold may flip: those tests demand
99.5% agreement instead.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from snnc.errors import PassError
from snnc.ir import Graph, print_graph
from snnc.ir import nodes as N
from snnc.passes.canonicalize import Canonicalize, CanonicalizeReport, PruneRecord
from snnc.passes.manager import PassContext, Pipeline
from snnc.sim.reference import simulate

T, B, RATE = 20, 64, 0.3


@pytest.fixture(autouse=True)
def _one_thread():
    """These graphs are tiny: torch's thread pool only costs time here (20x on a busy host)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _lif(n, **over) -> dict[str, np.ndarray]:
    shape = n if isinstance(n, tuple) else (n,)
    base = dict(decay=0.875, gain=1.0, bias=0.0, threshold=1.0, reset_value=0.0)
    p = {k: np.full(shape, v, np.float32) for k, v in base.items()}
    return p | {k: np.asarray(v, np.float32) for k, v in over.items()}


def _cuba(n, **over) -> dict[str, np.ndarray]:
    return _lif(n, decay_i=np.full(n, 0.75), gain_i=np.ones(n)) | {
        k: np.asarray(v, np.float32) for k, v in over.items()
    }


def _w(seed: int, shape, scale: float) -> np.ndarray:
    """Random dyadic weights: multiples of 1/64."""
    w = np.random.default_rng(seed).normal(0.0, scale, shape)
    return (np.round(w * 64) / 64).astype(np.float32)


def _seq(in_shape, *layers, meta=None) -> Graph:
    """Input -> layers (name, node, params), each reading the one before -> Output."""
    nodes, inputs, params, prev = {"input": N.Input(shape=in_shape)}, {}, {}, "input"
    for name, node, p in layers:
        nodes[name], inputs[name], params[name], prev = node, [prev], p, name
    shape = Graph(nodes, inputs, params).shapes()[prev]
    nodes["output"], inputs["output"] = N.Output(shape=shape), [prev]
    return Graph(nodes, inputs, params, name="t", meta=meta)


def _canon(g: Graph, **opts) -> tuple[Graph, CanonicalizeReport]:
    ctx = PassContext()
    out = Canonicalize(**opts).run(g, ctx)
    return out, ctx.reports["canonicalize"]


def _x(g: Graph, seed: int = 1) -> np.ndarray:
    shape = g.nodes["input"].shape
    return (np.random.default_rng(seed).random((T, B, *shape)) < RATE).astype(np.float32)


def _same(a: Graph, b: Graph, rate=(0.05, 0.4)) -> np.ndarray:
    """Assert identical outputs (and a meaningful firing rate when spiking); return them."""
    x = _x(a)
    ya, yb = simulate(a, x), simulate(b, x)
    np.testing.assert_array_equal(ya, yb)
    if rate is not None:
        assert rate[0] <= ya.mean() <= rate[1], ya.mean()
    return ya


def _agree(a: Graph, b: Graph) -> float:
    x = _x(a)
    ya, yb = simulate(a, x), simulate(b, x)
    assert 0.05 <= ya.mean() <= 0.4, ya.mean()
    return float((ya == yb).mean())


def _kinds(g: Graph) -> list[str]:
    return [f"{n}:{node.kind}" for n, node in g.nodes.items()]


# ----------------------------------------------------------------------------- AvgPool2d


GOLDEN_POOL = """\
snnc.ir 1
graph "t"
meta canonical = true
%input = Input {shape = [1, 4, 4]}  # -> [1, 4, 4]
%pool = SumPool2d {kernel = [2, 2], stride = [2, 2], padding = [0, 0], origin = "torch:pool"} (%input)  # -> [1, 2, 2]
%flat = Flatten {start_dim = 0, end_dim = -1} (%pool)  # -> [4]
%fc = Linear {origin = "torch:fc"} (%flat)  # -> [2]
  weight = f32[2, 4] [0.25, 0.25, -0.25, 0.125, 0.5, 0.0, 0.25, -0.5]
%lif = LIF {reset = to_value, timing = immediate, strict = true} (%fc)  # -> [2]
  bias = f32[2] splat 0.0
  decay = f32[2] splat 0.875
  gain = f32[2] splat 1.0
  reset_value = f32[2] splat 0.0
  threshold = f32[2] splat 1.0
%output = Output {shape = [2]} (%lif)  # -> [2]
"""  # noqa: E501


def test_avgpool_becomes_sumpool_with_its_factor_in_the_linear_after_flatten() -> None:
    w = np.array([[1, 1, -1, 0.5], [2, 0, 1, -2]], np.float32)
    g = _seq(
        (1, 4, 4),
        ("pool", N.AvgPool2d(kernel=(2, 2), stride=(2, 2), origin="torch:pool"), {}),
        ("flat", N.Flatten(), {}),
        ("fc", N.Linear(origin="torch:fc"), {"weight": w}),
        ("lif", N.LIF(), _lif(2)),
    )
    out, rep = _canon(g)
    assert print_graph(out) == GOLDEN_POOL
    assert rep.pools_folded == 1 and rep.text().splitlines()[0] == (
        "folded 1 AvgPool2d into SumPool2d, 1/k into the consumers"
    )
    _same(g, out)


@pytest.mark.parametrize("k", [2, 3])
def test_avgpool_folds_through_flatten_and_delay_into_an_affine(k: int) -> None:
    n = 2 * (12 // k) ** 2
    g = _seq(
        (2, 12, 12),
        ("pool", N.AvgPool2d(kernel=(k, k), stride=(k, k)), {}),
        ("flat", N.Flatten(), {}),
        ("d", N.Delay(), {"steps": np.ones(n, np.int64)}),
        ("fc", N.Affine(), {"weight": _w(1, (10, n), 0.8), "bias": _w(2, (10,), 0.1)}),
        ("lif", N.LIF(), _lif(10)),
    )
    out, _ = _canon(g)
    assert _kinds(out)[1:4] == ["pool:SumPool2d", "flat:Flatten", "d:Delay"]
    assert len(out.nodes) == len(g.nodes)
    np.testing.assert_array_equal(
        out.params["fc"]["weight"], (g.params["fc"]["weight"] / np.float64(k * k)).astype("f4")
    )
    np.testing.assert_array_equal(out.params["fc"]["bias"], g.params["fc"]["bias"])
    if k == 2:  # 1/4 is exact
        _same(g, out)
    else:  # sum/9 rounds differently from sum * (w/9)
        assert _agree(g, out) >= 0.995


def test_avgpool_folds_into_the_gain_of_the_neurons_it_feeds() -> None:
    g = _seq(
        (2, 6, 6),
        ("pool", N.AvgPool2d(kernel=(2, 2), stride=(2, 2)), {}),
        ("lif", N.LIF(), _lif((2, 3, 3), threshold=np.full((2, 3, 3), 0.5))),
    )
    out, rep = _canon(g)
    np.testing.assert_array_equal(out.params["lif"]["gain"], np.full((2, 3, 3), 0.25, "f4"))
    assert rep.notes == (
        "kept the gain of 'lif': its input 'pool' (SumPool2d) is not an Affine/Linear/Conv layer",
    )
    _same(g, out)


def test_avgpool_before_an_output_keeps_a_scale() -> None:
    g = _seq((1, 4, 4), ("pool", N.AvgPool2d(kernel=(2, 2), stride=(2, 2), origin="p"), {}))
    out, rep = _canon(g)
    assert _kinds(out) == ["input:Input", "pool:SumPool2d", "pool_scale:Scale", "output:Output"]
    assert out.inputs["output"] == ("pool_scale",) and out.nodes["pool_scale"].origin == "p"
    assert out.params["pool_scale"]["scale"].shape == (1, 2, 2)
    assert (out.params["pool_scale"]["scale"] == np.float32(0.25)).all()
    assert rep.pools_scaled == 1
    assert rep.notes == (
        "kept Scale 'pool_scale': 'output' (Output) cannot absorb the factor, and the node "
        "before it is not a layer feeding only it",
    )
    _same(g, out, rate=None)


def test_avgpool_into_a_population_with_another_input_keeps_a_scale() -> None:
    g = _seq(
        (2, 6, 6),
        ("pool", N.AvgPool2d(kernel=(2, 2), stride=(2, 2)), {}),
        ("lif", N.LIF(), _lif((2, 3, 3), threshold=np.full((2, 3, 3), 1.25))),
    )
    nodes = dict(g.nodes) | {"d": N.Delay()}
    inputs = dict(g.inputs) | {"d": ["lif"], "lif": ["pool", "d"]}
    params = dict(g.params) | {"d": {"steps": np.ones((2, 3, 3), np.int64)}}
    g = g.replace(nodes=nodes, inputs=inputs, params=params)
    out, rep = _canon(g)
    assert out.inputs["lif"] == ("pool_scale", "d")
    assert rep.notes[0] == (
        "kept Scale 'pool_scale': 'lif' (LIF) also reads 'd', and the node before it is not a "
        "layer feeding only it"
    )
    _same(g, out)


# ----------------------------------------------------------------------------- Scale


def test_scale_folds_forward_into_columns_and_thresholds() -> None:
    s = np.array([0.5, 2.0, 4.0, 1.0] * 4, np.float32)
    g = _seq(
        (16,),
        ("s", N.Scale(origin="sc"), {"scale": s}),
        ("fc", N.Affine(origin="fc"), {"weight": _w(3, (8, 16), 0.5), "bias": np.zeros(8)}),
        ("th", N.Threshold(), {"threshold": np.full(8, 0.75, np.float32)}),
    )
    out, rep = _canon(g)
    assert _kinds(out) == ["input:Input", "fc:Affine", "th:Threshold", "output:Output"]
    assert out.nodes["fc"].origin == "fc+sc" and rep.scales_folded == 1
    np.testing.assert_array_equal(out.params["fc"]["weight"], g.params["fc"]["weight"] * s)
    _same(g, out)
    th = _seq(
        (8,),
        ("s", N.Scale(), {"scale": np.float32([4.0])}),
        ("th", N.Threshold(), {"threshold": np.full(8, 0.75, np.float32)}),
    )
    out = _canon(th)[0]
    assert list(out.nodes) == ["input", "th", "output"]
    np.testing.assert_array_equal(out.params["th"]["threshold"], np.full(8, 0.1875, "f4"))
    _same(th, out)


def test_scale_folds_backward_into_the_rows_of_the_layer_before() -> None:
    s = np.array([0.5, 2.0, -1.0, 4.0], np.float32)
    g = _seq(
        (16,),
        ("fc1", N.Affine(), {"weight": _w(4, (8, 16), 0.6), "bias": _w(5, (8,), 0.2)}),
        ("lif1", N.LIF(), _lif(8)),
        ("fc2", N.Affine(origin="fc2"), {"weight": _w(6, (4, 8), 0.5), "bias": _w(7, (4,), 0.2)}),
        ("s", N.Scale(origin="sc"), {"scale": s}),
    )
    out, rep = _canon(g)
    assert list(out.nodes) == ["input", "fc1", "lif1", "fc2", "output"]
    assert out.nodes["fc2"].origin == "fc2+sc" and rep.scales_folded == 1
    np.testing.assert_array_equal(
        out.params["fc2"]["weight"], g.params["fc2"]["weight"] * s[:, None]
    )
    np.testing.assert_array_equal(out.params["fc2"]["bias"], g.params["fc2"]["bias"] * s)
    _same(g, out, rate=None)  # graded output, compared bit for bit


# ----------------------------------------------------------------------------- neuron gains


def test_gain_folds_into_affine_rows() -> None:
    gain = np.random.default_rng(8).choice([0.5, 1.0, 2.0], 12).astype(np.float32)
    g = _seq(
        (20,),
        ("fc", N.Affine(), {"weight": _w(9, (12, 20), 0.4), "bias": _w(10, (12,), 0.1)}),
        ("lif", N.LIF(), _lif(12, gain=gain)),
    )
    out, rep = _canon(g)
    assert (out.params["lif"]["gain"] == 1).all() and rep.gains_folded == 1
    np.testing.assert_array_equal(
        out.params["fc"]["weight"], g.params["fc"]["weight"] * gain[:, None]
    )
    np.testing.assert_array_equal(out.params["fc"]["bias"], g.params["fc"]["bias"] * gain)
    _same(g, out)


def _conv_net(gain: np.ndarray) -> Graph:
    return _seq(
        (2, 8, 8),
        ("conv", N.Conv2d(), {"weight": _w(11, (4, 2, 3, 3), 0.5), "bias": _w(12, (4,), 0.1)}),
        ("lif", N.LIF(), _lif((4, 6, 6), gain=gain)),
    )


def test_gain_constant_per_channel_folds_into_conv_filters() -> None:
    per = np.float32([0.5, 2.0, 1.0, 4.0])
    g = _conv_net(np.broadcast_to(per[:, None, None], (4, 6, 6)))
    out, _ = _canon(g)
    assert (out.params["lif"]["gain"] == 1).all()
    np.testing.assert_array_equal(
        out.params["conv"]["weight"], g.params["conv"]["weight"] * per[:, None, None, None]
    )
    np.testing.assert_array_equal(out.params["conv"]["bias"], g.params["conv"]["bias"] * per)
    _same(g, out)


def test_gain_varying_within_a_channel_rescales_the_membrane() -> None:
    """A gain the conv filters cannot take (Sinabs' per-neuron taus): v is measured in units of
    the gain instead, threshold, bias and reset value divided by it; the spikes are the same."""
    gain = np.ones((4, 6, 6), np.float32)
    gain[0, 0, 0], gain[2, 3, 1] = 2.0, 0.5
    g = _conv_net(gain)
    out, rep = _canon(g)
    p, q = out.params["lif"], g.params["lif"]
    assert (p["gain"] == 1).all() and rep.gains_rescaled == 1 and rep.gains_folded == 0
    np.testing.assert_array_equal(out.params["conv"]["weight"], g.params["conv"]["weight"])
    for k in ("threshold", "bias", "reset_value"):
        np.testing.assert_allclose(p[k], q[k] / gain, rtol=1e-7)
    _same(g, out)


def test_a_gain_that_varies_and_changes_sign_is_kept() -> None:
    gain = np.ones((4, 6, 6), np.float32)
    gain[0, 0, 0] = -2.0
    g = _conv_net(gain)
    out, rep = _canon(g)
    assert out == g.replace(meta={"canonical": True})
    assert rep.notes == (
        "kept the gain of 'lif': it varies within the output channels of 'conv' (Conv2d)",
    )


def test_cubalif_gain_merges_into_gain_i_then_into_the_weights() -> None:
    gi, gv = np.float32([0.5, 1, 2, 1] * 3), np.float32([2, 2, 1, 0.5] * 3)
    g = _seq(
        (16,),
        ("fc", N.Affine(), {"weight": _w(13, (12, 16), 0.2), "bias": np.zeros(12)}),
        ("cuba", N.CubaLIF(), _cuba(12, gain_i=gi, gain=gv)),
    )
    out, rep = _canon(g)
    p = out.params["cuba"]
    assert (p["gain"] == 1).all() and (p["gain_i"] == 1).all()
    assert (rep.gains_merged, rep.gains_folded) == (1, 1)
    np.testing.assert_array_equal(
        out.params["fc"]["weight"], g.params["fc"]["weight"] * (gi * gv)[:, None]
    )
    _same(g, out)


def test_cubalif_gain_i_stays_when_its_layer_feeds_another_node() -> None:
    nodes = {
        "input": N.Input(shape=(8,)),
        "fc": N.Linear(),
        "cuba": N.CubaLIF(),
        "lif": N.LIF(),
        "output": N.Output(shape=(4,)),
        "out2": N.Output(shape=(4,)),
    }
    g = Graph(
        nodes,
        {"fc": ["input"], "cuba": ["fc"], "lif": ["fc"], "output": ["cuba"], "out2": ["lif"]},
        {
            "fc": {"weight": _w(14, (4, 8), 0.8)},
            "cuba": _cuba(4, gain=np.full(4, 2.0)),
            "lif": _lif(4),
        },
    )
    out, rep = _canon(g)
    assert (out.params["cuba"]["gain"] == 1).all() and (out.params["cuba"]["gain_i"] == 2).all()
    assert rep.notes == (
        "kept the gain_i of 'cuba': its input 'fc' (Linear) also feeds other nodes",
    )
    _same(g, out)


# ----------------------------------------------------------------------------- layer chains


def test_linear_affine_chain_folds_into_one_affine() -> None:
    g = _seq(
        (16,),
        ("fc1", N.Linear(origin="torch:fc1"), {"weight": _w(15, (12, 16), 0.4)}),
        (
            "fc2",
            N.Affine(origin="torch:fc2"),
            {"weight": _w(16, (6, 12), 0.5), "bias": _w(17, (6,), 0.1)},
        ),
        ("lif", N.LIF(), _lif(6)),
    )
    out, rep = _canon(g)
    assert _kinds(out) == ["input:Input", "fc2:Affine", "lif:LIF", "output:Output"]
    assert out.nodes["fc2"].origin == "torch:fc1+torch:fc2" and rep.chains_folded == 1
    w1, w2 = (g.params[n]["weight"].astype(np.float64) for n in ("fc1", "fc2"))
    np.testing.assert_array_equal(out.params["fc2"]["weight"], (w2 @ w1).astype(np.float32))
    np.testing.assert_array_equal(out.params["fc2"]["bias"], g.params["fc2"]["bias"])
    # dyadic weights: W2 @ W1 is exact here, but the one-layer sum adds in another order
    assert _agree(g, out) >= 0.995


def test_affine_linear_chain_carries_the_first_bias_through() -> None:
    b1 = _w(23, (12,), 0.5)
    g = _seq(
        (16,),
        ("fc1", N.Affine(), {"weight": _w(15, (12, 16), 0.4), "bias": b1}),
        ("fc2", N.Linear(), {"weight": _w(16, (6, 12), 0.5)}),
        ("lif", N.LIF(), _lif(6)),
    )
    out, _ = _canon(g)
    assert _kinds(out)[1] == "fc2:Affine"
    w2 = g.params["fc2"]["weight"].astype(np.float64)
    np.testing.assert_array_equal(out.params["fc2"]["bias"], (w2 @ b1).astype(np.float32))
    assert _agree(g, out) >= 0.995


def test_bottleneck_chain_is_not_folded() -> None:
    g = _seq(
        (32,),
        ("fc1", N.Linear(), {"weight": _w(18, (4, 32), 0.3)}),
        ("fc2", N.Linear(), {"weight": _w(19, (32, 4), 0.3)}),
        ("lif", N.LIF(), _lif(32)),
    )
    out, rep = _canon(g)
    assert out == g.replace(meta={"canonical": True}) and rep.chains_folded == 0
    assert rep.notes == (
        "kept 'fc1' -> 'fc2' apart: one layer would have 1,024 weights, the two have 256",
    )


# ----------------------------------------------------------------------------- identities


def test_identities_are_dropped_and_flatten_chains_merged() -> None:
    g = _seq(
        (2, 3, 4),
        ("f1", N.Flatten(start_dim=1, end_dim=2, origin="a"), {}),
        ("f2", N.Flatten(start_dim=0, end_dim=1, origin="b"), {}),
        ("d0", N.Delay(), {"steps": np.zeros(24, np.int64)}),
        ("one", N.Scale(), {"scale": np.ones(24, np.float32)}),
        ("fc", N.Linear(), {"weight": _w(22, (8, 24), 0.6)}),
        ("f3", N.Flatten(), {}),
        ("lif", N.LIF(), _lif(8)),
    )
    out, rep = _canon(g)
    assert _kinds(out) == ["input:Input", "f2:Flatten", "fc:Linear", "lif:LIF", "output:Output"]
    assert out.nodes["f2"] == N.Flatten(start_dim=0, end_dim=2, origin="a+b")
    assert (out.inputs["fc"], out.inputs["lif"]) == (("f2",), ("fc",))
    assert rep.identities_dropped == 4
    _same(g, out)


# ----------------------------------------------------------------------------- pruning


def _mlp(seed: int = 21, hidden: int = 16) -> dict[str, np.ndarray]:
    return {
        "w1": _w(seed, (hidden, 20), 0.5),
        "b1": np.zeros(hidden, np.float32),
        "w2": _w(seed + 1, (6, hidden), 0.6),
        "b2": np.zeros(6, np.float32),
    }


def _mlp_graph(p) -> Graph:
    h = len(p["b1"])
    return _seq(
        (20,),
        ("fc1", N.Affine(), {"weight": p["w1"], "bias": p["b1"]}),
        ("lif1", N.LIF(), _lif(h)),
        ("fc2", N.Affine(), {"weight": p["w2"], "bias": p["b2"]}),
        ("lif2", N.LIF(), _lif(6)),
    )


def test_prune_removes_a_neuron_that_never_fires_and_one_that_reaches_nothing() -> None:
    p = _mlp()
    p["w1"][3] = -np.abs(p["w1"][3])  # neuron 3 only ever gets inhibited
    p["w2"][2] = -np.abs(p["w2"][2]) - 1 / 64  # an output neuron that never fires: kept
    p["w2"][:, 5] = 0.0  # neuron 5 talks to nobody
    g = _mlp_graph(p)
    out, rep = _canon(g)
    keep = [j for j in range(16) if j not in (3, 5)]
    np.testing.assert_array_equal(out.params["fc1"]["weight"], p["w1"][keep])
    np.testing.assert_array_equal(out.params["fc2"]["weight"], p["w2"][:, keep])
    assert out.params["lif1"]["threshold"].shape == (14,)
    assert out.params["lif2"]["threshold"].shape == (6,)  # the output population is untouched
    assert rep.pruned == (PruneRecord("lif1", 16, 1, 1),)
    assert "pruned 2 of 16 neurons in 'lif1' (1 can never fire, 1 never reach an output)" in (
        rep.text().splitlines()
    )
    _same(g, out)


def test_prune_uses_the_input_range_from_meta() -> None:
    p = _mlp()
    p["w1"][3] = np.abs(p["w1"][3])  # only excited by inputs in [0, 1], only inhibited in [-1, 0]
    g = _mlp_graph(p)
    assert _canon(g)[1].pruned == ()
    g = g.replace(meta={"input_range": [-1.0, 0.0]})
    out, rep = _canon(g)
    assert rep.pruned == (PruneRecord("lif1", 16, 1, 0),)
    np.testing.assert_array_equal(out.params["fc1"]["weight"], np.delete(p["w1"], 3, axis=0))
    x = -_x(g)
    np.testing.assert_array_equal(simulate(g, x), simulate(out, x))


def test_prune_iterates_until_nothing_changes() -> None:
    p = _mlp(hidden=8) | {"w3": _w(30, (4, 6), 0.8)}
    p["w2"][:, 2] = 0.0
    p["w2"][:, 4] = 0.0
    p["w2"][1, 4] = 1.0  # lif1 neuron 4 only reaches lif2 neuron 1 ...
    p["w3"][:, 1] = 0.0  # ... which reaches nothing: found in round 1, neuron 4 in round 2
    g = _seq(
        (20,),
        ("fc1", N.Affine(), {"weight": p["w1"], "bias": p["b1"]}),
        ("lif1", N.LIF(), _lif(8)),
        ("fc2", N.Affine(), {"weight": p["w2"], "bias": p["b2"]}),
        ("lif2", N.LIF(), _lif(6)),
        ("fc3", N.Linear(), {"weight": p["w3"]}),
        ("lif3", N.LIF(), _lif(4)),
    )
    out, rep = _canon(g)
    assert rep.pruned == (PruneRecord("lif1", 8, 0, 2), PruneRecord("lif2", 6, 0, 1))
    assert out.params["fc2"]["weight"].shape == (5, 6)
    _same(g, out, rate=(0.05, 0.6))


def test_population_with_no_path_to_an_output_is_removed() -> None:
    g = _mlp_graph(_mlp())
    nodes = dict(g.nodes) | {"fcx": N.Linear(), "lifx": N.LIF()}
    inputs = dict(g.inputs) | {"fcx": ["lif1"], "lifx": ["fcx"]}
    params = dict(g.params) | {"fcx": {"weight": _w(40, (3, 16), 1.0)}, "lifx": _lif(3)}
    g2 = g.replace(nodes=nodes, inputs=inputs, params=params)
    out, rep = _canon(g2)
    assert out == _canon(g)[0] and rep.dead_nodes == ("fcx", "lifx")


def test_recurrent_population_survives_with_identical_spikes() -> None:
    w_rec = _w(41, (12, 12), 0.3)
    w_in = _w(42, (12, 10), 0.6)
    w_in[7], w_rec[7] = -np.abs(w_in[7]), -np.abs(w_rec[7])  # neuron 7 never fires
    gain = np.float32([2.0, 0.5, 1.0] * 4)
    nodes = {
        "input": N.Input(shape=(10,)),
        "fc": N.Affine(),
        "lif": N.LIF(),
        "d": N.Delay(),
        "rec": N.Linear(),
        "fc2": N.Linear(),
        "lif2": N.LIF(),
        "output": N.Output(shape=(5,)),
    }
    g = Graph(
        nodes,
        {
            "fc": ["input"],
            "lif": ["fc", "rec"],
            "d": ["lif"],
            "rec": ["d"],
            "fc2": ["lif"],
            "lif2": ["fc2"],
            "output": ["lif2"],
        },
        {
            "fc": {"weight": w_in, "bias": np.zeros(12)},
            "lif": _lif(12, gain=gain),
            "d": {"steps": np.ones(12, np.int64)},
            "rec": {"weight": w_rec},
            "fc2": {"weight": _w(43, (5, 12), 1.0)},
            "lif2": _lif(5),
        },
    )
    out, rep = _canon(g)
    keep = [j for j in range(12) if j != 7]
    assert rep.pruned == (PruneRecord("lif", 12, 1, 0),) and rep.gains_folded == 1
    np.testing.assert_array_equal(
        out.params["rec"]["weight"], (w_rec * gain[:, None])[keep][:, keep]
    )
    assert out.params["d"]["steps"].shape == (11,)
    _same(g, out)


# ----------------------------------------------------------------------------- the pass


def _everything() -> Graph:
    p = _mlp(hidden=12)
    p["w2"][:, 0] = 0.0
    return _seq(
        (2, 10, 10),
        ("pool", N.AvgPool2d(kernel=(2, 2), stride=(2, 2)), {}),
        ("flat", N.Flatten(), {}),
        ("fc0", N.Linear(), {"weight": _w(50, (20, 50), 0.4)}),
        ("fc1", N.Affine(), {"weight": p["w1"], "bias": p["b1"]}),
        ("lif1", N.LIF(), _lif(12, gain=np.full(12, 2.0))),
        ("fc2", N.Affine(), {"weight": p["w2"], "bias": p["b2"]}),
        ("lif2", N.LIF(), _lif(6)),
    )


def test_canonicalize_is_idempotent() -> None:
    once, rep = _canon(_everything())
    assert (rep.pools_folded, rep.gains_folded, rep.chains_folded) == (1, 1, 1)
    assert rep.pruned == (PruneRecord("lif1", 12, 0, 1),)
    twice, rep2 = _canon(once)
    assert twice == once and rep2.text() == "nothing to change"
    assert once.meta["canonical"] is True


def test_fold_off_only_splits_avgpool_and_prunes() -> None:
    g = _everything()
    out, rep = _canon(g, fold=False)
    assert [k for k in _kinds(out) if "Scale" in k or "Pool" in k] == [
        "pool:SumPool2d",
        "pool_scale:Scale",
    ]
    assert (out.params["lif1"]["gain"] == 2).all() and "fc0" in out.nodes
    assert rep.pruned == (PruneRecord("lif1", 12, 0, 1),)
    out2 = _canon(g, prune=False)[0]
    assert out2.params["lif1"]["threshold"].shape == (12,)


def test_quantised_graph_is_refused() -> None:
    g = _mlp_graph(_mlp())
    with pytest.raises(PassError, match="run canonicalize before quantize"):
        _canon(g.replace(meta={"quantized": True}))
    params = dict(g.params) | {
        "fc2": {
            "weight": g.params["fc2"]["weight"].astype(np.int8),
            "bias": g.params["fc2"]["bias"],
        }
    }
    with pytest.raises(PassError, match=r"'fc2' \(Affine\): parameter 'weight' is int8"):
        _canon(g.replace(params=params))


def test_pipeline_verifies_the_result_and_spells_the_options() -> None:
    g = _everything()
    assert Pipeline([Canonicalize()]).run(g) == _canon(g)[0]
    assert Canonicalize(prune=False).spec() == "canonicalize{prune=false}"


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    silent=st.lists(st.integers(0, 15), max_size=4),
    mute=st.lists(st.integers(0, 15), max_size=4),
    log_gain=st.lists(st.integers(-2, 2), min_size=16, max_size=16),
)
def test_random_mlps_keep_their_spikes_and_canonicalize_once(seed, silent, mute, log_gain):
    p = _mlp(seed)
    p["b1"] = _w(seed + 7, (16,), 0.1)
    for j in silent:
        p["w1"][j], p["b1"][j] = -np.abs(p["w1"][j]), -np.abs(p["b1"][j])
    for j in mute:
        p["w2"][:, j] = 0.0
    g = _mlp_graph(p)
    gain = np.exp2(np.array(log_gain, np.float32))
    g = g.replace(params=dict(g.params) | {"lif1": _lif(16, gain=gain)})
    out, rep = _canon(g)
    gone = sum(r.never_fire + r.no_output for r in rep.pruned)
    assert gone >= len(set(silent) | set(mute))
    assert out.params["lif1"]["threshold"].shape == (16 - gone,)
    np.testing.assert_array_equal(simulate(g, _x(g)), simulate(out, _x(g)))
    assert _canon(out)[0] == out
