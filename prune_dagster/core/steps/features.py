"""Feature selection: what the models read. Removes no samples.

Images: pixels that carry no information (constant across the kept training set, or lowest in mutual
information with the label) are masked; the effect is measured on the spot by a cross-validated
linear model with and without the mask. Tables: the document's filters on columns (constant columns,
correlated pairs, mutual information). Texts: vocabulary pruning (document frequency, chi-squared).
"""

from __future__ import annotations

from typing import Any, Literal

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
from prune_dagster.core.steps.base import StepInputs
from prune_dagster.core.steps.frozen import NeedsFullPrune, NewBatch

METHODS = ("auto", "variance", "correlation", "mutual_info", "document_frequency", "chi2", "none")
AUTO_METHOD = {"image": "variance", "table": "variance", "text": "document_frequency"}
KIND_METHODS = {"image": ("variance", "mutual_info", "none"),
                "table": ("variance", "correlation", "mutual_info", "none"),
                "text": ("document_frequency", "chi2", "none")}
MEASURE_SAMPLE = 3000
SCORE_MEANING = "none: the step removes no samples (it masks pixels)"
DESCRIPTION = ("What the models read: a pixel mask of the pixels that carry information (images), the columns "
               "kept by the variance / correlation / mutual-information filters (tables), the vocabulary kept by "
               "document frequency / chi-squared (texts). Removes no samples; its effect is in the metadata.")
REMOVES = "no samples: masks pixels, drops columns or words that carry no information"
KEY_SETTINGS = ("method",)


class FeatureParams(Params):
    """Feature selection: the pixels, columns or words the models read."""

    enabled: bool = Field(default=True, description="false: the step passes its input through unchanged")
    method: Literal[METHODS] = Field(default="auto", description="auto: variance for images and tables, "
                                     "document_frequency for texts; variance (images: pixels, tables: constant "
                                     "columns) | correlation (tables: also one of each pair of numeric columns "
                                     "with |r| > max_correlation) | mutual_info (images, tables: keep the top "
                                     "keep_fraction) | document_frequency (texts: words in >= min_df texts) | "
                                     "chi2 (texts: then the top keep_fraction by chi-squared) | none")
    threshold: float = Field(default=0.0, ge=0.0, description="variance: pixels with variance <= threshold "
                                                              "are masked")
    keep_fraction: float = Field(default=0.75, gt=0.0, le=1.0, description="mutual_info, chi2: share of pixels, "
                                 "columns or words kept")
    max_correlation: float = Field(default=0.95, gt=0.0, le=1.0, description="correlation (tables): drop one of "
                                   "each pair of numeric columns more correlated than this")
    min_df: int = Field(default=2, ge=1, description="document_frequency, chi2 (texts): keep words in at least "
                        "this many texts")
    measure: bool = Field(default=True, description="measure cross-validated linear accuracy with and "
                                                    "without the mask")
    seed: int = Field(default=0, ge=0, description="seed of the mutual information and the measurement")


PARAMS = FeatureParams


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


def run(params: FeatureParams, inputs: StepInputs) -> StepResult:
    """Images: the pixel mask of the kept images; the index keeps the value of each masked pixel (NaN
    where kept) in the first kept image (None when no pixel is masked). Tables: the kept columns; texts:
    the kept vocabulary (core/kinds/)."""
    method = AUTO_METHOD[inputs.kind] if params.method == "auto" else params.method
    if method not in KIND_METHODS[inputs.kind]:
        raise ConfigError(f"features_selected.method={method!r} does not apply to {inputs.kind} data; expected one "
                          f"of {', '.join(KIND_METHODS[inputs.kind])}")
    if inputs.kind != "image":
        return select_kept_features(params, inputs, method)
    result = select_features(inputs.images, inputs.labels, method, params.threshold, params.keep_fraction,
                             params.seed, params.measure)
    mask = result.feature_mask
    if mask is not None and not mask.all() and len(inputs.ids):
        result.state = np.where(mask, np.nan, np.asarray(inputs.images[0]).max(axis=-1))
    return result


def select_kept_features(params: FeatureParams, inputs: StepInputs, method: str) -> StepResult:
    """A table's kept columns or a text set's kept vocabulary. A table keeps, for the index, the value of
    each column it dropped as constant (a new sample that differs needs a full prune)."""
    if inputs.kind == "table":
        from prune_dagster.core.kinds.table import select_columns

        kept, meta = select_columns(inputs.content, inputs.labels, method, params.max_correlation,
                                    params.keep_fraction, params.seed)
        dropped = [c for c in inputs.content.columns if c not in kept]
        constant = {c: inputs.content[c].iloc[0] for c in dropped if inputs.content[c].nunique(dropna=False) <= 1}
        meta.update(n_columns=int(inputs.content.shape[1]), n_columns_kept=len(kept), dropped=dropped)
        return StepResult(removed=removed_frame(), kept_features=tuple(kept), metadata={"method": method, **meta},
                          state=constant or None)
    from prune_dagster.core.kinds.text import prune_vocabulary

    kept, meta = prune_vocabulary(inputs.content, inputs.labels, method, params.min_df,
                                  keep_fraction=params.keep_fraction if method == "chi2" else 1.0)
    return StepResult(removed=removed_frame(), kept_features=tuple(kept),
                      metadata={"method": method, "vocabulary_kept": len(kept), **meta})


def decide(frozen: Any, params: FeatureParams, batch: NewBatch, mapper: Mapper = serial_map) -> None:
    """Removes nothing; needs a full prune when a pixel masked as constant varies in the new samples."""
    if frozen is None or not batch.alive.any():
        return
    if isinstance(frozen, dict):  # a table's constant columns
        rows = batch.take(batch.live())
        changed = [c for c, v in frozen.items() if not (rows[c].astype(object) == v).all()]
        if changed:
            raise NeedsFullPrune(f"column {changed[0]!r}, dropped as constant, varies in the new samples")
        return
    masked = ~np.isnan(frozen)
    gray = np.asarray(batch.images[batch.alive]).max(axis=-1)
    if not np.all(gray[:, masked] == frozen[masked]):
        raise NeedsFullPrune("a pixel the feature mask dropped as constant varies in the new samples")
