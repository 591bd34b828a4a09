import numpy as np
import pytest

from prune_dagster.core.sources import load_digits


@pytest.fixture(scope="session")
def digits():
    return load_digits()


@pytest.fixture(scope="session")
def digits_train(digits):
    """(ids, images, labels) of the digits train split."""
    d = digits.with_split(0.2, 0)
    tr = d.split == "train"
    return d.ids[tr], d.images[tr], d.labels[tr]


@pytest.fixture
def rng():
    return np.random.default_rng(0)
