"""The accelerator converted to Verilog, built with Verilator and driven by cocotb 2.

The check of tests/rtl/test_top.py (outputs = ``snnc.sim.integer``, cycles of every step =
``snnc.sim.cycle``, events taken) on the Verilog that ``amaranth.back.verilog.convert`` emits,
for an MLP trained on the digits data set (on the ``fpga`` preset itself), a convolutional net
and a recurrent net with a delayed self-connection. The pytest function writes the Verilog and a
JSON spec (host words packed as ``host_in__payload`` bits; a clear word between the runs of
the batch elements), runs cocotb's Verilator runner on :func:`drive` (a cocotb
test in this module) and compares the JSON that :func:`drive` writes back. Each network costs one
Verilator build (10-40 s).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

SPEC = "SNNC_TOP_SPEC"
ROOT = Path(__file__).resolve().parents[2]

try:  # the cocotb test (collected by cocotb inside the simulator, not by pytest)
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import ClockCycles, FallingEdge

    @cocotb.test()
    async def drive(dut) -> None:
        spec = json.loads(Path(os.environ[SPEC]).read_text())
        Clock(dut.clk, 10, unit="ns").start()
        dut.rst.value = 1
        dut.host_in__valid.value = 0
        dut.host_out__ready.value = 1
        await ClockCycles(dut.clk, 3)
        await FallingEdge(dut.clk)
        dut.rst.value = 0
        steps = spec["steps"]
        words = [w for step in steps for w in step]
        end_bit = spec["out_end"]
        el_mask = (1 << end_bit) - 1
        outs, cur, cycles, marks, i, taken = [], [], [], [], 0, False
        for _ in range(spec["max_cycles"]):
            await FallingEdge(dut.clk)  # inputs change here; a transfer is at the next rise
            i += taken  # the word offered in the previous cycle was taken at the last rise
            if int(dut.host_out__valid.value):
                w = int(dut.host_out__payload.value)
                if w >> end_bit & 1:
                    outs.append(cur)
                    cur = []
                    cycles.append(int(dut.cycles_last_step.value))
                    marks.append(w >> (end_bit + 1))
                else:
                    cur.append(w & el_mask)
            if len(outs) == len(steps):
                break
            dut.host_in__valid.value = int(i < len(words))
            if i < len(words):
                dut.host_in__payload.value = words[i]
            # ready depends on registers only: its value now holds until the rise
            taken = i < len(words) and bool(int(dut.host_in__ready.value))
        result = {"outs": outs, "cycles": cycles, "marks": marks, "events": int(dut.events.value),
                  "steps": int(dut.steps.value)}  # fmt: skip
        Path(spec["result"]).write_text(json.dumps(result))
except ImportError:  # pragma: no cover
    pass


def _digits(tmp_path: Path):
    """The shipped digits MLP (trained with snnTorch) on the ``fpga`` preset, 3 images."""
    x = np.load(ROOT / "examples" / "digits" / "sample_input.npy")[:, :3]
    return ROOT / "examples" / "digits" / "model.pt", "fpga", x


def _conv(tmp_path: Path):
    from ..passes.test_partition import conv_net
    from .test_top import small_target

    x = (np.random.default_rng(7).random((6, 2, 2, 6, 6)) < 0.5).astype(np.float32)
    return conv_net(3), small_target(tmp_path, neurons=24, cores=4, axons=80, words=1024), x


def _recurrent(tmp_path: Path):
    from ..passes.test_quantize import MODES, mlp, spikes
    from .test_top import _w, small_target

    w1, w2, rec = _w(1)
    return (mlp(w1, w2, threshold=0.5, recurrent=rec, mode=MODES[0]),
            small_target(tmp_path, neurons=4, cores=4), spikes(8, 2, 6, 2, rate=0.5))  # fmt: skip


@pytest.mark.parametrize("net", [_digits, _conv, _recurrent], ids=["mlp", "conv", "recurrent"])
def test_top_in_verilator(tmp_path: Path, monkeypatch, net) -> None:
    pytest.importorskip("cocotb_tools")
    from amaranth.back import verilog
    from cocotb_tools.runner import get_results, get_runner

    from snnc.backends.fpga.rtl_config import accelerator_config, host_words, output_array
    from snnc.errors import BackendError
    from snnc.rtl.toolchain import environment, require
    from snnc.rtl.top import Accelerator
    from snnc.sim.cycle import simulate as cycle_sim
    from snnc.sim.integer import simulate as int_sim

    from .test_top import compiled

    try:
        env = environment()
        require("verilator", env)
    except BackendError as e:
        pytest.skip(str(e))
    for k in ("VERILATOR_ROOT", "PATH", "MAKEFLAGS"):
        monkeypatch.setenv(k, env[k])
    model, target, x = net(tmp_path)
    g, img = compiled(model, target)
    want, ref = int_sim(g, x), cycle_sim(img, x, graph=g)
    np.testing.assert_array_equal(ref.output, want)
    assert want.sum() > 0
    dut = Accelerator(accelerator_config(img))
    lay = dut.in_layout
    word = lay.const  # one host word as an integer
    runs = host_words(img, x, graph=g)
    steps = [[word({"element": e, "payload": p}).as_value().value for e, p in step]
             + [word({"end": 1}).as_value().value] for run in runs for step in run]  # fmt: skip
    T = x.shape[0]
    for b in range(1, len(runs)):  # a clear word before the first step of every next run
        steps[b * T].insert(0, word({"end": 1, "clear": 1}).as_value().value)
    src = tmp_path / "accelerator.v"
    src.write_text(verilog.convert(dut, name="accelerator"))
    result = tmp_path / "result.json"
    # a word takes a cycle; twice the cycle model's count leaves room to fail
    limit = 2 * int(ref.cycles.sum()) + 2 * sum(map(len, steps)) + 1000
    spec = {"steps": steps, "out_end": dut.out_layout["end"].offset, "result": str(result),
            "max_cycles": limit}  # fmt: skip
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    runner = get_runner("verilator")
    runner.build(sources=[src], hdl_toplevel="accelerator", build_dir=tmp_path / "build",
                 always=True, build_args=["-Wno-fatal"])  # fmt: skip
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    xml = runner.test(
        test_module="tests.rtl.test_top_verilator",
        hdl_toplevel="accelerator",
        build_dir=tmp_path / "build",
        test_dir=tmp_path,
        extra_env={SPEC: str(tmp_path / "spec.json"), "PYTHONPATH": path},
    )
    assert get_results(xml) == (1, 0)
    got = json.loads(result.read_text())
    assert got["steps"] == len(steps) and got["marks"] == got["cycles"]
    for b in range(len(runs)):
        outs = got["outs"][b * T : (b + 1) * T]
        np.testing.assert_array_equal(output_array(img, outs), want[:, b])
        assert got["cycles"][b * T : (b + 1) * T] == ref.cycles[:, b].tolist()
    assert got["events"] == int(ref.events.sum())
