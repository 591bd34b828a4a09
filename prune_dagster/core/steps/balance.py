"""Class rebalancing with imbalanced-learn samplers, bounded by a maximum class ratio."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from prune_dagster.core.errors import ConfigError
from prune_dagster.core.infra.parallel import Mapper, serial_map
from prune_dagster.core.ledger import StepResult, Synthetic, removed_frame
from prune_dagster.core.params import Params
from prune_dagster.core.steps.base import StepInputs, content_kind
from prune_dagster.core.steps.frozen import NeedsFullPrune, NewBatch
from prune_dagster.core.training.class_weights import METHODS, ClassWeightParams, class_weights

SAMPLERS = ("none", "smote", "random_over", "random_under", "near_miss", "tomek", "class_weight")
# Samplers that leave the samples as they are (class_weight: the loss of trained_model weighs classes instead).
UNCHANGED = ("none", "class_weight")
OVER = ("smote", "random_over")
SCORE_MEANING = "none (NaN): an under-sampler's removals carry no score"
DESCRIPTION = ("Brings the class ratio within `max_imbalance` with an imbalanced-learn sampler. Synthetic samples "
               "(SMOTE) get their own ids and pixels and are listed in synthetic.csv, never in kept_ids. "
               "`sampler: class_weight` keeps the samples as they are; trained_model reads this step's recorded "
               "config and weighs its loss per class (the weights of the current set are in the metadata).")
REMOVES = "nothing by default (over-samplers add synthetic samples); under-samplers cut large classes"
KEY_SETTINGS = ("sampler", "max_imbalance")


class BalanceParams(Params):
    """Class rebalancing with an imbalanced-learn sampler, bounded by a maximum class ratio."""

    enabled: bool = Field(default=True, description="false: the step passes its input through unchanged")
    sampler: Literal[SAMPLERS] = Field(default="smote", description="none | smote | random_over (add samples to "
                                                                    "small classes) | random_under | near_miss | "
                                                                    "tomek (remove samples of large classes) | "
                                                                    "class_weight (keep the samples; trained_model "
                                                                    "weighs the loss per class)")
    max_imbalance: float = Field(default=0.0, ge=0.0, le=1e6, description="largest / smallest class size "
                                 "allowed before the sampler acts (at least 1); 0 = the kind's default: 2 for "
                                 "images, 10 for tables and texts (on the real UCI Adult table, 3.2 : 1, SMOTE-NC "
                                 "down to 2 : 1 cost 0.4 points of accuracy)")
    seed: int = Field(default=0, ge=0, description="seed of the sampler")
    class_weight_kind: Literal[METHODS] = Field(default="effective_number",
                                                description="class_weight: inverse_frequency (1 / n_c) or "
                                                            "effective_number ((1 - beta) / (1 - beta^n_c))")
    beta: float = Field(default=0.999, ge=0.0, lt=1.0, description="class_weight with effective_number: 0 = equal "
                                                                    "weights, towards 1 = inverse frequency")
    KIND_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {"image": {"max_imbalance": 2.0},
                                                           "table": {"max_imbalance": 10.0},
                                                           "text": {"max_imbalance": 10.0}}


PARAMS = BalanceParams


def loss_weights(params: BalanceParams, labels: np.ndarray, n_classes: int, kind: str = "image") -> np.ndarray | None:
    """Per-class loss weights of the training set when the step chose `class_weight` (or, for texts, an
    over-sampler past `max_imbalance`: texts cannot be interpolated, so they are weighed instead), else None."""
    if not params.enabled:
        return None
    params = params.for_kind(kind)
    counts = np.bincount(labels, minlength=n_classes)
    present = counts[counts > 0]
    text_fallback = kind == "text" and params.sampler in OVER and len(present) and \
        present.max() / present.min() > params.max_imbalance
    if params.sampler != "class_weight" and not text_fallback:
        return None
    return class_weights(labels, n_classes, ClassWeightParams(method=params.class_weight_kind, beta=params.beta))


def histogram(labels: np.ndarray, class_names: tuple[str, ...]) -> dict[str, int]:
    counts = np.bincount(labels, minlength=len(class_names))
    return {class_names[c]: int(n) for c, n in enumerate(counts)}


def rebalance(ids: np.ndarray, images: Any, labels: np.ndarray, class_names: tuple[str, ...],
              sampler: str = "smote", max_imbalance: float = 2.0, seed: int = 0, features: Any = None) -> StepResult:
    """Bring the largest/smallest class ratio down to `max_imbalance`.

    `images`: the samples' content of any kind (pixels, table rows or texts); `features`: their raw
    features where a sampler compares samples (NearMiss, Tomek; default: the flattened pixels).
    Over-samplers raise small classes to ceil(n_max / max_imbalance) and return the new samples as
    `Synthetic` (their own ids and content; originals are untouched): SMOTE interpolates pixels, SMOTE-NC
    table rows (core/kinds/table.py); texts cannot be interpolated, so SMOTE on texts adds nothing and
    the loss is weighed per class instead (`loss_weights`). Under-samplers cut large classes to
    floor(n_min × max_imbalance) and report the cut samples. `tomek` removes majority members of Tomek
    links whatever the ratio. Data already within the ratio is left as it is.
    """
    if sampler not in SAMPLERS:
        raise ConfigError(f"sampler={sampler!r}; expected one of {SAMPLERS}")
    if max_imbalance < 1.0:
        raise ConfigError(f"max_imbalance={max_imbalance}; expected a ratio >= 1")
    before = histogram(labels, class_names)
    meta: dict = {"histogram_before": before, "sampler": sampler}
    present, counts = np.unique(labels, return_counts=True)
    ratio = counts.max() / counts.min()
    meta["imbalance_before"] = round(float(ratio), 3)
    kind = content_kind(images)
    if sampler in UNCHANGED or (sampler != "tomek" and ratio <= max_imbalance):
        return StepResult(removed=removed_frame(), metadata={**meta, "histogram_after": before})
    if sampler in OVER:
        if kind == "text" and sampler == "smote":
            return StepResult(removed=removed_frame(), metadata={**meta, "histogram_after": before,
                                                                 "fallback": "class_weight (texts)"})
        target = math.ceil(counts.max() / max_imbalance)
        strategy = {int(c): target for c, n in zip(present, counts, strict=True) if n < target}
        return _over_sample(images, labels, class_names, sampler, strategy, seed, meta)
    x = images.reshape(len(images), -1) if features is None else features
    keep = _under_sample(x, labels, sampler, present, counts, max_imbalance, seed)
    removed = removed_frame(np.asarray(ids, dtype=object)[~keep], f"rebalance_{sampler}", np.nan)
    return StepResult(removed=removed, metadata={**meta, "histogram_after": histogram(labels[keep], class_names)})


def _over_sample(content: Any, labels: np.ndarray, class_names: tuple[str, ...], sampler: str,
                 strategy: dict[int, int], seed: int, meta: dict) -> StepResult:
    """New samples for the small classes: interpolated (SMOTE, SMOTE-NC) or drawn again (random_over)."""
    from imblearn.over_sampling import SMOTE, RandomOverSampler

    kind = content_kind(content)
    smallest = min(np.bincount(labels)[list(strategy)])
    if sampler == "smote" and smallest < 2:  # SMOTE needs two samples of a class to interpolate between
        meta["fallback"] = "random_over"
    smote = sampler == "smote" and smallest >= 2
    if smote and kind == "table":
        from prune_dagster.core.kinds.table import smote_rows

        rows, new_y = smote_rows(content, labels, strategy, min(5, smallest - 1), seed)
        made = {"table": rows}
    elif kind == "image":
        x = content.reshape(len(content), -1)
        obj = SMOTE(sampling_strategy=strategy, k_neighbors=min(5, smallest - 1), random_state=seed) if smote \
            else RandomOverSampler(sampling_strategy=strategy, random_state=seed)
        x_res, y_res = obj.fit_resample(x, labels)
        new_y = y_res[len(x):]
        made = {"images": x_res[len(x):].reshape(-1, *content.shape[1:]).astype(np.float32)}
    else:  # random_over on rows or texts: draw row indices, copy those rows
        idx, y_res = RandomOverSampler(sampling_strategy=strategy, random_state=seed).fit_resample(
            np.arange(len(labels))[:, None], labels)
        drawn, new_y = idx[len(labels):, 0], y_res[len(labels):]
        made = {"table": content.iloc[drawn].reset_index(drop=True)} if kind == "table" else {
            "texts": np.asarray(content, dtype=object)[drawn]}
    syn_ids = np.array([f"synthetic/{sampler}/{i:06d}" for i in range(len(new_y))], dtype=object)
    synthetic = Synthetic(ids=syn_ids, labels=np.asarray(new_y, dtype=np.int64), step="class_balanced", **made)
    after = histogram(np.concatenate([labels, new_y]), class_names)
    return StepResult(removed=removed_frame(), synthetic=synthetic,
                      metadata={**meta, "histogram_after": after, "n_synthetic": int(len(new_y))})


def _under_sample(x: Any, labels: np.ndarray, sampler: str, present: np.ndarray, counts: np.ndarray,
                  max_imbalance: float, seed: int) -> np.ndarray:
    """Which samples an under-sampler keeps (bool per row)."""
    from imblearn.under_sampling import NearMiss, RandomUnderSampler, TomekLinks

    if sampler == "tomek":
        obj = TomekLinks()
    else:
        target = math.floor(counts.min() * max_imbalance)
        strategy = {int(c): target for c, n in zip(present, counts, strict=True) if n > target}
        if sampler == "random_under":
            obj = RandomUnderSampler(sampling_strategy=strategy, random_state=seed)
        else:  # NearMiss needs as many neighbours as the smallest class has samples
            obj = NearMiss(sampling_strategy=strategy, n_neighbors=max(1, min(3, int(counts.min()))))
    obj.fit_resample(x, labels)
    keep = np.zeros(len(labels), dtype=bool)
    keep[obj.sample_indices_] = True
    return keep


@dataclass
class BalanceIndex:
    """What the incremental index keeps: the class counts the old step saw, and whether it synthesised."""

    class_counts: np.ndarray
    had_synthetic: bool


def run(params: BalanceParams, inputs: StepInputs) -> StepResult:
    """Rebalance the kept samples (in this process: no blockwise work for the engine); with
    `class_weight`, the loss weights trained_model will use are in the metadata."""
    dataset = inputs.dataset
    compares = params.sampler in ("near_miss", "tomek") and inputs.kind != "image"
    result = rebalance(inputs.ids, inputs.content, inputs.labels, dataset.class_names, params.sampler,
                       params.max_imbalance, params.seed, features=inputs.raw_features if compares else None)
    weights = loss_weights(params, inputs.labels, dataset.n_classes, inputs.kind)
    if weights is not None:
        result.metadata["class_weights"] = dict(zip(dataset.class_names, map(float, weights), strict=True))
    result.state = BalanceIndex(class_counts=np.bincount(inputs.labels, minlength=dataset.n_classes),
                                had_synthetic=result.synthetic is not None and len(result.synthetic.ids) > 0)
    return result


def decide(frozen: BalanceIndex, params: BalanceParams, batch: NewBatch, mapper: Mapper = serial_map) -> None:
    """Removes nothing; needs a full prune when the sampler would act differently with the new samples."""
    if params.sampler in UNCHANGED:
        return
    counts = frozen.class_counts + np.bincount(batch.labels[batch.alive], minlength=len(frozen.class_counts))
    present = counts[counts > 0]
    if frozen.had_synthetic or present.max() / present.min() > params.max_imbalance:
        raise NeedsFullPrune("class rebalancing would change (the class ratio passes max_imbalance, or the last "
                             "prune synthesised samples)")
