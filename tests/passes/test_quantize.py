"""quantize: error bounds, idempotence, exactness where representable, no overflow, bad options."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from snnc.errors import PassError
from snnc.ir import Graph
from snnc.ir import nodes as N
from snnc.passes.manager import PassContext, Pipeline, parse_spec
from snnc.sim.integer import simulate as int_sim
from snnc.sim.reference import simulate as float_sim

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
R, TM = N.ResetMode, N.ResetTiming
MODES = [
    (R.SUBTRACT, TM.IMMEDIATE), (R.SUBTRACT, TM.NEXT_STEP), (R.SUBTRACT, TM.GATED),
    (R.TO_VALUE, TM.IMMEDIATE), (R.TO_VALUE, TM.NEXT_STEP), (R.NONE, TM.IMMEDIATE),
]  # fmt: skip


def mlp(w1, w2, *, decay=0.9, threshold=1.0, mode=MODES[1], strict=True, bias1=None,
        cls=N.LIF, recurrent=None) -> Graph:  # fmt: skip
    n_hid, n_in = w1.shape
    n_out = w2.shape[0]

    def neuron(n):
        keys = [k for k in cls.PARAMS]
        vals = dict(decay=decay, decay_i=0.5, gain=1.0, gain_i=1.0, bias=0.0,
                    threshold=threshold, reset_value=0.0)  # fmt: skip
        return {k: np.full(n, vals[k], np.float32) for k in keys}

    p1 = neuron(n_hid)
    if bias1 is not None:
        p1["bias"] = np.asarray(bias1, np.float32)
    kw = dict(reset=mode[0], timing=mode[1], strict=strict)
    nodes = {"input": N.Input(shape=(n_in,)), "fc1": N.Linear(), "l1": cls(**kw),
             "fc2": N.Affine(), "l2": cls(**kw), "output": N.Output(shape=(n_out,))}  # fmt: skip
    inputs = {"fc1": ["input"], "l1": ["fc1"], "fc2": ["l1"], "l2": ["fc2"], "output": ["l2"]}
    params = {"fc1": {"weight": w1}, "fc2": {"weight": w2, "bias": np.zeros(n_out)},
              "l1": p1, "l2": neuron(n_out)}  # fmt: skip
    if recurrent is not None:
        nodes |= {"d": N.Delay(), "rec": N.Linear()}
        inputs |= {"d": ["l1"], "rec": ["d"], "l1": ["fc1", "rec"]}
        params |= {"d": {"steps": np.ones(n_hid, np.int64)}, "rec": {"weight": recurrent}}
    return Graph(nodes, inputs, params, meta={"canonical": True})


def quantize(g: Graph, spec: str = "quantize") -> tuple[Graph, PassContext]:
    ctx = PassContext()
    return Pipeline(parse_spec(spec)).run(g, ctx), ctx


def spikes(t, b, n, seed, rate=0.3) -> np.ndarray:
    return (np.random.default_rng(seed).random((t, b, n)) < rate).astype(np.float32)


@st.composite
def float_mlps(draw):
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    n_in, n_hid, n_out = (draw(st.integers(1, 12)) for _ in range(3))
    w1 = (rng.normal(0, draw(st.floats(0.05, 3)), (n_hid, n_in))).astype(np.float32)
    w2 = (rng.normal(0, draw(st.floats(0.05, 3)), (n_out, n_hid))).astype(np.float32)
    mode = draw(st.sampled_from(MODES))
    cls = draw(st.sampled_from([N.LIF, N.CubaLIF]))
    decay = draw(st.sampled_from([0.0, 0.5, 0.9, 0.97, 1.0])) if cls is N.LIF else 0.8
    rec = None
    if draw(st.booleans()):
        rec = rng.normal(0, 0.5, (n_hid, n_hid)).astype(np.float32)
    return mlp(w1, w2, decay=decay, mode=mode, cls=cls, recurrent=rec,
               threshold=draw(st.floats(0.2, 3.0)))  # fmt: skip


@SETTINGS
@given(float_mlps(), st.integers(2, 16), st.sampled_from(["layer", "neuron"]))
def test_weight_error_is_within_half_a_step(g: Graph, bits: int, gran: str) -> None:
    q, ctx = quantize(g, f"quantize{{weight-bits={bits},granularity={gran}}}")
    for layer, rep in [("fc1", "l1"), ("fc2", "l2")]:
        w = g.params[layer]["weight"].astype(np.float64)
        node = q.nodes[layer]
        wq = q.params[layer]["weight"].astype(np.int64)
        assert node.bits == bits
        assert np.all(wq % (1 << node.shift) == 0)
        levels = wq >> node.shift
        assert np.abs(levels).max() <= 2 ** (bits - 1) - 1
        report = next(r for r in ctx.reports["quantize"].layers if r.population == rep)
        s_lo, s_hi = report.scale
        if gran == "layer":
            assert np.all(np.abs(w * s_lo - levels) <= 0.5 + 1e-9)


@SETTINGS
@given(float_mlps(), st.sampled_from(["quantize", "quantize{weight-bits=4,decay=shift}"]))
def test_quantize_is_idempotent(g: Graph, spec: str) -> None:
    once, _ = quantize(g, spec)
    twice, _ = quantize(once, spec)
    assert twice == once


@SETTINGS
@given(float_mlps(), st.integers(2, 8), st.sampled_from(["mult", "shift"]), st.integers(0, 2**31))
def test_no_overflow_for_any_input_in_range(g, bits, decay, seed) -> None:
    q, _ = quantize(g, f"quantize{{weight-bits={bits},decay={decay}}}")
    n_in = g.nodes["input"].shape[0]
    t = 30
    drives = [np.ones((t, 1, n_in), np.float32), np.zeros((t, 1, n_in), np.float32),
              spikes(t, 8, n_in, seed, 0.5), spikes(t, 8, n_in, seed + 1, 0.05)]  # fmt: skip
    for x in drives:
        int_sim(q, x)  # raises SimulationError on any overflow of a non-saturating width


@st.composite
def exact_mlps(draw):
    """Float models whose quantisation is exact: integer weights reaching the top level,
    integer thresholds and biases, decays in {0, 1/2, 1} (exact with enough fraction bits)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    n_in, n_hid, n_out = (draw(st.integers(1, 10)) for _ in range(3))
    w1 = rng.integers(-7, 8, (n_hid, n_in)).astype(np.float32)
    w2 = rng.integers(-7, 8, (n_out, n_hid)).astype(np.float32)
    w1[0, 0], w2[0, 0] = 7, -7
    mode = draw(st.sampled_from(MODES))
    return mlp(w1, w2, decay=draw(st.sampled_from([0.0, 0.5, 1.0])), mode=mode,
               threshold=float(draw(st.integers(1, 12))), strict=draw(st.booleans()),
               bias1=rng.integers(-2, 3, n_hid).astype(np.float32))  # fmt: skip


