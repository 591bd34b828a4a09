"""The whole graph, materialized for real: a temporary Dagster home, output folder and MLflow store."""

import json
import os
from pathlib import Path

import dagster as dg
import mlflow
import nbformat
import pandas as pd
import pytest
from conftest import temp_env
from nbclient import NotebookClient

from prune_dagster import cli
from prune_dagster.core import pipeline
from prune_dagster.core.data.sources import load_digits
from prune_dagster.core.ledger import undo
from prune_dagster.defs.jobs import PRUNE_GRAPH

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def graph_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("graph")
    env = {
        "DAGSTER_HOME": str(tmp / "dagster_home"),
        "PRUNE_OUTPUT_DIR": str(tmp / "out"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
        "PRUNE_DATASET": "digits",
    }
    with temp_env(env):
        Path(env["DAGSTER_HOME"]).mkdir()
        yield tmp, cli.main(["run"])


def latest(tmp: Path) -> Path:
    return (tmp / "out" / "latest").resolve()


def test_job_succeeds_and_writes_the_interface_files(graph_run):
    tmp, code = graph_run
    assert code == 0
    folder = latest(tmp)
    assert {p.name for p in folder.iterdir()} >= {"kept_ids.csv", "ledger.csv", "summary.json"}
    ledger = pd.read_csv(folder / "ledger.csv")
    assert list(ledger.columns) == ["id", "step", "reason", "score", "kind"]


def test_kept_plus_removed_is_the_train_split_and_the_test_set_is_untouched(graph_run):
    tmp, _ = graph_run
    folder = latest(tmp)
    kept = set(pd.read_csv(folder / "kept_ids.csv")["id"])
    ledger = pd.read_csv(folder / "ledger.csv")
    removed = set(ledger["id"])
    train = set(load_digits().with_split(0.2, 0).ids_in("train"))
    test = set(load_digits().with_split(0.2, 0).ids_in("test"))
    assert not kept & removed
    assert kept | removed == train
    assert len(ledger) == len(removed)  # one row per removed sample
    assert not (kept | removed) & test
    assert set(ledger["step"]) <= set(PRUNE_GRAPH)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["n_kept"] == len(kept) and summary["n_train_split"] == len(train)
    assert [s["step"] for s in summary["steps"]] == list(pipeline.names())
    assert all(s["score_meaning"] == pipeline.step(s["step"]).score_meaning for s in summary["steps"])
    assert summary["n_test"] == len(test)
    # undo: taking a step's rows back restores exactly what it removed
    step = ledger["step"].iloc[0]
    back, rest = undo(pd.read_csv(folder / "kept_ids.csv")["id"].to_numpy(), ledger, step)
    assert set(back) == kept | set(ledger.loc[ledger["step"] == step, "id"]) and step not in set(rest["step"])


def test_accuracy_and_mlflow_run(graph_run):
    tmp, _ = graph_run
    summary = json.loads((latest(tmp) / "summary.json").read_text())
    assert summary["test_accuracy"] >= 0.95
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    run = mlflow.get_run(summary["mlflow_run_id"])
    for m in ("test_accuracy", "retained_fraction", "n_train", "train_seconds"):
        assert m in run.data.metrics, m
    assert run.data.metrics["test_accuracy"] == pytest.approx(summary["test_accuracy"])
    assert run.data.tags["dagster_run_id"] == summary["dagster_run_id"]
    assert run.data.tags["dataset_digest"] == summary["dataset_digest"]
    # the defaults (issue 22): the score step keeps everything, the final CNN prunes dynamically (InfoBatch)
    assert run.data.params["strategy"] == "infobatch" and run.data.params["dynamic"] == "infobatch"
    assert summary["kept_fraction_of_cleaned"] == 1.0 and run.data.metrics["sample_pass_fraction"] < 0.75
    assert "near_deduplicated.threshold" in run.data.params
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "pruning")}
    assert {"pruning/kept_ids.csv", "pruning/ledger.csv", "pruning/summary.json"} <= artifacts
    found = mlflow.search_runs(search_all_experiments=True, filter_string="metrics.retained_fraction <= 1.0")
    assert summary["mlflow_run_id"] in set(found["run_id"])


def test_dagster_instance_records_every_asset_and_check(graph_run):
    tmp, _ = graph_run
    with dg.DagsterInstance.from_config(str(tmp / "dagster_home")) as instance:
        for name in PRUNE_GRAPH:
            event = instance.get_latest_materialization_event(dg.AssetKey(name))
            assert event is not None, name
            meta = event.asset_materialization.metadata
            if name in pipeline.names():  # the pruning steps (not the source, representation or training)
                assert {"n_in", "n_out", "removed_by_reason", "seconds"} <= set(meta), name
                assert meta["score_meaning"].value == pipeline.step(name).score_meaning, name
        summary = json.loads((latest(tmp) / "summary.json").read_text())
        removing = [s["step"] for s in summary["steps"] if s["n_out"] < s["n_in"]]
        assert removing  # label issues, on digits
        gallery = instance.get_latest_materialization_event(dg.AssetKey(removing[0]))
        text = gallery.asset_materialization.metadata["removed_samples"].value
        assert text.startswith("![removed samples](data:image/png;base64,")  # the removed-sample grid
        records = instance.get_run_records()
        assert records and records[0].dagster_run.status == dg.DagsterRunStatus.SUCCESS


def test_notebook_reads_the_runs_and_plots(graph_run):
    tmp, _ = graph_run
    nb = nbformat.read(ROOT / "notebooks" / "accuracy_vs_retained_fraction.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp)}}).execute()
    assert (tmp / "out" / "accuracy_vs_retained_fraction.png").stat().st_size > 1000
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "1 evaluated runs" in outputs


def test_the_shared_representation_feeds_label_noise_and_the_score_step(graph_run):
    """Default graph on clean digits: the learned representation is accurate, label noise decides from
    it and removes next to nothing (no harm on clean data), and the score step reuses its EL2N."""
    tmp, _ = graph_run
    with temp_env({"DAGSTER_HOME": str(tmp / "dagster_home")}), dg.DagsterInstance.get() as instance:
        def meta(asset: str) -> dict:
            event = instance.get_latest_materialization_event(dg.AssetKey(asset))
            return {k: v.value for k, v in event.asset_materialization.metadata.items()}

        rep, noise, pruned = meta("representation"), meta("label_noise_removed"), meta("pruned_dataset")
    assert rep["features"] == "learned" and rep["oof_accuracy"] >= 0.95 and rep["embedding_dim"] == 128
    assert noise["probabilities"] == "representation"
    assert noise["n_removed"] <= 0.01 * noise["n_in"], noise["removed_by_reason"]
    assert pruned["scores_from"] == "representation"
