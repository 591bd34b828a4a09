"""Issue 22, nothing computed twice: `prune-dagster run` again with only a training setting changed reuses
every asset before `trained_model` (summary, command line and Dagster data versions say so); a changed
step setting recomputes that step and those after it, never those before; `--fresh` recomputes all."""

import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from test_cli import isolated_env

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
FAST = ["representation.epochs=2", "representation.min_steps=30", "trained_model.epochs=2",
        "trained_model.log_model=false"]
BEFORE_TRAINING = ["raw_dataset", "validated", "exact_deduplicated", "representation", "near_deduplicated",
                   "outliers_removed", "label_noise_removed", "class_balanced", "features_selected", "pruned_dataset"]


def run(tmp: Path, *sets: str, fresh: bool = False) -> tuple[dict, str]:
    cmd = [str(BIN / "prune-dagster"), "run", "--dataset", "digits", *(["--fresh"] if fresh else [])]
    for s in [*FAST, *sets]:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, cwd=ROOT, env=isolated_env(tmp), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((tmp / "out" / "latest" / "summary.json").read_text()), proc.stdout


def reused(summary: dict) -> set[str]:
    return {name for name, v in summary["compute"]["assets"].items() if "reused_from_run" in v}


def data_versions(tmp: Path) -> dict[str, str]:
    with dg.DagsterInstance.from_config(str(tmp / "home")) as instance:
        out = {}
        for name in BEFORE_TRAINING:
            event = instance.get_latest_materialization_event(dg.AssetKey(name))
            out[name] = event.asset_materialization.tags.get("dagster/data_version")
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reuse")
    first, _ = run(tmp)
    versions = data_versions(tmp)
    second, printed = run(tmp, "trained_model.batch_size=32")
    return tmp, first, versions, second, printed


def test_a_changed_training_setting_trains_again_and_reuses_everything_before(runs):
    tmp, first, versions, second, printed = runs
    assert not reused(first)
    assert reused(second) >= set(BEFORE_TRAINING) and "trained_model" not in reused(second)
    assert second["compute"]["run_seconds"] < second["compute"]["compute_seconds"]  # the reused part is not paid
    assert second["n_kept"] == first["n_kept"]
    assert "reused (settings and inputs unchanged" in printed and "representation" in printed
    assert data_versions(tmp) == versions and all(versions.values())  # same keys: the UI shows nothing stale


def test_a_changed_step_setting_recomputes_that_step_and_after_and_fresh_recomputes_all(runs):
    tmp = runs[0]
    changed, _ = run(tmp, "trained_model.batch_size=32", "label_noise_removed.max_flag_factor=0.5")
    step = BEFORE_TRAINING.index("label_noise_removed")
    assert reused(changed) >= set(BEFORE_TRAINING[:step])
    assert not reused(changed) & {*BEFORE_TRAINING[step:], "trained_model"}
    fresh, printed = run(tmp, "trained_model.batch_size=32", fresh=True)
    assert not reused(fresh) and "reused" not in printed
