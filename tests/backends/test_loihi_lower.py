"""Lowering to Loihi core configurations: every synapse of the mapping exactly once with the
right weight, exponent and delay; limits validated per core; files that read back equal; where
the arithmetic allows it, Loihi's spikes equal the integer simulator's; refusals that say what
and where; networks split over chips."""

from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from snnc.backends.loihi import lower, read, violations, write
from snnc.backends.loihi.config import CxProfile, Port, Semantics, routes
from snnc.backends.loihi.layer import merged_inputs
from snnc.backends.loihi.lower import core_usage
from snnc.backends.loihi.netx import export_netx
from snnc.build import compile_model
from snnc.errors import BackendError, SnncError
from snnc.ir import Graph
from snnc.ir import nodes as N
from snnc.mapping.cores import mapping_of
from snnc.sim.integer import simulate as int_sim
from snnc.sim.loihi import simulate as loihi_sim
from snnc.targets import load_target
from snnc.targets.schema import target_to_dict

from ..passes.test_partition import conv_net
from ..passes.test_quantize import MODES, mlp, spikes
from .test_images import _recurrent, skip_net, threshold_net

R, TM = N.ResetMode, N.ResetTiming
EXACT = (R.TO_VALUE, TM.IMMEDIATE)  # Loihi's own reset: spikes must match the IR exactly


def loihi_target(tmp: Path, name: str, base: str = "loihi1", core=None, **top) -> str:
    d = target_to_dict(load_target(base))
    d.update(name=name, source="", **top)
    d["core"].update(core or {})
    p = tmp / f"{name}.yaml"
    p.write_text(yaml.safe_dump(d))
    return str(p)


def compiled(g: Graph, target: str = "loihi1"):
    r = compile_model(g, target=target)
    m = mapping_of(r.graph, r.ctx.cache)
    return r.graph, m, lower(r.graph, target, m)


def run_aligned(low, x: np.ndarray) -> np.ndarray:
    """Loihi spikes of the output, run T + depth steps and aligned to the IR's steps."""
    d = max(k for _, k in low.config.chip.layers)
    pad = np.concatenate([x, np.zeros((d, *x.shape[1:]), x.dtype)])
    out = loihi_sim(low.config, pad.reshape(pad.shape[0], pad.shape[1], -1)).output
    return out[d:]


def as_exact(g: Graph, strict: bool = True, cls=N.IF) -> Graph:
    """The graph with IF neurons that reset to 0 at once and no biases: Loihi's arithmetic."""
    nodes, params = dict(g.nodes), {k: dict(v) for k, v in g.params.items()}
    for n, node in g.nodes.items():
        if isinstance(node, (N.LIF, N.IF)):
            nodes[n] = cls(reset=EXACT[0], timing=EXACT[1], strict=strict, origin=node.origin)
            params[n] = {k: v for k, v in params[n].items() if k in cls.PARAMS}
            params[n]["bias"] = np.zeros_like(params[n]["bias"])
        if "bias" in params[n] and not isinstance(node, N.NEURON_TYPES):
            params[n]["bias"] = np.zeros_like(params[n]["bias"])
    return g.replace(nodes=nodes, params=params)


def cuba_bias_net(seed: int, shape=(20, 12, 5), scale: float = 0.3) -> Graph:
    """CubaLIF neurons with Loihi's own arithmetic (no leak: decayV 0; decay_i 0: decayU 4095;
    reset to 0 at once; strict) whose Affine layers both have biases."""
    rng = np.random.default_rng(seed)
    n_hid, n_in, n_out = shape
    w1 = rng.normal(0, 0.5, (n_hid, n_in)).astype(np.float32)
    w2 = rng.normal(0, 0.5, (n_out, n_hid)).astype(np.float32)
    g = mlp(w1, w2, decay=1.0, cls=N.CubaLIF, mode=EXACT, strict=True)
    g = g.replace(nodes=dict(g.nodes) | {"fc1": N.Affine()})
    g.params["fc1"]["bias"] = rng.normal(0.1, scale, n_hid).astype(np.float32)
    g.params["fc2"]["bias"] = rng.normal(0.1, scale, n_out).astype(np.float32)
    for n in ("l1", "l2"):
        g.params[n]["decay_i"] = np.zeros_like(g.params[n]["decay_i"])
    return g


# ------------------------------------------------------------------------------ structure


BIAS = "<bias>"  # the always-on bias compartment, in synapses_of


def _sources(cfg) -> dict[tuple[int, int, int], tuple[str, int]]:
    """(chip, core, input axon) -> (source layer or input, element), from the routes; a
    compartment of no layer is the bias compartment (BIAS, 0)."""
    out = {}
    for port in cfg.chip.inputs:
        for e, where in enumerate(port.where):
            for w in where:
                out[w] = (port.name, e)
    for ref in cfg.chip.cores:
        for a in cfg.cores[ref.chip, ref.core].axons:
            layer = [x for x in ref.layers if x[3] <= a.cx < x[3] + x[2] - x[1]]
            name, first, _, cx = layer[0] if layer else (BIAS, 0, 0, a.cx)
            out[a.chip, a.core, a.axon] = (name, first + a.cx - cx)
    return out


