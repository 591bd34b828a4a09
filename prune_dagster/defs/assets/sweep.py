"""Stage `sweep`: test accuracy against retained fraction, per pruning strategy, with a recommended fraction.

A chain beside the main one, so that `prune_job`'s assets and outputs stay as they are:

```
<last cleaning step> ─► sweep_scores ─► sweep_models[fraction × strategy] ─► pruning_report
```

This module only wires; the logic lives in `core/selection/sweep.py` (scores, training per fraction,
epochs), `core/selection/report.py` (curves, recommendation) and `core/selection/fractions.py` (what
each fraction in the results and MLflow means).

- `sweep_scores` (unpartitioned): every strategy's per-sample score on the cleaned set (the
  `features_selected` Selection), computed once. It is one asset rather than one partition per
  strategy because a Dagster job holds one partitions definition: scores partitioned by strategy
  and models by strategy × fraction could not share `sweep_job`.
- `sweep_models` (partitioned by fraction × strategy): trains `n_seeds` CNNs per partition, one
  MLflow run each, and returns mean and std over seeds. `BackfillPolicy.single_run()`: `sweep_job`
  over the whole range (`all_partitions_tags`) is one run in one process, so torch is imported
  once, not once per partition; a backfill from the UI is split by Dagster along one dimension of
  the grid (one run per strategy), still not one per partition. Values are stored by the project's
  IO manager (one file per partition); readable JSON copies go to the run's output folder.
- `pruning_report` (unpartitioned, over every materialized partition): the figures (accuracy against
  retained fraction, and against total compute with the "no pruning" reference), the table
  (`pruning_report.csv`), the area under each curve and the recommended setting: the cheapest cell
  within `tolerance` of full-data accuracy.

Partitions are fixed when the definitions load: `PRUNE_SWEEP_STRATEGIES` and `PRUNE_SWEEP_FRACTIONS`
(comma-separated) change the defaults (all strategies, static and dynamic; 0.1, 0.2, …, 1.0).
"""

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from prune_dagster import settings
from prune_dagster.core import pipeline
from prune_dagster.core.data.dataset import Dataset
from prune_dagster.core.data.export import atomic_write, jsonable
from prune_dagster.core.errors import ConfigError
from prune_dagster.core.ledger import Selection
from prune_dagster.core.selection import report
from prune_dagster.core.selection.report import ReportParams, SweepReport
from prune_dagster.core.selection.sweep import (
    DEFAULT_FRACTIONS,
    SweepModelsParams,
    SweepScoreParams,
    SweepScores,
    SweepTrainer,
    compute_sweep_scores,
    fraction_key,
    known_strategies,
    torch_threads,
    train_partitions,
)
from prune_dagster.core.training.augment import AugmentParams
from prune_dagster.core.training.shared import SharedRepresentation
from prune_dagster.defs.assets.common import dataset_metadata, to_metadata
from prune_dagster.defs.assets.training import step_params
from prune_dagster.defs.config import dagster_config, to_params
from prune_dagster.defs.resources import MlflowResource, OutputStore

SweepScoresConfig = dagster_config(SweepScoreParams, name="SweepScoresConfig")
SweepModelsConfig = dagster_config(SweepModelsParams)
PruningReportConfig = dagster_config(ReportParams, name="PruningReportConfig")


def sweep_strategies() -> tuple[str, ...]:
    names = tuple(settings.sweep_strategies()) or known_strategies()
    known = known_strategies()
    for name in names:
        if name not in known:
            raise ConfigError(f"PRUNE_SWEEP_STRATEGIES: {name!r} is not a strategy; "
                              f"expected some of {', '.join(known)}")
    return names


