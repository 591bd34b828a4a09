"""Validation: remove samples that cannot be trained on, stop on a dataset that cannot be used."""

from __future__ import annotations

import numpy as np

from prune_dagster.core.dataset import Dataset
from prune_dagster.core.errors import DatasetError
from prune_dagster.core.ledger import StepResult, removed_frame


def sample_problems(dataset: Dataset, ids: np.ndarray, drop_blank: bool = True) -> dict[str, str]:
    """id → reason for every sample among `ids` that cannot be used."""
    pos = dataset.index_of(ids)
    flat = dataset.images[pos].reshape(len(pos), -1)
    problems: dict[str, str] = {}
    finite = np.isfinite(flat).all(axis=1)
    blank = np.zeros(len(pos), dtype=bool)
    if drop_blank and flat.shape[1]:
        with np.errstate(invalid="ignore"):
            blank = finite & (flat.max(axis=1) == flat.min(axis=1))
    for i, sid in enumerate(np.asarray(ids, dtype=object)):
        if sid in dataset.load_errors:
            problems[sid] = dataset.load_errors[sid]
        elif not finite[i]:
            problems[sid] = "non_finite_pixels"
        elif blank[i]:
            problems[sid] = "blank_image"
    return problems


def validate(dataset: Dataset, train_ids: np.ndarray, drop_blank: bool = True,
             min_per_class: int = 1) -> StepResult:
    """Per-sample problems are removed with a reason; a dataset-level problem raises DatasetError."""
    problems = sample_problems(dataset, train_ids, drop_blank)
    removed = removed_frame(list(problems), list(problems.values()), 1.0)
    kept = np.asarray([i for i in train_ids if i not in problems], dtype=object)
    if len(kept) == 0:
        raise DatasetError(f"{dataset.source}: no usable training samples ({len(problems)} removed by validation)")
    counts = np.bincount(dataset.labels[dataset.index_of(kept)], minlength=dataset.n_classes)
    present = int((counts > 0).sum())
    if present < 2:
        raise DatasetError(
            f"{dataset.source}: the training data has {present} class(es) "
            f"({', '.join(dataset.class_names)}); pruning and training need at least 2 classes"
        )
    rare = [dataset.class_names[c] for c in np.flatnonzero((counts > 0) & (counts < min_per_class))]
    return StepResult(removed=removed, metadata={
        "n_classes_present": present,
        "class_counts": {dataset.class_names[c]: int(n) for c, n in enumerate(counts)},
        "classes_below_min": rare,
    })
