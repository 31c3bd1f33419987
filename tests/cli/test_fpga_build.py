"""snnc compile --target <fpga> writes the accelerator; snnc simulate BUILD runs it on the
integer, cycle and Verilator engines, which must agree spike for spike (cycle and Verilator also
cycle for cycle); --check names the first divergence; bad input is one message."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from snnc.backends.fpga import engines as E
from snnc.cli import main
from snnc.sim.integer import simulate as int_sim

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "examples" / "digits"


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fpga") / "digits"
    assert main(["compile", str(DIGITS / "model.pt"), "--target", "fpga", "-o", str(out),
                 "--sample", str(DIGITS / "sample_input.npy")]) == 0  # fmt: skip
    return out


@pytest.fixture(scope="module")
def x(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("x") / "x.npy"
    np.save(p, np.load(DIGITS / "sample_input.npy")[:, :5])
    return p


def test_build_holds_verilog_memories_interface_and_report(build: Path) -> None:
    files = json.loads((build / "build.json").read_text())["files"]
    for f in (
        "rtl/snnc_accelerator.v",
        "rtl/accelerator.json",
        "mem/core0_weights.hex",
        "mem/core0_axons.hex",
        "mem/core0_neurons.hex",
        "summary.txt",
        "report.html",
    ):
        assert f in files and (build / f).stat().st_size > 0, f  # fmt: skip
    v = (build / "rtl" / "snnc_accelerator.v").read_text()
    assert "module snnc_accelerator(" in v and "/work" not in v and "src =" not in v
    iface = json.loads((build / "rtl" / "accelerator.json").read_text())
    assert iface["top"] == "snnc_accelerator" and iface["load"] is None  # ECP5: weights in BRAM
    assert iface["host_in"]["fields"]["end"][1] == 1 and iface["host_elements"] == 64
    # the weight file: one word per line, P*W bits each, as many as the core's weight words
    p = iface["params"]
    lines = (build / "mem" / "core0_weights.hex").read_text().split()
    assert len(lines) == p["weight_words"]
    assert {len(s) for s in lines} == {p["lanes"] * p["weight_bits"] // 4}  # hex digits
    summary = (build / "summary.txt").read_text()
    assert "cycles/step" in summary and "latency/input" in summary


def test_the_build_is_deterministic(build: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    assert main(["compile", str(DIGITS / "model.pt"), "--target", "fpga", "-o", str(again),
                 "--sample", str(DIGITS / "sample_input.npy")]) == 0  # fmt: skip
    a = json.loads((build / "build.json").read_text())["files"]
    b = json.loads((again / "build.json").read_text())["files"]
    assert a == b  # every file hashes the same


def test_engines_agree_on_the_build(build: Path, x: Path, tmp_path: Path, capsys) -> None:
    outs = {}
    for engine in ("integer", "cycle", "verilator"):
        o = tmp_path / f"{engine}.npz"
        assert main(["simulate", str(build), "--engine", engine, "--input", str(x),
                     "-o", str(o)]) == 0  # fmt: skip
        outs[engine] = np.load(o)
    b = E.open_build(build)
    want = int_sim(b.graph, np.load(x))
    assert want.sum() > 0
    for engine, arrays in outs.items():
        np.testing.assert_array_equal(arrays["output"], want, err_msg=engine)
    np.testing.assert_array_equal(outs["verilator"]["cycles"], outs["cycle"]["cycles"])
    text = capsys.readouterr().out
    assert "M cycles/s" in text and "engine 'verilator'" in text


def test_check_passes_and_names_a_divergence(build: Path, x: Path, capsys) -> None:
    assert main(["simulate", str(build), "--engine", "verilator", "--check", "cycle",
                 "--input", str(x)]) == 0  # fmt: skip
    assert "check: verilator and cycle agree (spikes and cycles" in capsys.readouterr().out
    b = E.open_build(build)
    xs = np.load(x)
    a, c = E.run(b, "cycle", xs), E.run(b, "integer", xs)
    assert E.first_divergence(a, c, "l3") is None
    flipped = c.output.copy()
    t, i, n = 3, 2, 7
    flipped[t, i, n] ^= 1
    msg = E.first_divergence(a, E.EngineResult("bad", flipped, None, 0.0), "l3")
    assert msg.startswith(f"first divergence at step {t}, input {i}, layer 'l3', neuron {n}")
    cyc = a.cycles.copy()
    cyc[5, 1] += 1
    msg = E.first_divergence(a, E.EngineResult("bad", a.output, cyc, 0.0), "l3")
    assert "cycles differ first at step 5, input 1" in msg


def test_vcd_of_the_first_input(build: Path, x: Path, tmp_path: Path) -> None:
    vcd = tmp_path / "w.vcd"
    xs = np.load(x)[:4, :2]
    small = tmp_path / "small.npy"
    np.save(small, xs)
    assert main(["simulate", str(build), "--engine", "verilator", "--vcd", str(vcd),
                 "--input", str(small)]) == 0  # fmt: skip
    head = vcd.read_bytes()[:200000].decode(errors="replace")
    assert "$enddefinitions" in head and "host_in" in head


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--engine", "reference"], "a build runs on engines integer, cycle, verilator"),
        (["--engine", "cycle", "--vcd", "w.vcd"], "--vcd needs --engine verilator"),
        (["--engine", "cycle", "--input-shape", "3"], None),
    ],
)
def test_bad_simulate_requests_are_one_message(build: Path, x: Path, argv, fragment,
                                               tmp_path: Path, capsys) -> None:  # fmt: skip
    if fragment is None:  # an input of the wrong shape
        bad = tmp_path / "bad.npy"
        np.save(bad, np.zeros((3, 1, 10), np.float32))
        assert main(["simulate", str(build), "--engine", "cycle", "--input", str(bad)]) == 1
        err = capsys.readouterr().err
        assert "bad.npy" in err and "Traceback" not in err
        return
    assert main(["simulate", str(build), *argv, "--input", str(x)]) == 1
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err


def test_model_files_need_a_build_for_rtl_engines(x: Path, capsys) -> None:
    assert main(["simulate", str(DIGITS / "model.pt"), "--engine", "verilator",
                 "--input", str(x)]) == 1  # fmt: skip
    assert "compile it first" in capsys.readouterr().err


def test_spram_build_loads_its_weights(tmp_path: Path, x: Path) -> None:
    """A build whose weights are not in the bitstream: mem/load.hex, and the Verilator engine
    loads them through the load port before running."""
    from tests.rtl.test_top import small_target

    tg = small_target(tmp_path, neurons=128, cores=2, axons=256, words=4096,
                      weight_memory="spram", lanes=8)  # fmt: skip
    out = tmp_path / "b"
    assert main(["compile", str(DIGITS / "model.pt"), "--target", tg, "-o", str(out)]) == 0
    iface = json.loads((out / "rtl" / "accelerator.json").read_text())
    assert iface["load"] is not None and (out / "mem" / "load.hex").is_file()
    b = E.open_build(out)
    xs = np.load(x)[:, :2]
    v, c = E.run(b, "verilator", xs), E.run(b, "cycle", xs)
    assert E.first_divergence(v, c, b.image.output) is None and v.output.sum() > 0


def test_bitstream_for_the_icebreaker(tmp_path: Path, capsys) -> None:
    """~25 s: the digits net on the UP5K preset: bitstream, utilisation and fmax in the build
    and its report (the weights sit in SPRAM and are loaded over the link)."""
    out = tmp_path / "b"
    assert main(["compile", str(DIGITS / "model.pt"), "--target", "ice40-up5k", "--bitstream",
                 "-o", str(out), "--sample", str(DIGITS / "sample_input.npy")]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "bitstream: icebreaker: top.bin" in text and "ICESTORM_SPRAM 4/4" in text
    files = json.loads((out / "build.json").read_text())["files"]
    assert "bitstream/top.bin" in files and (out / "bitstream" / "top.bin").stat().st_size > 1000
    summary = (out / "summary.txt").read_text()
    assert "synthesis       icebreaker" in summary
    lat = float(re.search(r"latency/input +([\d.,]+) µs at 48 MHz", summary)[1].replace(",", ""))
    board = float(re.search(r"on the board +([\d.,]+) µs/input at the 12 MHz", summary)[1]
                  .replace(",", ""))  # fmt: skip
    assert abs(board - lat * 4) < 0.05  # 48 / 12 MHz
    assert (out / "mem" / "load.hex").is_file()


def test_board_and_target_must_agree(tmp_path: Path, capsys) -> None:
    out = tmp_path / "b"
    assert main(["compile", str(DIGITS / "model.pt"), "--target", "ecp5-25k", "--board",
                 "icebreaker", "-o", str(out)]) == 1  # fmt: skip
    err = capsys.readouterr().err
    assert "--board icebreaker carries the ice40-up5k device" in err and not out.exists()


def test_a_toolchain_failure_keeps_the_build_and_its_log(tmp_path: Path, monkeypatch,
                                                         capsys) -> None:  # fmt: skip
    """nextpnr failing (here: replaced by `false`): exit 1 with the step named, and the build
    directory written with bitstream/ and its log, but no bitstream."""
    monkeypatch.setenv("NEXTPNR_ICE40", "false")
    out = tmp_path / "b"
    assert main(["compile", str(DIGITS / "model.pt"), "--target", "ice40-up5k", "--bitstream",
                 "-o", str(out)]) == 1  # fmt: skip
    err = capsys.readouterr().err
    assert "nextpnr" in err.lower() and "failed" in err and "Traceback" not in err
    files = json.loads((out / "build.json").read_text())["files"]
    assert "rtl/snnc_accelerator.v" in files and not (out / "bitstream" / "top.bin").exists()
    assert any(f.startswith("bitstream/") and f.endswith(".log") for f in files)


def test_a_broken_yosys_is_one_message(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("YOSYS", "false")  # Amaranth's Verilog writer then fails
    out = tmp_path / "b"
    assert main(["compile", str(DIGITS / "model.pt"), "--target", "fpga", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "writing the accelerator's Verilog failed" in err and "Traceback" not in err
    assert not out.exists()