def sweep_fractions() -> tuple[float, ...]:
    raw = settings.sweep_fractions()
    if not raw:
        return DEFAULT_FRACTIONS
    try:
        values = sorted({float(v) for v in raw})
    except ValueError as err:
        raise ConfigError(f"PRUNE_SWEEP_FRACTIONS={','.join(raw)!r}: {err}; "
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


def all_partitions_tags(partitions_def: dg.PartitionsDefinition) -> dict[str, str]:
    """Run tags that make one run cover every partition (what a single-run backfill launches):
    `job.execute_in_process(tags=all_partitions_tags(job.partitions_def))`."""
    keys = partitions_def.get_partition_keys()
    return {"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}


# ---------------------------------------------------------------- what the assets attach and write


def log_model_run(mlflow: MlflowResource):
    """The sweep's log_run: one model run through the shared MLflow path (no model artifact)."""
    def log_run(run_name: str, tags: dict[str, str], params: dict[str, Any], metrics: dict[str, float],
                started: float) -> str:
        return mlflow.log_training_run(run_name, tags, params, metrics, started=started)
    return log_run


def results_metadata(results: dict[str, dict[str, Any]]) -> dg.MetadataValue:
    """The per-partition table: a Dagster table (the UI sorts and filters it; keys hold '|')."""
    columns = ["partition", "strategy", "target_fraction", "kept_fraction_of_cleaned", "sample_pass_fraction",
               "n_kept", "n_train", "epochs", "mean_accuracy", "std_accuracy", "compute_seconds"]
    rows = [dg.TableRecord({c: (k if c == "partition" else r[c]) for c in columns}) for k, r in sorted(results.items())]
    types = {"partition": "string", "strategy": "string", "n_kept": "int", "n_train": "int", "epochs": "int"}
    schema = dg.TableSchema(columns=[dg.TableColumn(c, types.get(c, "float")) for c in columns])
    return dg.MetadataValue.table(rows, schema=schema)


def write_results(folder: Path, results: dict[str, dict[str, Any]]) -> None:
    """Readable copies of the partitions' results beside the run's report: sweep_models/<fraction>__<strategy>.json."""
    for key, value in results.items():
        atomic_write(folder / "sweep_models" / f"{key.replace('|', '__')}.json",
                     json.dumps(jsonable(value), indent=1).encode())


COMPUTE_FIGURE = "accuracy_vs_compute.png"


def summary_metrics(rep: SweepReport) -> dict[str, float]:
    """The summary run's metrics: areas, full-data accuracy and compute, the recommendation."""
    rec = rep.rec
    metrics = {f"auc_{s}": v for s, v in rep.aucs.items()}
    if rec.full_accuracy is not None:
        metrics["full_data_accuracy"] = rec.full_accuracy
    if rec.full_compute_seconds is not None:
        metrics["full_data_compute_seconds"] = rec.full_compute_seconds  # fraction 1.0 training alone
    if rec.fraction is not None:
        metrics.update(recommended_fraction=rec.fraction, recommended_accuracy=rec.accuracy)
    if rec.compute_seconds is not None:
        metrics["recommended_compute_seconds"] = rec.compute_seconds
    return metrics


def log_summary_run(mlflow: MlflowResource, rep: SweepReport, figs: tuple[Any, Any], folder: Path,
                    summary: dict[str, Any], tolerance: float, tags: dict[str, str]) -> str:
    """The sweep's summary run: writes pruning_report.{csv,png,json} and accuracy_vs_compute.png (the
    JSON names the run), then logs params, the areas and the recommendation as metrics, both figures and
    the table to it."""
    import mlflow as mlf

    fig, compute_fig = figs
    with mlflow.start_run(run_name=f"pruning-report-{rep.sweep_ids[0][:8]}", tags=tags) as run:
        summary["mlflow_run_id"] = run.info.run_id
        atomic_write(folder / "pruning_report.csv", rep.frame.to_csv(index=False).encode())
        atomic_write(folder / "pruning_report.png", report.figure_png(fig))
        atomic_write(folder / COMPUTE_FIGURE, report.figure_png(compute_fig))
        atomic_write(folder / "pruning_report.json", json.dumps(jsonable(summary), indent=2).encode())
        mlf.log_params({"tolerance": tolerance, "schedule": rep.schedule, "epochs_full_data": rep.epochs,
                        "recommended_strategy": str(rep.rec.strategy), "strategies": ",".join(rep.aucs),
                        "recommendation_cost": rep.rec.cost})
        mlf.log_metrics(summary_metrics(rep))
        # bbox "tight": the saved image holds the whole title and legend, as the PNG beside the report does
        mlf.log_figure(fig, "accuracy_vs_retained_fraction.png", save_kwargs={"bbox_inches": "tight"})
        mlf.log_figure(compute_fig, COMPUTE_FIGURE, save_kwargs={"bbox_inches": "tight"})
        mlf.log_artifact(str(folder / "pruning_report.csv"))
        mlf.log_artifact(str(folder / "pruning_report.json"))
        return run.info.run_id


def report_metadata(rep: SweepReport, tolerance: float, run_id: str, uri: str, folder: Path) -> dict[str, Any]:
    shown = rep.frame[["strategy", "fraction", "mean_accuracy", "std_accuracy", "n_seeds", "compute_seconds",
                       "is_recommended"]]
    png, compute_png = (folder / "pruning_report.png").read_bytes(), (folder / COMPUTE_FIGURE).read_bytes()
    return {
        **to_metadata({
            "recommended_fraction": rep.rec.fraction, "recommended_strategy": rep.rec.strategy,
            "recommended_accuracy": rep.rec.accuracy, "full_data_accuracy": rep.rec.full_accuracy,
            "recommended_compute_seconds": rep.rec.compute_seconds,
            "full_data_compute_seconds": rep.rec.full_compute_seconds,
            "tolerance": tolerance, "reason": rep.rec.reason, **{f"auc_{s}": round(v, 5) for s, v in rep.aucs.items()},
            "n_partitions": len(rep.table), "sweep_ids": rep.sweep_ids, "mlflow_run_id": run_id,
            "mlflow_tracking_uri": uri,
        }),
        "figure": dg.MetadataValue.md(report.markdown_image(png, "accuracy against retained fraction")),
        "compute_figure": dg.MetadataValue.md(report.markdown_image(compute_png, "accuracy against total compute")),
        "table": dg.MetadataValue.md(report.markdown_table(shown)),
        "report_csv": dg.MetadataValue.path(str(folder / "pruning_report.csv")),
    }


# ---------------------------------------------------------------- assets


def train_models(context: dg.AssetExecutionContext, config: dg.Config, raw_dataset: Dataset,
                 cleaned: Selection, sweep_scores: SweepScores, mlflow: MlflowResource,
                 output_store: OutputStore) -> dg.Output[dict[str, dict[str, Any]]]:
    """sweep_models' body: train this run's partitions, return their results with a metadata table."""
    start = time.perf_counter()
    if not context.partition_keys:
        raise ConfigError("this run covers no sweep partition: a multi-partition range is a rectangle "
                          "(fractions start..end × strategies start..end); use all_partitions_tags()")
    mlflow.check_reachable()  # before minutes of training, not after
    trainer = SweepTrainer(raw_dataset, cleaned, sweep_scores, to_params(config, SweepModelsParams))
    params = trainer.config  # epochs and lr resolved for the dataset's kind
    sweep_id = params.sweep_id or context.run_id
    tags = {"sweep_id": sweep_id, "dagster_run_id": context.run_id, "dagster_asset": "sweep_models",
            "dataset": raw_dataset.source, "dataset_digest": raw_dataset.digest(), "schedule": params.schedule,
            "kind": raw_dataset.kind}
    sc = sweep_scores.score_config
    common = {**step_params(cleaned), "schedule": params.schedule, "epochs_full_data": params.epochs,
              "batch_size": params.batch_size, "lr": params.lr, "weight_decay": params.weight_decay,
              "score_epochs": sc.score_epochs, "score_seeds": sc.score_seeds, "ccs_beta": sc.ccs_beta,
              "per_class": sc.per_class, **AugmentParams.of(params).model_dump()}
    with torch_threads(params.torch_threads):
        results, log_seconds = train_partitions(trainer, context.partition_keys, log_model_run(mlflow), tags, common)
    named = dataset_metadata(raw_dataset)
    results = {k: {**r, "sweep_id": sweep_id, "dagster_run_id": context.run_id, **named} for k, r in results.items()}
    write_results(output_store.run_folder(context.run_id), results)
    return dg.Output(results, metadata={
        **to_metadata({"n_partitions": len(results), "n_models": len(results) * params.n_seeds,
                       "n_models_trained": trainer.n_trained, "train_seconds": round(trainer.train_seconds, 2),
                       "mlflow_seconds": round(log_seconds, 2), "seconds": round(time.perf_counter() - start, 2),
                       "sweep_id": sweep_id, "schedule": params.schedule, "augment": params.augment,
                       **dataset_metadata(raw_dataset, context.job_name)}),
        "results": results_metadata(results),
    })


def make_report(context: dg.AssetExecutionContext, tolerance: float, results: dict[str, dict[str, Any]],
                mlflow: MlflowResource, output_store: OutputStore, strategies: Sequence[str],
                n_expected: int) -> dg.Output[dict[str, Any]]:
    """pruning_report's body: the report over the materialized partitions, its files and summary run."""
    rep = report.sweep_report(results.values(), tolerance)
    figs = (report.figure(rep.table, rep.rec, rep.aucs, title=rep.title, order=strategies),
            report.compute_figure(rep.table, rep.rec, title=rep.compute_title, order=strategies))
    folder = output_store.run_folder(context.run_id)
    summary = rep.summary(n_expected)
    named = {k: ",".join(sorted({str(r[k]) for r in results.values() if k in r}))
             for k in ("dataset", "dataset_digest")}  # the datasets the report's partitions trained on
    tags = {"sweep_id": ",".join(rep.sweep_ids)[:5000], "dagster_run_id": context.run_id,
            "dagster_asset": "pruning_report", "kind": "sweep_summary", **named}
    run_id = log_summary_run(mlflow, rep, figs, folder, summary, tolerance, tags)
    metadata = report_metadata(rep, tolerance, run_id, mlflow.uri(), folder)
    return dg.Output(summary, metadata={**metadata, **to_metadata({**named, "job_name": context.job_name})})


def scores_asset(strategies: tuple[str, ...], cleaned: str) -> dg.AssetsDefinition:
    @dg.asset(group_name="sweep", kinds={"pytorch"}, ins={"cleaned": dg.AssetIn(cleaned)})
    def sweep_scores(context: dg.AssetExecutionContext, config: SweepScoresConfig, raw_dataset: Dataset,
                     cleaned: Selection, representation: SharedRepresentation) -> dg.Output[SweepScores]:
        """Every swept strategy's per-sample score on the cleaned set, computed once with the
        pruned_dataset defaults (EL2N and forgetting averaged over `score_seeds` short runs).
        ccs reuses el2n's scores and prototype_hard reuses prototype_easy's; semdedup keeps the
        shared representation's embeddings and selects per fraction in sweep_models."""
        value = compute_sweep_scores(strategies, raw_dataset, cleaned, to_params(config, SweepScoreParams),
                                     representation)
        return dg.Output(value, metadata=to_metadata({
            "n_samples": len(value.ids), "strategies": list(value.scores), "seconds_by_score": value.seconds,
            "seconds": round(sum(value.seconds.values()), 3), "score_summary": value.summary(),
            "sample_passes_by_score": value.sample_passes, "cleaning_seconds": value.cleaning_seconds,
            "representation_seconds": value.representation_seconds,
            **dataset_metadata(raw_dataset, context.job_name),
        }))
    return sweep_scores


def models_asset(partitions: dg.PartitionsDefinition, cleaned: str) -> dg.AssetsDefinition:
    @dg.asset(group_name="sweep", kinds={"pytorch", "mlflow"}, partitions_def=partitions,
              backfill_policy=dg.BackfillPolicy.single_run(), ins={"cleaned": dg.AssetIn(cleaned)})
    def sweep_models(context: dg.AssetExecutionContext, config: SweepModelsConfig, raw_dataset: Dataset,
                     cleaned: Selection, sweep_scores: SweepScores, mlflow: MlflowResource,
                     output_store: OutputStore) -> dg.Output[dict[str, dict[str, Any]]]:
        """For each (fraction, strategy) partition: keep `fraction` of the cleaned set by the
        strategy's score (per class, as pruned_dataset does; the rebalancing step's synthetic
        samples, if any, are added as in the main chain) and train `n_seeds` CNNs, one MLflow run
        each (params strategy, seed, fraction; metrics test_accuracy, retained_fraction and the
        fractions of core/selection/fractions.py, n_train, train_seconds; tags sweep_id,
        dagster_partition). Returns mean and std over seeds per partition.

        `schedule`: `same_steps` (default) gives every fraction the optimisation steps of full data;
        `same_epochs` trains `epochs` at every fraction. Seeds vary the training run, the random
        strategy's draw and CCS's draws within strata. Identical training sets (every strategy at
        fraction 1.0) are trained once per seed; each partition still gets its run, tagged
        `shared_model_of` with the run that trained it.
        """
        return train_models(context, config, raw_dataset, cleaned, sweep_scores, mlflow, output_store)
    return sweep_models


def report_asset(strategies: tuple[str, ...], n_expected: int) -> dg.AssetsDefinition:
    @dg.asset(group_name="sweep", kinds={"mlflow", "matplotlib"})
    def pruning_report(context: dg.AssetExecutionContext, config: PruningReportConfig,
                       sweep_models: dict[str, dict[str, Any]], mlflow: MlflowResource,
                       output_store: OutputStore) -> dg.Output[dict[str, Any]]:
        """Accuracy against retained fraction and against total compute over every materialized sweep
        partition: the two figures (one series per strategy, error bars = std over seeds; logged to an
        MLflow summary run with `log_figure`, also in the run's output folder), `pruning_report.csv`,
        the area under each curve and the recommended setting: the cheapest (strategy, fraction) by
        total compute whose mean accuracy is within `tolerance` (0.2 points) of full-data accuracy."""
        return make_report(context, config.tolerance, sweep_models, mlflow, output_store, strategies, n_expected)
    return pruning_report


def build_sweep_assets(strategies: Sequence[str], fractions: Sequence[float],
                       steps: tuple[pipeline.Step, ...] = pipeline.PIPELINE) -> list[dg.AssetsDefinition]:
    """The three sweep assets over the given strategies × fractions, on the output of the pipeline's
    last cleaning step (the module exports the defaults; tests build a small sweep the same way)."""
    strategies, fractions = tuple(strategies), tuple(fractions)
    cleaned = pipeline.cleaning_steps(steps)[-1].asset
    return [scores_asset(strategies, cleaned), models_asset(sweep_partitions(strategies, fractions), cleaned),
            report_asset(strategies, len(strategies) * len(fractions))]


SWEEP_STRATEGIES = sweep_strategies()
SWEEP_FRACTIONS = sweep_fractions()
sweep_scores, sweep_models, pruning_report = build_sweep_assets(SWEEP_STRATEGIES, SWEEP_FRACTIONS)
SWEEP_PARTITIONS = sweep_models.partitions_def