def synapses_of(cfg) -> dict[tuple[str, str, int], dict[tuple[int, int], int]]:
    """(layer, source, Dly) -> {(neuron, source element): Wgt * 2**wgtExp}, read back."""
    src = _sources(cfg)
    out: dict = {}
    for ref in cfg.chip.cores:
        core = cfg.cores[ref.chip, ref.core]
        s = core.synapses
        for a, e in enumerate(core.synapse_map):
            if e is None:
                continue
            sname, el = src[ref.chip, ref.core, a]
            for j in range(e.synapse_ptr, e.synapse_ptr + e.synapse_len):
                cx = e.cx_base + s.cidx[j]
                name, first, _, c0 = next(x for x in ref.layers if x[3] <= cx < x[3] + x[2] - x[1])
                f = core.synapse_fmts[s.fmt[j]]
                w = s.wgt[j] * 2.0**f.wgt_exp
                cell = out.setdefault((name, sname, s.dly[j]), {})
                key = (first + cx - c0, el)
                assert key not in cell, f"synapse {key} of {name} stored twice"
                cell[key] = w
    return out


def check_every_synapse_once(m, low) -> None:
    got = synapses_of(low.config)
    want: dict = {}
    for name, p in low.layers.items():
        pop = m.network.populations[name]
        for (src, d), mat in merged_inputs(pop, p.gain).items():
            c = mat.tocoo()
            cell = want.setdefault((name, src, p.delays[src, d]), {})
            # input ports are in the graph's order, the mapping in pixel-major order
            perm = m.network.perm.get(src) if src in m.network.inputs else None
            cols = c.col if perm is None else perm[c.col]
            for i, j, v in zip(c.row, cols, c.data, strict=True):
                if v:
                    cell[int(i), int(j)] = cell.get((int(i), int(j)), 0) + v * 2.0**p.k
        if p.current_bias_format is not None:  # one synapse per biased neuron, Dly depth - 1
            cell = want.setdefault((name, BIAS, p.depth - 1), {})
            for i in np.flatnonzero(p.current_bias):
                cell[int(i), 0] = p.current_bias[i] * 2.0**p.k
    assert got == want


NETS = {
    "mlp": lambda: mlp(*_weights(0)),
    "cuba": lambda: mlp(*_weights(1), cls=N.CubaLIF, strict=False),
    "skip": lambda: skip_net(1),
    "conv": lambda: conv_net(0),
    "threshold": lambda: threshold_net(0),
    "recurrent": lambda: _recurrent(0),
    "recurrent2": lambda: _recurrent(1, steps=3),
    "cuba_bias": lambda: cuba_bias_net(1),
}


def _weights(seed: int):
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 0.5, (20, 12)).astype(np.float32),
            rng.normal(0, 0.5, (5, 20)).astype(np.float32))  # fmt: skip


@pytest.mark.parametrize("net", sorted(NETS))
def test_every_synapse_once_with_its_weight_and_delay_and_limits_hold(net: str, tmp_path) -> None:
    g, m, low = compiled(NETS[net]())
    check_every_synapse_once(m, low)
    assert violations(low.config, "loihi1") == []
    # written and read back: equal
    write(low.config, tmp_path / "loihi", yaml_too=True)
    assert read(tmp_path / "loihi") == low.config
    for p in (tmp_path / "loihi").rglob("*.yaml"):
        assert yaml.safe_load(p.read_text()) == json.loads(p.with_suffix(".json").read_text())


def test_delays_keep_the_ir_timing_through_skip_and_recurrent_paths() -> None:
    _, _, low = compiled(_recurrent(1, steps=3))
    assert dict(low.config.chip.layers) == {"l1": 1, "l2": 2}
    assert low.layers["l1"].delays == {("input", 0): 0, ("l1", 3): 2}  # 3 IR steps = 1 + Dly 2
    _, _, low = compiled(skip_net(1))
    assert dict(low.config.chip.layers) == {"a": 1, "b": 1, "o": 2}
    assert all(d == 0 for p in low.layers.values() for d in p.delays.values())
    # only the bias synapses into 'o' (depth 2, IF without current) wait a step
    dly = {f.dly_bits for f in low.config.cores[0, 0].synapse_fmts}
    assert dly == {0, 6} and low.layers["o"].bias_in_u and low.layers["o"].current_bias_dly == 1


