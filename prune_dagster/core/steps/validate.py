"""Validation: remove samples that cannot be trained on, stop on a dataset that cannot be used."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from prune_dagster.core.data.dataset import TEST, Dataset
from prune_dagster.core.errors import DatasetError
from prune_dagster.core.infra.parallel import ArrayRef, Mapper, as_array, by_reference, serial_map, split_rows
from prune_dagster.core.ledger import StepResult, removed_frame
from prune_dagster.core.params import Params
from prune_dagster.core.steps.frozen import NewBatch, OldRun

# The ledger `score` of a validation removal: no measure, always 1.0.
SCORE_MEANING = "1.0 for every removal (a sample is usable or not; no degree)"


class ValidateParams(Params):
    """Validation: remove training samples that cannot be used (unreadable, NaN/inf, blank)."""

    enabled: bool = Field(default=True, description="false: the step removes nothing, neither unusable samples "
                                                    "nor pinned drops (the blocking check on non-finite pixels "
                                                    "still stops a run that needs it)")
    drop_blank: bool = Field(default=True, description="remove constant (blank) images")
    overrides: str = Field(default="", description="path of an overrides.csv (id, action = keep | drop) that "
                                                   "pins samples; empty = $PRUNE_OVERRIDES or none")


def pixel_checks(positions: np.ndarray, images: np.ndarray | ArrayRef) -> tuple[np.ndarray, np.ndarray]:
    """(all pixels finite, image constant) for the rows `positions` of `images`."""
    rows = as_array(images)[np.sort(positions)]
    order = np.argsort(np.argsort(positions, kind="stable"), kind="stable")  # back to the given order
    flat = rows.reshape(len(rows), -1)[order]
    finite = np.isfinite(flat).all(axis=1)
    with np.errstate(invalid="ignore"):
        blank = finite & (flat.max(axis=1) == flat.min(axis=1)) if flat.shape[1] else np.zeros(len(flat), bool)
    return finite, blank


def sample_problems(dataset: Dataset, ids: np.ndarray, drop_blank: bool = True,
                    mapper: Mapper = serial_map) -> dict[str, str]:
    """id → reason for every sample among `ids` that cannot be used.

    A load error (the loader's "category: detail", e.g. "truncated_image: ...", "size_mismatch: 30x20,
    expected 28x28") comes first, then NaN/inf pixels, then (with `drop_blank`) constant images.
    Pixels are checked in row blocks, so memory stays bounded however many samples there are.
    """
    ids = np.asarray(ids, dtype=object)
    pos = dataset.index_of(ids)
    checks = mapper(pixel_checks, split_rows(pos), {"images": by_reference(dataset.images)})
    finite = np.concatenate([c[0] for c in checks]) if checks else np.zeros(0, bool)
    blank = np.concatenate([c[1] for c in checks]) if checks else np.zeros(0, bool)
    reason = np.full(len(ids), "", dtype=object)
    if drop_blank:
        reason[blank] = "blank_image"
    reason[~finite] = "non_finite_pixels"
    if dataset.load_errors:  # a load error names the cause better than the NaN pixels it left
        loaded_badly = pd.Index(ids).isin(list(dataset.load_errors))
        reason[loaded_badly] = [dataset.load_errors[sid] for sid in ids[loaded_badly]]
    bad = reason != ""
    return dict(zip(ids[bad].tolist(), reason[bad].tolist(), strict=True))


def validate(dataset: Dataset, train_ids: np.ndarray, drop_blank: bool = True,
             min_per_class: int = 1, mapper: Mapper = serial_map) -> StepResult:
    """Per-sample problems are removed with a reason; a dataset-level problem raises DatasetError.

    Stops when no training sample is usable, when fewer than 2 classes keep a usable training sample,
    or when the dataset has a split whose test side is empty. A class with a single sample is fine.
    """
    problems = sample_problems(dataset, train_ids, drop_blank, mapper)
    removed = removed_frame(list(problems), list(problems.values()), 1.0)
    train_ids = np.asarray(train_ids, dtype=object)
    kept = train_ids[~pd.Index(train_ids).isin(list(problems))] if problems else train_ids
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


def freeze(old: OldRun, params: ValidateParams, mapper: Mapper = serial_map) -> None:
    """Validation looks at each new sample's own pixels: nothing to keep from the last prune."""
    return None


def decide(frozen: Any, params: ValidateParams, batch: NewBatch, mapper: Mapper = serial_map) -> None:
    """Non-finite pixels, then (with `drop_blank`) constant images, as `validate` decides them."""
    finite, blank = pixel_checks(np.arange(len(batch.ids)), batch.images)
    batch.drop(np.flatnonzero(~finite), "non_finite_pixels", 1.0)
    if params.drop_blank:
        batch.drop(np.flatnonzero(blank & batch.alive), "blank_image", 1.0)
