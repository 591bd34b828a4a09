"""The two UIs link to each other and every materialization names its dataset (issue 14)."""

import dagster as dg
import mlflow
import pandas as pd
from conftest import step_output_of
from test_gallery import fresh, small_dataset

from prune_dagster import settings
from prune_dagster.cli import format_summary, own_home_config, run_dataset
from prune_dagster.core.ledger import StepResult, removed_frame
from prune_dagster.defs.resources import DatasetInput, MlflowResource, dagster_run_url


def test_ui_addresses_default_and_come_from_the_environment(monkeypatch):
    monkeypatch.delenv("PRUNE_MLFLOW_UI", raising=False)
    monkeypatch.delenv("PRUNE_DAGSTER_UI", raising=False)
    assert settings.mlflow_ui() == "http://127.0.0.1:5000" and settings.dagster_ui() == "http://127.0.0.1:3000"
    monkeypatch.setenv("PRUNE_MLFLOW_UI", "https://mlflow.example/")
    monkeypatch.setenv("PRUNE_DAGSTER_UI", "https://dagster.example")
    assert MlflowResource().run_url("abc", "7") == "https://mlflow.example/#/experiments/7/runs/abc"
    assert dagster_run_url("r1") == "https://dagster.example/runs/r1"


def test_mlflow_run_links_back_and_records_its_dataset(tmp_path, monkeypatch):
    monkeypatch.delenv("PRUNE_DAGSTER_UI", raising=False)
    store = MlflowResource(tracking_uri=f"sqlite:///{tmp_path / 'm.db'}", experiment_name="links")
    frame = pd.DataFrame({"class": ["a", "b"], "n_train": [3.0, 4.0]})
    run_id = store.log_training_run("el2n-0.80", {"dagster_run_id": "d-1"}, {"strategy": "el2n"}, {"acc": 0.9},
                                    dataset=DatasetInput("digits", "0123abcd" * 4, "digits", frame))
    run = mlflow.get_run(run_id)
    assert run.data.tags["dagster_run_url"] == "http://127.0.0.1:3000/runs/d-1"
    assert "http://127.0.0.1:3000/runs/d-1" in run.data.tags["mlflow.note.content"]  # the run's description
    (only,) = run.inputs.dataset_inputs
    assert (only.dataset.name, only.dataset.digest) == ("digits", "0123abcd" * 4)
    assert store.run_url(run_id).endswith(f"/#/experiments/{run.info.experiment_id}/runs/{run_id}")
    sweep_run = store.log_training_run("sweep", {"dataset": "dirty-digits", "dataset_digest": "ff" * 16}, {}, {})
    (only,) = mlflow.get_run(sweep_run).inputs.dataset_inputs  # from the tags alone (the sweep's runs)
    assert (only.dataset.name, only.dataset.digest) == ("dirty-digits", "ff" * 16)


def test_step_metadata_names_dataset_and_job(prune_env):
    ds = small_dataset()

    @dg.asset
    def step() -> dg.Output:
        return step_output_of("outliers_removed", ds, fresh(ds),
                        lambda ids, *_: StepResult(removed=removed_frame(ids[:2], "odd", 1.0)))

    job = dg.define_asset_job("sweep_job", selection=[step])
    # Definitions resolve inside this test's own instance: one another test left behind cannot leak in.
    with dg.DagsterInstance.get() as instance:
        defs = dg.Definitions(assets=[step], jobs=[job])
        result = defs.resolve_job_def("sweep_job").execute_in_process(instance=instance)
    (mat,) = result.asset_materializations_for_node("step")
    assert mat.metadata["job_name"].value == "sweep_job"
    assert mat.metadata["dataset"].value == "toy" and mat.metadata["dataset_digest"].value == ds.digest()


def test_cli_tags_dataset_prints_urls_and_turns_telemetry_off(tmp_path, monkeypatch):
    monkeypatch.delenv("PRUNE_DATASET", raising=False)
    assert run_dataset({}) == "digits"
    assert run_dataset({"ops": {"raw_dataset": {"config": {"source": "dirty-digits"}}}}) == "dirty-digits"
    home = tmp_path / "dagster.yaml"
    own_home_config(home)
    assert "enabled: false" in home.read_text()
    home.write_text("telemetry:\n  enabled: true\n")
    own_home_config(home)  # a user's own choice is kept
    assert "enabled: true" in home.read_text()
    summary = {"dataset": "digits", "n_samples": 10, "n_train_split": 8, "n_test": 2, "steps": [], "n_kept": 8,
               "kept_fraction_of_train": 1.0, "kept_fraction_of_cleaned": 1.0, "n_synthetic": 0,
               "test_accuracy": 0.5, "mlflow_run_id": "m1", "mlflow_tracking_uri": "sqlite:///x",
               "dagster_run_id": "d1"}
    text = format_summary(summary, "/home", "http://m/#/experiments/1/runs/m1", "http://d/runs/d1")
    assert "http://m/#/experiments/1/runs/m1" in text and "http://d/runs/d1" in text
