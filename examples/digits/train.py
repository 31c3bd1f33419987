"""Train the shipped example: a 64-128-10 snnTorch network on scikit-learn's 8x8 digits.

Run from the repository root: ``python examples/digits/train.py`` (about 30 s on 2 CPU cores).
Writes, next to this file:

- ``model.pt``: the whole trained ``nn.Sequential`` (``torch.save(model)``), which snnc loads
  safely without running code from the file;
- ``model.nir``: the same network as NIR, written by ``snnc convert`` (snnTorch's own exporter
  would turn its subtract reset into a reset to zero);
- ``sample_input.npy``: 16 test digits, rate-coded, time-major ``(T, 16, 64)``;
- ``sample_labels.npy``: their labels.

Input coding: each pixel (0..16) spikes at each step with probability pixel/16 (a fixed seed).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import snntorch as snn
import torch
from sklearn.datasets import load_digits
from snntorch import surrogate
from torch import nn

HERE = Path(__file__).resolve().parent
T = 20
SEED = 0


def spike_grad(x: torch.Tensor) -> torch.Tensor:
    """ATan surrogate; a module-level function so that ``torch.save(model)`` can pickle it."""
    return surrogate.ATan.apply(x, 2.0)


def build() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(64, 128),
        snn.Leaky(beta=0.9, spike_grad=spike_grad, init_hidden=True),
        nn.Linear(128, 10),
        snn.Leaky(beta=0.9, spike_grad=spike_grad, init_hidden=True),
    )


def encode(images: np.ndarray, seed: int) -> np.ndarray:
    """Rate code: (N, 64) pixels 0..16 -> (T, N, 64) spikes in {0, 1} as float32."""
    rng = np.random.default_rng(seed)
    p = images / 16.0
    return (rng.random((T, *images.shape)) < p).astype(np.float32)


def run(model: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Output spikes (T, B, 10), states reset first."""
    for m in model:
        if isinstance(m, snn.Leaky):
            m.reset_mem()
    return torch.stack([model(x[t]) for t in range(x.shape[0])])


def split():
    digits = load_digits()
    x, y = digits.data.astype(np.float32), digits.target.astype(np.int64)
    order = np.random.default_rng(SEED).permutation(len(x))
    x, y = x[order], y[order]
    return (x[:1400], y[:1400]), (x[1400:], y[1400:])


def main() -> int:
    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    (xtr, ytr), (xte, yte) = split()
    model = build()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(8):
        spikes = torch.from_numpy(encode(xtr, seed=100 + epoch))
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), 64):
            idx = perm[i : i + 64]
            out = run(model, spikes[:, idx])
            loss = loss_fn(out.sum(0) * 0.5, torch.from_numpy(ytr)[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            counts = run(model, torch.from_numpy(encode(xte, seed=1))).sum(0)
        acc = (counts.argmax(1).numpy() == yte).mean()
        print(f"epoch {epoch}: loss {loss.item():.3f}, test accuracy {acc:.3f}")
    model.eval()
    torch.save(model, HERE / "model.pt")
    np.save(HERE / "sample_input.npy", encode(xte[:16], seed=1))
    np.save(HERE / "sample_labels.npy", yte[:16])
    from snnc.api import load
    from snnc.frontend.nir_export import write_nir

    write_nir(load(model, input_shape=(64,)), HERE / "model.nir")
    print(f"wrote {HERE / 'model.pt'}, model.nir, sample_input.npy; test accuracy {acc:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
