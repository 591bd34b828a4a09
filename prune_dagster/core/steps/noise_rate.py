"""Label-noise decisions bounded by the estimated noise rate (confident learning on out-of-fold probs).

The probabilities come from the shared representation (`core/training/representation.py`): a CNN's
out-of-fold softmax. cleanlab's confident joint estimates how many labels are wrong; a filter flags
candidates, and the decision never flags more than `max_flag_factor` x that estimate (the least
self-confident first). A candidate is flagged only where the model is confident in another class
(`min_other_probability`): where the model cannot tell, the sample is kept. Classes with fewer than
`min_class_samples` samples are left alone (the joint cannot be estimated for them).

Default `both` (flag only where prune_by_noise_rate and prune_by_class agree), capped at 1x the
estimate. Measured on real MNIST, 8,000 training images, probabilities from the default
representation (two_conv, 4 folds x 4 epochs, shifts), split/training seeds 0 / 1 / 2
(`benchmarks/real.py --part label-noise`, benchmarks/results/real.json):

    as it is: flagged           both 13 / 17 / 18 (0.16-0.23%)   prune_by_noise_rate 18 / 25 / 25
                                Datalab (same probs + embeddings) 18 / 25 / 25; noise estimate 0.23-0.31%
    10% symmetric flips: F1     both 0.954 / 0.943 / 0.932 (precision 0.95-0.98, recall 0.91-0.93)
                                prune_by_noise_rate 0.947 / 0.944 / 0.925 (= Datalab on the same inputs)
                                predicted_neq_given capped (other >= 0.5) 0.933 / 0.939 / 0.935

With the document's CNN as fold model (4 x 4, shifts; seeds 0 / 1) flip F1 was lower: both
0.906 / 0.919, Datalab 0.897 / 0.905 (benchmarks/results/real_document_cnn.json); 18 / 13 flagged as is.
Requiring the model to give another class >= 0.5 (`min_other_probability`) cost 1-4 points of
recall and flagged about as many clean samples: off by default.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import Field

from prune_dagster.core.errors import DatasetError
from prune_dagster.core.params import Params

NOISE_FILTERS = ("prune_by_noise_rate", "both", "prune_by_class", "confident_learning", "predicted_neq_given")


class NoiseRateParams(Params):
    """How label issues are chosen from out-of-fold probabilities (module docstring)."""

    filter_by: Literal["prune_by_noise_rate", "both", "prune_by_class", "confident_learning",
                       "predicted_neq_given"] = Field(
        "both", description="cleanlab filter proposing candidates (cleanlab.filter.find_label_issues).")
    max_flag_factor: float = Field(1.0, ge=0.0, le=10.0, description="Flag at most this many times the "
                                   "estimated number of wrong labels (confident joint); 0 flags nothing.")
    min_other_probability: float = Field(0.0, ge=0.0, le=1.0, description="A candidate is flagged only if "
                                         "the model gives one other class at least this probability.")
    min_class_samples: int = Field(5, ge=2, le=1000, description="Classes with fewer samples are left alone.")


@dataclass(frozen=True)
class NoiseDecision:
    issues: np.ndarray  # (n,) bool, True = flagged as wrongly labelled
    self_confidence: np.ndarray  # (n,) probability of the given label
    estimated_noise_rate: float  # off-diagonal share of the calibrated confident joint
    metadata: dict[str, Any] = field(default_factory=dict)


def estimate_noise_rate(labels: np.ndarray, probs: np.ndarray) -> float:
    """1 - trace of cleanlab's calibrated confident joint: the estimated share of wrong labels."""
    from cleanlab.count import estimate_joint

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        joint = estimate_joint(labels, probs)
    return float(max(0.0, 1.0 - np.trace(joint)))


def _usable(labels: np.ndarray, probs: np.ndarray, min_class_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the classes with enough samples, and those classes' columns."""
    counts = np.bincount(labels, minlength=probs.shape[1])
    classes = np.flatnonzero(counts >= min_class_samples)
    return np.isin(labels, classes), classes


def decide_label_issues(labels: np.ndarray, probs: np.ndarray,
                        params: NoiseRateParams | None = None) -> NoiseDecision:
    """Flag wrong labels without going far beyond the estimated noise rate (module docstring)."""
    from cleanlab.filter import find_label_issues

    params = params or NoiseRateParams()
    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if (probs.ndim != 2 or len(probs) != len(labels) or labels.min(initial=0) < 0
            or labels.max(initial=0) >= probs.shape[1]):
        raise DatasetError(f"label noise: probs {probs.shape} do not match {len(labels)} labels in 0..C-1")
    n = len(labels)
    self_conf = probs[np.arange(n), labels] if n else np.zeros(0)
    issues = np.zeros(n, dtype=bool)
    rows, classes = _usable(labels, probs, params.min_class_samples)
    meta: dict[str, Any] = {"classes_skipped": [int(c) for c in np.setdiff1d(np.unique(labels), classes)]}
    if len(classes) < 2:
        meta["skipped"] = "fewer than 2 classes with enough samples: nothing flagged"
        return NoiseDecision(issues, self_conf, 0.0, meta)
    y = np.searchsorted(classes, labels[rows])
    p = probs[rows][:, classes]
    p = p / np.clip(p.sum(1, keepdims=True), 1e-12, None)
    rate = estimate_noise_rate(y, p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # n_jobs=1: cleanlab otherwise forks a pool, which fails inside daemonic run workers.
        candidates = find_label_issues(y, p, filter_by=params.filter_by, n_jobs=1)
    other = p.copy()
    other[np.arange(len(y)), y] = 0.0
    confident = other.max(1) >= params.min_other_probability
    flagged = candidates & confident
    cap = math.floor(params.max_flag_factor * rate * len(y))
    if flagged.sum() > cap:  # keep the cap least self-confident
        order = np.flatnonzero(flagged)[np.argsort(p[flagged, y[flagged]], kind="stable")]
        flagged[:] = False
        flagged[order[:cap]] = True
    issues[np.flatnonzero(rows)[flagged]] = True
    meta.update(candidates=int(candidates.sum()), not_confident=int((candidates & ~confident).sum()),
                cap=cap, flagged=int(issues.sum()), estimated_noise_rate=round(rate, 5))
    return NoiseDecision(issues, self_conf, rate, meta)