@SETTINGS
@given(exact_mlps(), st.integers(0, 2**31))
def test_integer_equals_float_when_every_parameter_is_representable(g, seed) -> None:
    # 4-bit levels are the weights themselves (s = 1); 12 fraction bits hold 10 halvings exactly
    q, _ = quantize(g, "quantize{weight-bits=4,granularity=layer,frac-bits=12,state-bits=40}")
    x = spikes(10, 16, g.nodes["input"].shape[0], seed, 0.4)
    f, frec = float_sim(g, x, record=True)
    i, irec = int_sim(q, x, record=True)
    assume(frec["l1"].any())
    np.testing.assert_array_equal(irec["l1"], frec["l1"])
    np.testing.assert_array_equal(i, f)


def test_graded_input_is_quantised_into_the_first_layer() -> None:
    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.5, (20, 8)).astype(np.float32)
    w2 = rng.normal(0, 0.5, (4, 20)).astype(np.float32)
    g = mlp(w1, w2)
    q, _ = quantize(g, "quantize{input=graded,input-bits=8,input-max=1.0}")
    assert q.meta["input"] == "graded" and q.meta["input_scale"] == 255.0
    x = rng.random((20, 64, 8)).astype(np.float32)
    f, i = float_sim(g, x), int_sim(q, x)
    assert (f == i).mean() > 0.97
    from snnc.errors import SimulationError

    with pytest.raises(SimulationError, match="not binary spikes"):
        int_sim(quantize(g)[0], x)


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("quantize{weight-bits=17}", "pass 'quantize': weight-bits must be 1..16, got 17"),
        ("quantize{weight-bits=four}", "option 'weight-bits' expects int, got 'four'"),
        ("quantize{colour=red}", "pass 'quantize' has no option 'colour'"),
        (
            "quantise",
            "unknown pass 'quantise'; available: canonicalize, partition, place, quantize, route",
        ),
        ("quantize{decay=exp}", "decay must be mult or shift"),
    ],
)
def test_bad_pipeline_specs_say_what_is_wrong(spec: str, fragment: str) -> None:
    with pytest.raises(PassError) as e:
        parse_spec(spec)
    assert fragment in str(e.value)


