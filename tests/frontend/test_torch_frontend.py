"""The snnTorch / torch frontend: IR simulations must give snnTorch's own spikes, bit for bit.

Each equivalence test runs snnTorch's forward and the reference simulator of the IR that
``from_torch`` builds on the same rate-coded digits (>= 200 inputs) and demands identical output
spikes, after checking that the layers fire some but not all of the time (so the equality says
something). The MLP is trained here by BPTT; the other nets use seeded weights scaled to fire.
"""

from __future__ import annotations

import numpy as np
import pytest
import snntorch as snn
import torch
import torch.nn.functional as F
from snntorch import utils
from torch import nn

from snnc.errors import FrontendError
from snnc.frontend.torch import from_torch
from snnc.ir import nodes as N
from snnc.ir.text import parse, print_graph
from snnc.sim.reference import simulate

T = 15  # time steps of the digit_spikes fixture
num_steps = T  # read as a global by the tutorial-style forward below, as in the tutorials
batch_size = 256  # likewise: .view(batch_size, -1) must not pin the tracing batch


def _out(o):
    return o[0] if isinstance(o, tuple) else o


def step_forward(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """snnTorch's forward of a one-step-per-call net (init_hidden=True) over ``x[t]``."""
    utils.reset(net)
    return torch.stack([_out(net(x[t])) for t in range(x.shape[0])])


def snn_spikes(net: nn.Module, x: torch.Tensor, forward=step_forward) -> np.ndarray:
    with torch.no_grad():
        return forward(net, x).numpy()


def ir_spikes(net: nn.Module, x: torch.Tensor, input_shape=None):
    graph = from_torch(net, input_shape)
    out, rec = simulate(graph, np.ascontiguousarray(x.numpy()), record=True)
    return graph, out, rec


def assert_fires_sometimes(graph, rec) -> None:
    """Every spiking layer fires, but not always: identical spikes are then a real check."""
    for name, node in graph.nodes.items():
        if node.spiking:
            rate = float(rec[name].mean())
            assert 0.005 < rate < 0.6, (name, rate)


def assert_same_spikes(net, x, forward=step_forward, input_shape=None):
    graph, out, rec = ir_spikes(net, x, input_shape)
    ref = snn_spikes(net, x, forward)
    assert_fires_sometimes(graph, rec)
    assert out.shape == ref.shape
    assert np.array_equal(out, ref), f"{int((out != ref).sum())} of {out.size} spikes differ"
    return graph


def train(net, forward, x, y, epochs: int, lr: float = 5e-3) -> None:
    """A few epochs of BPTT on spike counts (cross-entropy), fixed seed."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        perm = torch.randperm(x.shape[1], generator=gen)
        for i in range(0, len(perm), 128):
            idx = perm[i : i + 128]
            loss = F.cross_entropy(forward(net, x[:, idx]).sum(0), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()


def mlp(hidden: int = 64, output: bool = True) -> nn.Sequential:
    """output=True: the last layer returns (spk, mem); the frontend must take the spikes."""
    return nn.Sequential(
        nn.Linear(64, hidden), snn.Leaky(beta=0.9, init_hidden=True),
        nn.Linear(hidden, 10), snn.Leaky(beta=0.9, init_hidden=True, output=output),
    )  # fmt: skip


@pytest.fixture
def split(digit_spikes):
    """Train on the first 1,400 digits, compare on 300 of the rest."""
    x, y = digit_spikes
    return x[:, :1400], y[:1400], x[:, 1400:1700], y[1400:1700]


# --------------------------------------------------------------------------- equivalence


def test_trained_mlp_sequential_gives_snntorch_spikes(split):
    torch.manual_seed(0)
    net = mlp()
    xtr, ytr, xte, yte = split
    train(net, step_forward, xtr, ytr, epochs=4)
    graph = assert_same_spikes(net, xte)
    acc = (simulate(graph, xte.numpy()).sum(0).argmax(-1) == yte.numpy()).mean()
    assert acc > 0.8  # genuinely trained
    assert [type(n).__name__ for n in graph.nodes.values()] == [
        "Input", "Affine", "LIF", "Affine", "LIF", "Output"]  # fmt: skip
    lif = graph.nodes["l1"]
    assert (lif.reset, lif.timing, lif.strict) == (
        N.ResetMode.SUBTRACT, N.ResetTiming.NEXT_STEP, True)  # fmt: skip


def conv_net(reset: str = "zero") -> nn.Sequential:
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), snn.Leaky(beta=0.8, init_hidden=True, reset_mechanism=reset),
        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(6 * 4 * 4, 10),
        snn.Leaky(beta=0.8, init_hidden=True, reset_mechanism=reset),
    )  # fmt: skip
    with torch.no_grad():
        net[0].weight *= 2.0
        net[4].weight *= 3.0
    return net


def test_conv_net_zero_reset_gives_snntorch_spikes(split):
    x = split[2].reshape(T, -1, 1, 8, 8)
    graph = assert_same_spikes(conv_net("zero"), x, input_shape=(1, 8, 8))
    assert [type(n).__name__ for n in graph.nodes.values()] == [
        "Input", "Conv2d", "LIF", "AvgPool2d", "Flatten", "Affine", "LIF", "Output"]  # fmt: skip
    assert graph.nodes["l1"].reset is N.ResetMode.TO_VALUE
    assert graph.nodes["l1"].timing is N.ResetTiming.IMMEDIATE
    assert (graph.nodes["l3"].start_dim, graph.nodes["l3"].end_dim) == (0, -1)
    assert graph.nodes["l0"].padding == (1, 1)


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_synaptic_net_gives_snntorch_spikes(split, reset):
    torch.manual_seed(2)
    net = nn.Sequential(
        nn.Linear(64, 48), snn.Synaptic(alpha=0.6, beta=0.85, init_hidden=True,
                                        reset_mechanism=reset),
        nn.Linear(48, 10), snn.Synaptic(alpha=0.5, beta=0.9, init_hidden=True,
                                        reset_mechanism=reset),
    )  # fmt: skip
    graph = assert_same_spikes(net, split[2])
    cuba = graph.nodes["l1"]
    assert isinstance(cuba, N.CubaLIF)
    want = N.ResetMode.SUBTRACT if reset == "subtract" else N.ResetMode.TO_VALUE
    assert (cuba.reset, cuba.timing) == (want, N.ResetTiming.NEXT_STEP)
    assert np.all(graph.params["l1"]["decay_i"] == np.float32(0.6))


class RecurrentNet(nn.Module):
    """Tutorial style: explicit states, a loop over x[step], spikes and membranes returned."""

    def __init__(self, one_to_one: bool) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.fc1 = nn.Linear(64, 40)
        if one_to_one:
            v = torch.linspace(-0.5, 0.5, 40)
            self.lif1 = snn.RLeaky(beta=0.9, V=v, all_to_all=False, reset_mechanism="zero")
        else:
            self.lif1 = snn.RLeaky(beta=0.9, linear_features=40)
        self.fc2 = nn.Linear(40, 10)
        self.lif2 = snn.Leaky(beta=0.9)

    def forward(self, x):
        spk1, mem1 = self.lif1.init_rleaky()
        mem2 = self.lif2.init_leaky()
        spk_rec, mem_rec = [], []
        for step in range(x.size(0)):
            spk1, mem1 = self.lif1(self.fc1(x[step]), spk1, mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            spk_rec.append(spk2)
            mem_rec.append(mem2)
        return torch.stack(spk_rec), torch.stack(mem_rec)


@pytest.mark.parametrize("one_to_one", [False, True], ids=["all_to_all", "one_to_one"])
def test_rleaky_net_gives_snntorch_spikes(split, one_to_one):
    net = RecurrentNet(one_to_one)
    graph = assert_same_spikes(net, split[2], forward=lambda n, x: n(x)[0])
    # the delay comes before the recurrent map (at t=0 snnTorch applies it to zero spikes) and
    # the feed-forward input is the lif's first input (snnTorch adds the recurrence last)
    assert graph.inputs["lif1"] == ("fc1", "lif1_rec")
    assert graph.inputs["lif1_rec"] == ("lif1_rec_delay",)
    assert graph.inputs["lif1_rec_delay"] == ("lif1",)
    assert graph.params["lif1_rec_delay"]["steps"].dtype == np.int64
    rec = graph.nodes["lif1_rec"]
    assert isinstance(rec, N.Scale if one_to_one else N.Affine)
    assert rec.origin == "torch:lif1.recurrent"
    want = N.ResetMode.TO_VALUE if one_to_one else N.ResetMode.SUBTRACT
    assert (graph.nodes["lif1"].reset, graph.nodes["lif1"].timing) == (
        want, N.ResetTiming.NEXT_STEP)  # fmt: skip


def test_conv_recurrence_and_conv1d_give_snntorch_spikes(split):
    torch.manual_seed(8)
    conv = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        snn.RLeaky(beta=0.8, conv2d_channels=4, kernel_size=3, init_hidden=True),
        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(64, 10), snn.Leaky(beta=0.8, init_hidden=True),
    )  # fmt: skip
    with torch.no_grad():
        conv[0].weight *= 2.0
        conv[4].weight *= 3.0
    x = split[2].reshape(T, -1, 1, 8, 8)
    graph = assert_same_spikes(conv, x, input_shape=(1, 8, 8))
    assert isinstance(graph.nodes["l1_rec"], N.Conv2d) and graph.nodes["l1_rec"].padding == (1, 1)
    conv1d = nn.Sequential(
        nn.Conv1d(8, 6, 3, padding="same"), snn.Leaky(beta=0.8, init_hidden=True),
        nn.Flatten(), nn.Linear(48, 10), snn.Leaky(beta=0.8, init_hidden=True),
    )  # fmt: skip
    with torch.no_grad():
        conv1d[0].weight *= 2.0
        conv1d[3].weight *= 2.0
    graph = assert_same_spikes(conv1d, split[2].reshape(T, -1, 8, 8), input_shape=(8, 8))
    assert isinstance(graph.nodes["l0"], N.Conv1d) and graph.nodes["l0"].padding == 1


class TutorialNet(nn.Module):
    """snnTorch tutorial 5/6 style: init_leaky(), a global num_steps, static or indexed input."""

    def __init__(self, static: bool) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.static = static
        self.fc1 = nn.Linear(64, 50)
        self.lif1 = snn.Leaky(beta=0.95)
        self.fc2 = nn.Linear(50, 10)
        self.lif2 = snn.Leaky(beta=0.95)
        with torch.no_grad():
            self.fc1.weight *= 1.5
            self.fc2.weight *= 2.0

    def forward(self, x):
        mem1 = self.lif1.init_leaky()
        mem2 = self.lif2.init_leaky()
        spk2_rec, mem2_rec = [], []
        for step in range(num_steps):
            inp = x.view(batch_size, -1) if self.static else x[step]
            spk1, mem1 = self.lif1(self.fc1(inp), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            spk2_rec.append(spk2)
            mem2_rec.append(mem2)
        return torch.stack(spk2_rec, dim=0), torch.stack(mem2_rec, dim=0)


def test_tutorial_custom_class_gives_snntorch_spikes(split):
    graph = assert_same_spikes(TutorialNet(static=False), split[2], forward=lambda n, x: n(x)[0])
    assert list(graph.nodes) == ["input", "fc1", "lif1", "fc2", "lif2", "output"]
    assert graph.nodes["lif2"].origin == "torch:lif2"
    assert graph.meta == {"source": "torch", "frontend": "snntorch"}


def test_tutorial_static_input_is_the_input_at_every_step(digits):
    net = TutorialNet(static=True)
    x = torch.from_numpy(digits[0][:batch_size]).reshape(batch_size, 1, 8, 8)
    ref = snn_spikes(net, x, forward=lambda n, x: n(x)[0])
    graph = from_torch(net, (1, 8, 8))
    assert [type(n).__name__ for n in graph.nodes.values()][1] == "Flatten"
    out = simulate(graph, np.broadcast_to(x.numpy(), (T, *x.shape)).copy())
    assert 0.01 < ref.mean() < 0.6
    assert np.array_equal(out, ref)


@pytest.mark.parametrize(
    "cls, reset, timing",
    [
        (snn.Leaky, "subtract", N.ResetTiming.GATED),
        (snn.Leaky, "zero", N.ResetTiming.IMMEDIATE),
        (snn.Synaptic, "subtract", N.ResetTiming.GATED),
        (snn.Synaptic, "zero", N.ResetTiming.IMMEDIATE),
        (snn.RLeaky, "subtract", N.ResetTiming.GATED),
        (snn.RLeaky, "zero", N.ResetTiming.IMMEDIATE),
    ],
)
def test_reset_delay_false_gives_snntorch_spikes(split, cls, reset, timing):
    torch.manual_seed(5)
    extra = {"alpha": 0.5} if cls is snn.Synaptic else {}
    extra |= {"linear_features": 40} if cls is snn.RLeaky else {}

    def neuron(**more):
        return cls(beta=0.8, init_hidden=True, reset_mechanism=reset, reset_delay=False,
                   **extra, **more)  # fmt: skip

    net = nn.Sequential(nn.Linear(64, 40), neuron(), nn.Linear(40, 10),
                        snn.Leaky(beta=0.8, init_hidden=True, reset_delay=False))  # fmt: skip
    with torch.no_grad():
        net[0].weight *= 3.0
        net[2].weight *= 3.0
    graph = assert_same_spikes(net, split[2])
    assert graph.nodes["l1"].timing is timing


def test_learned_per_neuron_beta_and_threshold(split):
    torch.manual_seed(6)
    net = nn.Sequential(
        nn.Linear(64, 40),
        snn.Leaky(beta=torch.full((40,), 0.9), threshold=torch.ones(40), learn_beta=True,
                  learn_threshold=True, init_hidden=True),
        nn.Linear(40, 10),
        snn.Leaky(beta=torch.tensor(0.9), threshold=torch.full((10,), 1.0), learn_beta=True,
                  learn_threshold=True, init_hidden=True),
    )  # fmt: skip
    xtr, ytr, xte, _ = split
    train(net, step_forward, xtr[:, :512], ytr[:512], epochs=1, lr=2e-2)
    with torch.no_grad():
        net[1].beta[0] = 1.3  # snnTorch clamps beta to [0, 1]
    graph = assert_same_spikes(net, xte)
    p = graph.params["l1"]
    assert len(np.unique(p["threshold"])) > 1 and len(np.unique(p["decay"])) > 1
    assert p["decay"][0] == 1.0
    assert graph.params["l3"]["decay"].shape == (10,)  # a scalar tensor broadcast


def test_batchnorm_folds_into_the_layer_before(split):
    torch.manual_seed(7)
    net = nn.Sequential(
        nn.Conv2d(1, 6, 3, padding="same"), nn.BatchNorm2d(6),
        snn.Leaky(beta=0.8, init_hidden=True), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(96, 10, bias=False), nn.BatchNorm1d(10), snn.Leaky(beta=0.8, init_hidden=True),
    )  # fmt: skip
    x = split[2].reshape(T, -1, 1, 8, 8)
    with torch.no_grad():  # give the BatchNorms statistics and affine parameters to fold
        for bn in (net[1], net[6]):
            bn.running_mean.uniform_(-0.3, 0.3)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(1.0, 3.0)
            bn.bias.uniform_(-0.2, 0.4)
    net.eval()
    graph, out, rec = ir_spikes(net, x, (1, 8, 8))
    ref = snn_spikes(net, x)
    assert_fires_sometimes(graph, rec)
    assert [type(n).__name__ for n in graph.nodes.values()] == [
        "Input", "Conv2d", "LIF", "AvgPool2d", "Flatten", "Affine", "LIF", "Output"]  # fmt: skip
    assert graph.nodes["l0"].origin == "torch:0+1"
    assert graph.nodes["l5"].origin == "torch:5+6"
    # Folding changes the float rounding (torch normalises after the conv; the IR has one
    # product), so a membrane within an ulp of threshold may flip; nearly all must agree.
    assert (out == ref).mean() >= 0.995


class SkipNet(nn.Module):
    """Sums of layer outputs and scaling by constants between layers, one step per call."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(9)
        self.a, self.b, self.c = nn.Linear(64, 30), nn.Linear(64, 30), nn.Linear(30, 30)
        self.lif1 = snn.Leaky(beta=0.9, init_hidden=True)
        self.lif2 = snn.Leaky(beta=0.9, init_hidden=True)

    def forward(self, x):
        ax, bx = self.a(x), self.b(x)
        h = self.lif1(ax + bx * 0.5)
        return self.lif2(self.c(h) * 2.0 + (ax + bx))


def test_sums_and_constant_scaling_give_snntorch_spikes(split):
    graph = assert_same_spikes(SkipNet(), split[2])
    # torch forms each sum before the neuron adds it to its membrane: so must the IR
    assert isinstance(graph.nodes[graph.inputs["lif1"][0]], N.Scale)
    assert len(graph.inputs["lif1"]) == len(graph.inputs["lif2"]) == 1
    summed = graph.inputs["lif2"][0]
    assert np.all(graph.params[summed]["scale"] == 1.0) and len(graph.inputs[summed]) == 2


def test_a_sum_is_formed_before_the_neuron_adds_it():
    """For these weights (beta*mem + a) + b != beta*mem + (a + b) in float32: an IR that let
    the neuron add a and b one by one would fire at step 1, where snnTorch does not."""
    a, b = np.float32(0.39108852), np.float32(2.697867e-07)
    th = np.float32(2) * (a + b)  # the step-1 membrane exactly: no spike in snnTorch

    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.fa, self.fb = nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)
            self.lif = snn.Leaky(beta=1.0, threshold=float(th), init_hidden=True)
            with torch.no_grad():
                self.fa.weight.fill_(float(a))
                self.fb.weight.fill_(float(b))

        def forward(self, x):
            return self.lif(self.fa(x) + self.fb(x))

    net, x = Two(), torch.ones(2, 1, 1)
    assert snn_spikes(net, x).tolist() == [[[0.0]], [[0.0]]]
    assert simulate(from_torch(net), x.numpy()).tolist() == [[[0.0]], [[0.0]]]


