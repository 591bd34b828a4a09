"""Issues 7 and 12: bad settings are refused before a run starts (or stop it before training), with an
error that names the setting."""

import re
from pathlib import Path

import dagster as dg
import pytest
from conftest import FAST_CONFIG

from prune_dagster import settings
from prune_dagster.core.errors import ConfigError
from prune_dagster.definitions import defs
from prune_dagster.defs.resources import OutputStore


def run(ops: dict) -> dg.ExecuteInProcessResult:
    with dg.DagsterInstance.get() as instance:
        return defs.resolve_job_def("prune_job").execute_in_process(
            instance=instance, run_config={"ops": {**FAST_CONFIG, **ops}}, raise_on_error=False)


def failure(result: dg.ExecuteInProcessResult) -> tuple[str, str]:
    event = next(e for e in result.all_events if e.is_step_failure)
    err = event.step_failure_data.error
    return event.step_key, (err.cause.message if err.cause else err.message)


@pytest.mark.parametrize(("setting", "value", "expected"), [
    ("strategy", "magic", "not in enum type"),
    ("target_fraction", 0.0, "accepts a number > 0 and <= 1"),
    ("target_fraction", 1.5, "accepts a number > 0 and <= 1"),
])
def test_bad_pruning_setting_is_refused_before_the_run(prune_env, setting, value, expected):
    ops = {"pruned_dataset": {"config": {**FAST_CONFIG["pruned_dataset"]["config"], setting: value}}}
    with pytest.raises(dg.DagsterInvalidConfigError) as err:
        run(ops)
    message = " ".join(e.message for e in err.value.errors)
    assert f"root:ops:pruned_dataset:config:{setting}" in message and expected in message and str(value) in message
    with dg.DagsterInstance.get() as instance:
        assert instance.get_run_records() == []  # no run was created, so no step started
    with pytest.raises(dg.DagsterInvalidConfigError):  # what the Launchpad's launch and the CLI call
        dg.validate_run_config(defs.resolve_job_def("prune_job"), {"ops": ops})


def test_cross_field_rules_of_core_params_are_refused_before_the_run():
    """Every op with a Config made from core Params is checked by those Params when the run config is
    resolved; a valid config passes unchanged."""
    job = defs.resolve_job_def("prune_job")
    dg.validate_run_config(job, {"ops": FAST_CONFIG})
    with pytest.raises(dg.DagsterInvalidConfigError, match="outliers_removed:config:contamination"):
        dg.validate_run_config(job, {"ops": {"outliers_removed": {"config": {"contamination": 0.7}}}})


def test_checked_ops_keep_the_launchpad_schema():
    """The bounds check wraps each op's config without changing what the Launchpad shows: the same
    fields, defaults and descriptions as the Config class."""
    from prune_dagster.core import pipeline
    from prune_dagster.defs.assets.steps import step_config

    PruneConfig = step_config(pipeline.step("pruned_dataset"))  # noqa: N806 (a class)

    job = defs.resolve_job_def("prune_job")
    shape = job.graph.node_named("pruned_dataset").definition.config_schema.as_field().config_type
    assert set(shape.fields) == set(PruneConfig.model_fields)
    for name, field in PruneConfig.model_fields.items():
        assert shape.fields[name].description == field.description
        assert shape.fields[name].default_value == field.default
    schema = job.run_config_schema.config_type.fields["ops"].config_type.fields["pruned_dataset"]
    assert "target_fraction" in schema.config_type.fields["config"].config_type.fields


def test_step_removing_more_than_its_floor_blocks_the_run(prune_env):
    result = run({"outliers_removed": {"config": {"contamination": 0.3}}})  # floor is 20%
    assert not result.success
    checks = {(e.asset_key.path[0], e.check_name): e for e in result.get_asset_check_evaluations()}
    failed = checks[("outliers_removed", "removal_within_floor")]
    assert not failed.passed and "floor" in failed.description
    # every check names the dataset it ran on (issue 14): the same digest as the raw_dataset materialization
    with dg.DagsterInstance.get() as instance:
        raw = instance.get_latest_materialization_event(dg.AssetKey("raw_dataset")).asset_materialization.metadata
    assert raw["dataset"].value == "digits" and raw["job_name"].value == "prune_job"
    assert all(e.metadata["dataset_digest"].value == raw["dataset_digest"].value for e in checks.values())
    with dg.DagsterInstance.get() as instance:
        assert instance.get_latest_materialization_event(dg.AssetKey("label_noise_removed")) is None


def test_unknown_source_names_the_setting(prune_env):
    result = run({"raw_dataset": {"config": {"source": "/no/such/dataset.npz"}}})
    step, message = failure(result)
    assert step == "raw_dataset" and "/no/such/dataset.npz" in message


def test_every_environment_variable_is_documented_in_the_settings_table():
    source = Path(settings.__file__).read_text()
    read = set(re.findall(r'_(?:get|int|list)\("([A-Z_]+)"', source))
    table = set(re.findall(r"^\| `([A-Z_]+)`", settings.__doc__, flags=re.M))
    assert read and read <= table, f"read but not documented: {sorted(read - table)}"
    assert {"PRUNE_DATASET", "PRUNE_OUTPUT_DIR", "PRUNE_ENGINE_ADDRESS", "PRUNE_SWEEP_FRACTIONS"} <= read


def test_environment_fills_empty_settings_only(prune_env, monkeypatch):
    monkeypatch.setenv("PRUNE_DATASET", "dirty-digits")
    assert settings.dataset() == "dirty-digits"
    assert OutputStore().path() == (prune_env / "out").resolve()  # empty root: $PRUNE_OUTPUT_DIR
    assert OutputStore(root=str(prune_env / "elsewhere")).path() == (prune_env / "elsewhere").resolve()
    monkeypatch.setenv("PRUNE_SENSOR_INTERVAL", "0")
    with pytest.raises(ConfigError, match="PRUNE_SENSOR_INTERVAL='0': expected a whole number >= 1"):
        settings.sensor_interval_s()
