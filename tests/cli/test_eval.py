"""``snnc eval``, and the pass pipeline options of ``simulate`` and ``inspect``."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

import snnc
from snnc.api import compile_passes, load
from snnc.cli import main
from snnc.errors import PassError
from snnc.eval import Progress, predict

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "examples" / "digits" / "model.pt"
SAMPLE = ROOT / "examples" / "digits" / "sample_input.npy"


def test_eval_reports_both_accuracies_agreement_and_firing_rates(capsys) -> None:
    assert main(["eval", str(MODEL), "--dataset", "digits", "--limit", "200"]) == 0
    out = capsys.readouterr().out
    m = re.search(r"accuracy\s+reference ([\d.]+)\s+integer ([\d.]+)", out)
    assert m, out
    ref, qnt = float(m.group(1)), float(m.group(2))
    assert ref > 0.85 and qnt > 0.85 and abs(ref - qnt) <= 0.02
    assert "200 images x 20 steps" in out
    assert re.search(
        r"agreement\s+output spikes [\d.]+% of entries identical, predicted classes", out
    )
    assert re.search(r"^\s+l1\s+0\.\d{4}\s+0\.\d{4}$", out, re.M)  # rate per engine
    assert "quantize report:" in out and "canonicalize,quantize{weight-bits=8}" in out


def test_eval_json_has_the_figures(capsys) -> None:
    argv = ["eval", str(MODEL), "--dataset", "digits", "--limit", "100", "--weight-bits", "4"]
    assert main([*argv, "--steps", "10", "--batch-size", "30", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    for key in ("accuracy", "agreement", "firing_rates", "reports", "timings", "passes"):
        assert key in d
    assert d["images"] == 100 and d["steps"] == 10 and d["dataset"] == "digits"
    assert set(d["accuracy"]) == {"reference", "integer"}
    assert 0.0 <= d["agreement"]["output_spikes"] <= 1.0
    assert 0.0 <= d["agreement"]["predictions"] <= 1.0
    assert set(d["firing_rates"]["integer"]) == {"l1", "l3"}
    assert d["passes"] == "canonicalize,quantize{weight-bits=4}"
    assert "w 4b" in d["reports"]["quantize"]


def test_eval_results_do_not_depend_on_the_batch_size(capsys) -> None:
    runs = []
    for b in ("7", "500"):
        argv = ["eval", str(MODEL), "--dataset", "digits", "--limit", "40", "--batch-size", b]
        assert main([*argv, "--json"]) == 0
        d = json.loads(capsys.readouterr().out)
        runs.append((d["accuracy"], d["agreement"], d["firing_rates"]))
    assert runs[0] == runs[1]


def test_eval_one_engine(capsys) -> None:
    argv = ["eval", str(MODEL), "--dataset", "digits", "--limit", "50", "--engine", "reference"]
    assert main([*argv, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert list(d["accuracy"]) == ["reference"] and d["agreement"]["predictions"] is None


def test_eval_refuses_an_unknown_data_set(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["eval", str(MODEL), "--dataset", "cifar"])
    assert e.value.code == 2
    assert "invalid choice: 'cifar'" in capsys.readouterr().err


def test_eval_names_a_model_whose_input_does_not_fit(capsys) -> None:
    assert main(["eval", str(MODEL), "--dataset", "mnist", "--limit", "5"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "784 or 28x28 or 1x28x28" in err


def test_progress_writes_a_line_per_quarter_when_not_a_terminal() -> None:
    buf = io.StringIO()
    p = Progress(200, buf, min_seconds=0)
    for done in range(10, 101, 10):
        p("reference", done, 100)
    for done in range(10, 101, 10):
        p("integer", done, 100)
    p.close()
    lines = buf.getvalue().splitlines()
    assert len(lines) == 4 and lines[-1].startswith("eval: integer 100/100 images (100%")
    quiet = io.StringIO()
    Progress(10, quiet)("reference", 10, 10)  # a short run prints nothing
    assert quiet.getvalue() == ""


def test_predict_counts_spikes_and_breaks_ties_to_the_lowest_index() -> None:
    out = np.zeros((3, 2, 4))
    out[:, 0, 2] = 1  # image 0: class 2
    out[0, 1, 1] = out[0, 1, 3] = 1  # image 1: tie between 1 and 3
    np.testing.assert_array_equal(predict(out), [2, 1])


def test_simulate_integer_engine_writes_integer_spikes(tmp_path: Path, capsys) -> None:
    o = tmp_path / "o.npz"
    argv = ["simulate", str(MODEL), "--input", str(SAMPLE), "-o", str(o), "--record"]
    assert main([*argv, "--engine", "integer", "--weight-bits", "4"]) == 0
    out = capsys.readouterr().out
    assert "engine 'integer'" in out and "quantize{weight-bits=4}" in out
    z = np.load(o)
    assert z["output"].dtype == np.uint8 and z["output"].shape == (20, 16, 10)
    assert z["layer/l0"].dtype.kind == "i"  # membrane inputs stay integers
    q, _ = compile_passes(load(MODEL), weight_bits=4)
    from snnc.sim.integer import simulate

    np.testing.assert_array_equal(z["output"], simulate(q, np.load(SAMPLE)))


def test_api_simulate_integer_engine() -> None:
    x = np.load(SAMPLE)
    out = snnc.simulate(str(MODEL), x, engine="integer")
    assert out.dtype == np.int64 and out.shape == (20, 16, 10)
    ref = snnc.simulate(str(MODEL), x)
    assert np.mean(out == ref) > 0.9


def test_inspect_prints_the_ir_after_the_passes_and_their_reports(capsys) -> None:
    assert main(["inspect", str(MODEL), "--passes", "canonicalize,quantize", "--report"]) == 0
    out = capsys.readouterr().out
    assert "bits = 8" in out  # the quantised IR
    assert "# report 'quantize':" in out and re.search(r"#\s+l1\s+scale", out)
    assert "# pass timings: canonicalize" in out


def test_inspect_json_report(capsys) -> None:
    argv = ["inspect", str(MODEL), "--passes", "canonicalize,quantize", "--weight-bits", "6"]
    assert main([*argv, "--report", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert "w 6b" in d["reports"]["quantize"] and set(d["pass_timings"]) >= {"quantize"}


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["inspect", "--passes", "canonicalize,quantiz"], "unknown pass 'quantiz'"),
        (["inspect", "--passes", "quantize{weight-bits=99}"], "weight-bits must be 1..16"),
        (["inspect", "--passes", "quantize"], "'quantize' failed (first pass)"),
        (
            ["simulate", "--input", str(SAMPLE), "--engine", "integer", "--weight-bits", "4",
             "--passes", "canonicalize,quantize{weight-bits=8}"],
            "--weight-bits 4 conflicts with quantize{weight-bits=8}",
        ),
        (["inspect", "--passes", "canonicalize", "--weight-bits", "4"], "needs a quantize pass"),
        (["eval", "--dataset", "digits", "--passes", "canonicalize,nope"], "unknown pass 'nope'"),
    ],
)  # fmt: skip
def test_bad_pipelines_are_one_line_and_status_1(argv, fragment, capsys) -> None:
    assert main([argv[0], str(MODEL), *argv[1:]]) == 1
    err = capsys.readouterr().err
    assert err.startswith("snnc: error: ") and err.count("\n") == 1
    assert fragment in err


def test_compile_passes_default_and_weight_bits() -> None:
    g = load(MODEL)
    q, ctx = compile_passes(g)
    assert q.meta["quantized"] and "quantize" in ctx.reports
    assert "w 8b" in ctx.reports["quantize"].text()
    q4, _ = compile_passes(g, "canonicalize,quantize{weight-bits=4,decay=shift}", 4)
    assert q4.meta["quantize"] == "quantize{weight-bits=4,decay=shift}"
    with pytest.raises(PassError, match="weight-bits must be"):
        compile_passes(g, weight_bits=20)


def test_inspect_prints_the_ir_between_passes(capsys) -> None:
    model = str(Path(__file__).resolve().parents[2] / "examples" / "digits" / "model.pt")
    assert main(["inspect", model, "--passes", "canonicalize,quantize", "--print-between"]) == 0
    out = capsys.readouterr().out
    assert out.count("// ----- after 'canonicalize'") == 1
    assert out.count("// ----- after 'quantize'") == 1
    after = out.split("// ----- after 'quantize'")[1]
    assert "weight = i32[128, 64]" in after and "decay_bits = 12" in after
