"""A user's mistake on the command line reads as its cause, in at most 4 lines, with no traceback:
the stack traces stay in the Dagster UI and behind --verbose. The output folder is checked before
anything runs, by the CLI and by the run itself (the UI's launches)."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]


def cli(tmp: Path, *argv: str, **env: str) -> subprocess.CompletedProcess:
    (tmp / "home").mkdir(exist_ok=True)
    full = {**os.environ, "DAGSTER_HOME": str(tmp / "home"), "PRUNE_OUTPUT_DIR": str(tmp / "out"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}", "PYTHONWARNINGS": "ignore", **env}
    return subprocess.run([str(BIN / "prune-dagster"), "run", *argv], cwd=ROOT, env=full, capture_output=True,
                          text=True, timeout=300)


def test_a_bad_dataset_prints_its_cause_in_a_few_lines(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "bad.npz", images=rng.random((50, 8, 8)).astype(np.float32),
             labels=rng.integers(0, 2, 40))
    proc = cli(tmp_path, "--dataset", str(tmp_path / "bad.npz"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1
    assert 1 <= len(lines) <= 4, proc.stderr
    assert lines[0].startswith("prune-dagster: ") and "50 images but 40 labels" in lines[0], proc.stderr
    assert str(tmp_path / "bad.npz") in lines[0]  # the file at fault is named
    for noise in ("Traceback", "DagsterExecutionStepExecutionError", "STEP_FAILURE", "ERROR"):
        assert noise not in proc.stderr, proc.stderr
    verbose = cli(tmp_path, "--dataset", str(tmp_path / "bad.npz"), "--verbose")  # the full log, on request
    assert verbose.returncode == 1 and "STEP_FAILURE" in verbose.stdout + verbose.stderr


def test_an_output_folder_that_is_a_file_is_refused_before_anything_runs(tmp_path):
    (tmp_path / "taken").write_text("not a folder")
    proc = cli(tmp_path, PRUNE_OUTPUT_DIR=str(tmp_path / "taken"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0] == (f"prune-dagster: output folder {tmp_path / 'taken'} (PRUNE_OUTPUT_DIR or resource "
                        "output_store.root) is a file; expected a folder the runs can write to")
    with dg.DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        assert instance.get_run_records() == []  # nothing ran
    assert (tmp_path / "taken").read_text() == "not a folder"


def test_a_run_checks_its_output_folder_before_the_first_step(prune_env, tmp_path):
    from prune_dagster.defs.assets.ingest import raw_dataset
    from prune_dagster.defs.assets.representation import representation_asset
    from prune_dagster.defs.assets.steps import pipeline_assets
    from prune_dagster.defs.engine import ComputeEngine
    from prune_dagster.defs.io import RunScopedIOManager
    from prune_dagster.defs.resources import OutputStore

    (tmp_path / "taken").write_text("x")
    job = dg.define_asset_job("prune_job", executor_def=dg.in_process_executor)
    resources = {"output_store": OutputStore(root=str(tmp_path / "taken")), "engine": ComputeEngine(address=""),
                 "io_manager": RunScopedIOManager()}
    with dg.DagsterInstance.get() as instance:
        defs = dg.Definitions(assets=[raw_dataset, *pipeline_assets(), representation_asset()], jobs=[job],
                              resources=resources)
        result = defs.resolve_job_def("prune_job").execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    assert not [e for e in result.all_events if e.event_type_value == "STEP_START"]  # no step began
    failure = next(e for e in result.all_events if e.event_type_value in ("RUN_FAILURE", "PIPELINE_FAILURE"))
    assert "is a file; expected a folder" in str(failure.event_specific_data.error)


@pytest.mark.parametrize("chain, expected", [
    ([("DagsterExecutionStepExecutionError", "Error occurred while executing op"),
      ("DatasetError", "x.npz: 50 images but 40 labels")], "x.npz: 50 images but 40 labels"),
    ([("RuntimeError", "boom\nsecond line")], "step s failed: boom second line"),
])
def test_the_cause_is_the_deepest_project_error(chain, expected):
    from types import SimpleNamespace

    from prune_dagster.cli import failure_cause

    error = None  # the shape of Dagster's serialised error: message, cls_name, cause
    for cls, message in reversed(chain):
        error = SimpleNamespace(message=message, cls_name=cls, cause=error)

    class Event:
        is_step_failure = True
        step_key = "s"
        step_failure_data = type("D", (), {"error": error})

    class Result:
        all_events = [Event()]

    assert failure_cause(Result()) == expected
