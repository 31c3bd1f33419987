"""Lowering to Loihi core configurations: every synapse of the mapping exactly once with the
right weight, exponent and delay; limits validated per core; files that read back equal; where
the arithmetic allows it, Loihi's spikes equal the integer simulator's; refusals that say what
and where; networks split over chips."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from snnc.backends.loihi import lower, read, violations, write
from snnc.backends.loihi.config import CxProfile, routes
from snnc.backends.loihi.lower import core_usage, merged_inputs
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


# ------------------------------------------------------------------------------ structure


def _sources(cfg) -> dict[tuple[int, int, int], tuple[str, int]]:
    """(chip, core, input axon) -> (source layer or input, element), from the routes."""
    out = {}
    for port in cfg.chip.inputs:
        for e, where in enumerate(port.where):
            for w in where:
                out[w] = (port.name, e)
    for ref in cfg.chip.cores:
        for a in cfg.cores[ref.chip, ref.core].axons:
            name, first, _, cx = next(x for x in ref.layers if x[3] <= a.cx < x[3] + x[2] - x[1])
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
    assert got == want


NETS = {
    "mlp": lambda: mlp(*_weights(0)),
    "cuba": lambda: mlp(*_weights(1), cls=N.CubaLIF, strict=False),
    "skip": lambda: skip_net(1),
    "conv": lambda: conv_net(0),
    "threshold": lambda: threshold_net(0),
    "recurrent": lambda: _recurrent(0),
    "recurrent2": lambda: _recurrent(1, steps=3),
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
    fmt = low.config.cores[0, 0].synapse_fmts
    assert {f.dly_bits for f in fmt} == {0}


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
    assert [u.synapse_bits for u in low.usage] == [fit[0], fit[1]] == [911_936, 937_024]
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
    assert any("bias acts from Loihi step 0, 1 step(s) before" in x for x in w)
    assert "lags the input by 2 step(s)" in low.warnings[0]


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


def _cuba_bias_net() -> Graph:
    g = mlp(*_weights(0), cls=N.CubaLIF)
    g.params["fc2"]["bias"] = np.full(5, 0.3, np.float32)
    return g


@pytest.mark.parametrize(
    ("make", "target", "fragment"),
    [
        (_li_net, "loihi1", r"'l2' \(LI\) outputs its membrane; Loihi compartments send spikes "
                            "only"),
        (lambda: mlp(*_weights(0), mode=MODES[5]), "loihi1", "reset 'none'"),
        (_reset_value_net, "loihi1", "resets to -.*resets v to 0 only"),
        (_feedback_net, "loihi1", r"'l1' \(LIF\): its input from 'l2' \(IR delay 1\) needs a "
                                  "synaptic delay of -1 steps"),
        (_cuba_bias_net, "loihi1", "CubaLIF whose input has a bias"),
    ],
)  # fmt: skip
def test_refusals_name_the_layer_and_what_loihi_allows(make, target, fragment) -> None:
    with pytest.raises(BackendError, match=fragment):
        compiled(make(), target)


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
        bias = low.layers["l1"].bias << low.layers["l1"].bias_exp
        assert np.array_equal(layer["1"]["bias"][()] << 6, bias)  # netx: bias_exp 6
        assert "bias" not in layer["2"]


def test_netx_refuses_what_is_not_a_chain_saying_why(tmp_path: Path) -> None:
    _, m, low = compiled(skip_net(1))
    with pytest.raises(BackendError, match="netx describes a chain of layers; 'b' reads"):
        export_netx(low, m.network, tmp_path / "n.net")


def test_a_lowering_is_deterministic() -> None:
    a = compiled(NETS["conv"]())[2].config
    b = compiled(NETS["conv"]())[2].config
    assert a == b and dataclasses.asdict(a.chip) == dataclasses.asdict(b.chip)
