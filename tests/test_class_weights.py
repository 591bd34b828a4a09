"""Class weights: known values for inverse frequency and effective number, mean 1 over samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from prune_dagster.core.errors import ConfigError
from prune_dagster.core.training.class_weights import ClassWeightParams, class_weights, sample_weights

LABELS = np.array([0] * 80 + [1] * 15 + [2] * 5)  # counts 80 / 15 / 5


def test_inverse_frequency_known_values():
    w = class_weights(LABELS, 3, ClassWeightParams(method="inverse_frequency"))
    # w_c = N / (C_present x n_c): 100 / (3 x 80), 100 / (3 x 15), 100 / (3 x 5)
    assert w.tolist() == pytest.approx([100 / 240, 100 / 45, 100 / 15])
    assert float((sample_weights(LABELS, w)).mean()) == pytest.approx(1.0)


def test_effective_number_known_values():
    beta = 0.9
    w = class_weights(LABELS, 3, ClassWeightParams(beta=beta))
    raw = np.array([(1 - beta) / (1 - beta ** n) for n in (80, 15, 5)])
    assert w.tolist() == pytest.approx((raw * 100 / (raw * [80, 15, 5]).sum()).tolist(), rel=1e-6)
    # beta = 0.9: E_c saturates at 1 / (1 - beta) = 10, so 80 and 15 samples weigh almost alike
    assert w[0] == pytest.approx(w[1], rel=0.25) and w[2] > w[1]


def test_beta_limits():
    equal = class_weights(LABELS, 3, ClassWeightParams(beta=0.0))
    assert equal.tolist() == pytest.approx([1.0, 1.0, 1.0])
    near_one = class_weights(LABELS, 3, ClassWeightParams(beta=1 - 1e-9))
    inverse = class_weights(LABELS, 3, ClassWeightParams(method="inverse_frequency"))
    assert near_one.tolist() == pytest.approx(inverse.tolist(), rel=1e-5)


def test_balanced_set_gets_ones_and_empty_class_zero():
    labels = np.repeat(np.arange(4), 25)
    for method in ("inverse_frequency", "effective_number"):
        assert class_weights(labels, 4, ClassWeightParams(method=method)).tolist() == pytest.approx([1.0] * 4)
    w = class_weights(labels, 5)
    assert w[4] == 0.0 and float(sample_weights(labels, w).mean()) == pytest.approx(1.0)


def test_weighted_cross_entropy_balances_class_totals():
    # With inverse-frequency weights every class contributes the same total weight to the loss.
    w = class_weights(LABELS, 3, ClassWeightParams(method="inverse_frequency"))
    per_sample = torch.from_numpy(sample_weights(LABELS, w))
    totals = [float(per_sample[torch.from_numpy(LABELS == c)].sum()) for c in range(3)]
    assert totals == pytest.approx([totals[0]] * 3)


def test_bad_input():
    with pytest.raises(ConfigError, match="below 3"):
        class_weights(np.array([0, 3]), 3)
    with pytest.raises(ConfigError, match="at least one"):
        class_weights(np.array([], dtype=int), 3)
    with pytest.raises(ValidationError):
        ClassWeightParams(beta=1.0)
