"""Issue 7 faults: a run killed mid-step, MLflow unreachable, two runs at once on one home and store."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import mlflow
import pandas as pd
from conftest import FAST_CONFIG
from test_ui import free_port, stop, wait_for

from prune_dagster.definitions import defs

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
FAST_SET = ["--set", "pruned_dataset.score_epochs=2", "--set", "pruned_dataset.score_seeds=1",
            "--set", "trained_model.log_model=false"]


def cli(env: dict, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "prune-dagster"), "run", *FAST_SET, *extra], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def home_env(root: Path) -> dict:
    (root / "dagster_home").mkdir(parents=True, exist_ok=True)
    return {**os.environ, "DAGSTER_HOME": str(root / "dagster_home"), "PRUNE_OUTPUT_DIR": str(root / "out"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}", "PRUNE_DATASET": "digits"}


def outputs(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    return (pd.read_csv(folder / "kept_ids.csv"), pd.read_csv(folder / "ledger.csv"),
            json.loads((folder / "summary.json").read_text()))


def test_killed_mid_step_then_rerun_matches_a_clean_run(tmp_path):
    env = home_env(tmp_path / "a")
    proc = cli(env, "--set", "trained_model.epochs=60")
    deadline = time.time() + 300
    # ledger.csv is the score step's last file (after kept_ids.csv and the pruned dataset); summary.json is
    # written by model_evaluation alone, after training.
    while time.time() < deadline and not list((tmp_path / "a" / "out").glob("runs/*/ledger.csv")):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # pruned_dataset just finished: trained_model is training
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    killed = next((tmp_path / "a" / "out").glob("runs/*"))
    # The prune outputs of the killed run are complete (each file atomic); no trained result is claimed.
    kept, ledger = pd.read_csv(killed / "kept_ids.csv"), pd.read_csv(killed / "ledger.csv")
    assert len(kept) and not set(kept["id"]) & set(ledger["id"])
    assert not (killed / "summary.json").exists()
    assert not (tmp_path / "a" / "out" / "latest").exists()

    again = cli(env, "--set", "trained_model.epochs=60")
    assert again.wait(timeout=600) == 0, again.communicate()
    clean = cli(home_env(tmp_path / "b"), "--set", "trained_model.epochs=60")
    assert clean.wait(timeout=600) == 0, clean.communicate()
    k1, l1, s1 = outputs((tmp_path / "a" / "out" / "latest").resolve())
    k2, l2, s2 = outputs((tmp_path / "b" / "out" / "latest").resolve())
    pd.testing.assert_frame_equal(k1, k2)
    pd.testing.assert_frame_equal(l1, l2)
    assert s1["test_accuracy"] == s2["test_accuracy"]


def test_mlflow_unreachable_prunes_then_train_job_alone_succeeds(prune_env):
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    os.environ["MLFLOW_TRACKING_URI"] = uri  # prune_env's monkeypatch restores it afterwards
    job = defs.resolve_job_def("prune_job")
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(instance=instance, run_config={"ops": FAST_CONFIG}, raise_on_error=False)
    assert not result.success
    failures = [e for e in result.all_events if e.is_step_failure]
    assert [e.step_key for e in failures] == ["trained_model"]
    assert "is unreachable" in failures[0].step_failure_data.error.cause.message
    run_folder = prune_env / "out" / "runs" / result.run_id
    assert (run_folder / "kept_ids.csv").exists() and (run_folder / "dataset" / "pruned.npz").exists()

    log = prune_env / "mlflow_server.log"
    with open(log, "w") as fh:
        server = subprocess.Popen([str(BIN / "mlflow"), "server", "--backend-store-uri",
                                   f"sqlite:///{prune_env / 'server.db'}", "--host", "127.0.0.1", "--port", str(port),
                                   "--workers", "1"], cwd=prune_env, stdout=fh, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        wait_for(f"{uri}/health", server, log)
        with dg.DagsterInstance.get() as instance:
            retrain = defs.resolve_job_def("train_job").execute_in_process(
                instance=instance, run_config={"ops": {"trained_model": FAST_CONFIG["trained_model"]}})
        assert retrain.success
        summary = json.loads((prune_env / "out" / "runs" / retrain.run_id / "summary.json").read_text())
        mlflow.set_tracking_uri(uri)
        acc = mlflow.get_run(summary["mlflow_run_id"]).data.metrics["test_accuracy"]
        assert abs(acc - summary["test_accuracy"]) < 1e-6
    finally:
        stop(server)


def test_two_runs_at_once_on_one_home_and_store(tmp_path):
    env = home_env(tmp_path)
    procs = [cli(env), cli(env)]
    results = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err[-3000:]
        assert "database is locked" not in err
    folders = sorted((tmp_path / "out" / "runs").iterdir())
    assert len(folders) == 2
    (k1, l1, s1), (k2, l2, s2) = outputs(folders[0]), outputs(folders[1])
    pd.testing.assert_frame_equal(k1, k2)
    pd.testing.assert_frame_equal(l1, l2)  # same settings, same answer: nothing mixed between runs
    assert s1["dagster_run_id"] != s2["dagster_run_id"] and s1["mlflow_run_id"] != s2["mlflow_run_id"]
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(search_all_experiments=True)
    compare = runs["tags.kind"] == "dataset_comparison"  # one per dataset, both runs updated it under the lock
    assert compare.sum() == 1 and runs.loc[compare, "metrics.n_runs"].item() == 2
    runs = runs[~compare]
    assert set(runs["run_id"]) == {s1["mlflow_run_id"], s2["mlflow_run_id"]}
    assert runs["metrics.test_accuracy"].notna().all()
