"""Validation: remove samples that cannot be trained on, stop on a dataset that cannot be used."""

from __future__ import annotations

import numpy as np

from prune_dagster.core.dataset import TEST, Dataset
from prune_dagster.core.errors import DatasetError
from prune_dagster.core.ledger import StepResult, removed_frame


def sample_problems(dataset: Dataset, ids: np.ndarray, drop_blank: bool = True) -> dict[str, str]:
    """id → reason for every sample among `ids` that cannot be used.

    A load error (the loader's "category: detail", e.g. "truncated_image: ...", "size_mismatch: 30x20,
    expected 28x28") comes first, then NaN/inf pixels, then (with `drop_blank`) constant images.
    """
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
    """Per-sample problems are removed with a reason; a dataset-level problem raises DatasetError.

    Stops when no training sample is usable, when fewer than 2 classes keep a usable training sample,
    or when the dataset has a split whose test side is empty. A class with a single sample is fine.
    """
    problems = sample_problems(dataset, train_ids, drop_blank)
    removed = removed_frame(list(problems), list(problems.values()), 1.0)
    kept = np.asarray([i for i in train_ids if i not in problems], dtype=object)
    if len(kept) == 0:
        examples = "; ".join(f"{k}: {v}" for k, v in list(problems.items())[:3])
        raise DatasetError(f"{dataset.source}: no usable training samples ({len(problems)} of {len(train_ids)} "
                           f"removed by validation{', e.g. ' + examples if examples else ''})")
    counts = np.bincount(dataset.labels[dataset.index_of(kept)], minlength=dataset.n_classes)
    present = [dataset.class_names[c] for c in np.flatnonzero(counts)]
    if len(present) < 2:
        raise DatasetError(
            f"{dataset.source}: the training data has {len(present)} class "
            f"({', '.join(map(repr, present))}) after validation; pruning and training need at least 2 classes"
        )
    if len(dataset.split) and not (dataset.split == TEST).any():
        raise DatasetError(f"{dataset.source}: the test split is empty ({len(dataset)} samples); expected at "
                           "least one test sample: add samples or raise test_fraction")
    rare = [dataset.class_names[c] for c in np.flatnonzero((counts > 0) & (counts < min_per_class))]
    return StepResult(removed=removed, metadata={
        "n_classes_present": len(present),
        "class_counts": {dataset.class_names[c]: int(n) for c, n in enumerate(counts)},
        "classes_below_min": rare,
        # Classes whose every training sample was removed (e.g. all unreadable): training still
        # runs, but they will be missing from the model's training data.
        "classes_without_usable_samples": [dataset.class_names[c] for c in np.flatnonzero(counts == 0)],
        "removed_by_category": _by_category(problems),
    })


def _by_category(problems: dict[str, str]) -> dict[str, int]:
    """Reasons grouped by the part before ':' (a load error's detail names the file's own size etc.)."""
    out: dict[str, int] = {}
    for reason in problems.values():
        key = reason.split(":", 1)[0]
        out[key] = out.get(key, 0) + 1
    return out
