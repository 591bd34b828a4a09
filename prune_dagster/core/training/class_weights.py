"""Per-class loss weights for an imbalanced training set: the samples stay as they are, the loss
weighs each class instead (no resampling, no extra training time).

- inverse_frequency: w_c ∝ 1 / n_c.
- effective_number (Cui et al. 2019, "Class-Balanced Loss Based on Effective Number of Samples"):
  w_c ∝ 1 / E_c with E_c = (1 - β^n_c) / (1 - β), the expected number of distinct samples among n_c
  when each new one overlaps the seen ones with probability β. β = 0 gives equal weights, β → 1
  inverse frequency; in between, extra samples of a large class count for less and less.

Weights are scaled so that their mean over the *samples* is 1 (Σ_c n_c w_c = N): the weighted loss
keeps the unweighted loss's scale, so the learning rate needs no change. A class with no sample gets
weight 0 (it contributes nothing to the loss either way).

Use: `w = class_weights(labels, n_classes, params)`; in the train loop, per-sample weights are
`w[y_batch]` (multiplied into the per-sample cross-entropy), or `nn.CrossEntropyLoss(weight=w)`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from prune_dagster.core.errors import ConfigError
from prune_dagster.core.params import Params

METHODS = ("inverse_frequency", "effective_number")


class ClassWeightParams(Params):
    """Per-class weights of the cross-entropy, from the class counts of the training set."""

    method: Literal[METHODS] = Field(default="effective_number",
                                     description="inverse_frequency: 1 / n_c; effective_number: "
                                                 "(1 - beta) / (1 - beta^n_c) (Cui et al. 2019)")
    beta: float = Field(default=0.999, ge=0.0, lt=1.0,
                        description="effective_number: 0 = equal weights, towards 1 = inverse frequency")


def class_weights(labels: np.ndarray, n_classes: int, params: ClassWeightParams | None = None) -> np.ndarray:
    """(n_classes,) float32 weights, mean 1 over the samples; 0 for a class with no sample."""
    params = params or ClassWeightParams()
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        raise ConfigError("class weights need at least one labelled sample")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ConfigError(f"labels span {labels.min()}..{labels.max()}; expected indices below {n_classes}")
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    present = counts > 0
    raw = np.zeros(n_classes)
    if params.method == "inverse_frequency":
        raw[present] = 1.0 / counts[present]
    else:
        # (1 - β^n) computed as -expm1(n log β): exact for β near 1 and large n.
        effective = -np.expm1(counts[present] * np.log(params.beta)) / (1.0 - params.beta) if params.beta > 0 \
            else np.ones(int(present.sum()))
        raw[present] = 1.0 / effective
    return (raw * len(labels) / float((counts * raw).sum())).astype(np.float32)


def sample_weights(labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Each sample's weight: its class's entry of `weights`."""
    return np.asarray(weights, dtype=np.float32)[np.asarray(labels, dtype=np.int64)]
