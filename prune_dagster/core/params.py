"""The base of every core parameter model: validated settings, no dagster import.

Each step, strategy and trainer declares its settings once as a `Params` subclass: `Literal` for
fixed choices, `Field(ge=..., le=...)` for ranges and a description per field. The Dagster
wiring builds its `Config` classes from these (`defs/config.py`), so the Launchpad, the CLI and
the core read one definition.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Params(BaseModel):
    """Unknown fields are refused; instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)
