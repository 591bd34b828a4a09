"""The project's one use of Dagster internals (prune_dagster/defs/dagster_internals.py): a bound refused
by the config mapping reaches Dagster's config error at the setting's path. If a Dagster upgrade moves
the internal classes, this test fails and names the module to mend."""

import dagster as dg
import pytest


def test_the_internal_config_error_still_has_dagster_s_shape():
    try:
        from prune_dagster.defs.dagster_internals import invalid_config
    except ImportError as exc:  # pragma: no cover - the message is the point on a Dagster upgrade
        pytest.fail(f"prune_dagster/defs/dagster_internals.py no longer imports on dagster {dg.__version__}: {exc}")

    class Toy(dg.Config):
        fraction: float = 0.5

    @dg.op
    def toy(config: Toy) -> None:
        return None

    error = invalid_config(toy, [("fraction", 1.5, "must be <= 1")], {"fraction": 1.5})
    assert isinstance(error, dg.DagsterInvalidConfigError)
    (entry,) = error.errors
    assert entry.message == "Value at path root:ops:toy:config:fraction is 1.5: must be <= 1"
    assert [getattr(e, "field_name", None) for e in entry.stack.entries] == ["ops", "toy", "config", "fraction"]


def test_a_bound_is_refused_before_the_run_at_its_path():
    from prune_dagster.definitions import defs

    job = defs.resolve_job_def("prune_job")
    with pytest.raises(dg.DagsterInvalidConfigError) as caught:
        dg.validate_run_config(job, {"ops": {"pruned_dataset": {"config": {"target_fraction": 1.5}}}})
    assert "root:ops:pruned_dataset:config:target_fraction is 1.5" in caught.value.errors[0].message