def test_profiles_and_formats_per_core() -> None:
    rng = np.random.default_rng(3)
    g = mlp(rng.normal(0, 0.5, (20, 12)).astype(np.float32),
            np.abs(rng.normal(0, 0.5, (5, 20))).astype(np.float32), decay=0.5)  # fmt: skip
    g.params["l2"]["decay"] = np.full(5, 0.75, np.float32)
    _, _, low = compiled(g)
    (core,) = low.config.cores.values()
    # (decayU, decayV): u forgets, v keeps 1/2 and 3/4
    assert core.cx_profiles == (CxProfile(4095, 2048), CxProfile(4095, 1024))
    assert len(core.vth_profiles) == 2  # one threshold per layer (granularity=layer)
    # fc1 mixed, fc2 excitatory (all weights >= 0): two 8-bit formats
    assert [(f.wgt_bits, f.is_mixed, f.idx_bits) for f in core.synapse_fmts] == [
        (8, True, 10), (8, False, 10)
    ]  # fmt: skip
    use = core_usage(core, load_target("loihi1"))
    assert (use.compartments, use.input_axons, use.cx_profiles, use.synapse_formats) == (
        25, 32, 2, 2
    )  # fmt: skip


def test_synapse_memory_is_the_partitioners_cost() -> None:
    """Validation and partitioning count synapse memory alike: the route pass's figures."""
    r = compile_model(Path(__file__).parents[2] / "examples" / "mnist" / "model.pt",
                      target="loihi1")  # fmt: skip
    low = lower(r.graph, "loihi1", mapping_of(r.graph, r.ctx.cache))
    fit = {c.core: c.synapse_bits for c in r.ctx.reports["route"].cores}
    assert [fit[0], fit[1]] == [911_936, 937_024]
    # plus the bias axon's synapses (one per neuron with a bias; its biases are carried into u)
    assert [u.synapse_bits for u in low.usage] == [913_088, 938_368]
    assert all(u.synapse_bits <= 1_048_576 for u in low.usage)


# ------------------------------------------------------------------------------ arithmetic


@pytest.mark.parametrize("net", ["mlp", "skip", "conv", "recurrent", "recurrent2"])
@pytest.mark.parametrize("strict", [True, False])
def test_loihi_spikes_equal_the_integer_simulators_with_loihis_arithmetic(net, strict) -> None:
    g = as_exact(NETS[net](), strict)
    g, _, low = compiled(g)
    # nothing changes but where the IR saturates (IF: no leak, unbounded) and Loihi clips
    assert all("saturates v" in w for p in low.layers.values() for w in p.warnings)
    shape = g.nodes[g.input_names[0]].shape
    x = spikes(30, 6, int(np.prod(shape)), seed=5, rate=0.4).reshape(30, 6, *shape)
    want = int_sim(g, x)
    got = run_aligned(low, x).reshape(want.shape)
    assert want.sum() > 0 and np.array_equal(got, want)


def test_semantic_changes_are_reported_not_refused() -> None:
    g = mlp(*_weights(0), mode=MODES[1], strict=False, bias1=np.full(20, 0.2))
    _, _, low = compiled(g)
    w = low.layers["l1"].warnings
    assert any("subtraction" in x and "reset to 0" in x for x in w)
    assert any("next_step reset becomes Loihi's immediate" in x for x in w)
    assert any("truncates toward zero" in x for x in w)
    assert any("'>=' threshold" in x for x in w)
    # the bias goes through u (no current: decayU 4095), exact from the input's first step
    assert low.layers["l1"].bias_in_u and not any("bias acts from" in x for x in w)
    assert "lags the input by 2 step(s)" in low.warnings[0]
    assert "the biases of 'l1' come from an always-on compartment" in low.warnings[1]


# ------------------------------------------------------------------------------ refusals


def _li_net() -> Graph:
    g = mlp(*_weights(0))
    nodes, params = dict(g.nodes), dict(g.params)
    nodes["l2"] = N.LI()
    params["l2"] = {k: v for k, v in params["l2"].items() if k in N.LI.PARAMS}
    return g.replace(nodes=nodes, params=params)


def _reset_value_net() -> Graph:
    g = mlp(*_weights(0), mode=(R.TO_VALUE, TM.IMMEDIATE))
    g.params["l1"]["reset_value"] = np.full(20, -0.5, np.float32)
    return g


def _feedback_net() -> Graph:
    """l2 feeds l1 back through a one-step Delay: l1 (depth 1) would need Dly = -1."""
    rng = np.random.default_rng(0)
    g = mlp(*_weights(0))
    nodes = dict(g.nodes) | {"d": N.Delay(), "rec": N.Linear()}
    inputs = dict(g.inputs) | {"d": ["l2"], "rec": ["d"], "l1": ["fc1", "rec"]}
    w = rng.normal(0, 0.3, (20, 5)).astype(np.float32)
    params = dict(g.params) | {"d": {"steps": np.ones(5, np.int64)}, "rec": {"weight": w}}
    return Graph(nodes, inputs, params, meta=g.meta)


