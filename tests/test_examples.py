"""The shipped example model: snnc reads it safely and computes what snnTorch computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import snntorch as snn
import torch

import snnc
from snnc.frontend.safeload import load_torch_file

EX = Path(__file__).resolve().parents[1] / "examples" / "digits"


def test_shipped_example_matches_snntorch_and_its_nir_twin() -> None:
    x = np.load(EX / "sample_input.npy")
    labels = np.load(EX / "sample_labels.npy")
    out = snnc.simulate(EX / "model.pt", x)
    # the pickled surrogate is the trainer's __main__.spike_grad: the safe loader stands in
    module = load_torch_file(EX / "model.pt")
    for m in module:
        if isinstance(m, snn.Leaky):
            m.reset_mem()
    with torch.no_grad():
        expected = torch.stack([module(torch.from_numpy(x[t])) for t in range(x.shape[0])])
    np.testing.assert_array_equal(out, expected.numpy())
    np.testing.assert_array_equal(snnc.simulate(EX / "model.nir", x), out)
    assert (out.sum(0).argmax(1) == labels).mean() >= 0.9
