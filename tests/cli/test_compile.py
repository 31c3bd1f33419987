"""snnc compile: a complete build directory with manifest and reports, or nothing at all."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from snnc.cli import main

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "examples" / "digits" / "model.pt"


def test_compile_writes_manifest_ir_and_reports(tmp_path: Path, capsys) -> None:
    out = tmp_path / "build"
    assert main(["compile", str(MODEL), "--target", "loihi1", "-o", str(out), "--report"]) == 0
    printed = capsys.readouterr().out
    assert "partition for 'loihi1'" in printed and "binding limit" in printed
    assert "cores on 'loihi1' (used / limit)" in printed
    files = sorted(p.name for p in out.iterdir())
    assert files == ["build.json", "fit.json", "loihi", "model.json", "model.npz", "model.snnc",
                     "report.txt", "summary.txt"]  # fmt: skip
    assert sorted(p.name for p in (out / "loihi").iterdir()) == ["chip.json", "cores",
                                                                 "network.net"]  # fmt: skip
    manifest = json.loads((out / "build.json").read_text())
    assert manifest["options"]["target"] == "loihi1"
    assert manifest["passes"].startswith("canonicalize,quantize{weight-bits=8,granularity=layer}")
    assert manifest["inputs"]["model"]["sha256"] == hashlib.sha256(MODEL.read_bytes()).hexdigest()
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    fit = json.loads((out / "fit.json").read_text())
    assert fit["target"] == "loihi1" and fit["limits"]["neurons"] == 1024
    assert sum(c["neurons"] for c in fit["cores"]) == 128 + 10
    assert all(c["synapse_bits"] <= fit["limits"]["synapse_memory_bits"] for c in fit["cores"])


def test_calibration_rates_weight_the_link_loads(tmp_path: Path, capsys) -> None:
    x = ROOT / "examples" / "digits" / "sample_input.npy"
    out = tmp_path / "b"
    assert main(["compile", str(MODEL), "--target", "loihi1", "-o", str(out),
                 "--calibrate", str(x)]) == 0  # fmt: skip
    fit = json.loads((out / "fit.json").read_text())
    uniform = tmp_path / "u"
    assert main(["compile", str(MODEL), "--target", "loihi1", "-o", str(uniform)]) == 0
    fit_u = json.loads((uniform / "fit.json").read_text())
    load = sum(link["load"] for link in fit["links"])
    load_u = sum(link["load"] for link in fit_u["links"])
    # measured rates are below one spike per neuron per step
    assert 0 < load < load_u
    assert "calibration input" in (out / "report.txt").read_text()


def test_a_failed_compile_leaves_no_build_and_keeps_the_old_one(tmp_path: Path, capsys) -> None:
    out = tmp_path / "build"
    assert main(["compile", str(MODEL), "--target", "loihi1", "-o", str(out)]) == 0
    before = (out / "build.json").read_text()
    tiny = tmp_path / "tiny.yaml"
    import yaml

    from snnc.targets import load_target, target_to_dict

    d = target_to_dict(load_target("loihi1"))
    d.update(name="tiny", cores=1, mesh=[1, 1])
    d["core"]["neurons"] = 64  # 138 neurons need three such cores
    d.pop("source", None)
    tiny.write_text(yaml.safe_dump(d))
    assert main(["compile", str(MODEL), "--target", str(tiny), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "snnc: error: 'partition' failed" in err and "cores of target 'tiny'" in err
    assert (out / "build.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build", "tiny.yaml"]
    assert main(["compile", str(MODEL), "--target", "nowhere", "-o", str(tmp_path / "x")]) == 1
    assert "no preset of that name" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_compiled_ir_simulates_like_the_integer_pipeline(tmp_path: Path) -> None:
    out = tmp_path / "b"
    assert main(["compile", str(MODEL), "--target", "ecp5-25k", "-o", str(out)]) == 0
    import snnc
    from snnc.mapping.cores import mapping_of
    from snnc.sim.cores import simulate as core_sim

    g = snnc.load(out / "model.json")
    x = np.load(ROOT / "examples" / "digits" / "sample_input.npy")
    # the ecp5-25k preset stores 4-bit weights
    want = snnc.simulate(MODEL, x, engine="integer", passes="canonicalize,quantize", weight_bits=4)
    np.testing.assert_array_equal(core_sim(mapping_of(g), g, x), want)