@pytest.mark.parametrize(
    ("make", "target", "fragment"),
    [
        (_li_net, "loihi1", r"'l2' \(LI\) outputs its membrane; Loihi compartments send spikes "
                            "only"),
        (lambda: mlp(*_weights(0), mode=MODES[5]), "loihi1", "reset 'none'"),
        (_reset_value_net, "loihi1", "resets to -.*resets v to 0 only"),
        (_feedback_net, "loihi1", r"'l1' \(LIF\): its input from 'l2' \(IR delay 1\) needs a "
                                  "synaptic delay of -1 steps"),
    ],
)  # fmt: skip
def test_refusals_name_the_layer_and_what_loihi_allows(make, target, fragment) -> None:
    with pytest.raises(BackendError, match=fragment):
        compiled(make(), target)


# ------------------------------------------------------------------------------ current biases

NIR = Path(__file__).parents[1] / "fixtures" / "nir"


def _bias_synapses(low) -> dict[tuple[int, int], list[int]]:
    """(chip, core) -> the synapse indices of its input axon from the bias compartment."""
    out = {}
    for b in low.bias_compartments:
        for chip, core, axon in b.targets:
            e = low.config.cores[chip, core].synapse_map[axon]
            out[chip, core] = list(range(e.synapse_ptr, e.synapse_ptr + e.synapse_len))
    return out


def _shift_bias_dly(low, by: int):
    """The configuration with every bias synapse delayed ``by`` more steps (at least 0)."""
    cores = dict(low.config.cores)
    for key, idx in _bias_synapses(low).items():
        s = cores[key].synapses
        dly = [max(d + by, 0) if i in idx else d for i, d in enumerate(s.dly)]
        cores[key] = dataclasses.replace(
            cores[key], synapses=dataclasses.replace(s, dly=tuple(dly))
        )
    return dataclasses.replace(low.config, cores=cores)


def test_a_cubalif_current_bias_is_exact_from_the_first_step() -> None:
    """Loihi's own arithmetic (no leak, a current without memory, reset to 0, strict) with
    Affine biases into both CubaLIF layers: Loihi's output equals the integer simulator's at
    every step, the first ones included; the bias synapses' Dly (depth - 1) is what aligns it:
    one step more or less and the spikes differ."""
    g, m, low = compiled(cuba_bias_net(1))
    check_every_synapse_once(m, low)
    assert violations(low.config, "loihi1") == []
    assert dict(low.config.chip.layers) == {"l1": 1, "l2": 2}
    assert [(n, p.current_bias_dly) for n, p in low.layers.items()] == [("l1", 0), ("l2", 1)]
    for n in ("l1", "l2"):  # gain_i * gain * b in IR units (gains 1 here)
        pop = m.network.populations[n]
        assert np.array_equal(low.layers[n].current_bias, pop.input_bias) and pop.input_bias.any()
    # one bias compartment, on the network's one core, after the layers' 25 compartments
    (b,) = low.bias_compartments
    assert (b.chip, b.core, b.cx, b.targets) == (0, 0, 25, ((0, 0, 32),))
    assert (b.bias << b.bias_exp) > b.vth << 6
    assert not any("bias acts from Loihi step 0" in w for w in low.semantic_changes)
    x = spikes(40, 8, 12, seed=5, rate=0.2)
    want = int_sim(g, x)
    got = run_aligned(low, x)
    assert np.array_equal(got, want)
    assert want[:3].sum() == 9 and want.sum() == 160  # spikes in the first steps too
    pad = np.concatenate([x, np.zeros((2, *x.shape[1:]), x.dtype)])
    # the bias one step late: the first divergence is at IR step 0; early (l2's Dly 0): step 1
    for by, first in ((1, 0), (-1, 1)):
        moved = loihi_sim(_shift_bias_dly(low, by), pad).output[2:]
        assert int(np.argwhere(moved != want)[0, 0]) == first
    # and the bias matters: without it the IR spikes differently
    params = {k: dict(v) for k, v in g.params.items()}
    for n in ("fc1", "fc2"):
        params[n]["bias"] = np.zeros_like(params[n]["bias"])
    assert not np.array_equal(int_sim(g.replace(params=params), x), want)


