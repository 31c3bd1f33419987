"""NIR frontend: snnTorch's exporter's files load, simulate as NIR's equations say, round-trip."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nir
import numpy as np
import pytest
import snntorch as snn
import torch
from snntorch.export_nir import export_to_nir
from torch import nn

from snnc.errors import FrontendError
from snnc.frontend.nir import DEFAULT_DT, from_nir, load_nir_file
from snnc.frontend.nir_export import to_nir, write_nir
from snnc.ir import Graph
from snnc.ir import nodes as N
from snnc.sim.reference import simulate

T, B = 30, 200


def _leaky(shape, beta, mech="subtract"):
    # snnTorch's exporter needs per-neuron tensors (scalar beta fails nir's type inference)
    return snn.Leaky(beta=torch.full(shape, beta), threshold=torch.ones(shape), init_hidden=True,
                     reset_mechanism=mech)  # fmt: skip


def _mlp(mech="subtract") -> nn.Sequential:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(20, 30), _leaky((30,), 0.9, mech), nn.Linear(30, 5),
                        _leaky((5,), 0.8, mech))  # fmt: skip
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Linear):
                m.weight.mul_(3)
    return net


def _conv(mech="subtract") -> nn.Sequential:
    torch.manual_seed(2)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3), _leaky((4, 6, 6), 0.85, mech), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(36, 10), _leaky((10,), 0.9, mech),
    )  # fmt: skip
    with torch.no_grad():
        net[0].weight.mul_(4)
        net[4].weight.mul_(4)
    return net


def _run_torch(net: nn.Module, x: torch.Tensor) -> np.ndarray:
    snn.SpikingNeuron.instances and [m.reset_hidden() for m in net if hasattr(m, "reset_hidden")]
    for m in net.modules():
        if isinstance(m, snn.SpikingNeuron) and hasattr(m, "mem"):
            m.mem = torch.zeros(0)
    with torch.no_grad():
        return torch.stack([net(x[t]) for t in range(x.shape[0])]).numpy()


def _spikes(shape, seed=0, rate=0.3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((T, B, *shape), generator=g) < rate).float()


@pytest.mark.parametrize(("make", "in_shape"), [(_mlp, (20,)), (_conv, (1, 8, 8))])
def test_snntorch_export_simulates_as_nir_says(make, in_shape) -> None:
    """NIR's LIF resets to v_reset in the step of the spike: that is snnTorch's zero reset, not
    the subtract reset the exported model was trained with (the exporter's known trap)."""
    net = make("subtract")
    graph = from_nir(export_to_nir(net, torch.zeros(1, *in_shape), ignore_dims=[0]))
    assert graph.meta["dt"] == DEFAULT_DT
    lifs = [n for n in graph.nodes.values() if isinstance(n, N.LIF)]
    assert len(lifs) == 2 and all(n.reset is N.ResetMode.TO_VALUE for n in lifs)
    zero = make("zero")
    x = _spikes(in_shape)
    expected = _run_torch(zero, x)
    got = simulate(graph, x.numpy())
    assert 0.02 < expected.mean() < 0.6  # the comparison means something
    np.testing.assert_array_equal(got, expected)


def test_snntorch_synaptic_lowers_to_exact_discrete_parameters() -> None:
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(4, 3), snn.Synaptic(
        alpha=torch.full((3,), 0.75), beta=torch.full((3,), 0.5), threshold=torch.ones(3),
        init_hidden=True))  # fmt: skip
    g = from_nir(export_to_nir(net, torch.zeros(1, 4), ignore_dims=[0]))
    (name,) = [n for n, node in g.nodes.items() if isinstance(node, N.CubaLIF)]
    p = g.params[name]
    assert p["decay_i"].tolist() == [0.75] * 3 and p["gain_i"].tolist() == [1.0] * 3
    assert p["decay"].tolist() == [0.5] * 3 and p["gain"].tolist() == [1.0] * 3
    assert p["bias"].tolist() == [0.0] * 3 and p["threshold"].tolist() == [1.0] * 3


def _rleaky_net() -> nn.Sequential:
    torch.manual_seed(4)
    net = nn.Sequential(
        nn.Linear(10, 8),
        snn.RLeaky(beta=torch.full((8,), 0.9), threshold=torch.ones(8), linear_features=8,
                   init_hidden=True),
        nn.Linear(8, 3), _leaky((3,), 0.8),
    )  # fmt: skip
    with torch.no_grad():
        net[0].weight.mul_(3)
        net[1].recurrent.weight.mul_(2)
        net[2].weight.mul_(3)
    return net


