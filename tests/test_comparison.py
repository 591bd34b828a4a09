"""The per-dataset comparison run in MLflow: every model of one dataset, accuracy against retained fraction
and against total compute; and the runs table's landing view."""

import json
from pathlib import Path

import dagster as dg
import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import FAST_CONFIG

from prune_dagster.core.selection.comparison import (
    cheapest_within,
    comparison_figure,
    comparison_frame,
    compute_figure,
    group_means,
    no_pruning_runs,
)
from prune_dagster.core.selection.report import figure_png
from prune_dagster.defs.comparison import COMPUTE_FIGURE, FIGURE, KIND, TABLE
from prune_dagster.defs.resources import RUNS_VIEW_KEY, MlflowResource

RUNS = pd.DataFrame({
    "run_id": ["a", "b", "c", "d", "e"],
    "start_time": pd.to_datetime([1, 2, 3, 4, 5], unit="s"),
    "params.strategy": ["el2n", "el2n", "el2n", "random", "random"],
    "metrics.target_fraction": [0.5, 0.5, 1.0, 0.5, None],
    "metrics.retained_fraction": [0.40, 0.44, 0.90, 0.42, None],  # e: still training, no fraction yet
    "metrics.test_accuracy": [0.90, 0.94, 0.97, 0.88, None],
    "tags.mlflow.runName": list("abcde"),
})


def test_frame_keeps_evaluated_runs_and_means_group_by_strategy_and_target():
    frame = comparison_frame(RUNS)
    assert list(frame["run_id"]) == ["a", "b", "c", "d"]
    means = group_means(frame).set_index(["strategy", "target_fraction"])
    assert means.loc[("el2n", 0.5), "test_accuracy"] == pytest.approx(0.92)
    assert means.loc[("el2n", 0.5), "retained_fraction"] == pytest.approx(0.42)
    assert means.loc[("el2n", 0.5), "n_runs"] == 2 and len(means) == 3
    fig = comparison_figure(frame, "t")
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["random (n=1)", "el2n (n=3)"]
    assert sum(len(c.get_offsets()) for c in ax.collections) == 4  # one point per run
    assert frame["compute_seconds"].isna().all()  # runs logged before compute_seconds existed


# Known answer: the reference is n1 and n2 (strategy none, retained 1.0): accuracy 0.972, compute 11 s.
COSTED = pd.DataFrame({
    "run_id": ["n1", "n2", "c1", "p1", "p2", "p3"],
    "start_time": pd.to_datetime([1, 2, 3, 4, 5, 6], unit="s"),
    "params.strategy": ["none", "none", "none", "el2n", "random", "el2n"],
    "metrics.target_fraction": [1.0, 1.0, 1.0, 0.5, 0.3, 0.4],
    "metrics.retained_fraction": [1.0, 1.0, 0.95, 0.48, 0.29, 0.38],  # c1: cleaning on, so not the reference
    "metrics.test_accuracy": [0.970, 0.974, 0.971, 0.9705, 0.969, 0.98],
    "metrics.compute_seconds": [10.0, 12.0, 15.0, 8.0, 4.0, None],  # p3: an older run, no compute
    "tags.mlflow.runName": ["n1", "n2", "c1", "p1", "p2", "p3"],
})


def test_reference_is_no_pruning_and_the_cheapest_run_within_two_tenths_is_chosen():
    frame = comparison_frame(COSTED)
    assert list(no_pruning_runs(frame)["run_id"]) == ["n1", "n2"]
    choice = cheapest_within(frame)  # 0.2 points: p1 (0.15 below, 8 s) beats the references and c1
    assert choice.reference_accuracy == pytest.approx(0.972) and choice.reference_compute_seconds == 11.0
    assert (choice.run_id, choice.compute_seconds, choice.test_accuracy) == ("p1", 8.0, 0.9705)
    # p2 (0.3 below) is cheaper but out; at 0.5 points it is in
    assert cheapest_within(frame, tolerance=0.005).run_id == "p2"
    # p3 (no compute) is never chosen, however accurate; with no reference there is no choice
    assert cheapest_within(frame, tolerance=0.0).run_id == "n2"
    none = cheapest_within(frame[frame["strategy"] != "none"])
    assert none.reference_accuracy is None and none.run_id is None
    fig = compute_figure(frame, choice, "t")
    ax = fig.axes[0]
    by_label = {c.get_label(): c.get_offsets() for c in ax.collections}
    (ref,) = [v for k, v in by_label.items() if k.startswith("no pruning")]
    assert np.asarray(sorted(map(tuple, np.asarray(ref)))) == pytest.approx(np.array([[10.0, 97.0], [12.0, 97.4]]))
    (circle,) = [v for k, v in by_label.items() if k.startswith("recommended: p1")]
    assert np.asarray(circle)[0].tolist() == pytest.approx([8.0, 97.05])
    assert sum(len(v) for k, v in by_label.items() if k.startswith(("el2n", "random", "none"))) == 3  # c1, p1, p2
    assert ax.get_xscale() == "log" and len(figure_png(fig)) > 5000


