"""The accelerator converted to Verilog, built with Verilator and driven by cocotb 2.

The same check as tests/rtl/test_top.py (outputs = ``snnc.sim.integer``, cycles of every step =
``snnc.sim.cycle``) on the Verilog that ``amaranth.back.verilog.convert`` emits. The pytest
function writes the Verilog and a JSON spec (host words packed as ``host_in__payload`` bits,
field offsets), runs cocotb's Verilator runner on :func:`drive` (a cocotb test in this module)
and compares the JSON that :func:`drive` writes back.
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
        words = [w for step in spec["steps"] for w in step]
        end_bit, el_mask = spec["out_end"], (1 << spec["out_end"]) - 1
        outs, cur, cycles, i, taken = [], [], [], 0, False
        for _ in range(spec["max_cycles"]):
            await FallingEdge(dut.clk)  # inputs change here; a transfer is at the next rise
            i += taken  # the word offered in the previous cycle was taken at the last rise
            if int(dut.host_out__valid.value):
                w = int(dut.host_out__payload.value)
                if w >> end_bit & 1:
                    outs.append(cur)
                    cur = []
                    cycles.append(int(dut.cycles_last_step.value))
                else:
                    cur.append(w & el_mask)
            if len(outs) == len(spec["steps"]):
                break
            dut.host_in__valid.value = int(i < len(words))
            if i < len(words):
                dut.host_in__payload.value = words[i]
            # ready depends on registers only: its value now holds until the rise
            taken = i < len(words) and bool(int(dut.host_in__ready.value))
        result = {"outs": outs, "cycles": cycles, "events": int(dut.events.value),
                  "steps": int(dut.steps.value)}  # fmt: skip
        Path(spec["result"]).write_text(json.dumps(result))
except ImportError:  # pragma: no cover
    pass


@pytest.mark.slow
def test_top_in_verilator(tmp_path: Path, monkeypatch) -> None:
    """15-30 s, the Verilator build included (run with -m slow)."""
    pytest.importorskip("cocotb_tools")
    from amaranth.back import verilog
    from cocotb_tools.runner import get_results, get_runner

    from snnc.backends.fpga.rtl_config import accelerator_config, host_words, output_array
    from snnc.errors import BackendError
    from snnc.rtl.toolchain import environment, require
    from snnc.rtl.top import Accelerator
    from snnc.sim.cycle import simulate as cycle_sim
    from snnc.sim.integer import simulate as int_sim

    from ..passes.test_quantize import MODES, mlp, spikes
    from .test_top import _w, compiled, small_target

    try:
        env = environment()
        require("verilator", env)
    except BackendError as e:
        pytest.skip(str(e))
    for k in ("VERILATOR_ROOT", "PATH"):
        monkeypatch.setenv(k, env[k])
    # the wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so g++ is handed the
    # precompiled header as an input file; a command-line definition (MAKEFLAGS) restores it
    monkeypatch.setenv("MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include")
    w1, w2, rec = _w(1)
    g, img = compiled(mlp(w1, w2, threshold=0.5, recurrent=rec, mode=MODES[0]),
                      small_target(tmp_path, neurons=4, cores=4))  # fmt: skip
    x = spikes(8, 1, 6, 2, rate=0.5)
    want, ref = int_sim(g, x), cycle_sim(img, x, graph=g)
    assert want.sum() > 0 and len(img.cores) >= 3
    dut = Accelerator(accelerator_config(img))
    lay = dut.in_layout
    pack = [[lay.const({"element": e, "payload": p, "end": 0}).as_value().value
             for e, p in step] + [lay.const({"end": 1}).as_value().value]
            for step in host_words(img, x, graph=g)[0]]  # fmt: skip
    src = tmp_path / "accelerator.v"
    src.write_text(verilog.convert(dut, name="accelerator"))
    result = tmp_path / "result.json"
    spec = {"steps": pack, "out_end": dut.out_layout["end"].offset, "result": str(result),
            "max_cycles": 200 * len(pack) + 1000}  # fmt: skip
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
    np.testing.assert_array_equal(output_array(img, got["outs"]), want[:, 0])
    assert got["cycles"] == ref.cycles[:, 0].tolist()
    assert got["events"] == int(ref.events[:, 0].sum()) and got["steps"] == len(pack)
