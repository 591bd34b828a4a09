"""Dagster Config classes made from the core's parameter models: one definition per concept.

A core step or trainer declares its settings once, as a pydantic model with `Literal` choices,
bounded numbers and a description per field (no dagster import there). `dagster_config` turns
that model into the `dg.Config` the asset takes, with the same fields, defaults, bounds and
descriptions, so the Launchpad documents each setting and the two can never diverge.
`to_params` converts a materialized Config back into the core model, which re-validates the
bounds (Dagster's config system checks types and choices only).
"""

from __future__ import annotations

from typing import Any, TypeVar

import dagster as dg
from pydantic import BaseModel, create_model

P = TypeVar("P", bound=BaseModel)


def dagster_config(params: type[BaseModel], name: str | None = None, doc: str | None = None) -> type[dg.Config]:
    """A `dg.Config` subclass with `params`' fields (annotation, default, bounds, description)."""
    fields: dict[str, Any] = {key: (field.annotation, field) for key, field in params.model_fields.items()}
    cls = create_model(name or params.__name__.removesuffix("Params") + "Config", __base__=dg.Config, **fields)
    cls.__doc__ = doc or params.__doc__
    cls.__module__ = params.__module__
    return cls


def to_params(config: dg.Config, params: type[P]) -> P:
    """The core parameters a Dagster config stands for (validated again: bounds, cross-field rules)."""
    return params.model_validate(config.model_dump())

