"""The per-dataset comparison run in MLflow: every model of one dataset, accuracy against retained fraction;
and the runs table's landing view."""

import json

import dagster as dg
import mlflow
import pandas as pd
import pytest
from conftest import FAST_CONFIG

from prune_dagster.core.selection.comparison import comparison_figure, comparison_frame, group_means
from prune_dagster.defs.comparison import FIGURE, KIND, TABLE
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
                                                          "retained_fraction": 0.5}}}
    with dg.DagsterInstance.get() as instance:
        first = job.execute_in_process(instance=instance, run_config={"ops": FAST_CONFIG})
        # the second run retrains from the first run's cleaned set at another fraction
        second = job.execute_in_process(instance=instance, run_config={"ops": half}, asset_selection=[
            dg.AssetKey("pruned_dataset"), dg.AssetKey("trained_model"), dg.AssetKey("model_evaluation")])
    assert first.success and second.success
    found = mlflow.search_runs(search_all_experiments=True, filter_string=f"tags.kind = '{KIND}'")
    assert len(found) == 1  # found again by its tags, not created twice
    run = found.iloc[0]
    assert run["metrics.n_runs"] == 2 and run["metrics.n_strategies"] == 1
    assert run["tags.dataset"] == "digits" and run["tags.mlflow.runName"].startswith("compare-digits-")
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run["run_id"])}
    assert {FIGURE, TABLE} <= artifacts
    table = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=run["run_id"], artifact_path=TABLE))
    assert sorted(table["target_fraction"]) == [0.5, 0.8]
    assert table["retained_fraction"].nunique() == 2
    # not mistaken for a model run by the searches the notebook and the tests use
    models = mlflow.search_runs(search_all_experiments=True, filter_string="metrics.test_accuracy > 0")
    assert run["run_id"] not in set(models["run_id"]) and len(models) == 2
    assert "metrics.test_accuracy" not in found.columns or pd.isna(run.get("metrics.test_accuracy"))
    (mat,) = second.asset_materializations_for_node("model_evaluation")
    link = mat.metadata["mlflow_dataset_comparison"]
    assert isinstance(link, dg.UrlMetadataValue) and link.value.endswith(f"/runs/{run['run_id']}")