def test_the_bias_compartment_fires_at_every_step_from_step_0() -> None:
    _, _, low = compiled(cuba_bias_net(1))
    (b,) = low.bias_compartments
    core = low.config.cores[b.chip, b.core]
    c = core.compartments[b.cx]
    assert (c.bias, c.bias_exp, b.vth) == (2625, 1, 82)  # 5250 > 82 << 6 = 5248: the least
    assert core.cx_profiles[c.cx_profile].refract_delay == 0
    x = spikes(30, 3, 12, seed=2, rate=0.2)
    res = loihi_sim(low.config, x, trace=True)
    u, v = res.u[b.chip, b.core][:, :, b.cx], res.v[b.chip, b.core][:, :, b.cx]
    assert not u.any() and not v.any()  # u = 0 (no synapse reaches it); v = bias, fires, reset
    # read through an output port: a spike at every step, from step 0, under both rules
    port = Port("bias", 1, (((b.chip, b.core, b.cx),),))
    cfg = dataclasses.replace(low.config, chip=dataclasses.replace(low.config.chip,
                                                                    outputs=(port,)))  # fmt: skip
    for sem in (Semantics(), Semantics("synapse", True, True)):
        out = loihi_sim(cfg, x, semantics=sem).output
        assert out.shape == (30, 3, 1) and out.all()


def test_the_bias_compartment_takes_a_free_core_when_none_has_room(tmp_path: Path) -> None:
    """25 compartments per core: the network fills its core, so the bias compartment gets a
    core of its own (vth 1, bias 65, decays 4095) and the output stays exact."""
    full = loihi_target(tmp_path, "full", core={"neurons": 25})
    g, m, low = compiled(cuba_bias_net(1), full)
    assert [len(c.compartments) for c in low.config.cores.values()] == [25, 1]
    (b,) = low.bias_compartments
    assert (b.chip, b.core, b.cx, b.bias, b.bias_exp, b.vth) == (0, 1, 0, 65, 0, 1)
    own = low.config.cores[0, 1]
    assert own.cx_profiles == (CxProfile(4095, 4095),) and own.synapse_map == ()
    assert [r.layers for r in low.config.chip.cores if r.core == 1] == [()]
    assert violations(low.config, full) == []
    check_every_synapse_once(m, low)
    x = spikes(30, 6, 12, seed=5, rate=0.2)
    want = int_sim(g, x)
    assert np.array_equal(run_aligned(low, x), want) and want.sum() > 0


def test_one_bias_compartment_per_chip_on_two_chips(tmp_path: Path) -> None:
    two = loihi_target(tmp_path, "two", core={"neurons": 64}, cores=4, mesh=[2, 2], chips=2)
    g, m, low = compiled(cuba_bias_net(0, (300, 40, 20), scale=0.1), two)
    chips = sorted({c for c, _ in low.config.cores})
    assert chips == [0, 1]
    assert [b.chip for b in low.bias_compartments] == [0, 1]
    for b in low.bias_compartments:  # each drives the cores of its own chip only
        assert {c for c, _, _ in b.targets} == {b.chip}
    assert violations(low.config, two) == []
    check_every_synapse_once(m, low)
    x = spikes(25, 4, 40, seed=1, rate=0.4)
    want = int_sim(g, x)
    assert np.array_equal(run_aligned(low, x), want) and want.sum() > 0


def test_a_current_bias_beyond_one_synapse_weight_or_max_delay_is_refused(tmp_path) -> None:
    g = cuba_bias_net(1)
    g.params["fc2"]["bias"] = np.array([5.0, 7.3, -6.1, 0.0, 9.7], np.float32)
    with pytest.raises(
        BackendError,
        match=r"'l2' \(CubaLIF\): its input bias .* adds -500\.\.795 IR units to u at every "
        r"step; .* one synapse weight .* q x 2\*\*0 with q in -128\.\.127 .* fewer weight-bits",
    ):
        compiled(g)
    t = loihi_target(tmp_path, "nodelay", core={"max_delay": 0})
    with pytest.raises(
        BackendError,
        match=r"'l2' \(CubaLIF\) is at depth 2: .* synaptic delay "
        r"of 1 steps from the always-on bias compartment; Loihi delays by 0\.\.0",
    ):
        compiled(cuba_bias_net(1), t)


def if_bias_net() -> Graph:
    """IF neurons with Loihi's own arithmetic (reset to 0 at once, strict) and biases on both
    layers (l1's own, l2's from its Affine)."""
    g = mlp(*_weights(0), cls=N.IF, mode=EXACT, strict=True, bias1=np.linspace(-0.3, 0.5, 20))
    g.params["fc2"]["bias"] = np.array([0.3, -0.2, 0.25, 0.1, 0.4], np.float32)
    return g