def test_quantize_before_canonicalize_is_refused() -> None:
    g = mlp(np.ones((3, 2), np.float32), np.ones((2, 3), np.float32))
    g = g.replace(meta={})
    with pytest.raises(PassError, match=r"'quantize' failed \(first pass\): quantize needs a "
                                        r"canonical graph: run canonicalize first"):  # fmt: skip
        quantize(g)


def test_a_width_cap_that_cannot_hold_the_range_names_layer_and_numbers() -> None:
    rng = np.random.default_rng(1)
    g = mlp(rng.normal(0, 1, (30, 40)).astype(np.float32),
            rng.normal(0, 1, (3, 30)).astype(np.float32), decay=0.99)  # fmt: skip
    with pytest.raises(PassError) as e:
        quantize(g, "quantize{state-bits=8}")
    msg = str(e.value)
    assert "'quantize' failed" in msg and "'l1' (LIF)" in msg
    assert "needs" in msg and "state-bits=8" in msg and "saturate=true" in msg
    q, ctx = quantize(g, "quantize{state-bits=8,saturate=true}")
    assert q.nodes["l1"].saturate and q.nodes["l1"].state_bits == 8
    assert "saturating" in ctx.reports["quantize"].text()
    int_sim(q, spikes(20, 4, 40, 0, 0.5))  # saturates instead of overflowing


def test_report_states_scale_bits_decay_error_and_range() -> None:
    rng = np.random.default_rng(2)
    g = mlp(rng.normal(0, 1, (6, 5)).astype(np.float32),
            rng.normal(0, 1, (2, 6)).astype(np.float32), decay=0.9)  # fmt: skip
    _, ctx = quantize(g, "quantize{weight-bits=4,decay=shift}")
    text = ctx.reports["quantize"].text()
    assert text.splitlines()[0] == "quantize{weight-bits=4,decay=shift}"
    line = text.splitlines()[1]
    # beta 0.9 -> shift k=3 realises 0.875: tau 9.49 -> 7.49 steps, a 21% error
    assert line.startswith("  l1 ") and "w 4b<<4" in line and "decay 1-2^-3" in line
    assert "tau err 21." in line and "no overflow possible" in line


def test_a_uniform_input_gain_is_folded_into_the_weights() -> None:
    # an AvgPool feeding a neuron directly leaves gain 1/4 after canonicalize
    rng = np.random.default_rng(5)
    w1 = rng.normal(0, 2.0, (12, 6)).astype(np.float32)
    w2 = rng.normal(0, 2.0, (3, 12)).astype(np.float32)
    g = mlp(w1, w2)
    p = {k: v.copy() for k, v in g.params["l1"].items()}
    p["gain"] = np.full(12, 0.25, np.float32)
    g = g.replace(params={**g.params, "l1": p})
    q, _ = quantize(g)
    assert q.params["l1"]["gain"].tolist() == [1] * 12
    x = spikes(25, 64, 6, 3, 0.5)
    f, i = float_sim(g, x), int_sim(q, x)
    assert 0.02 < f.mean() < 0.6 and (f == i).mean() > 0.98
    p["gain"][0] = 0.5
    with pytest.raises(PassError, match="input gain 'gain' varies over its neurons"):
        quantize(g.replace(params={**g.params, "l1": p}))


def test_mse_clipping_keeps_small_weights_alive_at_two_bits() -> None:
    rng = np.random.default_rng(7)
    w1 = rng.standard_t(2, (64, 32)).astype(np.float32)  # heavy tails: a few large weights
    g = mlp(w1, rng.normal(0, 1, (4, 64)).astype(np.float32))
    by_max, _ = quantize(g, "quantize{weight-bits=2}")
    by_mse, _ = quantize(g, "quantize{weight-bits=2,clip=mse}")
    alive_max = np.count_nonzero(by_max.params["fc1"]["weight"])
    alive_mse = np.count_nonzero(by_mse.params["fc1"]["weight"])
    assert alive_mse > 2 * alive_max
    assert np.abs(by_mse.params["fc1"]["weight"] >> by_mse.nodes["fc1"].shift).max() == 1
