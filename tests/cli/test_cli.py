"""The ``snnc`` command: outputs, files written, and one clear message for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from snnc.cli import main

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "nir"
MODEL = FIX / "spikingjelly_mlp.nir"


@pytest.fixture
def x_path(tmp_path: Path) -> Path:
    z = np.load(FIX / "spikingjelly_mlp.npz")
    p = tmp_path / "x.npy"
    np.save(p, z["input"])
    return p


def test_inspect_prints_the_ir(capsys) -> None:
    assert main(["inspect", str(MODEL)]) == 0
    out = capsys.readouterr().out
    assert out.startswith('snnc.ir 1\ngraph "spikingjelly_mlp"\n')
    assert "LIF {reset = to_value, timing = immediate, strict = false" in out
    assert "# -> [3]" in out


def test_inspect_json_has_nodes_and_shapes(capsys) -> None:
    assert main(["inspect", str(MODEL), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["format"] == "snnc.ir"
    assert d["shapes"]["output"] == [3]
    assert [n["type"] for n in d["nodes"]][:3] == ["Input", "Affine", "LIF"]


def test_simulate_writes_time_major_uint8_spikes(tmp_path: Path, x_path: Path, capsys) -> None:
    out = tmp_path / "o.npz"
    assert main(["simulate", str(MODEL), "--input", str(x_path), "-o", str(out), "--record"]) == 0
    z = np.load(out)
    expected = np.load(FIX / "spikingjelly_mlp.npz")["output"]
    assert z["output"].dtype == np.uint8 and z["output"].shape == (20, 4, 3)
    np.testing.assert_array_equal(z["output"], expected)
    assert "layer/_1" in z.files and z["layer/_1"].shape == (20, 4, 5)
    assert "simulated 4 input(s) x 20 steps" in capsys.readouterr().out


@pytest.mark.parametrize("suffix", [".nir", ".json", ".snnc"])
def test_convert_then_simulate_gives_the_same_spikes(suffix, tmp_path: Path, x_path: Path) -> None:
    conv = tmp_path / f"m{suffix}"
    assert main(["convert", str(MODEL), "-o", str(conv)]) == 0
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    assert main(["simulate", str(MODEL), "--input", str(x_path), "-o", str(a)]) == 0
    assert main(["simulate", str(conv), "--input", str(x_path), "-o", str(b)]) == 0
    np.testing.assert_array_equal(np.load(a)["output"], np.load(b)["output"])


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["inspect", "missing.nir"], "missing.nir: no such file"),
        (["inspect", "model.onnx"], "unknown model file type '.onnx'"),
        (["inspect", "{tmp}/corrupt.nir"], "corrupt.nir: not a readable NIR file"),
        (["inspect", "{tmp}/corrupt.pt"], "corrupt.pt"),
        (
            ["simulate", str(MODEL), "--input", "{tmp}/nope.npy", "-o", "{tmp}/o.npz"],
            "nope.npy: no such input file",
        ),
        (
            ["simulate", str(MODEL), "--input", "{tmp}/wrong.npy", "-o", "{tmp}/o.npz"],
            "wrong.npy: input for 'input_1' has shape (5, 2, 7); expected (T, B, 6)",
        ),
        (["convert", str(MODEL), "-o", "{tmp}/out.txt"], "unknown output type"),
    ],
)
def test_bad_input_is_one_message_and_status_1(argv, fragment, tmp_path: Path, capsys) -> None:
    (tmp_path / "corrupt.nir").write_bytes(b"not hdf5")
    (tmp_path / "corrupt.pt").write_bytes(b"PK\x03\x04 truncated")
    np.save(tmp_path / "wrong.npy", np.zeros((5, 2, 7), np.float32))
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 1
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("snnc: error: ") and fragment in err
    assert "Traceback" not in err
    assert not (tmp_path / "o.npz").exists() and not (tmp_path / "out.txt").exists()


def test_the_installed_command_never_shows_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.nir"
    bad.write_bytes(b"\x00" * 100)
    r = subprocess.run([sys.executable, "-m", "snnc.cli", "simulate", str(bad), "--input",
                        str(bad), "-o", str(tmp_path / "o.npz")],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and "snnc: error:" in r.stderr
    assert list(tmp_path.iterdir()) == [bad]
