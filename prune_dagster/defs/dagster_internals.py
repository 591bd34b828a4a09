"""The one place the project touches Dagster internals (tests/test_code_shape.py allows no other).

Dagster's config types carry no numeric bounds, so a bound (`target_fraction <= 1`) is checked by a
config mapping (`OpDefinition.configured`, public). To be refused the way Dagster refuses a wrong
type (the Launchpad lists the error at the setting's path, `dagster job execute` prints
`DagsterInvalidConfigError` with `root:ops:<op>:config:<field>`), the mapping raises Dagster's own
`DagsterInvalidConfigError` (public) carrying `EvaluationError` records, whose classes are internal.
If a Dagster upgrade moves them, `tests/test_dagster_internals.py` fails naming this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster._config.errors import DagsterEvaluationErrorReason, EvaluationError, RuntimeMismatchErrorData
from dagster._config.snap import snap_from_config_type
from dagster._config.stack import EvaluationStackPathEntry, EvaluationStackRoot


def invalid_config(op: dg.OpDefinition, errors: list[tuple[str, Any, str]],
                   config: Mapping[str, Any]) -> dg.DagsterInvalidConfigError:
    """Dagster's config error for `op`: one entry per (field, value, what is wrong), at the field's path."""
    shape = op.config_schema.as_field().config_type
    found = []
    for name, value, what in errors:
        stack = EvaluationStackRoot()
        for part in ("ops", op.name, "config", *([name] if name else [])):
            stack = EvaluationStackPathEntry(parent=stack, field_name=part)
        field_type = shape.fields[name].config_type if name in shape.fields else shape
        path = ":".join(("root", "ops", op.name, "config", *([name] if name else [])))
        found.append(EvaluationError(
            stack=stack, reason=DagsterEvaluationErrorReason.RUNTIME_TYPE_MISMATCH,
            message=f"Value at path {path} is {value!r}: {what}",
            error_data=RuntimeMismatchErrorData(config_type_snap=snap_from_config_type(field_type),
                                                value_rep=repr(value))))
    return dg.DagsterInvalidConfigError(f"Error in config for op {op.name}", found, config)
