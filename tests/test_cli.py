"""Issue 12: the command line refuses a wrong setting in one line, before anything runs, and Dagster's
own `dagster job execute -c` refuses a value out of bounds before any step starts."""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from prune_dagster.cli import UsageError, job_run_config
from prune_dagster.definitions import defs

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]


def isolated_env(tmp: Path) -> dict[str, str]:
    """Everything a run could write goes under `tmp` (if a check failed to refuse, nothing leaks)."""
    (tmp / "home").mkdir(exist_ok=True)
    return {**os.environ, "DAGSTER_HOME": str(tmp / "home"), "PRUNE_OUTPUT_DIR": str(tmp / "out"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}", "PRUNE_DATASET": "digits",
            "PYTHONWARNINGS": "ignore"}


@pytest.mark.parametrize(("setting", "expected"), [
    ("validated.enabled=maybe", "validated.enabled accepts true or false"),
    ("validated.nosuch=false", "validated has no setting 'nosuch'; its settings: enabled"),
    ("pruned_dataset.strategy=el2m", "pruned_dataset.strategy accepts one of 'random', 'el2n'"),
    ("pruned_dataset.target_fraction=1.5", "pruned_dataset.target_fraction accepts a number > 0 and <= 1"),
    ("pruned_dataset.retained_fraction=0.5", "retained_fraction was renamed target_fraction"),
    ("nosuch.x=1", "'nosuch' is not a step of prune_job with settings; steps with settings: class_balanced"),
    ("trained_model.epochs=-3", "trained_model.epochs accepts a whole number >= 0"),
])
def test_bad_set_is_one_line_exit_2_and_nothing_runs(tmp_path, setting, expected):
    proc = subprocess.run([str(BIN / "prune-dagster"), "run", "--set", setting], cwd=ROOT, env=isolated_env(tmp_path),
                          capture_output=True, text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith(f"prune-dagster: --set {setting}:"), proc.stderr
    assert expected in lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not (tmp_path / "out").exists() and not (tmp_path / "mlflow.db").exists()


def args(*argv: str, dataset: str | None = None, job: str = "prune_job") -> argparse.Namespace:
    return argparse.Namespace(set=list(argv), dataset=dataset, job=job, verbose=False)


def test_dataset_is_run_config_not_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("PRUNE_DATASET", raising=False)
    job = defs.resolve_job_def("prune_job")
    config = job_run_config(job, args("pruned_dataset.target_fraction=0.5", dataset="dirty-digits"))
    assert config["ops"]["raw_dataset"]["config"] == {"source": "dirty-digits"}
    assert config["ops"]["pruned_dataset"]["config"] == {"target_fraction": 0.5}
    assert "PRUNE_DATASET" not in os.environ
    (tmp_path / "images").mkdir()
    monkeypatch.chdir(tmp_path)  # a relative folder is recorded absolute: the sensor re-reads it from elsewhere
    config = job_run_config(job, args(dataset="images"))
    assert config["ops"]["raw_dataset"]["config"]["source"] == str(tmp_path.resolve() / "images")
    with pytest.raises(UsageError, match="--dataset nowhere.npz: no such file or folder; expected digits, dirty"):
        job_run_config(job, args(dataset="nowhere.npz"))
    with pytest.raises(UsageError, match="train_job does not load a source"):
        job_run_config(defs.resolve_job_def("train_job"), args(dataset="digits", job="train_job"))


def test_good_settings_pass_dagster_validation():
    job = defs.resolve_job_def("prune_job")
    config = job_run_config(job, args("validated.enabled=false", "pruned_dataset.strategy=random",
                                      "trained_model.log_model=false"))
    assert config["ops"] == {"validated": {"config": {"enabled": False}},  # every --set arrives, typed
                             "pruned_dataset": {"config": {"strategy": "random"}},
                             "trained_model": {"config": {"log_model": False}}}
    resolved = dg.validate_run_config(job, config)["ops"]
    assert resolved["validated"]["config"]["enabled"] is False
    assert resolved["pruned_dataset"]["config"]["strategy"] == "random"
    assert resolved["pruned_dataset"]["config"]["target_fraction"] == 1.0  # the rest keeps its defaults


@pytest.mark.parametrize("config", ["strategy: el2m", "target_fraction: 1.5"])
def test_dagster_job_execute_refuses_bad_config_before_any_step(tmp_path, config):
    (tmp_path / "bad.yaml").write_text(f"ops:\n  pruned_dataset:\n    config:\n      {config}\n")
    proc = subprocess.run([str(BIN / "dagster"), "job", "execute", "-m", "prune_dagster.definitions",
                           "-j", "prune_job", "-c", str(tmp_path / "bad.yaml")], cwd=ROOT,
                          env=isolated_env(tmp_path), capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "DagsterInvalidConfigError" in out and "root:ops:pruned_dataset:config:" in out
    assert config.split(":")[1].strip() in out
    assert "STEP_START" not in out and "RUN_START" not in out
    with dg.DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        assert instance.get_run_records() == []


LAUNCH = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
    __typename ... on PythonError { message } ... on RunConfigValidationInvalid { errors { message } } } }"""
VALID = """query($selector: PipelineSelector!, $config: RunConfigData) {
    isPipelineConfigValid(pipeline: $selector, runConfigData: $config, mode: "default") {
    __typename ... on RunConfigValidationInvalid { errors { message } } } }"""


def test_launchpad_refuses_bad_values_and_launches_nothing(tmp_path, monkeypatch):
    """What the Launchpad sends: its as-you-type check refuses a wrong choice; a launch with a value out
    of bounds is refused with the setting's path (the code server resolves the config), and no run exists."""
    from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql, infer_job_selector

    for key, value in isolated_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    definitions = str(ROOT / "prune_dagster" / "definitions.py")
    with dg.instance_for_test() as instance, define_out_of_process_context(definitions, "defs", instance) as ctx:
        selector = infer_job_selector(ctx, "prune_job")
        choice = {"ops": {"pruned_dataset": {"config": {"strategy": "el2m"}}}}
        checked = execute_dagster_graphql(ctx, VALID, {"selector": selector, "config": choice}).data
        assert "el2m" in checked["isPipelineConfigValid"]["errors"][0]["message"]
        bound = {"ops": {"pruned_dataset": {"config": {"target_fraction": 1.5}}}}
        launched = execute_dagster_graphql(ctx, LAUNCH, {"params": {"selector": selector, "runConfigData": bound,
                                                                    "mode": "default"}}).data["launchRun"]
        assert launched["__typename"] != "LaunchRunSuccess"
        assert "root:ops:pruned_dataset:config:target_fraction is 1.5" in json.dumps(launched)
        assert instance.get_run_records() == []
