"""NIR written by Norse, Rockpool, Sinabs and SpikingJelly's own exporters, checked against the
output of each framework's own forward pass (files made by tools/make_nir_fixtures.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from snnc.frontend.nir import load_nir_file
from snnc.sim.reference import simulate

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nir"

# fixture -> flavor; every one of these fires at most once per step in its framework too
EXACT = {
    "norse_mlp": "norse",
    "norse_mlp_box": "norse",
    "norse_mlp_if": "norse",
    "rockpool_mlp": "rockpool",
    "sinabs_mlp_if": "sinabs",
    "spikingjelly_mlp": "spikingjelly",
    "spikingjelly_mlp_nodecay": "spikingjelly",
    "spikingjelly_mlp_if": "spikingjelly",
    "spikingjelly_mlp_cuba": "spikingjelly",
    "spikingjelly_conv": "spikingjelly",
}


def _fixture(name: str):
    z = np.load(FIXTURES / f"{name}.npz")
    return z["input"], z["output"], z["hidden"]


@pytest.mark.parametrize(("name", "flavor"), sorted(EXACT.items()))
def test_framework_export_simulates_exactly_as_the_framework(name: str, flavor: str) -> None:
    x, expected, hidden = _fixture(name)
    assert expected.max() == 1 and hidden.max() == 1  # single spikes: exact is possible
    notes: list[str] = []
    g = load_nir_file(FIXTURES / f"{name}.nir", flavor=flavor, notes=notes)
    out, rec = simulate(g, x, record=True)
    assert 0 < expected.mean() < 0.5
    np.testing.assert_array_equal(out, expected)
    first_neuron = next(n for n, node in g.nodes.items() if node.spiking)
    np.testing.assert_array_equal(rec[first_neuron], hidden)


@pytest.mark.parametrize("name", ["rockpool_mlp", "spikingjelly_mlp"])
def test_flavor_is_recognised_from_node_names(name: str) -> None:
    notes: list[str] = []
    g = load_nir_file(FIXTURES / f"{name}.nir", notes=notes)
    flavor = name.split("_")[0]
    assert g.meta["flavor"] == flavor
    assert f"reading it with --nir-flavor {flavor}" in notes[0]
    x, expected, _ = _fixture(name)
    np.testing.assert_array_equal(simulate(g, x), expected)


def test_multi_spike_frameworks_are_read_with_a_stated_limit() -> None:
    notes: list[str] = []
    g = load_nir_file(FIXTURES / "sinabs_mlp.nir", flavor="sinabs", notes=notes)
    assert any("emit several spikes per step" in n for n in notes)
    x, expected, hidden = _fixture("sinabs_mlp")
    assert expected.max() == 2  # Sinabs's MultiSpike did fire twice in one step here
    out = simulate(g, x)
    # up to the first double spike anywhere in a sample, snnc agrees with Sinabs
    double = (expected > 1).any(axis=2) | (hidden > 1).any(axis=2)  # (T, B)
    for b in range(x.shape[1]):
        first = int(np.argmax(double[:, b])) if double[:, b].any() else x.shape[0]
        assert first > 0
        np.testing.assert_array_equal(out[:first, b], expected[:first, b])


def test_norse_file_read_as_plain_nir_is_refused_with_the_flavor_named() -> None:
    from snnc.errors import FrontendError

    with pytest.raises(FrontendError, match="--nir-flavor norse"):
        load_nir_file(FIXTURES / "norse_mlp.nir")
