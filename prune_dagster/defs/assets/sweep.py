"""Stage `sweep`: test accuracy against retained fraction, per pruning strategy, with a recommended fraction.

A chain beside the main one, so that `prune_job`'s assets and outputs stay as they are:

```
features_selected ─► sweep_scores ─► sweep_models[fraction × strategy] ─► pruning_report
```

- `sweep_scores` (unpartitioned): every strategy's per-sample score on the cleaned set (the
  `features_selected` Selection), computed once. Strategies that share a score share the work:
  `ccs` uses `el2n`'s seed-averaged EL2N, `prototype_hard` uses `prototype_easy`'s distances. It is
  one asset rather than one partition per strategy because a Dagster job holds one partitions
  definition: scores partitioned by strategy and models by strategy × fraction could not share
  `sweep_job`.
- `sweep_models` (partitioned by fraction × strategy): selects with `select_from_scores`, trains
  `n_seeds` CNNs per partition, one MLflow run each, and returns mean and std over seeds.
  `BackfillPolicy.single_run()`: `sweep_job` over the whole range (`all_partitions_tags`) is one run
  in one process, so torch is imported once, not once per partition; a backfill from the UI is split
  by Dagster along one dimension of the grid (one run per strategy), still not one per partition.
- `pruning_report` (unpartitioned, over every materialized partition): the figure, the table
  (`pruning_report.csv`), the area under each curve and the recommended retained fraction.

Partitions are fixed when the definitions load: `PRUNE_SWEEP_STRATEGIES` and `PRUNE_SWEEP_FRACTIONS`
(comma-separated) change the defaults (all static strategies; 0.1, 0.2, …, 1.0).
"""

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from prune_dagster import paths
from prune_dagster.core.data.dataset import Dataset
from prune_dagster.core.data.export import atomic_write, jsonable
from prune_dagster.core.errors import ConfigError
from prune_dagster.core.ledger import Selection
from prune_dagster.core.selection import report
from prune_dagster.core.selection.scoring import STRATEGIES, ScoreConfig, compute_scores, select_from_scores
from prune_dagster.core.training.train import EpochPlan, TrainConfig, accuracy, train_cnn
from prune_dagster.defs.assets.common import to_metadata, view
from prune_dagster.defs.assets.training import step_params, training_arrays
from prune_dagster.defs.resources import MlflowResource, OutputStore

DEFAULT_FRACTIONS: tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(1, 11))
SCHEDULES = ("same_steps", "same_epochs")

# Strategies that share one score computation: the key is scored, the values reuse it.
SHARED_SCORES = {"ccs": "el2n", "prototype_hard": "prototype_easy"}

# Dynamic pruning joins the sweep here. A strategy named in EPOCH_PLANS has no static score: every
# cleaned sample stays in the training set and train_cnn gets the plan, built as
# EPOCH_PLANS[name](fraction, n_train, epochs), which should make about `fraction` of the sample
# passes (e.g. prune_dagster.core.selection.dynamic.make_epoch_plan("infobatch", n_train, prune_ratio=...)
# with the prune ratio derived from the fraction). Its `retained_fraction` metric is then the share
# of passes made, as trained_model logs it. Register it, add the name to PRUNE_SWEEP_STRATEGIES,
# and the scores, models, MLflow runs and report pick it up. Left empty: the sweep does not depend
# on core/selection/dynamic.py.
EPOCH_PLANS: dict[str, Callable[[float, int, int], EpochPlan]] = {}

# Share of samples below the mean loss in an InfoBatch epoch, measured on digits (benchmarks/dynamic.py:
# prune_ratio 0.5 with delta 0.875 over 20 epochs saved 33% of passes, i.e. 0.5 x 0.8 x 16/20).
INFOBATCH_BELOW_MEAN = 0.8


