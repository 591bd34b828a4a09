"""One MLflow run per dataset digest that compares every model trained on that dataset.

`model_evaluation` calls `update_dataset_comparison` after it logs a model's test accuracy: the run
tagged `kind=dataset_comparison` + `dataset_digest` (created the first time) gets the figures
`accuracy_vs_retained_fraction.png` and `accuracy_vs_compute.png` (core/selection/comparison.py), the
CSV of the runs behind them, `n_runs` / `n_strategies` and, once a "no pruning" run exists,
`reference_accuracy`, `recommended_compute_seconds` and the tag `recommended_run_id` (the cheapest run
within 0.2 points of no pruning). It logs no `test_accuracy` or fraction metric, so searches for model
runs (`metrics.test_accuracy > 0`, `metrics.retained_fraction <= 1`) never return it.
"""

import tempfile
from pathlib import Path
from typing import Any

from prune_dagster.core.selection import comparison
from prune_dagster.core.selection.report import figure_png
from prune_dagster.defs.resources import MlflowResource

KIND = "dataset_comparison"
FIGURE = "accuracy_vs_retained_fraction.png"
COMPUTE_FIGURE = "accuracy_vs_compute.png"
TABLE = "comparison_runs.csv"


def model_runs_filter(digest: str) -> str:
    """The runs compared: every evaluated `trained_model` run (prune_job, train_job) of the dataset."""
    return f"tags.dataset_digest = '{digest}' and tags.dagster_asset = 'trained_model' and metrics.test_accuracy >= 0"


def find_or_create_run(client, experiment_id: str, dataset: str, digest: str) -> str:
    """The comparison run of `digest` in the experiment, created (finished, tagged) when missing."""
    found = client.search_runs([experiment_id], f"tags.kind = '{KIND}' and tags.dataset_digest = '{digest}'",
                               order_by=["attributes.start_time ASC"], max_results=1)
    if found:
        return found[0].info.run_id
    tags = {"kind": KIND, "dataset": dataset, "dataset_digest": digest,
            "mlflow.note.content": f"Every trained_model run of dataset {dataset} (digest {digest}): test accuracy "
                                   f"against retained fraction per strategy; see {FIGURE} and {TABLE}. "
                                   "Updated by model_evaluation after each run."}
    return client.create_run(experiment_id, run_name=f"compare-{dataset}-{digest[:8]}", tags=tags).info.run_id


def update_dataset_comparison(store: MlflowResource, dataset: str, digest: str) -> str:
    """Refresh the comparison run of one dataset digest from the model runs logged so far; returns
    its run id. Under the store's lock, so two runs finishing at once neither create two comparison
    runs nor write a figure that misses the other's model."""
    import mlflow

    experiment_id = store.experiment_id()  # also points mlflow.search_runs at the store
    client = mlflow.MlflowClient(store.uri())
    with store.store_lock():
        runs = mlflow.search_runs([experiment_id], model_runs_filter(digest), output_format="pandas")
        frame = comparison.comparison_frame(runs)
        run_id = find_or_create_run(client, experiment_id, dataset, digest)
        choice = comparison.cheapest_within(frame)
        figures = {FIGURE: comparison.comparison_figure(frame, comparison.comparison_title(dataset, digest, frame)),
                   COMPUTE_FIGURE: comparison.compute_figure(frame, choice,
                                                            comparison.compute_title(dataset, digest, frame))}
        with tempfile.TemporaryDirectory() as tmp:
            for name, fig in figures.items():
                (Path(tmp) / name).write_bytes(figure_png(fig))  # tight box: the title is not cut
                client.log_artifact(run_id, str(Path(tmp) / name))
            frame.to_csv(Path(tmp) / TABLE, index=False)
            client.log_artifact(run_id, str(Path(tmp) / TABLE))
        log_choice(client, run_id, choice)
        client.log_metric(run_id, "n_runs", float(len(frame)))
        client.log_metric(run_id, "n_strategies", float(frame["strategy"].nunique()))
        client.set_terminated(run_id)
    return run_id


def log_choice(client: Any, run_id: str, choice: comparison.ComputeChoice) -> None:
    """The reference and the recommendation against compute, where there is one to log."""
    if choice.reference_accuracy is not None:
        client.log_metric(run_id, "reference_accuracy", choice.reference_accuracy)
    if choice.reference_compute_seconds is not None:
        client.log_metric(run_id, "reference_compute_seconds", choice.reference_compute_seconds)
    if choice.run_id is not None:
        client.log_metric(run_id, "recommended_compute_seconds", choice.compute_seconds)
        client.set_tag(run_id, "recommended_run_id", choice.run_id)
