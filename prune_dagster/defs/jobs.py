"""Jobs, built from the pipeline. The whole graph runs in one process: a spawned process per step would
re-import torch for each of the eleven steps (see benchmarks/executor_overhead.py)."""

from __future__ import annotations

import dagster as dg

from prune_dagster.core import pipeline

SWEEP_ASSETS = ["sweep_scores", "sweep_models", "pruning_report"]


def prune_graph(steps: tuple[pipeline.Step, ...] = pipeline.PIPELINE) -> list[str]:
    """The source, every pruning step in the pipeline's order (with the shared representation), then
    training and evaluation."""
    return ["raw_dataset", *pipeline.graph(steps), "trained_model", "model_evaluation"]


def build_jobs(steps: tuple[pipeline.Step, ...] = pipeline.PIPELINE) -> dict[str, dg.UnresolvedAssetJobDefinition]:
    """prune_job, train_job, sweep_job and incremental_job over the pipeline `steps`."""
    return {
        "prune_job": dg.define_asset_job(
            "prune_job", selection=dg.AssetSelection.assets(*prune_graph(steps)),
            description="The whole pruning graph: raw data → every pruning step → the model → test accuracy in "
                        "MLflow.",
            executor_def=dg.in_process_executor),
        "train_job": dg.define_asset_job(
            "train_job", selection=dg.AssetSelection.assets("trained_model", "model_evaluation"),
            description="Retrain and evaluate on the latest pruned dataset.", executor_def=dg.in_process_executor),
        "sweep_job": dg.define_asset_job(
            "sweep_job", selection=dg.AssetSelection.assets(*SWEEP_ASSETS).upstream(),
            description="Accuracy against retained fraction: the cleaning chain, every strategy's scores, n_seeds "
                        "models per (fraction, strategy) partition and the pruning report. Launch it over all "
                        "partitions (Materialize → all partitions, or the range tags of sweep.all_partitions_tags): "
                        "one run trains the whole sweep.",
            executor_def=dg.in_process_executor),
        "incremental_job": dg.define_asset_job(
            "incremental_job", selection=dg.AssetSelection.assets("prune_index", "incremental_update"),
            description="Decide a batch of new samples against an index of the last full prune (new_source, or "
                        "$PRUNE_NEW_SOURCE) instead of re-running every step; refuses, saying why, when the batch "
                        "would change an old decision.",
            executor_def=dg.in_process_executor),
    }


PRUNE_GRAPH = prune_graph()
JOBS = build_jobs()
prune_job, train_job, sweep_job, incremental_job = (JOBS[k] for k in ("prune_job", "train_job", "sweep_job",
                                                                      "incremental_job"))
