"""Label noise: samples whose given label confident learning judges wrong.

Two sources of out-of-fold probabilities (`probabilities`):
- `representation` (default): the shared representation's K-fold probabilities, flagged with the
  capped rule of `core/steps/noise_rate.py` (never far beyond the confident joint's noise estimate);
- `classifier`: a classifier fitted here on the provided embeddings, else pixels, with a cleanlab
  filter and a re-check (`core/steps/label_classifier.py`, which holds the measurements).

Incremental pruning decides a new sample with what the full step used: the representation's fold
models (none of which saw it) against the step's per-class confident thresholds and its self-confidence
cut, or the re-check classifier with the re-check's rule.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from prune_dagster.core.errors import ConfigError
from prune_dagster.core.infra.parallel import Mapper, serial_map
from prune_dagster.core.ledger import StepResult, removed_frame
from prune_dagster.core.params import Params
from prune_dagster.core.steps.base import StepInputs
from prune_dagster.core.steps.frozen import NewBatch, OldRun
from prune_dagster.core.steps.label_classifier import (
    CL_FILTERS,
    CLASSIFIERS,
    EXACT_MAX_ROWS,
    FILTERS,
    FIT_ROWS,
    RECHECK,
    RECHECK_MIN_PROBABILITY,
    find_label_issues,
    out_of_fold_probabilities,
    stratified_sample,
)
from prune_dagster.core.steps.noise_rate import NOISE_FILTERS, NoiseRateParams, decide_label_issues

# Re-exported: the label-noise API in one place for callers (benchmarks, tests).
__all__ = ["CLASSIFIERS", "CL_FILTERS", "EXACT_MAX_ROWS", "FILTERS", "FIT_ROWS", "RECHECK", "RECHECK_MIN_PROBABILITY",
           "LabelNoiseParams", "find_label_issues", "label_issues_from_probabilities", "out_of_fold_probabilities",
           "run", "stratified_sample"]

SCORE_MEANING = "1 - the out-of-fold predicted probability of the given label"
DESCRIPTION = ("Removes samples whose label confident learning (cleanlab) finds wrong, from out-of-fold predicted "
               "probabilities: the shared representation's, never flagging far beyond the estimated noise rate, "
               "or a classifier fitted here.")
REMOVES = "samples whose given label the out-of-fold model confidently contradicts"
KEY_SETTINGS = ("probabilities", "max_flag_factor", "min_other_probability")


class LabelNoiseParams(Params):
    """Label noise: confident learning on out-of-fold predicted probabilities."""

    enabled: bool = Field(default=True, description="false: the step passes its input through unchanged")
    classifier: Literal[CLASSIFIERS] = Field(default="svc", description="the model whose out-of-fold "
                                                                        "probabilities confident learning uses")
    folds: int = Field(default=5, ge=2, le=50, description="cross-validation folds of the out-of-fold "
                                                           "probabilities")
    filter_by: Literal[FILTERS] = Field(default="predicted_neq_given+recheck",
                                        description="a cleanlab filter, optionally + '+recheck' (re-check the "
                                                    "flagged samples with a model fitted without them)")
    seed: int = Field(default=0, ge=0, description="seed of the folds and the classifier")
    probabilities: Literal["representation", "classifier"] = Field(
        default="representation", description="representation: the shared representation's out-of-fold CNN "
        "probabilities, flagged with `noise_filter` and never beyond `max_flag_factor` x the estimated noise "
        "rate; classifier: fit `classifier` here (on the provided embeddings, else pixels) with `filter_by`. "
        "A representation without probabilities (features pixels/provided) uses the classifier.")
    noise_filter: Literal[NOISE_FILTERS] = Field(
        default="both", description="probabilities=representation: the cleanlab filter (both: flagged by "
        "prune_by_noise_rate and prune_by_class)")
    max_flag_factor: float = Field(default=1.0, ge=0.0, le=10.0, description="probabilities=representation: "
                                   "flag at most this many times the estimated noise rate (least confident first)")
    min_other_probability: float = Field(default=-1.0, ge=-1.0, le=1.0, description="probabilities=representation: "
                                         "flag only when the model gives another class at least this; -1 = the kind's "
                                         "default: 0 for images, 0.9 for tables and texts, whose weaker models "
                                         "otherwise flag hard, correct samples (benchmarks/label_rule.py)")
    KIND_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {"image": {"min_other_probability": 0.0},
                                                           "table": {"min_other_probability": 0.9},
                                                           "text": {"min_other_probability": 0.9}}


PARAMS = LabelNoiseParams


def label_issues_from_probabilities(ids: np.ndarray, labels: np.ndarray, probs: np.ndarray,
                                    params: LabelNoiseParams) -> StepResult:
    """The step on out-of-fold probabilities it is given (the shared representation's): cleanlab's
    filter, capped at `max_flag_factor` x the confident joint's noise estimate (core/steps/noise_rate.py).
    Measured on real MNIST: 0.16-0.23% flagged as it is, flip F1 0.93-0.95 at 10% symmetric noise."""
    rule = NoiseRateParams(filter_by=params.noise_filter, max_flag_factor=params.max_flag_factor,
                           min_other_probability=max(params.min_other_probability, 0.0))
    decision = decide_label_issues(labels, probs, rule)
    issues = decision.issues
    removed = removed_frame(np.asarray(ids, dtype=object)[issues], "label_issue",
                            1.0 - decision.self_confidence[issues])
    oof_acc = float((np.asarray(probs).argmax(1) == np.asarray(labels)).mean()) if len(labels) else 1.0
    meta = {**decision.metadata, "probabilities": "representation", "out_of_fold_accuracy": round(oof_acc, 4),
            "estimated_noise_rate": round(decision.estimated_noise_rate, 5),
            # the gallery shows given -> predicted for each flagged sample
            "predicted_label": dict(zip(np.asarray(ids, dtype=object)[issues].tolist(),
                                        np.asarray(probs)[issues].argmax(axis=1).tolist(), strict=True))}
    return StepResult(removed=removed, metadata=meta)


@dataclass
class ProbabilityIndex:
    """What the index keeps when the step flagged from the representation's probabilities: each class's
    confident threshold (cleanlab's: the mean probability of the class over the samples labelled so)
    and the largest self-confidence the step flagged (-1: it flagged none). `predict` is the
    representation's fold models, attached by `freeze`."""

    thresholds: np.ndarray
    cut: float
    predict: Any = None


@dataclass
class ClassifierIndex:
    """What the index keeps when the step fitted a classifier on raw features: its re-check model and
    how new samples become those features."""

    recheck: Any  # label_classifier.RecheckModel
    features: Any  # core.embedding.raw_space.RawFeatures (its `transform`)


def confident_thresholds(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per class, the mean probability of the class over the samples labelled with it (1.0 for a class
    no sample carries: nothing is confidently that class)."""
    out = np.ones(probs.shape[1])
    for c in np.unique(labels):
        out[c] = float(probs[labels == c, c].mean())
    return out


def run(params: LabelNoiseParams, inputs: StepInputs) -> StepResult:
    """The representation's out-of-fold probabilities with the capped rule, or a classifier fitted here
    (on the provided embeddings, else pixels) when asked or when the representation has none."""
    rep = inputs.representation
    probs = rep.probs_of(inputs.ids) if rep is not None and params.probabilities == "representation" else None
    if probs is not None:
        result = label_issues_from_probabilities(inputs.ids, inputs.labels, probs, params)
        flagged = np.isin(inputs.ids, result.removed["id"])
        self_conf = np.asarray(probs)[np.arange(len(probs)), inputs.labels]
        result.state = ProbabilityIndex(confident_thresholds(inputs.labels, np.asarray(probs)),
                                        float(self_conf[flagged].max()) if flagged.any() else -1.0)
        return result
    provided = rep.embeddings_of(inputs.ids) if rep is not None and rep.features == "provided" else None
    features = inputs.raw_features if provided is None else provided
    result = inputs.supply(find_label_issues)(inputs.ids, features, inputs.labels, params.classifier, params.folds,
                                              params.filter_by, params.seed)
    raw = {"image": "pixels", "table": "columns", "text": "TF-IDF"}[inputs.kind]
    result.metadata["probabilities"] = f"classifier on {raw if provided is None else 'provided embeddings'}"
    if provided is not None or result.state is None:
        result.state, result.state_note = None, ("incremental pruning needs label_noise_removed probabilities from "
                                                 "the representation, or a '+recheck' filter on raw features")
    else:
        result.state = ClassifierIndex(result.state, inputs.raw_space.transform)
    return result


def freeze(state: ProbabilityIndex | ClassifierIndex, old: OldRun) -> ProbabilityIndex | ClassifierIndex:
    """Attach the representation's fold models to a ProbabilityIndex (nothing is recomputed)."""
    if isinstance(state, ClassifierIndex):
        return state
    if old.representation is None or not old.representation.models:
        raise ConfigError("the label step used the representation's probabilities: build the index with that "
                          "run's learned representation (its fold models decide new samples)")
    return replace(state, predict=old.representation.predictor())


def decide(frozen: ProbabilityIndex | ClassifierIndex, params: LabelNoiseParams, batch: NewBatch,
           mapper: Mapper = serial_map) -> None:
    """A new sample goes when the model the step trusted contradicts its label as confidently as the
    step required: the fold models predict class j with at least j's confident threshold and give the
    label no more than the step's self-confidence cut; or the re-check model predicts another class and
    gives the label less than RECHECK_MIN_PROBABILITY (the re-check's own rule)."""
    live = batch.live()
    if not len(live):
        return
    labels = batch.labels[live]
    x = batch.take(live)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if isinstance(frozen, ClassifierIndex):
            p_given, predicted = frozen.recheck.given_and_predicted(frozen.features(x), labels)
            bad = (predicted != labels) & (p_given < RECHECK_MIN_PROBABILITY)
        else:
            probs = frozen.predict(x)[0]
            p_given = probs[np.arange(len(labels)), labels]
            predicted = probs.argmax(axis=1)
            confident = probs[np.arange(len(labels)), predicted] >= frozen.thresholds[predicted]
            bad = (predicted != labels) & confident & (p_given <= frozen.cut)
    batch.drop(live[bad], "label_issue", 1.0 - p_given[bad])
