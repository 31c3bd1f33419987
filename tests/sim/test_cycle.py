"""The cycle model of the FPGA accelerator: spikes equal the integer simulator's (and the core
simulator's) on every kind of network the backend accepts, and cycle counts follow
ARCHITECTURE.md as written down in snnc/sim/cycle.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from snnc.backends.fpga import build_images
from snnc.build import compile_model
from snnc.errors import SimulationError
from snnc.ir import Graph
from snnc.ir import nodes as N
from snnc.mapping.cores import mapping_of
from snnc.sim.cores import simulate as core_sim
from snnc.sim.cycle import _route, memory_port_bound, simulate
from snnc.sim.integer import simulate as int_sim

from ..backends.test_images import skip_net, threshold_net, tiny_fpga
from ..passes.test_partition import conv_net
from ..passes.test_quantize import MODES, mlp, spikes

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "examples" / "digits"


def compiled(model, target: str, passes: str | None = None):
    r = compile_model(model, target=target, passes=passes)
    m = mapping_of(r.graph)
    return r.graph, m, build_images(r.graph, m, target)


def check_exact(model, x, target: str = "ice40-up5k", passes: str | None = None):
    g, m, img = compiled(model, target, passes)
    res = simulate(img, x)
    want = int_sim(g, x)
    np.testing.assert_array_equal(res.output, want)
    np.testing.assert_array_equal(res.output, core_sim(m, g, x))
    np.testing.assert_array_equal(memory_port_bound(img, x), res.bound)
    assert np.all(res.cycles >= res.bound)
    return g, img, res


def _weights(seed: int, n_in=12, n_hid=20, n_out=5):
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 0.5, (n_hid, n_in)).astype(np.float32),
            rng.normal(0, 0.5, (n_out, n_hid)).astype(np.float32),
            rng.normal(0, 0.3, (n_hid, n_hid)).astype(np.float32))  # fmt: skip


@pytest.mark.parametrize("target", ["ice40-up5k", "ecp5-25k"])
def test_digits_spikes_exact_and_near_the_memory_port_bound(target: str) -> None:
    x = np.load(DIGITS / "sample_input.npy")
    g, img, res = check_exact(DIGITS / "model.pt", x, target)
    assert res.output.sum() > 0
    ratio = res.ratio
    print(f"\ndigits on {target}: {res.cycles.mean():.1f} cycles/step, bound "
          f"{res.bound.mean():.1f}, measured/bound {ratio:.4f}")  # fmt: skip
    assert ratio <= 1.10


def test_digits_split_over_many_cores_routes_between_them(tmp_path: Path) -> None:
    x = np.load(DIGITS / "sample_input.npy")[:, :6]
    for multicast in (True, False):
        tg = tiny_fpga(tmp_path, multicast=multicast)
        g, img, res = check_exact(DIGITS / "model.pt", x, tg)
        assert len(img.cores) >= 3
        # a hidden spike crosses cores, and the busy cores' events add up
        assert res.events[..., -1].sum() > 0 and res.events[..., 0].sum() > 0


def test_mnist_on_two_cores_exact() -> None:
    from snnc import datasets

    images, _ = datasets.load("mnist", "test")
    x = datasets.rate_encode(images[:4], 8, 0)
    g, img, res = check_exact(ROOT / "examples" / "mnist" / "model.pt", x, "ecp5-25k")
    assert len(img.cores) == 2


@pytest.mark.parametrize("mode", MODES)
def test_recurrent_net_with_delayed_feedback(mode) -> None:
    w1, w2, rec = _weights(1)
    x = spikes(15, 3, 12, 1)
    _, img, res = check_exact(mlp(w1, w2, recurrent=rec, mode=mode), x)
    assert any(t.delayed for t in img.routes)


def test_conv_net() -> None:
    x = spikes(10, 3, 72, 2).reshape(10, 3, 2, 6, 6)
    _, img, res = check_exact(conv_net(3), x)
    assert img.layouts[0].slices[0].size == 48 and res.output.sum() > 0


@pytest.mark.parametrize("recurrent", [False, True])
def test_cuba_lif_net(recurrent: bool) -> None:
    w1, w2, rec = _weights(2)
    g = mlp(w1, w2, cls=N.CubaLIF, recurrent=rec if recurrent else None)
    _, img, res = check_exact(g, spikes(15, 3, 12, 3))
    assert img.cores[0].profiles[0].kind.name == "CUBALIF" and res.output.sum() > 0


def test_if_threshold_split_axons_graded_and_shift_decays() -> None:
    w1, w2, rec = _weights(4)
    check_exact(mlp(w1, w2, cls=N.IF), spikes(12, 3, 12, 4), "ecp5-25k")  # 24-bit membranes
    check_exact(threshold_net(0), spikes(12, 3, 10, 5))
    _, img, _ = check_exact(skip_net(0), spikes(12, 3, 10, 5))
    assert img.host_routes.immediate[0].targets[0].stride == 2
    t = "ecp5-85k"  # 24-bit state (graded input needs 23-bit membranes here), 8-bit weights
    tail = f"partition{{target={t}}},place{{target={t}}},route{{target={t}}}"
    x = np.random.default_rng(0).random((10, 3, 12)).astype(np.float32)
    check_exact(mlp(w1, w2), x, t, passes=f"canonicalize,quantize{{input=graded,input-bits=8,"
                f"input-max=1.0}},{tail}")  # fmt: skip
    check_exact(mlp(w1, w2, recurrent=rec), spikes(12, 3, 12, 4), t,
                passes=f"canonicalize,quantize{{decay=shift}},{tail}")  # fmt: skip


def test_batch_elements_run_independently() -> None:
    w1, w2, rec = _weights(5)
    g, m, img = compiled(mlp(w1, w2, recurrent=rec), "ice40-up5k")
    x = spikes(8, 3, 12, 6)
    res = simulate(img, x)
    for b in range(3):
        one = simulate(img, x[:, b : b + 1])
        np.testing.assert_array_equal(one.cycles[:, 0], res.cycles[:, b])
        np.testing.assert_array_equal(one.output[:, 0], res.output[:, b])
    assert len({tuple(res.cycles[:, b]) for b in range(3)}) > 1
    # the graph's input checks and a mapping name -> array give the same run
    again = simulate(img, {"input": x}, graph=g)
    np.testing.assert_array_equal(again.cycles, res.cycles)
    with pytest.raises(SimulationError, match="not binary spikes"):
        simulate(img, x * 0.5)


def tiny_known_net() -> Graph:
    """2 inputs -> 3 LIF -> 2 LIF; all weights 1, threshold 0.5, reset to zero at once."""
    return mlp(np.ones((3, 2), np.float32), np.ones((2, 3), np.float32), threshold=0.5,
               mode=(N.ResetMode.TO_VALUE, N.ResetTiming.IMMEDIATE))  # fmt: skip


def test_cycles_of_a_known_event_sequence() -> None:
    g, m, img = compiled(tiny_known_net(), "ice40-up5k")
    x = np.zeros((2, 1, 2), np.float32)
    x[0] = 1  # step 0: both inputs spike; every neuron fires; step 1: silence
    res = simulate(img, x)
    _, rec = int_sim(g, x, record=True)
    assert rec["l1"][0].sum() == 3 and rec["l2"][0].sum() == 2 and rec["l1"][1].sum() == 0
    # P = 8: l1 is group 0, l2 group 1; every row is one word. A source is read only while its
    # lookup stage is empty at the start of the cycle.
    # Step 0, phase 0 (start s=0): host elements readable at 1. e0: stage 1, head 2, granted 3
    #   (in the core's FIFO at 4); e1: stage 3 (the stage was full in 2), head 4, granted 5,
    #   FIFO 6. The core takes e0 at 4 (busy 4..9) and e1 at 6 (busy 6..11): check 12 -> 13.
    # Phase 1 (s=13): update(0, 1) at 14, busy 14..26 (8 + 5 cycles); neurons 0..2 write at
    #   19..21 (readable 20..22); n0: stage 20, head 21, granted 22, FIFO 23; n1: stage 22, head
    #   23, FIFO 25; n2: stage 24, head 25, FIFO 27. The core is ready at 27 and takes them at
    #   27, 28, 29 (busy to 34): check 35 -> 23 cycles.
    # Phase 2 (s=36): update(1, 1) at 37, busy 37..49; neurons 8, 9 write at 42, 43, reach the
    #   host at 46, 48: last busy 49, check 50 -> 15 cycles. Step: 13 + 23 + 15 = 51.
    # Step 1: phase 0 has nothing (2 cycles); phases 1 and 2 are one update each (15 cycles).
    np.testing.assert_array_equal(res.phase_cycles[:, 0], [[13, 23, 15], [2, 15, 15]])
    np.testing.assert_array_equal(res.cycles[:, 0], [51, 32])
    # memory port: 2 + 3 events of one word, 8 + 8 neurons updated; then 16
    np.testing.assert_array_equal(res.bound[:, 0], [21, 16])
    np.testing.assert_array_equal(res.events[:, 0, 0], [5, 0])
    # busy: 4..11, 14..26, 27..34, 37..49 -> 8 + 13 + 8 + 13; step 1: 13 + 13
    np.testing.assert_array_equal(res.busy[:, 0, 0], [42, 26])
    # the three l1 spikes wait in the input FIFO (23, 25, 27) until the update ends (27)
    np.testing.assert_array_equal(res.fifo_peak[:, 0, 0], [3, 0])


def test_router_round_robin_and_one_event_per_port_per_cycle() -> None:
    # source 0: one spike with two events for port 0 (an axon split over two slices) and one
    # for port 1; source 1: one spike for port 0. Both readable at cycle 5.
    s0 = [(5, ((0, ((3, False), (2, False))), (1, ((4, True),))))]
    s1 = [(5, ((0, ((7, False),)),))]
    rr = [0, 0, 0]
    arrivals, last = _route([s0, s1, []], 3, rr)
    # both go through the lookup stage (5) into the head (6). Cycle 7: port 0 grants source 0
    # (pointer 0), port 1 grants source 0; cycle 8: port 0 grants source 1 (pointer moved past
    # 0); cycle 9: source 0's second event for port 0
    assert arrivals[0] == [(8, 3, False), (9, 7, False), (10, 2, False)]
    assert arrivals[1] == [(8, 4, True)] and arrivals[2] == []
    assert last == 10 and rr[0] == 1 and rr[1] == 1
    # a spike with no route: stage 3, head 4, dropped in 5
    arrivals, last = _route([[(3, ())]], 1, [0])
    assert arrivals == [[]] and last == 5


def test_mnist_cycle_figures_are_printed_for_a_few_images() -> None:
    from snnc import datasets

    images, _ = datasets.load("mnist", "test")
    x = datasets.rate_encode(images[:3], 5, 0)
    g, m, img = compiled(ROOT / "examples" / "mnist" / "model.pt", "ice40-up5k")
    res = simulate(img, x)
    np.testing.assert_array_equal(res.output, int_sim(g, x))
    print(
        f"\nmnist on ice40-up5k: {res.cycles.mean():.0f} cycles/step, "
        f"{res.cycles_per_image.mean():.0f} cycles/image, measured/bound {res.ratio:.4f}"
    )
    assert res.ratio <= 1.10