def infobatch_plan(fraction: float, n_train: int, epochs: int) -> EpochPlan:
    """InfoBatch with the prune ratio that makes about `fraction` of full training's sample passes.
    InfoBatch cannot go far below ~0.3 (it never skips above-mean samples, and uses everything in
    epoch 0 and the last 12.5%): the ratio is capped at 0.95 and the run logs the passes it made."""
    from prune_dagster.core.selection.dynamic import make_epoch_plan

    pruned_epochs = max(math.ceil(0.875 * epochs) - 1, 1) / epochs
    ratio = min(max((1.0 - fraction) / (INFOBATCH_BELOW_MEAN * pruned_epochs), 0.0), 0.95)
    return make_epoch_plan("infobatch", n_train, prune_ratio=ratio, delta=0.875, seed=0)


EPOCH_PLANS["infobatch"] = infobatch_plan


def _env_list(name: str) -> list[str]:
    return [v.strip() for v in os.environ.get(name, "").split(",") if v.strip()]


def fraction_key(fraction: float) -> str:
    """The partition key of a fraction: '0.1', '0.25', '1.0'."""
    return str(round(float(fraction), 4))


def sweep_strategies() -> tuple[str, ...]:
    names = tuple(_env_list("PRUNE_SWEEP_STRATEGIES")) or (*STRATEGIES, *EPOCH_PLANS)
    known = (*STRATEGIES, *EPOCH_PLANS)
    for name in names:
        if name not in known:
            raise ConfigError(f"PRUNE_SWEEP_STRATEGIES: {name!r} is not a strategy; "
                              f"expected some of {', '.join(known)}")
    return names


def sweep_fractions() -> tuple[float, ...]:
    raw = _env_list("PRUNE_SWEEP_FRACTIONS")
    if not raw:
        return DEFAULT_FRACTIONS
    try:
        values = sorted({float(v) for v in raw})
    except ValueError as err:
        raise ConfigError(f"PRUNE_SWEEP_FRACTIONS={os.environ['PRUNE_SWEEP_FRACTIONS']!r}: {err}; "
                          "expected comma-separated fractions in (0, 1], e.g. 0.1,0.5,1.0") from None
    if not all(0.0 < v <= 1.0 for v in values):
        raise ConfigError(f"PRUNE_SWEEP_FRACTIONS={values}: every fraction must lie in (0, 1]")
    return tuple(values)


def sweep_partitions(strategies: Sequence[str], fractions: Sequence[float]) -> dg.MultiPartitionsDefinition:
    """Keys read 'fraction|strategy' (Dagster orders dimensions by name), e.g. '0.1|ccs'."""
    return dg.MultiPartitionsDefinition({
        "fraction": dg.StaticPartitionsDefinition([fraction_key(f) for f in fractions]),
        "strategy": dg.StaticPartitionsDefinition(list(strategies)),
    })


def parse_key(key: str) -> tuple[str, float]:
    """'0.1|ccs' → ('ccs', 0.1)."""
    fraction, strategy = str(key).split("|", 1)
    return strategy, float(fraction)