def test_a_lif_or_if_bias_goes_through_u_and_is_exact_from_the_first_step(monkeypatch) -> None:
    """No current (decayU 4095): the bias compartment's synapses (Dly depth - 1) carry the bias
    into u, the register holds 0, no early-bias warning, and Loihi equals the IR at every step.
    The register bias (the old path, forced) acts 1-2 steps early: it differs at IR step 0."""
    g, m, low = compiled(if_bias_net())
    check_every_synapse_once(m, low)
    assert [(n, p.bias_in_u, p.current_bias_dly) for n, p in low.layers.items()] == [
        ("l1", True, 0), ("l2", True, 1)]  # fmt: skip
    assert not any(p.bias.any() for p in low.layers.values())
    assert low.layers["l2"].current_bias.tolist() == [20, -13, 17, 7, 27]  # IR units
    assert not any("bias acts from" in w for w in low.semantic_changes)
    (b,) = low.bias_compartments
    assert (b.core, b.cx, b.targets) == (0, 25, ((0, 0, 32),))
    x = spikes(30, 6, 12, seed=5, rate=0.3)
    want = int_sim(g, x)
    assert np.array_equal(run_aligned(low, x), want)
    assert want[:3].sum() == 9 and want.sum() == 73
    mod = importlib.import_module("snnc.backends.loihi.layer")
    monkeypatch.setattr(mod._LayerLowering, "current_bias", lambda self, b, refuse=True: None)
    _, _, old = compiled(if_bias_net())
    assert not any(p.bias_in_u for p in old.layers.values()) and not old.bias_compartments
    assert sum("bias acts from Loihi step 0" in w for w in old.semantic_changes) == 2
    diff = run_aligned(old, x) != want
    assert int(np.argwhere(diff)[0, 0]) == 0 and int(diff.sum()) == 26


def test_a_lif_or_if_bias_wider_than_a_synapse_stays_in_the_register_with_the_warning() -> None:
    g = if_bias_net()
    g.params["fc2"]["bias"] = np.array([5.0, 7.3, -6.1, 0.0, 9.7], np.float32)
    _, _, low = compiled(g)  # -500..795 IR units: not one weight, but the register holds it
    l1, l2 = low.layers["l1"], low.layers["l2"]
    assert l1.bias_in_u and not l2.bias_in_u and l2.current_bias_format is None
    assert l2.bias.any() and not l1.bias.any()
    assert [w for w in low.semantic_changes if "bias acts from" in w] == [
        "'l2': its bias acts from Loihi step 0, 2 step(s) before its first input arrives; the "
        "IR adds it from the input's first step"]  # fmt: skip


def test_bias_synapses_that_break_a_core_limit_fall_back_to_the_registers(tmp_path) -> None:
    """The partitioner does not count the bias synapses: on a target whose one core holds
    exactly the network's synapses, the biases go back to the registers (warned) rather than
    the build being refused."""
    _, _, low = compiled(if_bias_net())
    fit = max(u.synapse_bits for u in low.usage)  # with the bias synapses
    plain = loihi_target(tmp_path, "roomy", cores=1, mesh=[1, 1])
    _, _, low0 = compiled(if_bias_net(), plain)
    assert low0.layers["l1"].bias_in_u and max(u.synapse_bits for u in low0.usage) == fit
    no_bias = [u.synapse_bits for u in compiled(mlp(*_weights(0), cls=N.IF, mode=EXACT),
                                                plain)[2].usage]  # fmt: skip
    tight = loihi_target(tmp_path, "tight", core={"synapse_memory_bits": max(no_bias)},
                         cores=1, mesh=[1, 1])  # fmt: skip
    _, _, low1 = compiled(if_bias_net(), tight)
    assert not any(p.bias_in_u for p in low1.layers.values())
    assert violations(low1.config, tight) == []
    assert len([w for w in low1.semantic_changes if "bias acts from" in w]) == 2


def test_norse_if_export_with_biases_agrees_exactly() -> None:
    """norse_mlp_if: IF, reset to 0 at once, strict, Linear biases: Loihi's arithmetic, so the
    loihi engine equals the integer simulator at every step (its biases go through u)."""
    r = compile_model(NIR / "norse_mlp_if.nir", target="loihi1", nir_flavor="norse")
    m = mapping_of(r.graph, r.ctx.cache)
    low = lower(r.graph, "loihi1", m)
    check_every_synapse_once(m, low)
    assert [(p.kind, p.bias_in_u) for p in low.layers.values()] == [("IF", True)] * 2
    assert not any("bias acts from" in w for w in low.semantic_changes)
    x = spikes(20, 8, 6, seed=1, rate=0.5)
    want = int_sim(r.graph, x)
    assert np.array_equal(run_aligned(low, x).reshape(want.shape), want) and want.sum() == 132


def _loihi_reset(g: Graph) -> Graph:
    """The graph with Loihi's reset (to 0 at once) in every CubaLIF."""
    nodes, params = dict(g.nodes), {k: dict(v) for k, v in g.params.items()}
    for n, node in g.nodes.items():
        if isinstance(node, N.CubaLIF):
            nodes[n] = dataclasses.replace(node, reset=EXACT[0], timing=EXACT[1])
            params[n]["reset_value"] = np.zeros_like(params[n]["threshold"])
    return g.replace(nodes=nodes, params=params)


