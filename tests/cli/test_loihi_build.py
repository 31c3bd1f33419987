"""``snnc compile --target loihi1`` and ``snnc simulate BUILD --engine loihi`` on the MNIST
example: the files, the summary, the semantic warnings, and an accuracy within two images in a
hundred of the integer simulator's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from snnc import datasets
from snnc.backends.loihi import read
from snnc.build import compile_model
from snnc.cli import main
from snnc.eval import predict

from ..backends.test_loihi_lower import NETS, as_exact

ROOT = Path(__file__).resolve().parents[2]
MNIST = ROOT / "examples" / "mnist" / "model.pt"
N_IMAGES = 100


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("loihi") / "mnist-loihi1"
    assert main(["compile", str(MNIST), "--target", "loihi1", "-o", str(out), "--yaml"]) == 0
    return out


@pytest.fixture(scope="module")
def mnist_input(tmp_path_factory) -> tuple[Path, np.ndarray]:
    images, labels = datasets.load("mnist", "test")
    x = datasets.rate_encode(images[:N_IMAGES], 25, 0).reshape(25, N_IMAGES, -1)
    path = tmp_path_factory.mktemp("x") / "x.npy"
    np.save(path, x)
    return path, labels[:N_IMAGES]


def test_compile_writes_chip_cores_yaml_netx_and_summary(build: Path) -> None:
    files = {p.relative_to(build).as_posix() for p in build.rglob("*") if p.is_file()}
    want = {"loihi/chip.json", "loihi/chip.yaml", "loihi/cores/chip0_core0.json",
            "loihi/cores/chip0_core1.yaml", "loihi/network.net", "summary.txt"}  # fmt: skip
    assert want <= files
    manifest = json.loads((build / "build.json").read_text())
    assert "loihi/network.net" in manifest["files"] and manifest["options"]["yaml"] is True
    chip = json.loads((build / "loihi" / "chip.json").read_text())
    assert chip["layers"] == [["l1", 1], ["l3", 2]] and len(chip["cores"]) == 2
    assert yaml.safe_load((build / "loihi" / "chip.yaml").read_text()) == chip
    cfg = read(build / "loihi")
    assert sum(len(c.compartments) for c in cfg.cores.values()) == 139  # + the bias's


def test_summary_states_cores_memory_errors_and_warnings(build: Path) -> None:
    text = (build / "summary.txt").read_text()
    assert "2 of 128 cores used (128 per chip), on 1 of 1 chip(s)" in text
    assert "913,088/1,048,576" in text and "938,368/1,048,576" in text
    assert "l1             threshold  max abs 0 IR units" in text
    assert "warning: 'l1': reset by subtraction (v - threshold) becomes Loihi's reset to 0" in text
    assert "warning: 'l3': the next_step reset becomes Loihi's immediate reset" in text
    assert "lags the input by 2 step(s)" in text
    assert "netx: loihi/network.net written (lava-dl netx HDF5, 2 dense layer(s))" in text
    assert ("netx: network.net carries the biases of 'l1', 'l3' in the neuron bias (acting from "
            "step 0, as Lava does)") in text  # fmt: skip


def test_compile_prints_the_semantic_warnings_on_stderr(tmp_path: Path, capsys) -> None:
    assert main(["compile", str(MNIST), "--target", "loihi1", "-o", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err
    # 3 per layer (reset, timing, leak) + latency + the biases' note: the biases go through u
    assert err.count("warning: ") == 8 and "bias acts from Loihi step 0" not in err
    assert "warning: the biases of 'l1', 'l3' come from an always-on compartment" in err
    assert "warning: 'l1': the leak truncates toward zero" in err


def test_simulate_loihi_is_within_two_in_a_hundred_of_the_integer_engine(
    build: Path, mnist_input, tmp_path: Path, capsys
) -> None:
    """The semantic changes (reset to 0 instead of subtracting) cost 0.7 points on the 1,000
    test images (benchmarks/loihi.py); on these 100 the predictions of both engines agree but
    for at most two images, which bounds the accuracy difference by 0.02."""
    x, labels = mnist_input
    outs = {}
    for engine in ("loihi", "integer"):
        o = tmp_path / f"{engine}.npz"
        assert main(["simulate", str(build), "--engine", engine, "--input", str(x), "-o",
                     str(o)]) == 0  # fmt: skip
        outs[engine] = np.load(o)["output"]
    text = capsys.readouterr().out
    assert "ran 27 Loihi steps and dropped the first 2" in text
    assert outs["loihi"].shape == outs["integer"].shape == (25, N_IMAGES, 10)
    pred = {k: predict(v) for k, v in outs.items()}
    acc = {k: float(np.mean(p == labels)) for k, p in pred.items()}
    assert np.mean(pred["loihi"] != pred["integer"]) <= 0.02
    assert abs(acc["loihi"] - acc["integer"]) <= 0.02 and acc["loihi"] >= 0.9


def test_check_names_the_first_divergence_and_fails(build: Path, mnist_input, capsys) -> None:
    x, _ = mnist_input
    assert main(["simulate", str(build), "--input", str(x), "--check"]) == 1
    err = capsys.readouterr().err
    assert "loihi and integer differ: first divergence at step" in err
    assert "of the predictions (summary.txt lists the semantic changes" in err


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--engine", "cycle"], "a Loihi build runs on engines loihi, integer"),
        (["--vcd", "w.vcd"], "no --vcd: there is no RTL"),
    ],
)
def test_fpga_engines_on_a_loihi_build_are_refused(build, mnist_input, capsys, argv, fragment):
    x, _ = mnist_input
    assert main(["simulate", str(build), "--input", str(x), *argv]) == 1
    assert fragment in capsys.readouterr().err


def test_loihi_rules_choose_the_simulators_rules(build: Path, mnist_input, capsys, tmp_path):
    """--loihi-rules nengo switches all three rules; MNIST's weights (Wgt = 2w at wgtExp -1)
    are exact under both exponent rules, its sums far from 21 bits and its refractory delays 0,
    so the spikes stay the same."""
    x, _ = mnist_input
    outs = {}
    for rules in ("lava", "nengo"):
        o = tmp_path / f"{rules}.npz"
        argv = ["simulate", str(build), "--input", str(x), "--loihi-rules", rules, "-o", str(o)]
        assert main(argv) == 0
        outs[rules] = np.load(o)["output"]
    printed = capsys.readouterr().out
    assert "Loihi rules: weight exponent on each sum, 21-bit input wrap off, refractory " \
           "delay off" in printed  # fmt: skip
    assert "Loihi rules: weight exponent on each synapse, 21-bit input wrap on, refractory " \
           "delay on" in printed  # fmt: skip
    np.testing.assert_array_equal(outs["lava"], outs["nengo"])
    assert main(["simulate", str(MNIST), "--input", str(x), "--weight-exp", "synapse"]) == 1
    assert "choose the rules of the loihi engine" in capsys.readouterr().err


def test_engine_loihi_on_a_model_file_says_to_compile(mnist_input, capsys) -> None:
    x, _ = mnist_input
    assert main(["simulate", str(MNIST), "--input", str(x), "--engine", "loihi"]) == 1
    assert "--target loihi1 -o BUILD" in capsys.readouterr().err


def test_yaml_is_refused_for_an_fpga_target(tmp_path: Path, capsys) -> None:
    argv = ["compile", str(MNIST), "--target", "ecp5-25k", "--yaml", "-o", str(tmp_path / "b")]
    assert main(argv) == 1
    assert "--yaml: target 'ecp5-25k' is not a Loihi target" in capsys.readouterr().err


def test_recorded_layers_come_back_in_the_graphs_order_and_shape(tmp_path: Path) -> None:
    """A conv network in Loihi's own arithmetic: every layer's spikes equal the integer
    engine's, aligned by the layer's depth and un-permuted from the cores' pixel-major order."""
    compile_model(as_exact(NETS["conv"]()), target="loihi1", output=tmp_path / "b")
    x = (np.random.default_rng(0).random((20, 3, 2, 6, 6)) < 0.4).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    got = {}
    for engine in ("loihi", "integer"):
        o = tmp_path / f"{engine}.npz"
        argv = ["simulate", str(tmp_path / "b"), "--engine", engine, "--input",
                str(tmp_path / "x.npy"), "--record", "-o", str(o)]  # fmt: skip
        assert main(argv) == 0
        got[engine] = dict(np.load(o))
    assert sorted(got["loihi"]) == sorted(got["integer"]) == ["layer/l1", "layer/l2", "output"]
    assert got["loihi"]["layer/l1"].shape == (20, 3, 3, 4, 4)
    for k, v in got["loihi"].items():
        assert np.array_equal(v, got["integer"][k]), k
    assert got["loihi"]["layer/l1"].sum() > 0


def test_eval_engine_loihi_compares_with_the_integer_engine(capsys) -> None:
    argv = ["eval", str(MNIST), "--dataset", "mnist", "--engine", "loihi", "--limit", "100",
            "--json"]  # fmt: skip
    assert main(argv) == 0
    res = json.loads(capsys.readouterr().out)
    assert (res["target"], res["cores"], res["images"], res["steps"]) == ("loihi1", 2, 100, 25)
    acc = res["accuracy"]
    assert abs(acc["loihi"] - acc["integer"]) <= 0.02 and res["prediction_agreement"] >= 0.98
    assert len(res["semantic_changes"]) == 8