def test_runs_table_url_opens_a_shared_view_with_the_model_columns(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNE_MLFLOW_UI", "http://mlflow.example")
    store = MlflowResource(tracking_uri=f"sqlite:///{tmp_path / 'm.db'}", experiment_name="view")
    url = store.runs_table_url()
    exp = store.experiment_id()
    assert url == f"http://mlflow.example/#/experiments/{exp}/runs?viewStateShareKey={RUNS_VIEW_KEY}"
    view = json.loads(mlflow.get_experiment(exp).tags[f"mlflow.sharedViewState.{RUNS_VIEW_KEY}"])
    wanted = {"params.`strategy`", "metrics.`test_accuracy`", "metrics.`retained_fraction`"}
    assert wanted <= set(view["selectedColumns"])  # the browser test checks the grid shows them


def test_two_prune_runs_update_one_comparison_run(prune_env):
    from prune_dagster.definitions import defs

    job = defs.resolve_job_def("prune_job")
    half = {**FAST_CONFIG, "pruned_dataset": {"config": {**FAST_CONFIG["pruned_dataset"]["config"],
                                                          "target_fraction": 0.5}}}
    off = {"config": {"enabled": False}}
    no_pruning = {**{name: off for name in ("exact_deduplicated", "near_deduplicated", "outliers_removed",
                                            "label_noise_removed", "class_balanced", "features_selected",
                                            "pruned_dataset")},
                  "representation": {"config": {"features": "pixels"}},  # nothing reads it with every step off
                  "trained_model": FAST_CONFIG["trained_model"]}
    with dg.DagsterInstance.get() as instance:
        first = job.execute_in_process(instance=instance, run_config={"ops": FAST_CONFIG})
        # the second run retrains from the first run's cleaned set at another fraction
        second = job.execute_in_process(instance=instance, run_config={"ops": half}, asset_selection=[
            dg.AssetKey("pruned_dataset"), dg.AssetKey("trained_model"), dg.AssetKey("model_evaluation")])
        # the third trains on everything, every pruning step off: the comparison's "no pruning" reference
        third = job.execute_in_process(instance=instance, run_config={"ops": no_pruning})
    assert first.success and second.success and third.success
    found = mlflow.search_runs(search_all_experiments=True, filter_string=f"tags.kind = '{KIND}'")
    assert len(found) == 1  # found again by its tags, not created twice
    run = found.iloc[0]
    assert run["metrics.n_runs"] == 3 and run["metrics.n_strategies"] == 2  # el2n and none
    assert run["tags.dataset"] == "digits" and run["tags.mlflow.runName"].startswith("compare-digits-")
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run["run_id"])}
    assert {FIGURE, COMPUTE_FIGURE, TABLE} <= artifacts
    png = Path(mlflow.artifacts.download_artifacts(run_id=run["run_id"], artifact_path=COMPUTE_FIGURE)).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    table = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=run["run_id"], artifact_path=TABLE))
    assert sorted(table["target_fraction"]) == [0.5, 0.8, 1.0]
    assert table["retained_fraction"].nunique() == 3
    # not mistaken for a model run by the searches the notebook and the tests use
    models = mlflow.search_runs(search_all_experiments=True, filter_string="metrics.test_accuracy > 0")
    assert run["run_id"] not in set(models["run_id"]) and len(models) == 3
    # compute_seconds in the CSV is each model run's own metric
    logged = models.set_index("run_id")["metrics.compute_seconds"]
    assert logged.gt(0).all()
    assert table.set_index("run_id")["compute_seconds"].to_dict() == pytest.approx(logged.to_dict())
    # the reference is the run with every step off; the recommended run obeys the rule, read back
    (ref_id,) = models[models["params.strategy"] == "none"]["run_id"]
    assert models.set_index("run_id").loc[ref_id, "metrics.retained_fraction"] == 1.0
    accuracy = models.set_index("run_id")["metrics.test_accuracy"]
    assert run["metrics.reference_accuracy"] == pytest.approx(accuracy[ref_id])
    within = accuracy[accuracy >= accuracy[ref_id] - 0.002 - 1e-12].index
    cheapest = logged[within].idxmin()
    assert run["tags.recommended_run_id"] == cheapest
    assert run["metrics.recommended_compute_seconds"] == pytest.approx(logged[cheapest])
    assert "metrics.test_accuracy" not in found.columns or pd.isna(run.get("metrics.test_accuracy"))
    (mat,) = second.asset_materializations_for_node("model_evaluation")
    link = mat.metadata["mlflow_dataset_comparison"]
    assert isinstance(link, dg.UrlMetadataValue) and link.value.endswith(f"/runs/{run['run_id']}")
