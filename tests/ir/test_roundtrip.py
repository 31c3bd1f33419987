"""The text form and JSON + npz both read back to the very same graph."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from snnc.errors import ParseError
from snnc.ir import Graph, load, parse, print_graph, save, verify
from snnc.ir import nodes as N

from .strategies import graphs

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(graphs())
def test_parse_of_print_is_identity(g: Graph) -> None:
    verify(g)
    text = print_graph(g)
    back = parse(text)
    assert back == g
    assert print_graph(back) == text  # deterministic, byte for byte


@SETTINGS
@given(graphs())
def test_json_npz_round_trip_is_identity(g: Graph) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "g.json"
        json_path, npz_path = save(g, path)
        assert npz_path.exists()
        assert load(json_path) == g


def _small() -> Graph:
    return Graph(
        {"input": N.Input(shape=(2,)), "fc": N.Linear(), "output": N.Output(shape=(1,))},
        {"fc": ["input"], "output": ["fc"]},
        {"fc": {"weight": np.array([[0.5, -0.25]], dtype=np.float32)}},
        name="small",
    )


def test_equality_sees_a_one_bit_parameter_change() -> None:
    g = _small()
    w = g.params["fc"]["weight"].copy()
    w.view(np.uint32)[0, 0] ^= 1
    assert g.replace(params={"fc": {"weight": w}}) != g
    assert g.replace(params={"fc": {"weight": g.params["fc"]["weight"]}}) == g


def test_equality_sees_input_order() -> None:
    g = Graph(
        {"a": N.Input(shape=(1,)), "b": N.Input(shape=(1,)), "o": N.Output(shape=(1,))},
        {"o": ["a", "b"]},
    )
    assert g != g.replace(inputs={"o": ["b", "a"]})


def test_parameters_are_read_only() -> None:
    g = _small()
    with pytest.raises(ValueError):
        g.params["fc"]["weight"][0, 0] = 1.0


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('snnc.ir 2\ngraph "x"\n', "version 2"),
        ('snnc.ir 1\ngraph "x"\n%a = Bogus {}\n', "unknown node type 'Bogus'"),
        (
            'snnc.ir 1\ngraph "x"\n%a = Input {shape = [2]}\n%a = Input {shape = [2]}\n',
            "defined twice",
        ),
        (
            'snnc.ir 1\ngraph "x"\n%a = Input {shape = [2]}\n%b = Linear {} (%a)\n'
            "  weight = f32[1, 2] [1.0]\n",
            "needs 2 values, has 1",
        ),
        (
            'snnc.ir 1\ngraph "x"\n%a = Input {shape = [2]}\n%b = Linear {} (%a)\n'
            "  weight = f32[1, 2] {min = 0, max = 1, mean = 0.5}\n",
            "elided",
        ),
        ('snnc.ir 1\ngraph "x"\n%a = Input {shape = [2], colour = 3}\n', "colour"),
        ('snnc.ir 1\ngraph "x"\n%a = Input {shape = [2]} $\n', "line 3: unexpected character"),
    ],
)
def test_parse_errors_name_the_problem(text: str, fragment: str) -> None:
    with pytest.raises(ParseError, match=None) as e:
        parse(text)
    assert fragment in str(e.value)


def test_elided_print_summarises_large_arrays() -> None:
    g = Graph(
        {"input": N.Input(shape=(20,)), "fc": N.Linear(), "output": N.Output(shape=(1,))},
        {"fc": ["input"], "output": ["fc"]},
        {"fc": {"weight": np.arange(20, dtype=np.float32).reshape(1, 20)}},
    )
    text = print_graph(g, elide=True)
    assert "weight = f32[1, 20] {min = 0, max = 19, mean = 9.5}" in text
    assert "# -> [1]" in text


def test_load_of_corrupt_files_raises_parse_error(tmp_path: Path) -> None:
    json_path, npz_path = save(_small(), tmp_path / "g.json")
    npz_path.write_bytes(npz_path.read_bytes()[:40])
    with pytest.raises(ParseError, match="g.npz: cannot read"):
        load(json_path)
    json_path.write_text("{not json")
    with pytest.raises(ParseError, match="cannot read IR JSON"):
        load(json_path)