def _agreement(g: Graph, low, x: np.ndarray) -> tuple[float, float]:
    """(fraction of output entries equal, relative error of the total spike count)."""
    want = int_sim(g, x)
    got = run_aligned(low, x).reshape(want.shape)
    return float(np.mean(got == want)), abs(float(got.sum()) / float(want.sum()) - 1.0)


@pytest.mark.parametrize(
    ("fixture", "flavor", "as_is"),
    [("norse_mlp", "norse", 0.93), ("rockpool_mlp", "rockpool", 0.71),
     ("rockpool_rec", "rockpool", 0.71), ("spikingjelly_mlp_cuba", "spikingjelly", 0.97)],
)  # fmt: skip
def test_cubalif_networks_with_biases_from_nir_exporters_compile_and_agree(
    fixture, flavor, as_is
) -> None:
    """Torch Linear layers have biases by default: these exports were refused before. Loihi
    truncates the decayed u and v toward zero where the IR rounds to the nearest unit (the
    reported leak warning), so a spike now and then moves by a step: >= 93% of the output
    entries (step x input x neuron) agree and the total spike counts within 1%. Rockpool
    resets by subtraction, which Loihi's reset to 0 changes (reported): as compiled, >= 71%
    agree; with the IR's reset made Loihi's, >= 93% (norse 93.5%, rockpool 95.9% and 97.9%,
    spikingjelly 97.4%). The biases matter: the IR without its Affine biases agrees with
    Loihi's output on at most 80% (73-79%)."""
    r = compile_model(NIR / f"{fixture}.nir", target="loihi1", nir_flavor=flavor)
    m = mapping_of(r.graph, r.ctx.cache)
    low = lower(r.graph, "loihi1", m)
    assert violations(low.config, "loihi1") == []
    check_every_synapse_once(m, low)
    (b,) = low.bias_compartments
    assert (b.chip, b.core, b.cx) == (0, 0, 8) and len(b.targets) == 1
    assert [p.current_bias_dly for p in low.layers.values()] == [0, 1]
    shape = r.graph.nodes[r.graph.input_names[0]].shape
    x = spikes(100, 64, int(np.prod(shape)), seed=1, rate=0.3).reshape(100, 64, *shape)
    eq, _ = _agreement(r.graph, low, x)
    assert eq >= as_is
    g = _loihi_reset(r.graph)
    low = lower(g, "loihi1", mapping_of(g))
    eq, count = _agreement(g, low, x)
    assert eq >= 0.93 and count <= 0.01
    params = {k: dict(v) for k, v in g.params.items()}
    for n in params:
        if "bias" in params[n] and not isinstance(g.nodes[n], N.NEURON_TYPES):
            params[n]["bias"] = np.zeros_like(params[n]["bias"])
    no_bias, _ = _agreement(g.replace(params=params), low, x)
    assert no_bias <= 0.8 < eq


def test_graded_input_is_refused_on_loihi1_and_sent_as_payloads_on_loihi2() -> None:
    rng = np.random.default_rng(2)
    g = as_exact(mlp(*_weights(0)))
    r = compile_model(g, target="loihi1", passes="canonicalize,quantize{input=graded,"
                      "input-bits=4},partition{target=loihi1},place{target=loihi1},"
                      "route{target=loihi1}")  # fmt: skip
    with pytest.raises(BackendError, match="graded .* binary spikes only.*loihi2"):
        lower(r.graph, "loihi1")
    spec = ("canonicalize,quantize{input=graded,input-bits=4},partition{target=loihi2},"
            "place{target=loihi2},route{target=loihi2}")  # fmt: skip
    r = compile_model(g, target="loihi2", passes=spec)
    low = lower(r.graph, "loihi2")
    assert low.config.chip.payload_bits == 4
    x = rng.random((20, 5, 12)).astype(np.float32)
    q = np.clip(np.rint(x * r.graph.meta["input_scale"]), 0, 15)
    want = int_sim(r.graph, x)
    assert np.array_equal(run_aligned(low, q), want) and want.sum() > 0


def test_a_delay_beyond_the_targets_is_refused(tmp_path: Path) -> None:
    t = loihi_target(tmp_path, "nodelay", core={"max_delay": 0})
    with pytest.raises(BackendError, match=r"needs a synaptic delay of 2 steps .* 0\.\.0"):
        compiled(_recurrent(1, steps=3), t)


def test_violations_list_every_broken_limit_naming_core_and_numbers(tmp_path: Path) -> None:
    g = mlp(*_weights(0))
    g.params["l2"]["decay"] = np.full(5, 0.5, np.float32)
    _, _, low = compiled(g)
    tight = loihi_target(tmp_path, "tight", core={"neurons": 16, "input_axons": 20,
                                                   "neuron_profiles": 1})  # fmt: skip
    assert violations(low.config, tight) == [
        "chip 0 core 0: compartments 25 / 16",
        "chip 0 core 0: input axons 32 / 20",
        "chip 0 core 0: compartment profiles 2 / 1",
    ]


