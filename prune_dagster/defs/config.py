"""Dagster Config classes made from the core's parameter models: one definition per concept.

A core step or trainer declares its settings once, as a pydantic model with `Literal` choices,
bounded numbers and a description per field (no dagster import there). `dagster_config` turns
that model into the `dg.Config` the asset takes, with the same fields, defaults, bounds and
descriptions, so the Launchpad documents each setting and the two can never diverge.
`to_params` converts a materialized Config back into the core model, which re-validates the
bounds (Dagster's config system checks types and choices only).

Refused before a run starts: Dagster's config types carry no numeric bounds, so `check_bounds`
gives each asset's op a config mapping (`OpDefinition.configured`, same schema, same
descriptions) whose function validates the op's config against its Config class and core Params.
Dagster calls it while it resolves the run config, before it plans the run: `dagster job execute -c`,
`execute_in_process`, `dg.validate_run_config` and a launch from the Launchpad all refuse a bad
value with a config error naming its path, and no step starts. (The Launchpad's as-you-type check
reads only the config schema's types and choices; a bound is reported when the run is launched.)
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import dagster as dg
from pydantic import BaseModel, ValidationError, create_model
from pydantic.fields import FieldInfo

from prune_dagster.defs.dagster_internals import invalid_config

P = TypeVar("P", bound=BaseModel)

# Config class → the core Params it was made from (cross-field rules live there).
PARAMS_OF: dict[type, type[BaseModel]] = {}


def dagster_config(params: type[BaseModel], name: str | None = None, doc: str | None = None) -> type[dg.Config]:
    """A `dg.Config` subclass with `params`' fields (annotation, default, bounds, description)."""
    fields: dict[str, Any] = {key: (field.annotation, field) for key, field in params.model_fields.items()}
    cls = create_model(name or params.__name__.removesuffix("Params") + "Config", __base__=dg.Config, **fields)
    cls.__doc__ = doc or params.__doc__
    cls.__module__ = params.__module__
    PARAMS_OF[cls] = params
    return cls


def to_params(config: dg.Config, params: type[P]) -> P:
    """The core parameters a Dagster config stands for (validated again: bounds, cross-field rules)."""
    return params.model_validate(config.model_dump())


# ---------------------------------------------------------------- what a setting accepts


def accepts(field: FieldInfo) -> str:
    """What a field accepts, in words: "one of 'a', 'b'", "a number > 0 and <= 1", "true or false"."""
    annotation = field.annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    if annotation is bool:
        return "true or false"
    if annotation in (int, float):
        kind = "a whole number" if annotation is int else "a number"
        bounds = [f"{op} {getattr(m, attr)}" for m in field.metadata
                  for attr, op in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")) if hasattr(m, attr)]
        return kind + (" " + " and ".join(bounds) if bounds else "")
    if annotation is str:
        return "a string"
    if typing.get_origin(annotation) is list or (args and typing.get_origin(args[0]) is list):
        return "a list, e.g. [28, 28]" + (" or null" if len(args) < len(typing.get_args(annotation)) else "")
    return getattr(annotation, "__name__", str(annotation))


def config_errors(cls: type[BaseModel], values: Mapping[str, Any]) -> list[tuple[str, Any, str]]:
    """(field, value, what is wrong) for `values` under a Config class and the core Params behind it.
    Strict: "no" is not a bool and "1" not a number, as in Dagster's own config types."""
    for model in (cls, PARAMS_OF.get(cls)):
        if model is None:
            continue
        try:
            model.model_validate(dict(values), strict=True)
        except ValidationError as err:
            out = []
            for e in err.errors():
                name = str(e["loc"][0]) if e["loc"] else ""
                field = cls.model_fields.get(name)
                what = e["msg"] + (f"; {name} accepts {accepts(field)}" if field is not None else "")
                out.append((name, values.get(name, e.get("input")), what))
            return out
    return []


# ---------------------------------------------------------------- refused before the run


def config_class(op: dg.OpDefinition) -> type[dg.Config] | None:
    """The Config class an op's function takes, if any."""
    if not isinstance(op, dg.OpDefinition):
        return None
    fn = op.compute_fn
    if not hasattr(fn, "has_config_arg") or not fn.has_config_arg():
        return None
    cls = fn.get_config_arg().annotation
    return cls if isinstance(cls, type) and issubclass(cls, dg.Config) else None


def check_bounds_of(asset: dg.AssetsDefinition) -> dg.AssetsDefinition:
    """The asset with an op whose config is validated (bounds, cross-field rules) when the run config
    is resolved; same config schema, so the Launchpad shows the same fields and descriptions."""
    op = asset.node_def
    cls = config_class(op) if isinstance(op, dg.OpDefinition) else None
    if cls is None:
        return asset

    def validate(config: Mapping[str, Any]) -> Mapping[str, Any]:
        errors = config_errors(cls, config)
        if errors:
            raise invalid_config(op, errors, config)
        return config

    checked = op.configured(validate, name=op.name, config_schema=op.config_schema.as_field(),
                            description=op.description)
    # The asset again around the checked op (public API), its specs' attributes restored.
    specs = {s.key: s for s in asset.specs}
    rebuilt = dg.AssetsDefinition.from_op(checked, keys_by_input_name=asset.keys_by_input_name,
                                          keys_by_output_name=asset.keys_by_output_name,
                                          partitions_def=asset.partitions_def, backfill_policy=asset.backfill_policy,
                                          can_subset=asset.can_subset)
    return rebuilt.map_asset_specs(lambda s: s.replace_attributes(
        group_name=specs[s.key].group_name, description=specs[s.key].description, metadata=specs[s.key].metadata,
        tags=specs[s.key].tags, code_version=specs[s.key].code_version, owners=specs[s.key].owners))


def check_bounds(assets: Iterable[Any]) -> list[Any]:
    """`check_bounds_of` every AssetsDefinition among `assets` (others pass through)."""
    return [check_bounds_of(a) if isinstance(a, dg.AssetsDefinition) else a for a in assets]
