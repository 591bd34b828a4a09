"""What a step's incremental functions see: the last full prune (`OldRun`) and a batch of new samples
(`NewBatch`).

Each step module that the incremental index covers offers `freeze(old, params, mapper)` (what the
index keeps for it, computed once from the last full prune) and `decide(frozen, params, batch, mapper)`
(mark the batch's new samples it would remove, or raise `NeedsFullPrune` when they would change a
decision about an old sample). `prune_dagster.core.incremental.PruneIndex` loops over the pipeline's
steps and calls them in order.
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
    """The last full prune: its dataset and its final Selection (kept ids, ledger, step records)."""

    dataset: Dataset
    selection: Selection
    step: str = ""  # the step being frozen (set by the index before it calls the step's `freeze`)

    def _removed_from(self, steps: list[str]) -> np.ndarray:
        ledger = self.selection.ledger
        return ledger.loc[ledger["step"].isin(steps), "id"].to_numpy(dtype=object)

    def _ids_from(self, first: int) -> np.ndarray:
        """Kept ids plus the ids removed by the recorded steps from position `first` on (the steps
        ran in the order of `selection.history`)."""
        later = [r.step for r in self.selection.history[first:]]
        return np.concatenate([np.asarray(self.selection.kept_ids, dtype=object), self._removed_from(later)])

    def _position(self, step: str) -> int:
        for i, record in enumerate(self.selection.history):
            if record.step == step:
                return i
        raise KeyError(step)

    def input_positions(self, step: str | None = None) -> np.ndarray:
        """Sorted dataset positions of the samples that entered `step` (default: the one being frozen)."""
        return np.sort(self.dataset.index_of(self._ids_from(self._position(step or self.step))))

    def output_positions(self, step: str | None = None) -> np.ndarray:
        """Sorted dataset positions of the samples `step` kept (kept at the end, or removed later)."""
        return np.sort(self.dataset.index_of(self._ids_from(self._position(step or self.step) + 1)))


@dataclass
class NewBatch:
    """New samples being decided; `drop` records a removal by the step being decided (`step`)."""

    ids: np.ndarray
    images: np.ndarray
    labels: np.ndarray
    alive: np.ndarray = field(init=False)
    step: str = ""
    rows: list[pd.DataFrame] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids, dtype=object)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.alive = np.ones(len(self.ids), dtype=bool)

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