class IterNet(nn.Module):
    """Iterates over the time-major input (``for xt in x``) after ``x.float()``."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(10)
        self.fc, self.lif = nn.Linear(64, 10), snn.Leaky(beta=0.9, init_hidden=True)
        with torch.no_grad():
            self.fc.weight *= 2.0

    def forward(self, x):
        utils.reset(self)
        return torch.stack([self.lif(self.fc(xt)) for xt in x.float()])


def test_iterating_over_time_gives_snntorch_spikes(split):
    assert_same_spikes(IterNet(), split[2], forward=lambda n, x: n(x))


def test_nested_modules_are_named_by_path_and_states_are_restored(split):
    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Identity(), mlp(hidden=32, output=False), nn.Dropout(0.5))

        def forward(self, x):
            return self.net(x)

    model = Wrapper().train()
    graph = from_torch(model)
    assert from_torch(model) == graph  # deterministic
    assert parse(print_graph(graph)) == graph
    assert list(graph.nodes) == ["input", "net_1_0", "net_1_1", "net_1_2", "net_1_3", "output"]
    assert graph.nodes["net_1_0"].origin == "torch:net.1.0"
    assert model.training and model.net[1][1].training  # train/eval flags are restored
    assert model.net[1][1].mem.shape == (0,)  # no state left behind by the trace


# --------------------------------------------------------------------------- refusals


class Max(nn.Module):
    def forward(self, x):
        return torch.max(x, dim=1, keepdim=True).values


def leaky(**kw):
    return snn.Leaky(beta=0.9, init_hidden=True, **kw)


@pytest.mark.parametrize(
    "make, shape, message",
    [
        (lambda: nn.Sequential(nn.Conv2d(1, 4, 3), leaky(), nn.MaxPool2d(2), nn.Flatten(),
                       nn.Linear(36, 10), leaky()), (1, 8, 8),
         "layer '2' (MaxPool2d): max pooling has no spike-exact IR equivalent; use nn.AvgPool2d"),
        (lambda: nn.Sequential(nn.Linear(64, 10), nn.ReLU(), nn.Linear(10, 10), leaky()), None,
         "layer '1' (ReLU): a non-spiking activation"),
        (lambda: nn.Sequential(nn.Linear(64, 10), leaky(inhibition=True)), None,
         "layer '1' (Leaky): inhibition=True"),
        (lambda: nn.Sequential(nn.Linear(64, 10), leaky(graded_spikes_factor=2.0)), None,
         "layer '1' (Leaky): graded_spikes_factor=2.0 makes graded spikes"),
        (lambda: nn.Sequential(nn.Linear(64, 10), nn.Sequential(leaky(), Max())), None,
         "layer '1.1': torch.max is not supported"),
        (lambda: nn.Sequential(nn.Linear(64, 10), nn.LayerNorm(10), leaky()), None,
         "layer '1' (LayerNorm): module type torch.nn.modules.normalization.LayerNorm is not "
         "supported; supported: nn.Sequential"),
        (lambda: nn.Sequential(nn.Linear(64, 10), snn.Lapicque(beta=0.9, init_hidden=True)), None,
         "layer '1' (Lapicque): its RC discretisation"),
        (lambda: nn.Sequential(nn.Linear(64, 10), leaky(), nn.BatchNorm1d(10), leaky()), None,
         "layer '2': BatchNorm folds only into a Linear/Conv that feeds nothing else"),
        (lambda: nn.Sequential(nn.Linear(64, 10), leaky(reset_mechanism="zero", reset_delay=False,
                                                threshold=0.0)), None,
         "layer '1': reset_mechanism='zero' with reset_delay=False needs thresholds > 0"),
        (lambda: nn.Sequential(nn.Linear(64, 10), leaky(), nn.Linear(10, 3)), None,
         "forward returns the output of layer '2', not the spikes of a neuron"),
        (lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 10), leaky()), None,
         "cannot infer the input shape of 'Sequential': its first layer is Flatten"),
    ],
    ids=["maxpool", "relu", "inhibition", "graded", "custom", "layernorm", "lapicque",
         "batchnorm", "zero-threshold", "non-spiking-output", "no-input-shape"],
)  # fmt: skip
def test_unsupported_models_are_refused_naming_the_layer(make, shape, message):
    with pytest.raises(FrontendError) as e:
        from_torch(make(), shape)
    assert message in str(e.value)


class MembraneOut(nn.Module):
    def __init__(self, swap_state: bool = False):
        super().__init__()
        self.swap_state = swap_state
        self.fc1, self.lif1 = nn.Linear(64, 10), snn.Leaky(beta=0.9)
        self.fc2, self.lif2 = nn.Linear(10, 10), snn.Leaky(beta=0.9)

    def forward(self, x):
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        rec = []
        for step in range(x.shape[0]):
            spk1, mem1 = self.lif1(self.fc1(x[step]), mem2 if self.swap_state else mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            rec.append(mem2)
        return torch.stack(rec)


def test_membrane_output_is_refused():
    with pytest.raises(FrontendError) as e:
        from_torch(MembraneOut())
    assert "returns the membrane/synaptic state (output 1) of layer 'lif2'" in str(e.value)


def test_state_from_another_layer_is_refused():
    with pytest.raises(FrontendError, match="layer 'lif1' at step 1: state 'mem' must be"):
        from_torch(MembraneOut(swap_state=True))
