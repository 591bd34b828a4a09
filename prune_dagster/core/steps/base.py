"""What every pruning step module offers, and what its `run` is handed.

A step is one module in `core/steps/` (listed once in `core/pipeline.py`) with:

- `PARAMS`: its settings, a `Params` model (the Dagster Config, the CLI's `--set` and the Launchpad
  are made from it);
- `run(params, inputs) -> StepResult`: everything the step decides, given `StepInputs` (the samples it
  sees, the shared representation, the test split); its `StepResult.state` is what the incremental
  index keeps for the step;
- optionally `decide(state, params, batch, mapper)`: remove new samples against that state (raise
  `NeedsFullPrune` when they would change an old decision), and `freeze(state, old)`: a cheap finish of
  the state when the index is built (e.g. looking up stored pixels by position);
- optionally `INVARIANTS`: checks of its output that must hold (the Dagster asset checks);
- `SCORE_MEANING`, `DESCRIPTION` and `KEY_SETTINGS` for the ledger, the asset and the docs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any

import numpy as np

from prune_dagster.core.data.dataset import Dataset, content_kind, content_of
from prune_dagster.core.errors import ConfigError
from prune_dagster.core.infra.parallel import Mapper, serial_map
from prune_dagster.core.ledger import Selection

__all__ = ["Invariant", "Outcome", "StepInputs", "bind_mapper", "content_kind", "content_of"]

if TYPE_CHECKING:  # the representation module imports torch; steps that compare pixels need not
    from prune_dagster.core.training.shared import SharedRepresentation


@dataclass
class StepInputs:
    """What a step's `run` sees: the training samples the previous step kept (in dataset order), the
    whole dataset they index (for the test split), the shared representation (None before it exists)
    and the Mapper its blockwise work goes through."""

    dataset: Dataset
    selection: Selection
    representation: SharedRepresentation | None = None
    mapper: Mapper = serial_map
    block_rows: int = 0  # rows per work item for functions that take `block_rows`; 0 = their default
    environment: dict[str, str] = field(default_factory=dict)  # edge defaults (settings.py) a step may read

    @cached_property
    def positions(self) -> np.ndarray:
        """Dataset rows of the kept training samples, ascending."""
        return np.sort(self.dataset.index_of(self.selection.kept_ids))

    @cached_property
    def ids(self) -> np.ndarray:
        return self.dataset.ids[self.positions]

    @cached_property
    def labels(self) -> np.ndarray:
        return self.dataset.labels[self.positions]

    @property
    def kind(self) -> str:
        return self.dataset.kind

    @cached_property
    def images(self) -> np.ndarray:
        """Pixels of the kept training samples (a copy of those rows, read once)."""
        return self.dataset.images[self.positions]

    @cached_property
    def content(self) -> Any:
        """The kept training samples' content, of the dataset's kind: images, table rows or texts."""
        return self.images if self.kind == "image" else content_of(self.dataset, self.positions)

    @cached_property
    def encoded(self) -> Any:
        """What a model reads for the kept samples: the images themselves, or a table's or texts' rows
        encoded (core/training/encoders.py) with the feature step's kept columns or vocabulary."""
        if self.kind == "image":
            return self.images
        from prune_dagster.core.training.encoders import encode

        return encode(self.kind, self.content, self.dataset.n_classes, kept_features=self.selection.kept_features)

    @cached_property
    def raw_space(self) -> Any:
        """The kept samples' raw features, fitted on them (core/embedding/raw_space.RawFeatures)."""
        from prune_dagster.core.embedding.raw_space import RawFeatures

        return RawFeatures.fit(self.kind, self.content)

    @cached_property
    def raw_features(self) -> Any:
        """The kept samples as numbers a classifier or a neighbour search reads when no learned
        representation is used: flattened pixels, standardised columns with one-hot categories, or
        TF-IDF (sparse) for texts."""
        return self.raw_space.transform(self.content)

    @property
    def test_ids(self) -> np.ndarray:
        return self.selection.test_ids

    def test_content(self) -> Any:
        """The test split's content, of the dataset's kind."""
        return content_of(self.dataset, np.sort(self.dataset.index_of(self.selection.test_ids)))

    def test_images(self) -> np.ndarray:
        return self.dataset.images[np.sort(self.dataset.index_of(self.selection.test_ids))]

    def supply(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """`fn` with this run's Mapper (and block size, where `fn` takes `block_rows`) bound by name."""
        return bind_mapper(fn, self.mapper, self.block_rows)

    def embeddings(self, embedding: str) -> np.ndarray | None:
        """The representation's embeddings of the kept samples when a step asks for them (`embedding` =
        'representation'), else None (the step compares raw features). Asking for them from a
        representation that has none (features=pixels) is a setting error."""
        if embedding != "representation":
            return None
        emb = None if self.representation is None else self.representation.embeddings_of(self.ids)
        if emb is None:
            features = None if self.representation is None else self.representation.features
            raise ConfigError("embedding='representation' needs representation.features 'learned' or 'provided' "
                              f"(this run's is {features!r})")
        return emb


def bind_mapper(fn: Callable[..., Any], mapper: Mapper, block_rows: int = 0) -> Callable[..., Any]:
    """`fn` with `mapper` (and `block_rows` when > 0 and `fn` takes it) bound by name.

    `fn` must take a `mapper` parameter: binding is by name, so a function that names it otherwise
    would run serially without a word; it is refused instead (call a function without one directly)."""
    params = inspect.signature(fn).parameters
    if "mapper" not in params:
        name = getattr(fn, "__qualname__", repr(fn))
        raise TypeError(f"engine.supply({name}): {name} has no `mapper` parameter, so the engine cannot "
                        "spread its work; name its Mapper parameter `mapper`, or call it directly")
    bound: dict[str, Any] = {"mapper": mapper}
    if block_rows > 0 and "block_rows" in params:
        bound["block_rows"] = block_rows
    return partial(fn, **bound)


@dataclass(frozen=True)
class Outcome:
    """The result of an invariant: passed or not, with figures for the check's metadata."""

    passed: bool
    metadata: dict[str, Any] = field(default_factory=dict)
    description: str | None = None


@dataclass(frozen=True)
class Invariant:
    """A property a step's output must have (a Dagster asset check on the step's asset)."""

    name: str
    description: str
    check: Callable[[Dataset, Selection], Outcome]
    blocking: bool = True