def test_a_fpga_target_is_refused() -> None:
    r = compile_model(mlp(*_weights(0)), target="ecp5-25k")
    with pytest.raises(BackendError, match="'ecp5-25k' is a fpga target; .*--target loihi1"):
        lower(r.graph, "ecp5-25k")


# ------------------------------------------------------------------------------ chips


def _wide_mlp() -> Graph:
    rng = np.random.default_rng(0)
    return as_exact(mlp(rng.normal(0, 0.4, (300, 40)).astype(np.float32),
                        rng.normal(0, 0.3, (20, 300)).astype(np.float32)))  # fmt: skip


def test_a_network_too_large_for_one_chip_is_split_over_chips_with_routes(tmp_path) -> None:
    small = {"neurons": 64}
    one = loihi_target(tmp_path, "one", core=small, cores=4, mesh=[2, 2])
    two = loihi_target(tmp_path, "two", core=small, cores=4, mesh=[2, 2], chips=2)
    big = loihi_target(tmp_path, "big", core=small, cores=8, mesh=[2, 4])
    with pytest.raises(SnncError, match=r"more than the 4 cores of target 'one' \(4 per chip x 1"):
        compiled(_wide_mlp(), one)
    g, m, low2 = compiled(_wide_mlp(), two)
    _, _, low1 = compiled(_wide_mlp(), big)
    assert sorted({c for c, _ in low2.config.cores}) == [0, 1]
    inter = [r for r in routes(low2.config) if r["interChip"]]
    assert inter and sum(r["axons"] for r in inter) > 0
    assert violations(low2.config, two) == []
    check_every_synapse_once(m, low2)
    x = spikes(25, 4, 40, seed=1, rate=0.4)
    out2 = run_aligned(low2, x)
    assert np.array_equal(out2, run_aligned(low1, x))
    assert np.array_equal(out2, int_sim(g, x)) and out2.sum() > 0


# ------------------------------------------------------------------------------ netx


def test_netx_file_holds_what_lava_dl_reads(tmp_path: Path) -> None:
    g = mlp(*_weights(0), bias1=np.full(20, 0.2))
    g, m, low = compiled(g)
    path = tmp_path / "network.net"
    export_netx(low, m.network, path)
    with h5py.File(path, "r") as f:
        layer = f["layer"]
        assert sorted(layer.keys()) == ["0", "1", "2"]
        assert layer["0"]["type"][0] == b"input" and layer["0"]["shape"][()].tolist() == [12]
        for i, name in ((1, "l1"), (2, "l2")):
            grp, p = layer[str(i)], low.layers[name]
            assert grp["type"][0] == b"dense" and grp["shape"][()].tolist() == [p.vth.size]
            src = "input" if name == "l1" else "l1"
            mat = merged_inputs(m.network.populations[name], p.gain)[src, 0].toarray()
            assert np.array_equal(grp["weight"][()], mat << p.k)
            n = grp["neuron"]
            assert n["type"][0] == b"CUBA"
            assert int(n["iDecay"][()]) - 1 == int(p.decay_u[0]) == 4095  # netx: du = iDecay-1
            assert int(n["vDecay"][()]) == int(p.decay_v[0]) == 410
            assert int(n["vThMant"][()]) == int(p.vth[0])
            assert (int(n["refDelay"][()]), bool(n["gradedSpike"][()])) == (1, False)
        p = low.layers["l1"]  # its bias goes through u on the chip; netx: the neuron's bias
        assert p.bias_in_u and not p.bias.any()
        mant, exp = p.register_bias
        assert np.array_equal(layer["1"]["bias"][()] << 6, mant << exp)  # netx: bias_exp 6
        assert np.array_equal(layer["1"]["bias"][()], p.current_bias << p.k) and p.k >= 0
        assert "bias" not in layer["2"]


def test_netx_refuses_what_is_not_a_chain_saying_why(tmp_path: Path) -> None:
    _, m, low = compiled(skip_net(1))
    with pytest.raises(BackendError, match="netx describes a chain of layers; 'b' reads"):
        export_netx(low, m.network, tmp_path / "n.net")


def test_netx_refuses_current_biases_it_cannot_hold(tmp_path: Path) -> None:
    _, m, low = compiled(cuba_bias_net(1))
    with pytest.raises(BackendError, match="bias to its current through the bias compartment"):
        export_netx(low, m.network, tmp_path / "n.net")
    assert not (tmp_path / "n.net").exists()


def test_a_lowering_is_deterministic() -> None:
    a = compiled(NETS["conv"]())[2].config
    b = compiled(NETS["conv"]())[2].config
    assert a == b and dataclasses.asdict(a.chip) == dataclasses.asdict(b.chip)
