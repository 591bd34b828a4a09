"""trained_model options: the no-pruning baseline and dynamic pruning with feedback removal."""

import json

import dagster as dg
import mlflow
import numpy as np
import pandas as pd

from prune_dagster.definitions import defs
from prune_dagster.fixtures.defects import dirty_digits_truth

SPEC = "dirty-digits?label_noise_rate=0.2&exact_duplicate_rate=0&near_duplicate_rate=0&outlier_rate=0"
OFF = {"config": {"enabled": False}}


def test_no_pruning_baseline_with_dynamic_feedback_removal(prune_env):
    ops = {
        "raw_dataset": {"config": {"source": SPEC}},
        **{step: OFF for step in ("exact_deduplicated", "near_deduplicated", "outliers_removed",
                                  "label_noise_removed", "class_balanced", "features_selected", "pruned_dataset")},
        "trained_model": {"config": {"epochs": 10, "log_model": False, "dynamic": "infobatch", "feedback": True}},
    }
    with dg.DagsterInstance.get() as instance:
        result = defs.resolve_job_def("prune_job").execute_in_process(instance=instance, run_config={"ops": ops})
    assert result.success
    out = prune_env / "out" / "runs" / result.run_id
    ledger = pd.read_csv(out / "ledger.csv")
    kept = set(pd.read_csv(out / "kept_ids.csv")["id"])
    assert set(ledger["step"]) == {"dynamic_feedback"}  # every static step was off
    train = set(result.output_for_node("raw_dataset").ids_in("train"))
    assert kept | set(ledger["id"]) == train and not kept & set(ledger["id"])
    truth = dirty_digits_truth(SPEC)
    flipped = set(truth.loc[truth.defect == "label_flip", "id"])
    removed = set(ledger["id"])
    assert len(removed) >= 0.3 * len(flipped)
    assert len(removed & flipped) / len(removed) >= 0.8  # what it drops are mostly wrong labels
    summary = json.loads((out / "summary.json").read_text())
    run = mlflow.get_run(summary["mlflow_run_id"])
    assert run.data.params["strategy"] == "infobatch+feedback"
    m = run.data.metrics
    assert m["sample_passes"] < 10 * m["n_train"]  # infobatch skipped work
    assert np.isclose(m["sample_pass_fraction"], m["sample_passes"] / (10 * m["n_train"]))
    # one name, one meaning, the same in MLflow and summary.json (see core/selection/fractions.py)
    assert m["retained_fraction"] == m["kept_fraction_of_train"]
    assert np.isclose(m["kept_fraction_of_train"], len(kept) / len(train), atol=1e-6)  # after feedback removal
    assert m["kept_fraction_of_cleaned"] == 1.0 and m["target_fraction"] == 1.0  # the score step was off
    for name in ("retained_fraction", "kept_fraction_of_train", "kept_fraction_of_cleaned", "sample_pass_fraction",
                 "target_fraction"):
        assert np.isclose(summary[name], m[name], atol=1e-6), name
    assert summary["sample_pass_fraction"] < 1.0
