"""Feature selection: a pixel mask for the CNN and the feature space later scoring uses.

Removes no samples. Pixels that carry no information (constant across the kept training set, or
lowest in mutual information with the label) are masked; the effect is measured on the spot by a
cross-validated linear model with and without the mask.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field
from sklearn.feature_selection import mutual_info_classif
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from prune_dagster.core.errors import ConfigError
from prune_dagster.core.infra.parallel import Mapper, serial_map
from prune_dagster.core.ledger import StepResult, removed_frame
from prune_dagster.core.params import Params
from prune_dagster.core.steps.frozen import NeedsFullPrune, NewBatch, OldRun

METHODS = ("variance", "mutual_info", "none")
MEASURE_SAMPLE = 3000
SCORE_MEANING = "none: the step removes no samples (it masks pixels)"


class FeatureParams(Params):
    """Feature selection: a mask of the pixels that carry information."""

    enabled: bool = Field(default=True, description="false: the step passes its input through unchanged")
    method: Literal[METHODS] = Field(default="variance", description="variance | mutual_info | none")
    threshold: float = Field(default=0.0, ge=0.0, description="variance: pixels with variance <= threshold "
                                                              "are masked")
    keep_fraction: float = Field(default=0.75, gt=0.0, le=1.0, description="mutual_info: share of pixels kept")
    measure: bool = Field(default=True, description="measure cross-validated linear accuracy with and "
                                                    "without the mask")
    seed: int = Field(default=0, ge=0, description="seed of the mutual information and the measurement")


def pixel_mask(images: np.ndarray, labels: np.ndarray, method: str = "variance", threshold: float = 0.0,
               keep_fraction: float = 0.75, seed: int = 0) -> np.ndarray:
    """(H, W) bool mask of the pixels to keep."""
    n, h, w, _ = images.shape
    if method == "none":
        return np.ones((h, w), dtype=bool)
    if method == "variance":
        return images.var(axis=0).max(axis=-1) > threshold
    if method == "mutual_info":
        if not 0.0 < keep_fraction <= 1.0:
            raise ConfigError(f"keep_fraction={keep_fraction}; expected a share in (0, 1]")
        gray = images.mean(axis=-1).reshape(n, -1)
        mi = mutual_info_classif(gray, labels, random_state=seed)
        k = max(1, int(round(keep_fraction * h * w)))
        mask = np.zeros(h * w, dtype=bool)
        mask[np.argsort(-mi, kind="stable")[:k]] = True
        return mask.reshape(h, w)
    raise ConfigError(f"method={method!r}; expected one of {METHODS}")


def linear_cv_accuracy(x: np.ndarray, labels: np.ndarray, seed: int = 0) -> float:
    _, counts = np.unique(labels, return_counts=True)
    folds = int(min(3, counts.min()))
    if folds < 2:
        return float("nan")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return float(cross_val_score(model, x, labels, cv=cv).mean())


def select_features(images: np.ndarray, labels: np.ndarray, method: str = "variance", threshold: float = 0.0,
                    keep_fraction: float = 0.75, seed: int = 0, measure: bool = True) -> StepResult:
    mask = pixel_mask(images, labels, method, threshold, keep_fraction, seed)
    if not mask.any():
        raise ConfigError(f"feature selection ({method}, threshold={threshold}) would mask every pixel")
    meta = {"n_pixels": int(mask.size), "n_pixels_kept": int(mask.sum()), "method": method}
    if measure:
        rng = np.random.default_rng(seed)
        pick = rng.permutation(len(images))[:MEASURE_SAMPLE]
        x = images[pick].reshape(len(pick), *mask.shape, -1)
        y = labels[pick]
        meta["cv_accuracy_all_pixels"] = round(linear_cv_accuracy(x.reshape(len(pick), -1), y, seed), 4)
        meta["cv_accuracy_selected"] = round(linear_cv_accuracy(x[:, mask].reshape(len(pick), -1), y, seed), 4)
    return StepResult(removed=removed_frame(), feature_mask=mask, metadata=meta)


def freeze(old: OldRun, params: FeatureParams, mapper: Mapper = serial_map) -> np.ndarray | None:
    """(H, W) value of each masked pixel (NaN where kept) in the kept samples; None when no pixel is
    masked."""
    mask = old.selection.feature_mask
    if mask is None or mask.all():
        return None
    first = np.sort(old.dataset.index_of(old.selection.kept_ids))[:1]
    return np.where(mask, np.nan, np.asarray(old.dataset.images[first])[0].max(axis=-1))


def decide(frozen: np.ndarray | None, params: FeatureParams, batch: NewBatch, mapper: Mapper = serial_map) -> None:
    """Removes nothing; needs a full prune when a pixel masked as constant varies in the new samples."""
    if frozen is None or not batch.alive.any():
        return
    masked = ~np.isnan(frozen)
    gray = np.asarray(batch.images[batch.alive]).max(axis=-1)
    if not np.all(gray[:, masked] == frozen[masked]):
        raise NeedsFullPrune("a pixel the feature mask dropped as constant varies in the new samples")
