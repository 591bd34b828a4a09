"""The base of every core parameter model: validated settings, no dagster import.

Each step, strategy and trainer declares its settings once as a `Params` subclass: `Literal` for
fixed choices, `Field(ge=..., le=...)` for ranges and a description per field. The Dagster
wiring builds its `Config` classes from these (`defs/config.py`), so the Launchpad, the CLI and
the core read one definition.

A setting whose right value depends on the data's kind (image, table, text) has a sentinel default (0,
or -1 where 0 means something) and the class's `KIND_DEFAULTS` names each kind's value; `for_kind`
resolves them once, before a step runs, so what is recorded and logged is the value used.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict


class Params(BaseModel):
    """Unknown fields are refused; instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    KIND_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {}  # {kind: {field: value}}, for fields at their sentinel

    def for_kind(self, kind: str) -> Self:
        """These settings with every field still at its sentinel default set to `kind`'s value."""
        fields = type(self).model_fields
        update = {k: v for k, v in self.KIND_DEFAULTS.get(kind, {}).items() if getattr(self, k) == fields[k].default}
        return self.model_copy(update=update) if update else self

    @classmethod
    def of(cls, source: object) -> Self:
        """This model's fields read from `source` (a wider model or a Dagster config that holds them),
        validated: e.g. the augmentation settings out of a trainer's config."""
        return cls.model_validate({k: getattr(source, k) for k in cls.model_fields})
