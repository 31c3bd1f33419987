"""Synthesis helpers (snnc/rtl/synth.py): the pin wrapper keeps every port alive, and the
YoWASP flow runs for both families (slow)."""

from __future__ import annotations

import pytest
from amaranth import Value

from snnc.rtl.core import NeuronCore
from snnc.rtl.params import AxonEntry, CoreImage, CoreParams, NeuronInit, Profile
from snnc.rtl.synth import PinWrapper, synthesize


def _core(weight_memory: str = "bram") -> NeuronCore:
    p = CoreParams(8, 2, 8, 16, 4, 8, 12, 1, 1, 3, weight_memory=weight_memory)
    weights = tuple((k, -k) for k in range(8))
    axons = tuple(AxonEntry(2 * a, 2, 0, 0) for a in range(4))
    neurons = tuple(NeuronInit(threshold=5) for _ in range(8))
    return NeuronCore(CoreImage(p, axons, weights, neurons, (Profile(),)))


@pytest.mark.parametrize("weight_memory", ["bram", "spram"])
def test_pin_wrapper_drives_every_input_port(weight_memory: str) -> None:
    core = _core(weight_memory)
    w = PinWrapper.around(core)
    ins = {id(v) for v in w.inputs}
    want = [core.events.valid, core.events.payload, core.cmd.valid, core.cmd.payload,
            core.spikes.ready, core.clear]  # fmt: skip
    if weight_memory == "spram":
        want += [core.load.valid, core.load.payload]
    assert ins == {id(v) for v in want}
    # events 1 + 2 + 1, cmd 1 + 2 + 3, spikes.ready 1, clear 1; load 1 + 3 + 16
    width = sum(len(Value.cast(v)) for v in w.inputs)
    assert width == 12 + (20 if weight_memory == "spram" else 0)
    assert {id(v) for v in w.outputs} == {id(core.events.ready), id(core.cmd.ready),
                                          id(core.spikes.valid), id(core.spikes.payload),
                                          id(core.busy)} | (
        {id(core.load.ready)} if weight_memory == "spram" else set())  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("device", ["ice40-up5k", "ecp5-25k"])
def test_a_small_core_synthesises(device: str) -> None:
    """About 10 s each: the SPRAM instance stays (its inputs are live), timing is reported."""
    w = PinWrapper.around(_core("spram" if device == "ice40-up5k" else "bram"))
    r = synthesize(w, [w.pin_in, w.pin_out], device)
    assert r.fmax_mhz > 0 and r.luts > 0
    assert r.spram == (1 if device == "ice40-up5k" else 0)


@pytest.mark.parametrize(
    ("outer", "want"),
    [(None, "CFG_CXXFLAGS_PCH_I=-include"), ("w", "w -- CFG_CXXFLAGS_PCH_I=-include"),
     ("s -- X=1", "s -- X=1 CFG_CXXFLAGS_PCH_I=-include")],
)  # fmt: skip
def test_verilator_flag_survives_an_outer_make(outer, want) -> None:
    """``make test`` sets MAKEFLAGS; the precompiled-header definition must still reach
    Verilator's make (a fresh-clone CI run failed without it)."""
    import os

    from snnc.rtl.toolchain import environment

    base = {"PATH": os.environ.get("PATH", "")} | ({"MAKEFLAGS": outer} if outer else {})
    assert environment(base)["MAKEFLAGS"] == want
