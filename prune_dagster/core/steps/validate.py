"""Validation: remove samples that cannot be trained on, stop on a dataset that cannot be used.

Also where the overrides apply (pinned drops are removed with reason `override`; pinned keeps are
protected from every later step) and where test samples that cannot be evaluated leave the test split.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from prune_dagster.core.data.dataset import TEST, Dataset
from prune_dagster.core.data.overrides import load_overrides
from prune_dagster.core.errors import DatasetError
from prune_dagster.core.infra.parallel import ArrayRef, Mapper, as_array, by_reference, serial_map, split_rows
from prune_dagster.core.ledger import Selection, StepResult, removed_frame
from prune_dagster.core.params import Params
from prune_dagster.core.steps.base import Invariant, Outcome, StepInputs
from prune_dagster.core.steps.frozen import NewBatch

# The ledger `score` of a validation removal: no measure, always 1.0.
SCORE_MEANING = "1.0 for every removal (a sample is usable or not; no degree)"
DESCRIPTION = ("Training samples that can be used: unreadable files, NaN/inf pixels and blank images are removed "
               "with a reason; a dataset with no usable samples or a single class stops the run here. "
               "Overrides: pinned drops are removed here (reason `override`); pinned keeps are protected from "
               "every later step (an unusable pinned sample is still removed: nothing can train on it).")
REMOVES = "unreadable, non-finite or blank samples; pinned drops"
KEY_SETTINGS = ("drop_blank",)


class ValidateParams(Params):
    """Validation: remove training samples that cannot be used (unreadable, NaN/inf, blank)."""

    enabled: bool = Field(default=True, description="false: the step removes nothing, neither unusable samples "
                                                    "nor pinned drops (the blocking check on non-finite pixels "
                                                    "still stops a run that needs it)")
    drop_blank: bool = Field(default=True, description="remove constant (blank) images")
    overrides: str = Field(default="", description="path of an overrides.csv (id, action = keep | drop) that "
                                                   "pins samples; empty = $PRUNE_OVERRIDES or none")


PARAMS = ValidateParams


def pixel_checks(positions: np.ndarray, images: np.ndarray | ArrayRef) -> tuple[np.ndarray, np.ndarray]:
    """(all pixels finite, image constant) for the rows `positions` of `images`."""
    rows = as_array(images)[np.sort(positions)]
    order = np.argsort(np.argsort(positions, kind="stable"), kind="stable")  # back to the given order
    flat = rows.reshape(len(rows), -1)[order]
    finite = np.isfinite(flat).all(axis=1)
    with np.errstate(invalid="ignore"):
        blank = finite & (flat.max(axis=1) == flat.min(axis=1)) if flat.shape[1] else np.zeros(len(flat), bool)
    return finite, blank


def image_problems(dataset: Dataset, pos: np.ndarray, drop_blank: bool, mapper: Mapper) -> np.ndarray:
    """Per row of `pos`: "non_finite_pixels", "blank_image" (with `drop_blank`) or ""."""
    checks = mapper(pixel_checks, split_rows(pos), {"images": by_reference(dataset.images)})
    finite = np.concatenate([c[0] for c in checks]) if checks else np.zeros(0, bool)
    blank = np.concatenate([c[1] for c in checks]) if checks else np.zeros(0, bool)
    reason = np.full(len(pos), "", dtype=object)
    if drop_blank:
        reason[blank] = "blank_image"
    reason[~finite] = "non_finite_pixels"
    return reason


def content_problems(dataset: Dataset, pos: np.ndarray) -> np.ndarray:
    """Per row of `pos` of a table or text dataset: "empty_row" (no value in any column),
    "non_finite_value" (an infinite number; NaN is a missing value and fine), "empty_text" or ""."""
    reason = np.full(len(pos), "", dtype=object)
    if dataset.kind == "text":
        texts = pd.Series(np.asarray(dataset.texts[pos], dtype=object))
        reason[texts.fillna("").astype(str).str.strip().to_numpy() == ""] = "empty_text"
        return reason
    rows = dataset.table.iloc[pos]
    numeric = rows.select_dtypes("number").to_numpy(dtype=np.float64)
    reason[np.isinf(numeric).any(axis=1)] = "non_finite_value"
    reason[rows.isna().all(axis=1).to_numpy()] = "empty_row"
    return reason


def sample_problems(dataset: Dataset, ids: np.ndarray, drop_blank: bool = True,
                    mapper: Mapper = serial_map) -> dict[str, str]:
    """id → reason for every sample among `ids` that cannot be used.

    A load error (the loader's "category: detail", e.g. "truncated_image: ...", "size_mismatch: 30x20,
    expected 28x28", "not_utf8: ...") comes first, then what the content itself shows: images with
    NaN/inf pixels, then (with `drop_blank`) constant images; table rows with an infinite number or no
    value at all; empty texts. Pixels are checked in row blocks, so memory stays bounded however many
    samples there are.
    """
    ids = np.asarray(ids, dtype=object)
    pos = dataset.index_of(ids)
    if dataset.kind == "image":
        reason = image_problems(dataset, pos, drop_blank, mapper)
    else:
        reason = content_problems(dataset, pos)
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


def usable_test_ids(inputs: StepInputs, params: ValidateParams) -> np.ndarray:
    """The test split without the samples that cannot be evaluated (kept whatever `enabled` says)."""
    test_ids = np.asarray(inputs.test_ids, dtype=object)
    bad = inputs.supply(sample_problems)(inputs.dataset, test_ids, params.drop_blank)
    return test_ids[~pd.Index(test_ids).isin(list(bad))] if bad else test_ids


def run(params: ValidateParams, inputs: StepInputs) -> StepResult:
    """Remove unusable training samples and pinned drops; narrow the test split; pin the keeps."""
    test_ids = usable_test_ids(inputs, params)
    keep, drop = set(), set()
    path = params.overrides or inputs.environment.get("overrides", "")
    if path:
        keep, drop = load_overrides(path, inputs.ids, inputs.test_ids)
    result = inputs.supply(validate)(inputs.dataset, inputs.ids, params.drop_blank)
    pinned_drop = sorted(drop - set(result.removed["id"]))
    result.removed = pd.concat([result.removed, removed_frame(pinned_drop, "override", 1.0)], ignore_index=True)
    result.metadata.update(n_test_unusable=int(len(inputs.test_ids) - len(test_ids)), n_pinned_keep=len(keep),
                           n_pinned_drop=len(drop))
    result.test_ids, result.pinned_keep = test_ids, frozenset(keep)
    result.state = {}  # each new sample is judged by its own pixels: nothing to keep from this run
    return result


def disabled(params: ValidateParams, inputs: StepInputs) -> StepResult:
    """Switched off: nothing removed, but a test sample that cannot be evaluated still leaves the test split."""
    test_ids = usable_test_ids(inputs, params)
    return StepResult(removed=removed_frame(), metadata={"skipped": "disabled",
                                                         "n_test_unusable": len(inputs.test_ids) - len(test_ids)},
                      test_ids=test_ids, state={})


def _all_usable(dataset: Dataset, selection: Selection) -> Outcome:
    pos = dataset.index_of(selection.kept_ids)
    if dataset.kind == "image":
        images = dataset.images[pos]
        bad = int((~np.isfinite(images.reshape(len(images), -1)).all(axis=1)).sum())
    else:
        bad = int((content_problems(dataset, pos) != "").sum())
    return Outcome(bad == 0, {"non_finite_samples": bad})


INVARIANTS = (Invariant("no_non_finite", "every kept training sample is usable: finite pixels or numbers, a "
                        "non-empty row or text", _all_usable),)


def decide(frozen: Any, params: ValidateParams, batch: NewBatch, mapper: Mapper = serial_map) -> None:
    """Non-finite pixels, then (with `drop_blank`) constant images, as `validate` decides them; for a
    table or texts, what `content_problems` finds."""
    if batch.kind != "image":
        reason = content_problems(batch.as_dataset(), np.arange(len(batch.ids)))
        for r in ("non_finite_value", "empty_row", "empty_text"):
            batch.drop(np.flatnonzero((reason == r) & batch.alive), r, 1.0)
        return
    finite, blank = pixel_checks(np.arange(len(batch.ids)), batch.images)
    batch.drop(np.flatnonzero(~finite), "non_finite_pixels", 1.0)
    if params.drop_blank:
        batch.drop(np.flatnonzero(blank & batch.alive), "blank_image", 1.0)
