"""FPGA accelerator images: every synapse of the mapping in exactly one weight row at the right
lane and group, slices on group boundaries, routes that reach exactly the mapping's axons,
profiles from the populations, sizes from the target — and refusals that say what and where."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml

from snnc.backends.fpga import build_images, synapse_matrix
from snnc.backends.fpga.images import HOST
from snnc.build import compile_model
from snnc.errors import BackendError
from snnc.ir import Graph
from snnc.ir import nodes as N
from snnc.mapping.cores import mapping_of
from snnc.rtl.params import Kind, Reset, Timing
from snnc.targets import load_target
from snnc.targets.schema import target_to_dict

from ..passes.test_partition import conv_net
from ..passes.test_quantize import mlp

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "examples" / "digits" / "model.pt"


def tiny_fpga(path: Path, *, neurons=48, cores=8, memory=32768, multicast=True, profiles=4) -> str:
    """An ECP5-like target with small cores, so that small networks span several cores."""
    d = target_to_dict(load_target("ecp5-25k"))
    d.update(name="tiny-fpga", cores=cores, mesh=[cores, 1], multicast=multicast, source="")
    d["core"].update(neurons=neurons, synapse_memory_bits=memory, neuron_profiles=profiles)
    p = Path(path) / f"tiny_{neurons}_{cores}_{memory}_{multicast}_{profiles}.yaml"
    p.write_text(yaml.safe_dump(d))
    return str(p)


def _lif(n: int) -> dict[str, np.ndarray]:
    vals = dict(decay=0.9, gain=1.0, bias=0.0, threshold=1.0, reset_value=0.0)
    return {k: np.full(n, v, np.float32) for k, v in vals.items()}


def skip_net(seed: int, n_in=10, na=12, nb=9, n_out=4) -> Graph:
    """input feeds two populations (one core: each input axon is split over two slices)."""
    rng = np.random.default_rng(seed)

    def w(o, i):
        return rng.normal(0, 0.6, (o, i)).astype(np.float32)

    return Graph(
        {"input": N.Input(shape=(n_in,)), "fa": N.Linear(), "a": N.LIF(), "fb": N.Linear(),
         "b": N.LIF(), "ga": N.Linear(), "gb": N.Affine(), "o": N.LIF(),
         "output": N.Output(shape=(n_out,))},
        {"fa": ["input"], "a": ["fa"], "fb": ["input"], "b": ["fb"], "ga": ["a"], "gb": ["b"],
         "o": ["ga", "gb"], "output": ["o"]},
        {"fa": {"weight": w(na, n_in)}, "fb": {"weight": w(nb, n_in)},
         "ga": {"weight": w(n_out, na)},
         "gb": {"weight": w(n_out, nb), "bias": np.full(n_out, 0.1, np.float32)},
         "a": _lif(na), "b": _lif(nb), "o": _lif(n_out)},
        meta={"canonical": True},
    )  # fmt: skip


def threshold_net(seed: int) -> Graph:
    """A stateless Threshold layer (with an Affine bias) between the input and a LIF layer."""
    rng = np.random.default_rng(seed)
    return Graph(
        {"input": N.Input(shape=(10,)), "f": N.Affine(), "t": N.Threshold(strict=False),
         "g": N.Linear(), "o": N.LIF(), "output": N.Output(shape=(4,))},
        {"f": ["input"], "t": ["f"], "g": ["t"], "o": ["g"], "output": ["o"]},
        {"f": {"weight": rng.normal(0, 0.6, (16, 10)).astype(np.float32),
               "bias": rng.normal(0, 0.2, 16).astype(np.float32)},
         "t": {"threshold": np.full(16, 0.3, np.float32)},
         "g": {"weight": rng.normal(0, 0.6, (4, 16)).astype(np.float32)}, "o": _lif(4)},
        meta={"canonical": True},
    )  # fmt: skip


def compiled(model, target: str = "ice40-up5k", passes: str | None = None):
    r = compile_model(model, target=target, passes=passes)
    return r.graph, mapping_of(r.graph)


def _recurrent(seed: int = 0, steps: int = 1) -> Graph:
    rng = np.random.default_rng(seed)
    g = mlp(rng.normal(0, 0.5, (20, 12)).astype(np.float32),
            rng.normal(0, 0.5, (5, 20)).astype(np.float32),
            recurrent=rng.normal(0, 0.3, (20, 20)).astype(np.float32))  # fmt: skip
    if steps != 1:
        g.params["d"]["steps"] = np.full(20, steps, np.int64)
    return g


def check_layout(g: Graph, m, img) -> None:
    """Every synapse once, at the right lane and group; zero elsewhere; routes complete."""
    P = img.params.lanes
    total = 0
    for c, core in enumerate(m.cores):
        ci, lay = img.cores[c], img.layouts[c]
        by_group = {s.first_group: (si, s) for si, s in enumerate(lay.slices)}
        mem = np.asarray(ci.weights, np.int64)
        assert mem.shape == (img.params.weight_words, P)
        # slices on group boundaries, consecutive, sized ceil(size/P)
        g0 = 0
        for s in lay.slices:
            assert s.first_group == g0 and s.n_groups == -(-s.size // P)
            g0 += s.n_groups
        assert g0 * P <= img.params.neurons
        # rows consecutive from word 0, nothing stored beyond them
        base, used = 0, int(lay.axon_count.sum())
        assert len(ci.axons) == img.params.axons
        for e in ci.axons[:used]:
            assert e.row_base == base and e.row_len > 0
            base += e.row_len
        assert all(e.row_len == 0 for e in ci.axons[used:])
        assert not mem[base:].any()
        for grp in core.groups:
            for i in range(grp.elements.size):
                a = grp.first_axon + i
                first, count = int(lay.axon_first[a]), int(lay.axon_count[a])
                feeds = [si for si, syn in grp.synapses.items() if syn[:, i].nnz]
                assert count == len(feeds)
                for k, si in zip(range(first, first + count), sorted(feeds), strict=True):
                    e = ci.axons[k]
                    sj, s = by_group[e.group_base]
                    assert sj == si and e.row_len == s.n_groups
                    row = (mem[e.row_base : e.row_base + e.row_len] << e.shift).reshape(-1)
                    want = grp.synapses[si][:, i].toarray().reshape(-1)
                    np.testing.assert_array_equal(row[: s.size], want)
                    assert not row[s.size :].any()
                    total += np.count_nonzero(want)
        assert synapse_matrix(img, c).nnz == sum(x.nnz for grp in core.groups
                                                 for x in grp.synapses.values())  # fmt: skip
    assert total == sum(c.synapses for c in m.cores)
    _check_routes(m, img)


def _events(table, key: int, delayed: bool) -> set[tuple[int, int]]:
    return set(table.lookup(key, delayed))


def _check_routes(m, img) -> None:
    P = img.params.lanes
    net = m.network
    for src, rows in m.routes.items():
        want: dict[int, set] = {}
        for e, core, a in rows.tolist():
            lay = img.layouts[core]
            d = bool(lay.axon_delay[a])
            f, k = int(lay.axon_first[a]), int(lay.axon_count[a])
            want.setdefault(e, set()).update((d, core, f + j) for j in range(k))
        if src in net.populations:
            where = [(s.core, s) for lay in img.layouts for s in lay.slices
                     if s.population == src]  # fmt: skip
            keys = {e: (c, s.first_group * P + e - s.start) for c, s in where
                    for e in range(s.start, s.stop)}  # fmt: skip
        else:
            port = next(p for p in img.inputs if p.name == src)
            keys = {e: (None, port.offset + e) for e in range(port.size)}
        for e, (c, key) in keys.items():
            table = img.host_routes if c is None else img.routes[c]
            got = {(False, *ev) for ev in _events(table, key, False) if ev[0] != HOST}
            got |= {(True, *ev) for ev in _events(table, key, True)}
            assert got == want.get(e, set()), (src, e)
            if src == net.output:
                assert (HOST, e) in _events(table, key, False)


@pytest.mark.parametrize(
    ("model", "target"),
    [(DIGITS, "ice40-up5k"), (DIGITS, "ecp5-25k"), (ROOT / "examples" / "mnist" / "model.pt",
                                                    "ecp5-25k")],
)  # fmt: skip
def test_examples_every_synapse_once(model, target) -> None:
    g, m = compiled(model, target)
    img = build_images(g, m, target)
    check_layout(g, m, img)
    t = load_target(target)
    p = img.params
    assert (p.neurons, p.lanes, p.weight_bits, p.axons, p.state_bits, p.profiles) == (
        t.core.neurons,
        t.fpga.lanes,
        64 // t.fpga.lanes,
        t.core.input_axons,
        t.core.state_bits,
        t.core.neuron_profiles,
    )
    assert p.weight_words == t.core.synapse_memory_bits // 64
    assert img.levels == {"input": 0, "l1": 1, "l3": 2}


def test_small_cores_split_axons_recurrence_and_conv(tmp_path: Path) -> None:
    for model, target in [(DIGITS, tiny_fpga(tmp_path)), (skip_net(1), "ice40-up5k"),
                          (skip_net(2), tiny_fpga(tmp_path, multicast=False)),
                          (_recurrent(), "ice40-up5k"), (conv_net(0), "ice40-up5k"),
                          (threshold_net(0), "ice40-up5k")]:  # fmt: skip
        g, m = compiled(model, target)
        img = build_images(g, m, target)
        check_layout(g, m, img)
    # the skip net: each input axon feeds the slices of 'a' and 'b' -> two consecutive entries
    g, m = compiled(skip_net(1))
    img = build_images(g, m, "ice40-up5k")
    lay = img.layouts[0]
    grp = next(x for x in m.cores[0].groups if x.source == "input")
    assert set(lay.axon_count[grp.first_axon : grp.first_axon + 10].tolist()) == {2}
    assert img.cores[0].updates == {1: ((0, 4),), 2: ((4, 1),)}  # a (2 groups) + b (2) merged
    assert img.levels == {"input": 0, "a": 1, "b": 1, "o": 2}


def test_conv_output_and_padding() -> None:
    g, m = compiled(conv_net(0))
    img = build_images(g, m, "ice40-up5k")
    l1 = next(s for s in img.layouts[0].slices if s.population == "l1")
    assert (l1.size, l1.n_groups) == (48, 6)
    out = img.output_slices
    assert [(s.population, s.size, s.n_groups) for s in out] == [("l2", 5, 1)]
    # padding neurons never fire: top threshold, no bias
    pad = img.cores[0].neurons[(out[0].first_group * 8) + 5]
    assert pad.threshold == (1 << 19) - 1 and pad.bias == 0  # the preset's 20-bit state
    assert img.levels["l1"] == 1 and img.levels["l2"] == 2


def test_profiles_from_population_attributes() -> None:
    rng = np.random.default_rng(0)
    w1, w2 = rng.normal(0, 0.5, (20, 12)).astype(np.float32), rng.normal(0, 0.5, (5, 20))
    g = mlp(w1, w2.astype(np.float32), cls=N.CubaLIF, strict=False,
            mode=(N.ResetMode.SUBTRACT, N.ResetTiming.GATED))  # fmt: skip
    g.params["l1"]["decay"] = np.where(np.arange(20) < 10, 0.9, 0.8).astype(np.float32)
    q, m = compiled(g)
    img = build_images(q, m, "ice40-up5k")
    profs = img.cores[0].profiles
    assert len(profs) == 2  # l1: two decays; l2 shares the first one's profile
    for p in profs:
        assert (p.kind, p.reset, p.timing, p.strict, p.decay_shift) == (
            Kind.CUBALIF,
            Reset.SUBTRACT,
            Timing.GATED,
            False,
            False,
        )
        assert p.decay_i == q.params["l1"]["decay_i"].reshape(-1)[0]
    decays = q.params["l1"]["decay"].reshape(-1)
    neurons = img.cores[0].neurons
    for j in range(20):
        assert profs[neurons[j].profile].decay == decays[j]
    # Cuba: bias is the neuron's, ibias the layer bias; LIF folds it into bias
    l2 = next(s for s in img.layouts[0].slices if s.population == "l2")
    pop = m.network.populations["l2"]
    got = [neurons[l2.first_group * 8 + j].ibias for j in range(5)]
    assert got == pop.input_bias.tolist()
    g2, m2 = compiled(skip_net(0))
    img2 = build_images(g2, m2, "ice40-up5k")
    o = next(s for s in img2.layouts[0].slices if s.population == "o")
    pop = m2.network.populations["o"]
    got = [img2.cores[0].neurons[o.first_group * 8 + j].bias for j in range(4)]
    assert got == (pop.params["bias"] + pop.input_bias).tolist() and any(got)
    # a Threshold layer is a LIF profile without leak-over and without reset
    g3, m3 = compiled(threshold_net(0))
    p = build_images(g3, m3, "ice40-up5k").cores[0].profiles[0]
    assert (p.kind, p.decay, p.decay_shift, p.reset, p.strict) == (Kind.LIF, 0, True, Reset.NONE,
                                                                  False)  # fmt: skip


def _replace(target: str, **core):
    t = load_target(target)
    top = {k: core.pop(k) for k in list(core) if k in ("router_entries", "synapse_cost")}
    return dataclasses.replace(t, core=dataclasses.replace(t.core, **core), **top)


def test_refusals_name_what_and_where() -> None:
    g, m = compiled(DIGITS)
    t = "ice40-up5k"
    cases = [
        (_replace(t, neuron_profiles=0), r"core 0 \(layers l1, l3\) needs 1 neuron profiles; "
                                         r"a core has 0"),
        (_replace(t, neurons=136), "core 0: its slices take 144 neurons padded to groups of 8; "
                                   "a core has 136"),
        (_replace(t, input_axons=100), "core 0: 192 axon-table entries"),
        (_replace(t, synapse_memory_bits=64 * 1000), "core 0: its weight rows take 1280 words; "
                                                      "the weight memory has 1000"),
        (_replace(t, router_entries=1), "core 0: 2 routing table entries"),
        (_replace(t, state_bits=8), r"population 'l1' \(LIF, from torch:1\) needs 17-bit states; "
                                    "the accelerator computes and saturates at 8 bits"),
        (_replace(t, synapse_cost=dataclasses.replace(load_target(t).synapse_cost, word_bits=32)),
         r"core 0: weights from 'input' onto 'l1' need more than the accelerator's 4-bit lanes"),
        ("loihi1", "not an FPGA accelerator target"),
    ]  # fmt: skip
    for target, msg in cases:
        with pytest.raises(BackendError, match=msg):
            build_images(g, m, target)


def test_refusals_of_what_the_accelerator_cannot_compute() -> None:
    rng = np.random.default_rng(0)
    w1, w2 = rng.normal(0, 0.5, (20, 12)).astype(np.float32), rng.normal(0, 0.5, (5, 20))
    g = mlp(w1, w2.astype(np.float32))
    g.nodes["l2"] = N.LI()
    g.params["l2"] = {k: np.full(5, v, np.float32) for k, v in (("decay", 0.9), ("gain", 1.0),
                                                                 ("bias", 0.0))}  # fmt: skip
    g, m = compiled(g)
    with pytest.raises(BackendError, match="'l2'.* is a LI: the accelerator routes spikes only"):
        build_images(g, m, "ice40-up5k")
    g, m = compiled(_recurrent(steps=2))
    with pytest.raises(BackendError, match="synapses from 'l1' have delay 2"):
        build_images(g, m, "ice40-up5k")
    t = "ecp5-85k"  # 24-bit state (the graded MLP needs 23-bit membranes) and 8-bit lanes
    tail = f"partition{{target={t}}},place{{target={t}}},route{{target={t}}}"
    spec = f"canonicalize,quantize{{state-bits=12,saturate=true}},{tail}"
    g, m = compiled(mlp(w1, w2.astype(np.float32)), passes=spec)
    with pytest.raises(BackendError, match="saturates at 12-bit states; the accelerator"):
        build_images(g, m, t)
    spec = f"canonicalize,quantize{{input=graded,input-bits=8}},{tail}"
    g, m = compiled(mlp(w1, w2.astype(np.float32)), passes=spec)
    assert build_images(g, m, t).params.payload_bits == 8
    with pytest.raises(BackendError, match="graded input of 17 bits"):
        build_images(g.replace(meta=dict(g.meta, input_bits=17)), m, t)
    g, m = compiled(DIGITS, t)
    grp = m.cores[0].groups[0]
    grp.synapses[0].data[:3] = 1000
    with pytest.raises(BackendError, match="need more than the accelerator's 8-bit lanes"):
        build_images(g, m, t)
    g, m = compiled(DIGITS, t)
    th = m.network.populations["l3"].params["threshold"].copy()
    th[4] = 1 << 30
    m.network.populations["l3"].params["threshold"] = th
    with pytest.raises(
        BackendError,
        match=r"core 0: threshold ranges 406\.\.1073741824, beyond "
        "the 24-bit signed field",
    ):
        build_images(g, m, t)


@pytest.mark.parametrize(
    ("model", "target", "passes"),
    [(DIGITS, "ecp5-25k", None), (DIGITS, "ice40-up5k", None),
     (ROOT / "examples" / "mnist" / "model.pt", "ecp5-25k", None),
     (mlp(*np.random.default_rng(3).normal(0, 0.5, (2, 12, 12)).astype(np.float32)), "ecp5-85k",
      "canonicalize,quantize{input=graded,input-bits=8},partition{target=ecp5-85k},"
      "place{target=ecp5-85k},route{target=ecp5-85k}")],
)  # fmt: skip
def test_datapath_is_sized_to_the_largest_sum_of_a_step(model, target, passes) -> None:
    """acc_bits: the signed width of the largest |sum| any neuron can receive in one step (all
    its axons at the largest payload), read back through synapse_matrix; max_shift: the largest
    shift an axon uses."""
    g, m = compiled(model, target, passes=passes)
    img = build_images(g, m, target)
    p = img.params
    pmax = (1 << p.payload_bits) - 1
    hi = lo = 0
    for c in range(len(img.cores)):
        w = synapse_matrix(img, c).toarray()
        hi = max(hi, int(np.maximum(w, 0).sum(axis=0).max()) * pmax)
        lo = min(lo, int(np.minimum(w, 0).sum(axis=0).min()) * pmax)
    assert -(1 << (p.acc_bits - 1)) <= lo and hi < 1 << (p.acc_bits - 1)
    assert lo < -(1 << (p.acc_bits - 2)) or hi >= 1 << (p.acc_bits - 2)  # one bit fewer wraps
    assert p.max_shift == max(a.shift for c in img.cores for a in c.axons)
    assert all(c.params == p for c in img.cores) and p.acc_bits < p.state_bits


def test_decays_beyond_the_profiles_are_kept_per_neuron() -> None:
    """Norse's per-neuron taus: 'n1' has 5 distinct decays, a core 4 profiles. The decays go
    to the parameter memory, one profile per population; the core runs as the integer model."""
    from snnc.sim.cycle import simulate as cycle_sim
    from snnc.sim.integer import simulate as int_sim

    r = compile_model(ROOT / "tests" / "fixtures" / "nir" / "norse_mlp.nir", target="ecp5-25k",
                      nir_flavor="norse")  # fmt: skip
    m = mapping_of(r.graph)
    img = build_images(r.graph, m, "ecp5-25k")
    assert img.params.neuron_decays and len(img.cores) == 1
    ci, lays = img.cores[0], {s.population: s for s in img.layouts[0].slices}
    assert len(ci.profiles) == 1  # n1 and n3: CubaLIF with the same reset and timing
    P = img.params.lanes
    for pop in ("n1", "n3"):
        lay, q = lays[pop], r.graph.params[pop]
        got = [ci.neurons[lay.first_group * P + k] for k in range(lay.size)]
        assert [n.decay for n in got] == q["decay"].astype(int).tolist()
        assert [n.decay_i for n in got] == q["decay_i"].astype(int).tolist()
    x = (np.random.default_rng(0).random((20, 4, 6)) < 0.4).astype(np.uint8)
    np.testing.assert_array_equal(cycle_sim(img, x, graph=r.graph).output, int_sim(r.graph, x))
