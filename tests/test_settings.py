"""Issue 7: bad settings stop the run before training, with an error that names the setting."""

import dagster as dg
import pytest
from conftest import FAST_CONFIG

from prune_dagster.definitions import defs


def run(ops: dict) -> dg.ExecuteInProcessResult:
    with dg.DagsterInstance.get() as instance:
        return defs.resolve_job_def("prune_job").execute_in_process(
            instance=instance, run_config={"ops": {**FAST_CONFIG, **ops}}, raise_on_error=False)


def failure(result: dg.ExecuteInProcessResult) -> tuple[str, str]:
    event = next(e for e in result.all_events if e.is_step_failure)
    err = event.step_failure_data.error
    return event.step_key, (err.cause.message if err.cause else err.message)


@pytest.mark.parametrize(("setting", "value", "expected"), [
    ("strategy", "magic", "strategy"),
    ("retained_fraction", 0.0, "fraction"),
    ("retained_fraction", 1.5, "fraction"),
])
def test_bad_pruning_setting_stops_before_training(prune_env, setting, value, expected):
    ops = {"pruned_dataset": {"config": {**FAST_CONFIG["pruned_dataset"]["config"], setting: value}}}
    result = run(ops)
    assert not result.success
    step, message = failure(result)
    assert step == "pruned_dataset" and expected in message and str(value) in message
    with dg.DagsterInstance.get() as instance:
        assert instance.get_latest_materialization_event(dg.AssetKey("trained_model")) is None


def test_step_removing_more_than_its_floor_blocks_the_run(prune_env):
    result = run({"outliers_removed": {"config": {"contamination": 0.3}}})  # floor is 20%
    assert not result.success
    checks = {(e.asset_key.path[0], e.check_name): e for e in result.get_asset_check_evaluations()}
    failed = checks[("outliers_removed", "removal_within_floor")]
    assert not failed.passed and "floor" in failed.description
    with dg.DagsterInstance.get() as instance:
        assert instance.get_latest_materialization_event(dg.AssetKey("label_noise_removed")) is None


def test_unknown_source_names_the_setting(prune_env):
    result = run({"raw_dataset": {"config": {"source": "/no/such/dataset.npz"}}})
    step, message = failure(result)
    assert step == "raw_dataset" and "/no/such/dataset.npz" in message
