"""partition + place + route: every synapse stored once, every needed route present, spikes
unchanged, every limit kept — and networks that cannot fit are refused with the numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snnc.errors import PassError, ResourceError
from snnc.ir import Graph
from snnc.ir import nodes as N
from snnc.mapping.cores import mapping_of
from snnc.passes.manager import PassContext, Pipeline, parse_spec
from snnc.sim.cores import simulate as core_sim
from snnc.sim.integer import simulate as int_sim

from .test_quantize import mlp

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SMALL = """
name: tiny
kind: loihi
cores: {cores}
chips: 1
topology: mesh
mesh: [{w}, {h}]
core:
  neurons: {neurons}
  input_axons: {axons}
  output_axons: 4096
  synapse_memory_bits: {memory}
  weight_bits: [1, 2, 3, 4, 5, 6, 7, 8]
  state_bits: 32
  current_bits: 32
  neuron_profiles: 32
  threshold_profiles: 0
  synapse_formats: 8
synapse_cost: {{kind: sparse, word_bits: 64, index_bits: 10, header_bits: 10}}
router_entries: 4096
multicast: {multicast}
"""


def small_target(tmp: Path, *, cores=64, w=8, h=8, neurons=8, axons=64, memory=20000,
                 multicast="false") -> str:  # fmt: skip
    path = tmp / f"tiny_{cores}_{neurons}_{axons}_{memory}_{multicast}.yaml"
    path.write_text(SMALL.format(cores=cores, w=w, h=h, neurons=neurons, axons=axons,
                                 memory=memory, multicast=multicast))  # fmt: skip
    return str(path)


def compile_for(g: Graph, target: str, bits: int = 8) -> tuple[Graph, PassContext]:
    # Loihi holds 8 threshold profiles per core: one scale per layer keeps one threshold
    spec = (f"quantize{{weight-bits={bits},granularity=layer}},partition{{target={target}}},"
            f"place{{target={target}}},route{{target={target}}}")  # fmt: skip
    ctx = PassContext()
    return Pipeline(parse_spec(spec)).run(g, ctx), ctx


def conv_net(seed: int) -> Graph:
    rng = np.random.default_rng(seed)
    lif = {k: np.full((3, 4, 4), v, np.float32) for k, v in
           dict(decay=0.9, gain=1.0, bias=0.0, threshold=1.0, reset_value=0.0).items()}  # fmt: skip
    out = {k: np.full(5, v, np.float32) for k, v in
           dict(decay=0.9, gain=1.0, bias=0.0, threshold=1.0, reset_value=0.0).items()}  # fmt: skip
    return Graph(
        {"input": N.Input(shape=(2, 6, 6)), "conv": N.Conv2d(), "l1": N.LIF(),
         "pool": N.SumPool2d(kernel=(2, 2), stride=(2, 2)), "flat": N.Flatten(),
         "fc": N.Affine(), "l2": N.LIF(), "output": N.Output(shape=(5,))},
        {"conv": ["input"], "l1": ["conv"], "pool": ["l1"], "flat": ["pool"], "fc": ["flat"],
         "l2": ["fc"], "output": ["l2"]},
        {"conv": {"weight": rng.normal(0, 0.6, (3, 2, 3, 3)).astype(np.float32),
                  "bias": rng.normal(0, 0.1, 3).astype(np.float32)},
         "l1": lif, "l2": out,
         "fc": {"weight": rng.normal(0, 0.8, (5, 12)).astype(np.float32),
                "bias": np.zeros(5, np.float32)}},
        meta={"canonical": True},
    )  # fmt: skip


@st.composite
def networks(draw):
    seed = draw(st.integers(0, 2**31))
    if draw(st.booleans()):
        return conv_net(seed), (2, 6, 6)
    rng = np.random.default_rng(seed)
    n_in, n_hid, n_out = draw(st.integers(2, 30)), draw(st.integers(1, 40)), draw(st.integers(1, 9))
    w1 = rng.normal(0, 0.5, (n_hid, n_in)).astype(np.float32)
    w1[rng.random(w1.shape) < draw(st.floats(0, 0.8))] = 0  # some sparsity
    w2 = rng.normal(0, 0.5, (n_out, n_hid)).astype(np.float32)
    rec = rng.normal(0, 0.3, (n_hid, n_hid)).astype(np.float32) if draw(st.booleans()) else None
    return mlp(w1, w2, recurrent=rec), (n_in,)


def _rebuild(m) -> dict[tuple[str, str, int], sp.csr_matrix]:
    """Reassemble every block matrix from what the cores store."""
    out = {}
    for core in m.cores:
        for g in core.groups:
            for si, syn in g.synapses.items():
                sl = core.slices[si]
                pop = m.network.populations[sl.population]
                full = sp.lil_matrix((pop.size, m.network.source_size(g.source)), dtype=np.int64)
                full[sl.start : sl.stop, g.elements] = syn.toarray()
                key = (sl.population, g.source, g.delay)
                out[key] = out.get(key, 0) + full.tocsr()
    return out


@SETTINGS
@given(networks(), st.integers(2, 12), st.sampled_from(["false", "true"]), st.integers(0, 99))
def test_synapses_stored_once_routes_complete_spikes_identical(net, neurons, mc, seed) -> None:
    import tempfile

    g, in_shape = net
    with tempfile.TemporaryDirectory() as d:
        target = small_target(Path(d), neurons=neurons, multicast=mc)
        out, ctx = compile_for(g, target)
    m = mapping_of(out)
    # every neuron is in exactly one slice of exactly one core
    for name, pop in m.network.populations.items():
        covered = np.zeros(pop.size, int)
        for _, sl in m.slices_of(name):
            covered[sl.start : sl.stop] += 1
        assert covered.tolist() == [1] * pop.size
    # every synapse of the network is stored exactly once
    rebuilt = _rebuild(m)
    for name, pop in m.network.populations.items():
        for b in pop.blocks:
            got = rebuilt.get((name, b.source, b.delay))
            want = b.matrix.toarray()
            assert np.array_equal(got.toarray() if got is not None else np.zeros_like(want), want)
    # every (source element, destination core) that needs a route has one, and no other
    for core in m.cores:
        for grp in core.groups:
            rows = m.routes[grp.source]
            mine = rows[rows[:, 1] == core.index]
            axons = grp.first_axon + np.arange(grp.elements.size)
            have = {(int(e), int(a)) for e, _, a in mine if grp.first_axon <= a < axons[-1] + 1}
            assert have == set(zip(grp.elements.tolist(), axons.tolist(), strict=True))
    # the partitioned network computes what the graph computes
    x = (np.random.default_rng(seed).random((12, 6, *in_shape)) < 0.4).astype(np.float32)
    # (the partitioned graph is still an integer graph; its partition does not change it)
    np.testing.assert_array_equal(core_sim(m, out, x), int_sim(out, x))
    # and every core keeps its limits
    for use in ctx.reports["route"].cores:
        assert use.neurons <= neurons and use.input_axons <= 64
        assert use.synapse_bits <= 20000


def test_loihi1_splits_784_1500_10_within_core_limits() -> None:
    rng = np.random.default_rng(0)
    g = mlp(rng.normal(0, 0.05, (1500, 784)).astype(np.float32),
            rng.normal(0, 0.1, (10, 1500)).astype(np.float32))  # fmt: skip
    out, ctx = compile_for(g, "loihi1")
    uses = ctx.reports["route"].cores
    assert max(u.neurons for u in uses) <= 1024
    assert max(u.synapse_bits for u in uses) <= 128 * 1024 * 8
    text = ctx.reports["route"].text()
    assert "partition for 'loihi1'" in text and "binding limit: synapse memory bits" in text
    assert f"/{128 * 1024 * 8:,}" in text and "/1024" in text
    # 784 x 1500 synapses at 8 + 10 bits each need at least this many 128 KiB cores
    lower = int(np.ceil(784 * 1500 * 18 / (128 * 1024 * 8)))
    assert lower <= len(uses) <= 2 * lower


def test_a_neuron_whose_fan_in_exceeds_the_axons_is_refused(tmp_path: Path) -> None:
    g = mlp(np.ones((4, 100), np.float32), np.ones((2, 4), np.float32))
    with pytest.raises(PassError) as e:
        compile_for(g, small_target(tmp_path, axons=64, memory=10**6))
    msg = str(e.value)
    assert "'partition' failed after [quantize]" in msg
    assert "'l1' (LIF)" in msg and "needs 100 input axons" in msg and "has 64" in msg


def test_too_many_cores_names_the_layer_and_the_way_out(tmp_path: Path) -> None:
    g = mlp(np.ones((40, 8), np.float32), np.ones((2, 40), np.float32))
    with pytest.raises(PassError) as e:
        compile_for(g, small_target(tmp_path, cores=4, w=2, h=2, neurons=8))
    msg = str(e.value)
    assert "needs more than the 4 cores of target 'tiny'" in msg and "larger target" in msg
    assert isinstance(e.value.__cause__, ResourceError) or "ResourceError" not in msg


def test_weight_width_the_target_cannot_store_is_refused() -> None:
    g = mlp(np.ones((4, 8), np.float32), np.ones((2, 4), np.float32))
    with pytest.raises(PassError, match=r"7-bit weights; target 'loihi1' stores .*weight-bits=6"):
        compile_for(g, "loihi1", bits=7)


def test_placement_is_deterministic_and_no_worse_than_snake_order() -> None:
    rng = np.random.default_rng(3)
    g = mlp(rng.normal(0, 0.05, (1500, 784)).astype(np.float32),
            rng.normal(0, 0.1, (10, 1500)).astype(np.float32))  # fmt: skip
    a, ctx = compile_for(g, "loihi1")
    b, _ = compile_for(g, "loihi1")
    assert a.meta["placement"] == b.meta["placement"]
    rep = ctx.reports["place"]
    assert rep.cost_after <= rep.cost_before


def test_profile_bound_layers_take_the_longest_slices_so_they_can_share_cores(tmp_path) -> None:
    """Norse's per-neuron taus on a Loihi-like target of 2 cores with 4 compartment profiles:
    'n1' has 5 distinct decays, 'n3' 3. Equal slices (2 + 3) leave 3 profiles beside n3's 3 and
    need 3 cores; the longest slices (4 + 1) let 'n1's last neuron share a core with 'n3'."""
    import yaml

    from snnc.build import compile_model
    from snnc.targets import load_target
    from snnc.targets.schema import target_to_dict

    d = target_to_dict(load_target("loihi1"))
    d.update(name="tiny-loihi", source="", cores=2, mesh=[2, 1])
    d["core"].update(neuron_profiles=4)
    target = tmp_path / "tiny.yaml"
    target.write_text(yaml.safe_dump(d))
    root = Path(__file__).resolve().parents[2]
    r = compile_model(root / "tests" / "fixtures" / "nir" / "norse_mlp.nir", target=str(target),
                      nir_flavor="norse")  # fmt: skip
    assert r.graph.nodes["n1"].partition == ((0, 0, 4), (1, 4, 5))
    assert r.graph.nodes["n3"].partition == ((1, 0, 3),)
    fit = {f.population: f for f in r.ctx.reports["partition"].layers}
    assert (fit["n1"].slices, fit["n1"].binding) == (2, "neuron profiles")
    x = (np.random.default_rng(0).random((20, 3, 6)) < 0.4).astype(np.uint8)
    np.testing.assert_array_equal(core_sim(mapping_of(r.graph), r.graph, x), int_sim(r.graph, x))