def all_partitions_tags(partitions_def: dg.PartitionsDefinition) -> dict[str, str]:
    """Run tags that make one run cover every partition (what a single-run backfill launches):
    `job.execute_in_process(tags=all_partitions_tags(job.partitions_def))`."""
    keys = partitions_def.get_partition_keys()
    return {"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}


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


# ---------------------------------------------------------------- results store


class SweepResultsIOManager(dg.ConfigurableIOManager):
    """One JSON file per partition and run: `<output dir>/runs/<run id>/<asset>/<fraction>__<strategy>.json`.

    A run covering many partitions returns a dict partition key → result (Dagster's pickling IO
    manager refuses multi-partition outputs). Like the project's RunScopedIOManager, runs never
    overwrite each other: loading reads, for each partition, the file of the run that the instance
    records as its latest materialization, so the unpartitioned report gets every partition
    materialized so far (a partial sweep still reports). `root` empty → `PRUNE_OUTPUT_DIR` (default
    `data/outputs`), the OutputStore's default, so a sweep run's folder holds its results and report.
    """

    root: str = ""

    def _path(self, asset_key: dg.AssetKey, partition_key: str, run_id: str) -> Path:
        base = Path(self.root).resolve() if self.root else paths.output_dir()
        return base / "runs" / run_id / asset_key.path[-1] / f"{str(partition_key).replace('|', '__')}.json"

    def handle_output(self, context: dg.OutputContext, obj: Mapping[str, Any]) -> None:
        keys = context.asset_partition_keys if context.has_asset_partitions else []
        missing = [k for k in keys if k not in obj]
        if not keys or missing:
            raise ConfigError(f"{context.asset_key.to_user_string()}: expected a dict with a result per partition; "
                              f"missing {missing[:3] or 'partitions'}")
        for key in keys:
            atomic_write(self._path(context.asset_key, key, context.run_id),
                         json.dumps(jsonable(obj[key]), indent=1).encode())

    def load_input(self, context: dg.InputContext) -> dict[str, Any]:
        keys = context.asset_partition_keys if context.has_asset_partitions else []
        try:
            run_id = context.step_context.run_id  # InputContext has no run_id of its own
        except dg.DagsterInvariantViolationError:  # loaded outside a run (e.g. build_input_context)
            run_id = None
        out = {}
        for key in keys:
            own = self._path(context.asset_key, key, run_id) if run_id else None
            path = own if own is not None and own.exists() else None
            if path is None:
                records = context.instance.fetch_materializations(
                    dg.AssetRecordsFilter(asset_key=context.asset_key, asset_partitions=[str(key)]), limit=1).records
                path = self._path(context.asset_key, key, records[0].run_id) if records else None
            if path is not None and path.exists():
                out[str(key)] = json.loads(path.read_text())
        return out


# ---------------------------------------------------------------- configs and values


class SweepScoresConfig(dg.Config):
    score_epochs: int = 5  # as pruned_dataset: epochs of each short scoring run (EL2N, forgetting)
    score_seeds: int = 3  # scoring runs averaged
    per_class: bool = True  # the fraction is kept in every class
    ccs_beta: float = 0.1
    ccs_strata: int = 50
    n_clusters: int = 0
    prototype_embedding: str = "pca"
    seed: int = 0
    torch_threads: int = 1  # intra-op threads while scoring; 0 = torch's default (one per core)


@dataclass
class SweepScores:
    """Per-strategy scores on the cleaned set; position i is `ids[i]` (dataset order)."""

    ids: np.ndarray
    labels: np.ndarray
    scores: dict[str, np.ndarray]
    score_config: ScoreConfig
    seed: int
    seconds: dict[str, float] = field(default_factory=dict)


class SweepModelsConfig(dg.Config):
    n_seeds: int = 3  # models per partition; seeds first_seed .. first_seed + n_seeds - 1
    first_seed: int = 0
    epochs: int = 20  # epochs on the full cleaned set (trained_model's default)
    schedule: str = "same_steps"  # same_steps: every fraction gets full data's optimisation steps
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    sweep_id: str = ""  # MLflow tag `sweep_id` grouping this sweep's runs; empty = the Dagster run id
    torch_threads: int = 1  # intra-op threads while training; 0 = torch's default (one per core)


class PruningReportConfig(dg.Config):
    tolerance: float = 0.005  # recommended = smallest fraction within this of full-data accuracy (0.005 = 0.5 pt)


def _score_config(config: SweepScoresConfig) -> ScoreConfig:
    return ScoreConfig(score_epochs=config.score_epochs, score_seeds=config.score_seeds, per_class=config.per_class,
                       ccs_beta=config.ccs_beta, ccs_strata=config.ccs_strata, n_clusters=config.n_clusters,
                       prototype_embedding=config.prototype_embedding)


class SweepTrainer:
    """Trains the sweep's models on one cleaned set: the selection for (strategy, fraction, seed),
    the schedule's epochs, and one training per distinct (kept set, seed, epochs)."""

    def __init__(self, raw: Dataset, selection: Selection, scores: SweepScores, config: SweepModelsConfig) -> None:
        ids, _, self.labels = view(raw, selection)
        if not np.array_equal(ids, scores.ids):
            raise ConfigError("sweep_scores was computed on another cleaned set than the current features_selected; "
                              "materialize sweep_scores again (sweep_job does both)")
        if config.n_seeds < 1:
            raise ConfigError(f"n_seeds={config.n_seeds}; expected an integer >= 1")
        self.raw, self.selection, self.scores, self.config = raw, selection, scores, config
        self.clean_pos = np.sort(raw.index_of(ids))
        self.n_clean = len(ids)
        test_pos = raw.index_of(selection.test_ids)
        self.x_test, self.y_test = raw.images[test_pos], raw.labels[test_pos]
        self.n_full = len(training_arrays(raw, selection, self.clean_pos)[1])
        self.trained: dict[tuple[str, int, int], dict[str, Any]] = {}  # (kept digest, seed, epochs) → model
        self.n_trained, self.train_seconds = 0, 0.0

    def kept(self, strategy: str, fraction: float, seed: int) -> np.ndarray:
        """Positions (into the cleaned set) kept for this partition and seed."""
        if strategy in EPOCH_PLANS:
            return np.arange(self.n_clean)
        # random: a fresh draw per seed (compute_scores' random score), so its spread over seeds
        # includes which subset was drawn; score-based strategies use sweep_scores' seed-averaged scores
        scores = (np.random.default_rng(seed).random(self.n_clean) if strategy == "random"
                  else self.scores.scores[strategy])
        return select_from_scores(strategy, scores, self.labels, self.raw.n_classes, fraction, seed,
                                  self.scores.score_config)

    def train(self, strategy: str, fraction: float, seed: int) -> dict[str, Any]:
        """Metrics of the model for (strategy, fraction, seed) plus `epochs`, `shared` and, when
        shared, the MLflow run of the model it reuses (`shared_model_of`)."""
        cfg = self.config
        kept = self.kept(strategy, fraction, seed)
        x, y = training_arrays(self.raw, self.selection, self.clean_pos[kept])  # as trained_model trains
        epochs = epochs_for(len(y), self.n_full, cfg.epochs, cfg.batch_size, cfg.schedule)
        plan = EPOCH_PLANS[strategy](fraction, len(y), epochs) if strategy in EPOCH_PLANS else None
        key = (hashlib.blake2b(kept.astype(np.int64).tobytes(), digest_size=16).hexdigest(), seed, epochs)
        model = self.trained.get(key) if plan is None else None
        shared = model is not None
        if model is None:
            result = train_cnn(x, y, self.raw.n_classes, TrainConfig(
                epochs=epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay, seed=seed),
                self.selection.feature_mask, epoch_plan=plan)
            self.n_trained += 1
            self.train_seconds += result.seconds
            model = {"test_accuracy": accuracy(result.model, self.x_test, self.y_test),
                     "train_seconds": round(result.seconds, 3), "sample_passes": float(result.sample_passes),
                     "optimizer_steps": float(epochs * math.ceil(len(y) / cfg.batch_size)) if plan is None
                     else float("nan"), "run_id": None}
            if plan is None:
                self.trained[key] = model
        metrics = {k: model[k] for k in ("test_accuracy", "train_seconds", "sample_passes", "optimizer_steps")}
        # as trained_model: kept share of the cleaned set × share of the sample passes a dynamic plan
        # made (1 for a static selection), so a dynamic strategy's point sits at the work it did
        passes_share = model["sample_passes"] / max(epochs * len(y), 1)
        metrics.update(retained_fraction=len(kept) / self.n_clean * passes_share, n_train=float(len(y)))
        return {"metrics": metrics, "epochs": epochs, "shared": shared, "model": model}


# ---------------------------------------------------------------- assets


def build_sweep_assets(strategies: Sequence[str], fractions: Sequence[float]) -> list[dg.AssetsDefinition]:
    """The three sweep assets over the given strategies × fractions (the module exports the defaults;
    tests build a small sweep the same way)."""
    strategies, fractions = tuple(strategies), tuple(fractions)
    partitions = sweep_partitions(strategies, fractions)

    @dg.asset(group_name="sweep", kinds={"pytorch"})
    def sweep_scores(context: dg.AssetExecutionContext, config: SweepScoresConfig, raw_dataset: Dataset,
                     features_selected: Selection) -> dg.Output[SweepScores]:
        """Every swept strategy's per-sample score on the cleaned set, computed once with the
        pruned_dataset defaults (EL2N and forgetting averaged over `score_seeds` short runs).
        ccs reuses el2n's scores and prototype_hard reuses prototype_easy's."""
        ids, images, labels = view(raw_dataset, features_selected)
        score_config = _score_config(config)
        scores, seconds = {}, {}
        with torch_threads(config.torch_threads):
            for strategy in strategies:
                if strategy in EPOCH_PLANS:
                    continue  # dynamic: no static score
                source = SHARED_SCORES.get(strategy, strategy)
                if source not in scores:
                    start = time.perf_counter()
                    scores[source] = compute_scores(source, images, labels, raw_dataset.n_classes, score_config,
                                                    config.seed, features_selected.feature_mask)
                    seconds[source] = round(time.perf_counter() - start, 3)
                scores[strategy] = scores[source]
        value = SweepScores(ids=ids, labels=labels, scores={s: scores[s] for s in strategies if s in scores},
                            score_config=score_config, seed=config.seed, seconds=seconds)
        summary = {s: {"mean": round(float(v.mean()), 4), "p10": round(float(np.quantile(v, 0.1)), 4),
                       "p90": round(float(np.quantile(v, 0.9)), 4)} for s, v in value.scores.items()}
        return dg.Output(value, metadata=to_metadata({
            "n_samples": len(ids), "strategies": list(value.scores), "seconds_by_score": seconds,
            "seconds": round(sum(seconds.values()), 3), "score_summary": summary,
        }))

    @dg.asset(group_name="sweep", kinds={"pytorch", "mlflow"}, partitions_def=partitions,
              backfill_policy=dg.BackfillPolicy.single_run(), io_manager_key="sweep_io_manager")
    def sweep_models(context: dg.AssetExecutionContext, config: SweepModelsConfig, raw_dataset: Dataset,
                     features_selected: Selection, sweep_scores: SweepScores,
                     mlflow: MlflowResource) -> dg.Output[dict[str, dict[str, Any]]]:
        """For each (fraction, strategy) partition: keep `fraction` of the cleaned set by the
        strategy's score (per class, as pruned_dataset does; the rebalancing step's synthetic
        samples, if any, are added as in the main chain) and train `n_seeds` CNNs, one MLflow run
        each (params strategy, seed; metrics test_accuracy, retained_fraction, n_train,
        train_seconds; tags sweep_id, dagster_partition). Returns mean and std over seeds.

        How a smaller fraction is trained (schedule, the same for every strategy): `same_steps`
        (default) gives every fraction the optimisation steps of full data, epochs × ⌈n_full/batch⌉,
        as ⌈steps / ⌈n/batch⌉⌉ epochs; so a curve measures what the kept data is worth, not how
        much less compute it got. `same_epochs` trains `epochs` at every fraction.
        Seeds vary the training run, the random strategy's draw and CCS's draws within strata;
        score-based scores are the seed-averaged ones of `sweep_scores`. Identical training sets
        (every strategy at fraction 1.0) are trained once per seed; each partition still gets its
        run, tagged `shared_model_of` with the run that trained it.
        """
        import mlflow as mlf

        start_all = time.perf_counter()
        mlflow.check_reachable()  # before minutes of training, not after
        trainer = SweepTrainer(raw_dataset, features_selected, sweep_scores, config)
        sweep_id = config.sweep_id or context.run_id
        seeds = list(range(config.first_seed, config.first_seed + config.n_seeds))
        base_tags = {"sweep_id": sweep_id, "dagster_run_id": context.run_id, "dagster_asset": "sweep_models",
                     "dataset": raw_dataset.source, "dataset_digest": raw_dataset.digest(),
                     "schedule": config.schedule}
        sc = sweep_scores.score_config
        common_params = {**step_params(features_selected), "schedule": config.schedule,
                         "epochs_full_data": config.epochs, "batch_size": config.batch_size, "lr": config.lr,
                         "weight_decay": config.weight_decay, "score_epochs": sc.score_epochs,
                         "score_seeds": sc.score_seeds, "ccs_beta": sc.ccs_beta, "per_class": sc.per_class}
        results: dict[str, dict[str, Any]] = {}
        mlflow_seconds = 0.0
        if not context.partition_keys:
            raise ConfigError("this run covers no sweep partition: a multi-partition range is a rectangle "
                              "(fractions start..end × strategies start..end); use all_partitions_tags()")
        # fraction 1.0 first, so the strategies' identical full-data models are trained once
        keys = sorted(context.partition_keys, key=lambda k: (-parse_key(k)[1], parse_key(k)[0]))
        with torch_threads(config.torch_threads):
            for key in keys:
                strategy, fraction = parse_key(key)
                per_seed = []
                for seed in seeds:
                    out = trainer.train(strategy, fraction, seed)
                    tags = {**base_tags, "dagster_partition": str(key)}
                    if out["shared"]:
                        tags["shared_model_of"] = out["model"]["run_id"]
                    t0 = time.perf_counter()
                    with mlflow.start_run(run_name=f"sweep-{strategy}-{fraction_key(fraction)}-s{seed}",
                                          tags=tags) as run:
                        mlf.log_params({**common_params, "strategy": strategy, "seed": seed,
                                        "fraction": fraction_key(fraction), "epochs": out["epochs"]})
                        mlf.log_metrics(out["metrics"])
                    mlflow_seconds += time.perf_counter() - t0
                    if out["model"]["run_id"] is None:
                        out["model"]["run_id"] = run.info.run_id
                    per_seed.append({"seed": seed, "run_id": run.info.run_id, "epochs": out["epochs"],
                                     **out["metrics"]})
                acc = [r["test_accuracy"] for r in per_seed]
                mean, std = report.mean_std(acc)
                first = per_seed[0]
                results[str(key)] = {
                    "strategy": strategy, "fraction": fraction, "partition_key": str(key),
                    "retained_fraction": first["retained_fraction"],
                    "n_kept": int(round(first["retained_fraction"] * trainer.n_clean)), "n_clean": trainer.n_clean,
                    "n_train": int(first["n_train"]), "seeds": seeds, "accuracies": acc,
                    "mean_accuracy": mean, "std_accuracy": std,
                    "train_seconds": [r["train_seconds"] for r in per_seed],
                    "epochs": first["epochs"], "epochs_full_data": config.epochs, "schedule": config.schedule,
                    "mlflow_run_ids": [r["run_id"] for r in per_seed], "sweep_id": sweep_id,
                    "dagster_run_id": context.run_id,
                }
        # Per-partition numbers live in the results table below and in each partition's JSON file; an
        # AssetObservation per partition would cost one more event-log write each (~50 ms on SQLite).
        rows = [{"partition": k, "mean_accuracy": r["mean_accuracy"], "std_accuracy": r["std_accuracy"],
                 "n_train": r["n_train"], "epochs": r["epochs"]} for k, r in sorted(results.items())]
        return dg.Output(results, metadata={
            **to_metadata({"n_partitions": len(keys), "n_models": len(keys) * len(seeds),
                           "n_models_trained": trainer.n_trained, "train_seconds": round(trainer.train_seconds, 2),
                           "mlflow_seconds": round(mlflow_seconds, 2),
                           "seconds": round(time.perf_counter() - start_all, 2), "sweep_id": sweep_id,
                           "schedule": config.schedule}),
            "results": dg.MetadataValue.md(report.markdown_table(pd.DataFrame(rows))),
        })

    @dg.asset(group_name="sweep", kinds={"mlflow", "matplotlib"})
    def pruning_report(context: dg.AssetExecutionContext, config: PruningReportConfig,
                       sweep_models: dict[str, dict[str, Any]], mlflow: MlflowResource,
                       output_store: OutputStore) -> dg.Output[dict[str, Any]]:
        """Accuracy against retained fraction over every materialized sweep partition: the figure
        (one line per strategy, error bars = std over seeds; logged to an MLflow summary run with
        `log_figure`), `pruning_report.csv` in the run's output folder, the area under each curve
        and the recommended retained fraction: the smallest fraction from which a strategy's mean
        accuracy stays within `tolerance` of full-data (fraction 1.0) accuracy, and that strategy."""
        import mlflow as mlf

        if not sweep_models:
            raise ConfigError("no sweep_models partition is materialized yet; run sweep_job or backfill sweep_models")
        results = list(sweep_models.values())
        schedules = {(r["schedule"], r["epochs_full_data"]) for r in results}
        if len(schedules) > 1:
            raise ConfigError(f"sweep partitions were trained under different schedules {sorted(schedules)}: the "
                              "curves would not be comparable; rerun the sweep with one schedule")
        schedule, epochs = schedules.pop()
        table = report.curve_table(results)
        aucs = report.area_under_curves(table)
        rec = report.recommend(table, config.tolerance)
        frame = report.report_frame(table, rec, aucs)
        vs = report.versus_baseline(table)
        sweep_ids = sorted({r["sweep_id"] for r in results})
        n_seeds = sorted(set(table["n_seeds"]))
        title = (f"Test accuracy against retained fraction ({results[0].get('n_clean', '?')} cleaned samples; "
                 f"{schedule}, {epochs} epochs at full data; mean ± std over {'/'.join(map(str, n_seeds))} seeds)")
        fig = report.figure(table, rec, aucs, title=title, order=strategies)
        png = report.figure_png(fig)
        folder = output_store.run_folder(context.run_id)
        summary = {"recommendation": rec.as_dict(), "auc": aucs, "sweep_ids": sweep_ids, "schedule": schedule,
                   "epochs_full_data": epochs, "n_partitions": len(results),
                   "n_partitions_expected": len(strategies) * len(fractions),
                   "versus_random": vs.to_dict(orient="records")}
        tags = {"sweep_id": ",".join(sweep_ids)[:5000], "dagster_run_id": context.run_id,
                "dagster_asset": "pruning_report", "kind": "sweep_summary"}
        with mlflow.start_run(run_name=f"pruning-report-{sweep_ids[0][:8]}", tags=tags) as run:
            run_id = summary["mlflow_run_id"] = run.info.run_id
            atomic_write(folder / "pruning_report.csv", frame.to_csv(index=False).encode())
            atomic_write(folder / "pruning_report.png", png)
            atomic_write(folder / "pruning_report.json", json.dumps(jsonable(summary), indent=2).encode())
            mlf.log_params({"tolerance": config.tolerance, "schedule": schedule, "epochs_full_data": epochs,
                            "recommended_strategy": str(rec.strategy), "strategies": ",".join(aucs)})
            metrics = {f"auc_{s}": v for s, v in aucs.items()}
            if rec.full_accuracy is not None:
                metrics["full_data_accuracy"] = rec.full_accuracy
            if rec.fraction is not None:
                metrics.update(recommended_fraction=rec.fraction, recommended_accuracy=rec.accuracy)
            mlf.log_metrics(metrics)
            mlf.log_figure(fig, "accuracy_vs_retained_fraction.png")
            mlf.log_artifact(str(folder / "pruning_report.csv"))
            mlf.log_artifact(str(folder / "pruning_report.json"))
        md = report.markdown_image(png, "accuracy against retained fraction")
        shown = frame[["strategy", "fraction", "mean_accuracy", "std_accuracy", "n_seeds", "is_recommended"]]
        return dg.Output(summary, metadata={
            **to_metadata({
                "recommended_fraction": rec.fraction, "recommended_strategy": rec.strategy,
                "recommended_accuracy": rec.accuracy, "full_data_accuracy": rec.full_accuracy,
                "tolerance": config.tolerance, "reason": rec.reason,
                **{f"auc_{s}": round(v, 5) for s, v in aucs.items()},
                "n_partitions": len(results), "sweep_ids": sweep_ids, "mlflow_run_id": run_id,
                "mlflow_tracking_uri": mlflow.uri(),
            }),
            "figure": dg.MetadataValue.md(md),
            "table": dg.MetadataValue.md(report.markdown_table(shown)),
            "report_csv": dg.MetadataValue.path(str(folder / "pruning_report.csv")),
        })

    return [sweep_scores, sweep_models, pruning_report]


SWEEP_STRATEGIES = sweep_strategies()
SWEEP_FRACTIONS = sweep_fractions()
sweep_scores, sweep_models, pruning_report = build_sweep_assets(SWEEP_STRATEGIES, SWEEP_FRACTIONS)
SWEEP_PARTITIONS = sweep_models.partitions_def
