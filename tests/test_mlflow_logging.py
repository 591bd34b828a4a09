"""The one MLflow logging path of trained_model and the sweep: params, metrics, losses and a named model
whose requirements are pinned rather than inferred."""

from __future__ import annotations

import logging

import mlflow
import numpy as np

from prune_dagster.core.training.model import PruneCNN
from prune_dagster.defs.resources import MlflowResource, model_name, model_requirements


def test_model_name_is_valid_for_mlflow_and_says_strategy_and_fraction():
    assert model_name("el2n", 0.8) == "cnn-el2n-fraction-0_80"
    assert model_name("el2n+infobatch", 1.0) == "cnn-el2n+infobatch-fraction-1_00"


def test_log_training_run_names_the_model_and_pins_requirements(tmp_path, caplog):
    resource = MlflowResource(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment_name="logging-test")
    with caplog.at_level(logging.WARNING):
        run_id = resource.log_training_run(
            "el2n-0.80", {"dagster_asset": "trained_model"}, {"strategy": "el2n"},
            {"retained_fraction": 0.5, "kept_fraction_of_train": 0.5}, losses=[1.0, 0.5],
            model=PruneCNN(1, 8, 8, 3).eval(), model_name=model_name("el2n", 0.8),
            input_example=np.zeros((1, 1, 8, 8), dtype=np.float32))
    run = mlflow.get_run(run_id)
    assert run.data.params == {"strategy": "el2n"} and run.data.metrics["retained_fraction"] == 0.5
    assert [m.value for m in mlflow.MlflowClient().get_metric_history(run_id, "train_loss")] == [1.0, 0.5]
    (logged,) = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
    assert logged.name == "cnn-el2n-fraction-0_80" and logged.source_run_id == run_id
    path = mlflow.artifacts.download_artifacts(artifact_uri=f"{logged.artifact_location}/requirements.txt",
                                               dst_path=str(tmp_path))
    assert open(path).read().split() == model_requirements()
    # explicit requirements: MLflow does not try (and warn about failing) to infer them
    assert not [r for r in caplog.records if "requirements" in r.getMessage().lower()]
