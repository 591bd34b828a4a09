"""The sweep's logic: every strategy's scores once, then models per (fraction, strategy), without Dagster.

`sweep_scores` calls `compute_sweep_scores`; `sweep_models` builds a `SweepTrainer` and calls
`train_partitions`, handing it a function that logs one MLflow run; `pruning_report` reads the
results through `core.selection.report`. The fractions each result carries are named and defined
in `core.selection.fractions`.

How a smaller fraction is trained (`schedule`, the same for every strategy): `same_steps` (default)
gives every fraction the optimisation steps of full data, epochs x ceil(n_full / batch), as
ceil(steps / ceil(n / batch)) epochs, so a curve measures what the kept data is worth, not how much
less compute it got; `same_epochs` trains `epochs` at every fraction.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
from pydantic import Field

from prune_dagster.core.data.dataset import Dataset, content_of
from prune_dagster.core.errors import ConfigError
from prune_dagster.core.ledger import Selection
from prune_dagster.core.selection.dynamic import make_epoch_plan
from prune_dagster.core.selection.fractions import Fractions, fractions
from prune_dagster.core.selection.report import mean_std
from prune_dagster.core.selection.scoring import compute_scores, select_from_scores
from prune_dagster.core.selection.semdedup import GroupIndex, prepare
from prune_dagster.core.selection.semdedup import select as semdedup_select
from prune_dagster.core.selection.semdedup import settings_from as semdedup_settings
from prune_dagster.core.selection.strategies import SELECT_STRATEGIES, STRATEGIES, ScoreParams
from prune_dagster.core.training.augment import AugmentParams
from prune_dagster.core.training.encoders import Encoded, encode
from prune_dagster.core.training.final import train_final
from prune_dagster.core.training.inputs import training_content
from prune_dagster.core.training.shared import SharedRepresentation
from prune_dagster.core.training.train import EpochPlan, OptimizerParams, TrainParams, predict_any

DEFAULT_FRACTIONS: tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(1, 11))
Schedule = Literal["same_steps", "same_epochs"]
SCHEDULES: tuple[str, ...] = get_args(Schedule)

# Strategies that share one score computation: the key is scored, the values reuse it.
SHARED_SCORES = {"ccs": "el2n", "prototype_hard": "prototype_easy"}

# Share of samples below the mean loss in an InfoBatch epoch, measured on digits (benchmarks/dynamic.py:
# prune_ratio 0.5 with delta 0.875 over 20 epochs saved 33% of passes, i.e. 0.5 x 0.8 x 16/20).
INFOBATCH_BELOW_MEAN = 0.8


def infobatch_plan(fraction: float, n_train: int, epochs: int) -> EpochPlan:
    """InfoBatch with the prune ratio that makes about `fraction` of full training's sample passes.
    InfoBatch cannot go far below ~0.3 (it never skips above-mean samples, and uses everything in
    epoch 0 and the last 12.5%): the ratio is capped at 0.95 and the run logs the passes it made."""
    pruned_epochs = max(math.ceil(0.875 * epochs) - 1, 1) / epochs
    ratio = min(max((1.0 - fraction) / (INFOBATCH_BELOW_MEAN * pruned_epochs), 0.0), 0.95)
    return make_epoch_plan("infobatch", n_train, prune_ratio=ratio, delta=0.875, seed=0)


# Dynamic strategies: no static score; every cleaned sample stays in the training set and train_cnn
# gets EPOCH_PLANS[name](fraction, n_train, epochs), which should make about `fraction` of the sample
# passes. Their `sample_pass_fraction` then carries the fraction, `kept_fraction_of_cleaned` is 1.
EPOCH_PLANS: dict[str, Callable[[float, int, int], EpochPlan]] = {"infobatch": infobatch_plan}


def known_strategies() -> tuple[str, ...]:
    """Score-ranked, selecting (semdedup: per fraction from the representation's embeddings) and dynamic."""
    return (*STRATEGIES, *SELECT_STRATEGIES, *EPOCH_PLANS)


class SweepScoreParams(ScoreParams):
    """Scores of every swept strategy on the cleaned set (the pruned_dataset scoring settings)."""

    torch_threads: int = Field(1, ge=0, description="torch intra-op threads while scoring; 0 = torch's default.")


class SweepModelsParams(OptimizerParams, AugmentParams):
    """Models per (fraction, strategy) partition: seeds, schedule, the optimiser settings of full data and
    the on-the-fly augmentation every model trains with (as trained_model's)."""

    n_seeds: int = Field(3, ge=1, description="Models per partition; seeds first_seed .. first_seed + n_seeds - 1.")
    first_seed: int = Field(0, ge=0, description="Seed of the first model of each partition.")
    schedule: Schedule = Field("same_steps", description="same_steps: every fraction gets full data's optimisation "
                                                         "steps; same_epochs: every fraction gets `epochs`.")
    sweep_id: str = Field("", description="MLflow tag `sweep_id` grouping this sweep's runs; empty = the run id.")
    torch_threads: int = Field(1, ge=0, description="torch intra-op threads while training; 0 = torch's default.")


def fraction_key(fraction: float) -> str:
    """The partition key of a fraction: '0.1', '0.25', '1.0'."""
    return str(round(float(fraction), 4))


def parse_key(key: str) -> tuple[str, float]:
    """'0.1|ccs' → ('ccs', 0.1) (Dagster orders a multi-partition key's dimensions by name)."""
    fraction, strategy = str(key).split("|", 1)
    return strategy, float(fraction)


def epochs_for(n_train: int, n_full: int, epochs: int, batch_size: int, schedule: str) -> int:
    """Epochs for a training set of `n_train` when the full cleaned set gets `epochs`.

    same_steps: as many optimisation steps as full data, epochs × ⌈n_full / batch⌉, rounded up to
    whole epochs (the overshoot is under one epoch of the small set). same_epochs: `epochs`.
    """
    if schedule not in SCHEDULES:
        raise ConfigError(f"schedule={schedule!r}; expected one of {', '.join(SCHEDULES)}")
    if schedule == "same_epochs" or n_train >= n_full:
        return epochs
    target = epochs * math.ceil(n_full / batch_size)
    return math.ceil(target / math.ceil(max(n_train, 1) / batch_size))


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Cap torch's intra-op threads for the block (0 = leave as is), then restore them."""
    import torch

    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def clean_view(dataset: Dataset, selection: Selection) -> tuple[np.ndarray, Any, np.ndarray]:
    """(ids, content, labels) of the kept samples in dataset order: the cleaned set the sweep prunes
    (content: images, table rows or texts)."""
    pos = np.sort(dataset.index_of(selection.kept_ids))
    return dataset.ids[pos], content_of(dataset, pos), dataset.labels[pos]


@dataclass
class SweepScores:
    """Per-strategy scores on the cleaned set; position i is `ids[i]` (dataset order)."""

    ids: np.ndarray
    labels: np.ndarray
    scores: dict[str, np.ndarray]
    score_config: ScoreParams
    seed: int
    seconds: dict[str, float] = field(default_factory=dict)
    embeddings: np.ndarray | None = None  # the representation's, when a selecting strategy (semdedup) is swept
    # What every swept model also paid for: training passes of each score's runs, the shared
    # representation (seconds, fold-model passes) and the cleaning chain's seconds (see partition_result).
    sample_passes: dict[str, int] = field(default_factory=dict)
    representation_seconds: float = 0.0
    representation_passes: int = 0
    cleaning_seconds: float = 0.0

    def summary(self) -> dict[str, dict[str, float]]:
        """Mean and 10th / 90th percentile of each strategy's score (for the asset's metadata)."""
        return {s: {"mean": round(float(v.mean()), 4), "p10": round(float(np.quantile(v, 0.1)), 4),
                    "p90": round(float(np.quantile(v, 0.9)), 4)} for s, v in self.scores.items()}


def sweep_embeddings(strategies: Sequence[str], representation: SharedRepresentation | None,
                     ids: np.ndarray) -> np.ndarray | None:
    """The representation's embeddings of the cleaned set when a selecting strategy is swept, else None."""
    if not any(s in SELECT_STRATEGIES for s in strategies):
        return None
    embeddings = None if representation is None else representation.embeddings_of(ids)
    if embeddings is None:
        raise ConfigError("the sweep's semdedup strategy needs embeddings, and representation.features='pixels' "
                          "has none: set representation.features to 'learned' or 'provided', or leave semdedup "
                          "out of PRUNE_SWEEP_STRATEGIES")
    return embeddings


def scoring_passes(source: str, n: int, config: ScoreParams, kind: str) -> int:
    """Training sample passes of one score's runs, as core/selection/scoring.py makes them: el2n and
    forgetting train `score_seeds` runs of `score_epochs` on at most `fit_sample` samples; prototypes one
    run when they embed with the CNN (always for tables and texts), none with PCA; random none."""
    n_fit = n if config.fit_sample == 0 else min(n, config.fit_sample)
    if source in ("el2n", "forgetting"):
        return config.score_seeds * config.score_epochs * n_fit
    if source.startswith("prototype") and (config.prototype_embedding == "cnn" or kind != "image"):
        return config.score_epochs * n_fit
    return 0


def compute_sweep_scores(strategies: Sequence[str], dataset: Dataset, selection: Selection,
                         params: SweepScoreParams, representation: SharedRepresentation | None = None) -> SweepScores:
    """Every static strategy's score on the cleaned set, computed once; ccs reuses el2n's scores and
    prototype_hard prototype_easy's. Dynamic strategies (EPOCH_PLANS) have none; selecting ones
    (semdedup) keep the representation's embeddings and select per fraction in the trainer."""
    ids, content, labels = clean_view(dataset, selection)
    embeddings = sweep_embeddings(strategies, representation, ids)
    own_runs = any(SHARED_SCORES.get(s, s) not in ("random",) for s in strategies
                   if s not in EPOCH_PLANS and s not in SELECT_STRATEGIES)
    images = content if dataset.kind == "image" or not own_runs else encode(
        dataset.kind, content, dataset.n_classes, kept_features=selection.kept_features)
    score_params = ScoreParams.of(params)
    scores: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    with torch_threads(params.torch_threads):
        for strategy in strategies:
            if strategy in EPOCH_PLANS or strategy in SELECT_STRATEGIES:
                continue
            source = SHARED_SCORES.get(strategy, strategy)
            if source not in scores:
                start = time.perf_counter()
                scores[source] = compute_scores(source, images, labels, dataset.n_classes, score_params,
                                                params.seed, selection.feature_mask)
                seconds[source] = round(time.perf_counter() - start, 3)
            scores[strategy] = scores[source]
    passes = {s: scoring_passes(s, len(ids), score_params, dataset.kind) for s in seconds}
    return SweepScores(ids=ids, labels=labels, scores={s: scores[s] for s in strategies if s in scores},
                       score_config=score_params, seed=params.seed, seconds=seconds, embeddings=embeddings,
                       sample_passes=passes,
                       representation_seconds=0.0 if representation is None else float(representation.seconds),
                       representation_passes=0 if representation is None else int(representation.sample_passes),
                       cleaning_seconds=round(sum(r.seconds for r in selection.history), 3))


@dataclass
class SeedRun:
    """One (strategy, fraction, seed) model: its metrics and fractions, and the model it shares, if any."""

    metrics: dict[str, float]
    fractions: Fractions
    epochs: int
    n_kept: int
    model: dict[str, Any]  # test_accuracy, train_seconds, sample_passes, optimizer_steps, run_id
    shared: bool


class SweepTrainer:
    """Trains the sweep's models on one cleaned set: the selection for (strategy, fraction, seed),
    the schedule's epochs, and one training per distinct (kept set, seed, epochs)."""

    def __init__(self, raw: Dataset, selection: Selection, scores: SweepScores, config: SweepModelsParams) -> None:
        ids, _, self.labels = clean_view(raw, selection)
        if not np.array_equal(ids, scores.ids):
            raise ConfigError("sweep_scores was computed on another cleaned set than the current features_selected; "
                              "materialize sweep_scores again (sweep_job does both)")
        resolved = OptimizerParams.of(config).for_kind(raw.kind)  # epochs and lr at 0: the kind's defaults
        config = config.model_copy(update={"epochs": resolved.epochs, "lr": resolved.lr})
        self.raw, self.selection, self.scores, self.config = raw, selection, scores, config
        self.clean_pos = np.sort(raw.index_of(ids))
        self.n_clean = len(ids)
        test_pos = raw.index_of(selection.test_ids)
        self.x_test, self.y_test = content_of(raw, test_pos), raw.labels[test_pos]
        self.n_full = len(training_content(raw, selection, self.clean_pos)[1])
        self.trained: dict[tuple[str, int, int], dict[str, Any]] = {}  # (kept digest, seed, epochs) → model
        self.n_trained, self.train_seconds = 0, 0.0
        self.semdedup_index: list[GroupIndex] | None = None  # clustered once, then each fraction selects
        self.semdedup_seconds = 0.0  # semdedup's "scoring": clustering the embeddings

    def semdedup_kept(self, fraction: float) -> np.ndarray:
        """semdedup's kept positions at `fraction`, with the score settings' clusters, per_class and seed
        (as pruned_dataset's semdedup); the same set for every seed, like the score-ranked strategies."""
        if self.semdedup_index is None:
            if self.scores.embeddings is None:
                raise ConfigError("sweep_scores holds no embeddings for semdedup; materialize sweep_scores again "
                                  "with semdedup among the sweep's strategies")
            settings = semdedup_settings(self.scores.score_config, self.n_clean)
            start = time.perf_counter()
            self.semdedup_index = prepare(self.scores.embeddings, self.labels, settings)
            self.semdedup_seconds = round(time.perf_counter() - start, 3)
        return semdedup_select(self.semdedup_index, fraction).kept

    def kept(self, strategy: str, fraction: float, seed: int) -> np.ndarray:
        """Positions (into the cleaned set) kept for this partition and seed."""
        if strategy in EPOCH_PLANS:
            return np.arange(self.n_clean)
        if strategy in SELECT_STRATEGIES:
            return self.semdedup_kept(fraction)
        # random: a fresh draw per seed (compute_scores' random score), so its spread over seeds
        # includes which subset was drawn; score-based strategies use sweep_scores' seed-averaged scores
        scores = (np.random.default_rng(seed).random(self.n_clean) if strategy == "random"
                  else self.scores.scores[strategy])
        return select_from_scores(strategy, scores, self.labels, self.raw.n_classes, fraction, seed,
                                  self.scores.score_config)

    def _fit(self, x: Any, y: np.ndarray, epochs: int, seed: int, plan: EpochPlan | None) -> dict[str, Any]:
        cfg = self.config
        train = TrainParams(**{**OptimizerParams.of(cfg).model_dump(), "epochs": epochs, "seed": seed})
        result, encoder, _ = train_final(self.raw.kind, x, y, self.raw.n_classes, train, self.selection.feature_mask,
                                         self.selection.kept_features, plan, AugmentParams.of(cfg))
        self.n_trained += 1
        self.train_seconds += result.seconds
        steps = float(epochs * math.ceil(len(y) / cfg.batch_size)) if plan is None else float("nan")
        test = self.x_test if encoder is None else Encoded(encoder.tensor(self.x_test), encoder, self.raw.n_classes)
        accuracy = float((predict_any(result.model, test).argmax(1) == self.y_test).mean())
        return {"test_accuracy": accuracy,
                "train_seconds": round(result.seconds, 3), "sample_passes": float(result.sample_passes),
                "optimizer_steps": steps, "run_id": None}

    def train(self, strategy: str, fraction: float, seed: int) -> SeedRun:
        """The model for (strategy, fraction, seed); identical static training sets share one model."""
        cfg = self.config
        kept = self.kept(strategy, fraction, seed)
        x, y = training_content(self.raw, self.selection, self.clean_pos[kept])  # as trained_model trains
        epochs = epochs_for(len(y), self.n_full, cfg.epochs, cfg.batch_size, cfg.schedule)
        plan = EPOCH_PLANS[strategy](fraction, len(y), epochs) if strategy in EPOCH_PLANS else None
        key = (hashlib.blake2b(kept.astype(np.int64).tobytes(), digest_size=16).hexdigest(), seed, epochs)
        model = self.trained.get(key) if plan is None else None
        shared = model is not None
        if model is None:
            model = self._fit(x, y, epochs, seed, plan)
            if plan is None:
                self.trained[key] = model
        frac = fractions(target=fraction, n_kept=len(kept), n_train_split=self.selection.n_train_split,
                         n_cleaned=self.n_clean, n_selected=len(kept), sample_passes=int(model["sample_passes"]),
                         epochs=epochs, n_train=len(y))
        metrics = {k: model[k] for k in ("test_accuracy", "train_seconds", "sample_passes", "optimizer_steps")}
        metrics.update(frac.as_dict(), n_train=float(len(y)))
        return SeedRun(metrics=metrics, fractions=frac, epochs=epochs, n_kept=len(kept), model=model, shared=shared)


# log_run(run_name, tags, params, metrics, started) -> MLflow run id; `started` (time.time() before the
# model was selected and trained) becomes the run's start, so the run spans the training it records.
LogRun = Callable[[str, dict[str, str], dict[str, Any], dict[str, float], float], str]


def scoring_cost(strategy: str, trainer: SweepTrainer) -> tuple[float, int]:
    """(seconds, sample passes) the strategy's selection cost before training: its score (ccs shares
    el2n's, prototype_hard prototype_easy's), semdedup's clustering; 0 for random (a fresh draw per
    seed) and dynamic strategies (their selection happens inside training)."""
    if strategy == "random" or strategy in EPOCH_PLANS:
        return 0.0, 0
    if strategy in SELECT_STRATEGIES:
        return trainer.semdedup_seconds, 0
    source = SHARED_SCORES.get(strategy, strategy)
    return trainer.scores.seconds.get(source, 0.0), trainer.scores.sample_passes.get(source, 0)


def partition_compute(strategy: str, runs: Sequence[SeedRun], trainer: SweepTrainer) -> dict[str, float]:
    """Total compute of one partition's model: cleaning chain + shared representation + the strategy's
    scoring + training (mean over seeds; a shared full-data model counts its full training), reused work
    included: what a fresh run of the setting costs. The "no pruning" reference (every step off, no
    representation) is not trained by the sweep: the report approximates its cost by the fraction 1.0
    cell's training alone (`train_seconds`)."""
    scores = trainer.scores
    score_seconds, score_passes = scoring_cost(strategy, trainer)
    train_seconds = float(np.mean([r.metrics["train_seconds"] for r in runs]))
    train_passes = float(np.mean([r.metrics["sample_passes"] for r in runs]))
    return {"compute_seconds": round(scores.cleaning_seconds + scores.representation_seconds + score_seconds
                                     + train_seconds, 3),
            "compute_sample_passes": float(scores.representation_passes + score_passes + train_passes),
            "scoring_seconds": score_seconds}


def partition_result(key: str, runs: Sequence[SeedRun], run_ids: Sequence[str], seeds: Sequence[int],
                     trainer: SweepTrainer) -> dict[str, Any]:
    """One partition's result over its seeds: what `pruning_report` and the results table read."""
    strategy, fraction = parse_key(key)
    acc = [r.metrics["test_accuracy"] for r in runs]
    mean, std = mean_std(acc)
    first = runs[0]
    return {
        "strategy": strategy, "fraction": fraction, "partition_key": str(key), **first.fractions.as_dict(),
        "n_kept": first.n_kept, "n_clean": trainer.n_clean, "n_train": int(first.metrics["n_train"]),
        "seeds": list(seeds), "accuracies": acc, "mean_accuracy": mean, "std_accuracy": std,
        "train_seconds": [r.metrics["train_seconds"] for r in runs], "epochs": first.epochs,
        "epochs_full_data": trainer.config.epochs, "schedule": trainer.config.schedule, "mlflow_run_ids": list(run_ids),
        **partition_compute(strategy, runs, trainer),
    }


def train_partitions(trainer: SweepTrainer, keys: Sequence[str], log_run: LogRun, base_tags: dict[str, str],
                     base_params: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], float]:
    """Train every partition's seeds, logging one run per model; returns (results by key, logging seconds).

    Fraction 1.0 first, so the strategies' identical full-data models are trained once; a partition
    that reuses a model still gets its own run, tagged `shared_model_of` with the run that trained it.
    """
    cfg = trainer.config
    seeds = list(range(cfg.first_seed, cfg.first_seed + cfg.n_seeds))
    results, log_seconds = {}, 0.0
    for key in sorted(keys, key=lambda k: (-parse_key(k)[1], parse_key(k)[0])):
        strategy, fraction = parse_key(key)
        runs, run_ids = [], []
        for seed in seeds:
            started = time.time()
            run = trainer.train(strategy, fraction, seed)
            tags = {**base_tags, "dagster_partition": str(key)}
            if run.shared:
                tags["shared_model_of"] = run.model["run_id"]
            params = {**base_params, "strategy": strategy, "seed": seed, "fraction": fraction_key(fraction),
                      "epochs": run.epochs}
            start = time.perf_counter()
            run_id = log_run(f"sweep-{strategy}-{fraction_key(fraction)}-s{seed}", tags, params, run.metrics,
                             started)
            log_seconds += time.perf_counter() - start
            if run.model["run_id"] is None:
                run.model["run_id"] = run_id
            runs.append(run)
            run_ids.append(run_id)
        results[str(key)] = partition_result(key, runs, run_ids, seeds, trainer)
    return results, log_seconds
