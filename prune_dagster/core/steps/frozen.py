"""What a step's incremental functions see: the last full prune (`OldRun`) and a batch of new samples
(`NewBatch`).

Each step module that the incremental index covers offers `decide(state, params, batch, mapper)` (mark
the batch's new samples it would remove, or raise `NeedsFullPrune` when they would change a decision
about an old sample), where `state` is what the step's own `run` left in the Selection, optionally
finished by `freeze(state, old)` (e.g. stored pixels looked up by position). `PruneIndex` in
`prune_dagster.core.incremental` loops over the pipeline's steps and calls them in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from prune_dagster.core.data.dataset import Dataset
from prune_dagster.core.ledger import LEDGER_COLUMNS, Selection, removed_frame


class NeedsFullPrune(Exception):  # noqa: N818 (a decision, not an error)
    """The new samples would change a decision about an old sample: the index decides nothing."""


@dataclass
class OldRun:
    """The last full prune: its dataset, its final Selection (kept ids, ledger, step records and the
    state each step's `run` left for the index) and its shared representation (its fold models predict
    new samples), for the steps' `freeze`."""

    dataset: Dataset
    selection: Selection
    representation: Any = None  # core.training.shared.SharedRepresentation (kept untyped: no torch import)


@dataclass
class NewBatch:
    """New samples being decided; `drop` records a removal by the step being decided (`step`).
    `content`: their images, table rows or texts (the old dataset's kind)."""

    ids: np.ndarray
    content: Any
    labels: np.ndarray
    alive: np.ndarray = field(init=False)
    step: str = ""
    rows: list[pd.DataFrame] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids, dtype=object)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.alive = np.ones(len(self.ids), dtype=bool)

    @property
    def kind(self) -> str:
        return "table" if isinstance(self.content, pd.DataFrame) else "image" if np.ndim(self.content) == 4 else "text"

    @property
    def images(self) -> np.ndarray:
        return self.content

    def take(self, rows: np.ndarray) -> Any:
        """The content of the batch rows `rows`."""
        if self.kind == "table":
            return self.content.iloc[rows].reset_index(drop=True)
        return self.content[rows]

    def as_dataset(self) -> Dataset:
        """The batch as a Dataset of its kind (class names are placeholders: labels index the old ones)."""
        names = tuple(str(c) for c in range(int(self.labels.max(initial=0)) + 1))
        return Dataset(ids=self.ids, labels=self.labels, class_names=names, source="new batch",
                       **{{"image": "images", "table": "table", "text": "texts"}[self.kind]: self.content})

    def live(self) -> np.ndarray:
        """Positions of the new samples no step has removed yet."""
        return np.flatnonzero(self.alive)

    def drop(self, where: np.ndarray, reason: Any, score: Any = np.nan) -> None:
        """Remove the new samples at positions `where` (reason, score as in the full step's ledger)."""
        where = np.asarray(where, dtype=np.int64)
        self.rows.append(removed_frame(self.ids[where], reason, score).assign(step=self.step))
        self.alive[where] = False

    def removed(self) -> pd.DataFrame:
        """Ledger rows (id, step, reason, score) of every removal so far."""
        if not self.rows:
            return removed_frame().assign(step="")[LEDGER_COLUMNS]
        return pd.concat(self.rows, ignore_index=True)[LEDGER_COLUMNS]
