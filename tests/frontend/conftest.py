"""Shared fixtures for the frontend tests: the scikit-learn digits, rate-coded."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """1,797 8x8 digit images scaled to [0, 1] as ``(N, 64)`` float32, and their labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.data / 16.0).astype(np.float32), d.target.astype(np.int64)


@pytest.fixture(scope="session")
def digit_spikes(digits) -> tuple[torch.Tensor, torch.Tensor]:
    """The digits rate-coded over 15 steps with a fixed seed: ``(15, N, 64)`` 0/1, labels."""
    x, y = digits
    gen = torch.Generator().manual_seed(1234)
    p = torch.from_numpy(x).expand(15, *x.shape)
    return torch.bernoulli(p, generator=gen), torch.from_numpy(y)