def test_rleaky_export_gets_a_one_step_delay_before_the_recurrent_weights() -> None:
    net = _rleaky_net()
    g = from_nir(export_to_nir(net, torch.zeros(1, 10), ignore_dims=[0]))
    delays = [n for n, node in g.nodes.items() if isinstance(node, N.Delay)]
    assert delays == ["n1.lif_delay"]
    assert g.inputs["n1.lif_delay"] == ("n1.lif",)
    assert g.inputs["n1.w_rec"] == ("n1.lif_delay",)
    assert g.inputs["n1.lif"] == ("n0", "n1.w_rec")  # feed-forward first, recurrence last
    # NIR's equations, written out: v = 0.9 v + W x + b + W_rec s[t-1] + b_rec; reset to 0
    x = _spikes((10,), seed=5)
    w0, w1, w2 = net[0], net[1].recurrent, net[2]
    v1, s1 = torch.zeros(B, 8), torch.zeros(B, 8)
    v2 = torch.zeros(B, 3)
    outs = []
    with torch.no_grad():
        for t in range(T):
            v1 = 0.9 * v1 + w0(x[t]) + w1(s1)
            s1 = (v1 > 1).float()
            v1 = torch.where(s1 > 0, 0.0, v1)
            v2 = torch.tensor(0.8) * v2 + w2(s1)
            s2 = (v2 > 1).float()
            v2 = torch.where(s2 > 0, 0.0, v2)
            outs.append(s2)
    expected = torch.stack(outs).numpy()
    assert 0.02 < expected.mean() < 0.6
    np.testing.assert_array_equal(simulate(g, x.numpy()), expected)


@pytest.mark.parametrize(
    ("make", "in_shape"),
    [(_mlp, (20,)), (_conv, (1, 8, 8)), (_rleaky_net, (10,))],
)
def test_ir_to_nir_to_ir_is_unchanged(make, in_shape, tmp_path: Path) -> None:
    g1 = load_nir_file(_write(export_to_nir(make(), torch.zeros(1, *in_shape),
                                            ignore_dims=[0]), tmp_path / "a.nir"))  # fmt: skip
    write_nir(g1, tmp_path / "b.nir")
    g2 = load_nir_file(tmp_path / "b.nir")
    assert g2.replace(name=g1.name) == g1


def _write(graph, path: Path) -> Path:
    nir.write(path, graph)
    return path


def _lif_graph(reset, timing, strict=True) -> Graph:
    p = {k: np.full(2, v, np.float32) for k, v in
         dict(decay=0.5, gain=1.0, bias=0.0, threshold=1.0, reset_value=0.0).items()}  # fmt: skip
    return Graph(
        {"input": N.Input(shape=(3,), origin="x"), "fc": N.Affine(origin="torch:fc"),
         "lif": N.LIF(reset=reset, timing=timing, strict=strict, origin="torch:lif"),
         "output": N.Output(shape=(2,), origin="y")},
        {"fc": ["input"], "lif": ["fc"], "output": ["lif"]},
        {"fc": {"weight": np.ones((2, 3)), "bias": np.zeros(2)}, "lif": p},
        name="g", meta={"source": "nir", "dt": 0.001, "flavor": "nir"},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("reset", "timing", "strict"),
    [("subtract", "next_step", True), ("to_value", "next_step", False), ("subtract", "gated", True),
     ("none", "immediate", True)],
)  # fmt: skip
def test_semantics_nir_cannot_state_survive_in_metadata(reset, timing, strict, tmp_path) -> None:
    g = _lif_graph(reset, timing, strict)
    notes = write_nir(g, tmp_path / "m.nir")
    assert any("'lif'" in n for n in notes)
    plain = nir.read(tmp_path / "m.nir").nodes["lif"]
    assert isinstance(plain, nir.LIF) and np.all(plain.v_reset == 0)  # what other tools see
    assert load_nir_file(tmp_path / "m.nir").replace(name="g") == g


