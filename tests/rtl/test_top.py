"""The whole accelerator (snnc/rtl/top.py) in Amaranth's simulator against the simulators.

Tiny networks compiled for a 2-core FPGA target with 2 lanes run a few steps through
``host_in``/``host_out`` (the host protocol of snnc/rtl/top.py); the output spikes must equal
``snnc.sim.integer.simulate`` and the cycles of every step ``snnc.sim.cycle.simulate``'s.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from amaranth.sim import Simulator

from snnc.backends.fpga import build_images, synapse_matrix
from snnc.backends.fpga.rtl_config import (
    accelerator_config,
    host_words,
    load_words,
    output_array,
)
from snnc.build import compile_model
from snnc.ir import nodes as N
from snnc.mapping.cores import mapping_of
from snnc.rtl.top import Accelerator
from snnc.sim.cycle import simulate as cycle_sim
from snnc.sim.integer import simulate as int_sim
from snnc.targets import load_target

from ..backends.test_images import skip_net, target_to_dict
from ..passes.test_quantize import MODES, mlp, spikes


def small_target(path: Path, *, lanes=2, neurons=8, cores=2, axons=32, words=256,
                 multicast=True, weight_memory="bram") -> str:  # fmt: skip
    """An ECP5-like target with ``cores`` tiny cores of ``lanes`` lanes and 8-bit weights."""
    d = target_to_dict(load_target("ecp5-25k"))
    d.update(name="rtl-tiny", cores=cores, mesh=[cores, 1], source="", multicast=multicast)
    d["fpga"].update(lanes=lanes, weight_memory=weight_memory)
    if weight_memory == "spram":  # a device with the UP5K's SPRAM
        d["fpga"].update(sprams=4, spram_bits=262144)
    d["synapse_cost"]["word_bits"] = 8 * lanes
    d["core"].update(
        neurons=neurons,
        input_axons=axons,
        synapse_memory_bits=8 * lanes * words,
        weight_bits=list(range(1, 9)),
    )
    p = Path(path) / f"rtl_tiny_{lanes}_{neurons}_{cores}_{multicast}_{weight_memory}.yaml"
    p.write_text(yaml.safe_dump(d))
    return str(p)


def compiled(model, target: str, passes: str | None = None):
    r = compile_model(model, target=target, passes=passes)
    m = mapping_of(r.graph)
    return r.graph, build_images(r.graph, m, target)


FIELDS = ("element", "payload", "end", "clear")


def _words(runs) -> list[tuple[int, int, int, int]]:
    """(element, payload, end, clear) host words of ``runs``, a clear word between runs."""
    words = []
    for k, steps_in in enumerate(runs):
        words += [(0, 0, 1, 1)] if k else []
        for step in steps_in:
            words += [(e, p, 0, 0) for e, p in step] + [(0, 0, 1, 0)]
    return words


async def _load(ctx, dut, image) -> None:
    """Every weight word through the load port."""
    for c, a, word in load_words(image):
        ctx.set(dut.load.payload, {"core": c, "addr": a, "data": word})
        ctx.set(dut.load.valid, 1)
        await ctx.tick().until(dut.load.ready)
    ctx.set(dut.load.valid, 0)


def run_rtl(image, runs: list[list[list[tuple[int, int]]]], *, gap: int = 0):
    """Drive ``runs`` (per run, per step: its ``(element, payload)`` words) through one
    accelerator, with a clear word between runs. Returns per run (output elements per step,
    cycles per step, events counted in the run). ``gap``: idle cycles of the host between
    words."""
    dut = Accelerator(accelerator_config(image))
    T = sum(len(r) for r in runs)
    outs: list[list[int]] = []
    cycles: list[int] = []
    events: list[int] = []

    async def sender(ctx):
        if dut.loads:
            await _load(ctx, dut, image)
        for w in _words(runs):
            ctx.set(dut.host_in.payload, dict(zip(FIELDS, w, strict=True)))
            ctx.set(dut.host_in.valid, 1)
            await ctx.tick().until(dut.host_in.ready)
            ctx.set(dut.host_in.valid, 0)
            if gap:
                await ctx.tick().repeat(gap)

    async def receiver(ctx):
        ctx.set(dut.host_out.ready, 1)
        cur: list[int] = []
        ends = {sum(len(r) for r in runs[: k + 1]) for k in range(len(runs))}
        base = 0
        for _ in range(40000):
            if ctx.get(dut.host_out.valid):
                w = ctx.get(dut.host_out.payload)
                if w.end:
                    outs.append(cur)
                    cur = []
                    cycles.append(ctx.get(dut.cycles_last_step))
                    assert w.cycles == cycles[-1]
                    assert ctx.get(dut.steps) == len(outs)
                    if len(outs) in ends:
                        events.append(ctx.get(dut.events) - base)
                        base = ctx.get(dut.events)
                else:
                    cur.append(int(w.element))
            if len(outs) == T:
                break
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(sender, background=True)
    sim.add_testbench(receiver)
    sim.run()
    assert len(outs) == T, f"only {len(outs)} of {T} steps finished"
    res, k = [], 0
    for r, ev in zip(runs, events, strict=True):
        res.append((outs[k : k + len(r)], cycles[k : k + len(r)], ev))
        k += len(r)
    return res


def check(model, x, target: str, passes: str | None = None, **kw):
    """Every batch element is a run of the same accelerator (cleared between runs)."""
    g, img = compiled(model, target, passes)
    want = int_sim(g, x)
    ref = cycle_sim(img, x, graph=g)
    np.testing.assert_array_equal(ref.output, want)
    runs = run_rtl(img, host_words(img, x, graph=g), **kw)
    for b, (outs, cycles, events) in enumerate(runs):
        np.testing.assert_array_equal(output_array(img, outs), want[:, b])
        assert cycles == ref.cycles[:, b].tolist(), (cycles, ref.cycles[:, b].tolist())
        assert events == int(ref.events[:, b].sum())
    return img, ref


def _w(seed: int, n_in=6, n_hid=8, n_out=3):
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 0.8, (n_hid, n_in)).astype(np.float32),
            rng.normal(0, 0.8, (n_out, n_hid)).astype(np.float32),
            rng.normal(0, 0.5, (n_hid, n_hid)).astype(np.float32))  # fmt: skip


def test_mlp_spikes_and_cycles(tmp_path: Path) -> None:
    w1, w2, _ = _w(0)
    img, ref = check(mlp(w1, w2, threshold=0.5), spikes(8, 2, 6, 1, rate=0.5),
                     small_target(tmp_path))  # fmt: skip
    assert len(img.cores) == 2 and ref.output.sum() > 0


def test_recurrent_delay_spikes_and_cycles(tmp_path: Path) -> None:
    w1, w2, rec = _w(1)
    img, ref = check(mlp(w1, w2, threshold=0.5, recurrent=rec, mode=MODES[0]),
                     spikes(8, 2, 6, 2, rate=0.5), small_target(tmp_path))  # fmt: skip
    assert any(t.delayed for t in img.routes) and ref.output.sum() > 0


def test_slow_host_does_not_change_cycles(tmp_path: Path) -> None:
    w1, w2, rec = _w(2)
    check(mlp(w1, w2, threshold=0.5, recurrent=rec), spikes(4, 1, 6, 3, rate=0.5),
          small_target(tmp_path), gap=3)  # fmt: skip


@pytest.mark.parametrize(
    ("lanes", "neurons", "cores", "multicast"),
    [(2, 4, 4, True), (2, 4, 4, False), (1, 16, 2, True), (4, 16, 2, True)],
)
def test_other_splits(tmp_path: Path, lanes: int, neurons: int, cores: int, multicast: bool):
    """Hidden layer over two cores (multicast host and recurrent routes, two sources contending
    for the output core), one lane, four lanes."""
    w1, w2, rec = _w(3)
    img, _ = check(mlp(w1, w2, threshold=0.4, recurrent=rec), spikes(6, 2, 6, 4, rate=0.6),
                   small_target(tmp_path, lanes=lanes, neurons=neurons, cores=cores,
                                multicast=multicast))  # fmt: skip
    if cores == 4:
        targets = [len(e.targets) for e in img.host_routes.immediate]
        assert max(targets) == (2 if multicast else 1) and len(img.cores) >= 3


def test_split_axons_and_strides(tmp_path: Path) -> None:
    """An input feeding two populations on one core: host routes with stride 2."""
    img, ref = check(skip_net(0), spikes(6, 1, 10, 5, rate=0.5),
                     small_target(tmp_path, neurons=24))  # fmt: skip
    assert img.host_routes.immediate[0].targets[0].stride == 2 and ref.output.sum() > 0


def test_graded_input_and_cuba(tmp_path: Path) -> None:
    w1, w2, rec = _w(4)
    tg = small_target(tmp_path)
    tail = f"partition{{target={tg}}},place{{target={tg}}},route{{target={tg}}}"
    x = np.random.default_rng(0).random((6, 1, 6)).astype(np.float32)
    img, ref = check(mlp(w1, w2, threshold=0.5, recurrent=rec), x, tg,
                     passes=f"canonicalize,quantize{{input=graded,input-bits=8,input-max=1.0}},"
                     f"{tail}")  # fmt: skip
    assert img.params.payload_bits == 8 and ref.output.sum() > 0
    check(mlp(w1, w2, threshold=0.5, cls=N.CubaLIF, recurrent=rec), spikes(6, 2, 6, 6, 0.6), tg)


@pytest.mark.parametrize("cls", [N.LIF, N.CubaLIF])
def test_per_neuron_decays_when_they_outnumber_the_profiles(tmp_path: Path, cls) -> None:
    """A trained per-neuron decay (and decay_i): 8 distinct decays on a core of 4 profiles are
    kept per neuron in the parameter memory; spikes and cycles as the integer and cycle
    models."""
    rng = np.random.default_rng(7)
    w1, w2, _ = _w(7)
    g = mlp(w1, w2, threshold=0.5, cls=cls)
    g.params["l1"]["decay"] = rng.uniform(0.6, 0.95, 8).astype(np.float32)
    if cls is N.CubaLIF:
        g.params["l1"]["decay_i"] = rng.uniform(0.3, 0.8, 8).astype(np.float32)
    img, ref = check(g, spikes(8, 2, 6, 8, rate=0.5), small_target(tmp_path))
    assert img.params.neuron_decays and ref.output.sum() > 0
    assert max(len(c.profiles) for c in img.cores) <= 2
    c = next(ci for ci in img.cores if len({n.decay for n in ci.neurons}) >= 8)
    assert len({n.profile for n in c.neurons}) == 1


def test_accumulators_reach_their_bound_without_wrapping(tmp_path: Path) -> None:
    """Every input at the largest payload onto rows of all-positive and all-negative weights:
    the lane sums reach the bound the accumulators are sized to (one bit fewer would wrap)."""
    rng = np.random.default_rng(6)
    w1 = np.abs(rng.normal(0, 0.8, (8, 6))).astype(np.float32)
    w1[::2] *= -1
    w2 = np.abs(rng.normal(0, 0.8, (3, 8))).astype(np.float32)
    tg = small_target(tmp_path)
    tail = f"partition{{target={tg}}},place{{target={tg}}},route{{target={tg}}}"
    img, ref = check(mlp(w1, w2, threshold=0.5), np.ones((4, 1, 6), np.float32), tg,
                     passes=f"canonicalize,quantize{{input=graded,input-bits=8,input-max=1.0}},"
                     f"{tail}")  # fmt: skip
    p = img.params
    hi = max(int(np.maximum(synapse_matrix(img, c).toarray(), 0).sum(axis=0).max())
             for c in range(len(img.cores))) * 255  # fmt: skip
    assert (1 << (p.acc_bits - 2)) <= hi < (1 << (p.acc_bits - 1)) and p.acc_bits < 24
    assert ref.output.sum() > 0


def test_weights_loaded_into_single_port_ram(tmp_path: Path) -> None:
    """weight_memory = spram: the weights are not in the design; the host loads them."""
    w1, w2, rec = _w(5)
    tg = small_target(tmp_path, weight_memory="spram")
    img, ref = check(mlp(w1, w2, threshold=0.5, recurrent=rec), spikes(6, 2, 6, 7, 0.6), tg)
    assert img.params.weight_memory == "spram" and ref.output.sum() > 0
    dut = Accelerator(accelerator_config(img))
    assert dut.loads and len(load_words(img)) == 2 * img.params.weight_words
