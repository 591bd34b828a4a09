"""The base of every core parameter model: validated settings, no dagster import.

Each step, strategy and trainer declares its settings once as a `Params` subclass: `Literal` for
fixed choices, `Field(ge=..., le=...)` for ranges and a description per field. The Dagster
wiring builds its `Config` classes from these (`defs/config.py`), so the Launchpad, the CLI and
the core read one definition.
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict


class Params(BaseModel):
    """Unknown fields are refused; instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def of(cls, source: object) -> Self:
        """This model's fields read from `source` (a wider model or a Dagster config that holds them),
        validated: e.g. the augmentation settings out of a trainer's config."""
        return cls.model_validate({k: getattr(source, k) for k in cls.model_fields})