def test_dt_sets_the_discretisation() -> None:
    lif = nir.LIF(tau=np.full(1, 2e-3), r=np.full(1, 2.0), v_leak=np.zeros(1),
                  v_threshold=np.ones(1), v_reset=np.zeros(1))  # fmt: skip
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([1])), "lif": lif,
               "output": nir.Output(output_type=np.array([1]))},
        edges=[("input", "lif"), ("lif", "output")],
    )  # fmt: skip
    notes: list[str] = []
    g = from_nir(graph, dt=1e-3, notes=notes)
    assert notes == []
    p = g.params["lif"]
    assert (p["decay"][0], p["gain"][0], p["bias"][0]) == (0.5, 1.0, 0.0)
    x = np.array([2.5, 0.5, 0.0, 1.0, 1.5], np.float32).reshape(5, 1, 1)
    assert simulate(g, x).reshape(-1).tolist() == [1, 0, 0, 1, 1]
    from_nir(graph, notes=notes)
    assert "using dt = 0.0001 s, the default of flavor 'nir'" in notes[0]
    with pytest.raises(
        FrontendError, match=r"tau = 0.002 s is shorter than the time step dt = 0.01"
    ):
        from_nir(graph, dt=1e-2)


def _tiny(nodes: dict, edges: list) -> nir.NIRGraph:
    base = {"input": nir.Input(input_type=np.array([3])),
            "output": nir.Output(output_type=np.array([2]))}  # fmt: skip
    return nir.NIRGraph(nodes={**base, **nodes}, edges=edges, type_check=False)


@dataclass(eq=False)
class Mystery(nir.NIRNode):
    """A node type snnc has never heard of."""

    size: int = 3

    def __post_init__(self) -> None:
        self.input_type = {"input": np.array([3])}
        self.output_type = {"output": np.array([2])}


def test_bad_nir_is_refused_naming_the_node(tmp_path: Path) -> None:
    edges = [("input", "fc"), ("fc", "output")]
    nan = nir.Affine(weight=np.full((2, 3), np.nan), bias=np.zeros(2))
    with pytest.raises(FrontendError, match=r"NIR node 'fc' \(Affine\): 'weight' has NaN"):
        from_nir(_tiny({"fc": nan}, edges))
    wrong = nir.Affine(weight=np.ones((2, 4)), bias=np.zeros(2))
    with pytest.raises(FrontendError, match=r"'fc' \(Affine, from nir:fc\): weight \(2, 4\)"):
        from_nir(_tiny({"fc": wrong}, edges))
    with pytest.raises(FrontendError, match=r"NIR node 'fc' \(Mystery\): node type not supported"):
        from_nir(_tiny({"fc": Mystery()}, edges))
    delay = nir.Delay(delay=np.full(3, 1.5e-4))
    with pytest.raises(FrontendError, match="not whole multiples of dt"):
        from_nir(_tiny({"d": delay}, [("input", "d"), ("d", "output")]))
    with pytest.raises(FrontendError, match="edge input -> ghost names a node that does not exist"):
        from_nir(_tiny({}, [("input", "ghost")]))
    bad = tmp_path / "corrupt.nir"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(FrontendError, match="corrupt.nir: not a readable NIR file"):
        load_nir_file(bad)
    good = _write(_tiny({"fc": nir.Affine(weight=np.ones((2, 3)), bias=np.zeros(2))}, edges),
                  tmp_path / "good.nir")  # fmt: skip
    cut = tmp_path / "truncated.nir"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(FrontendError, match="truncated.nir: not a readable NIR file"):
        load_nir_file(cut)


def test_cycle_with_explicit_delay_gets_no_implicit_one() -> None:
    lif = nir.LIF(tau=np.full(2, 2e-4), r=np.full(2, 2.0), v_leak=np.zeros(2),
                  v_threshold=np.ones(2), v_reset=np.zeros(2))  # fmt: skip
    g = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([2])), "lif": lif,
               "d": nir.Delay(delay=np.full(2, 2e-4)), "w": nir.Linear(weight=np.eye(2)),
               "output": nir.Output(output_type=np.array([2]))},
        edges=[("input", "lif"), ("lif", "d"), ("d", "w"), ("w", "lif"), ("lif", "output")],
    )  # fmt: skip
    ir = from_nir(g)
    assert [n for n, node in ir.nodes.items() if isinstance(node, N.Delay)] == ["d"]
    assert ir.params["d"]["steps"].tolist() == [2, 2]


def test_export_of_an_inserted_delay_is_nirs_implicit_one() -> None:
    g = from_nir(export_to_nir(_rleaky_net(), torch.zeros(1, 10), ignore_dims=[0]))
    exported, _ = to_nir(g)
    assert not any(isinstance(n, nir.Delay) for n in exported.nodes.values())
    assert ("n1.lif", "n1.w_rec") in exported.edges
