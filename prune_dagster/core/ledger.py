"""Who removed which sample, and why: the Selection that flows between pruning steps.

A Selection is ids, not pixels: the kept original train ids, the cumulative ledger of removed ids
(one row per removed sample: id, step, reason, score), a record of each step, and what later steps
add (synthetic samples from rebalancing, a feature mask). Undoing a step = taking its ledger rows
back into the kept set (see `undo`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from prune_dagster.core.errors import ConfigError

LEDGER_COLUMNS = ["id", "step", "reason", "score"]


def removed_frame(ids: Any = (), reason: Any = "", score: Any = np.nan) -> pd.DataFrame:
    """A step's removals: columns id, reason, score (the step name is added by `Selection.advance`)."""
    ids = np.asarray(ids, dtype=object)
    return pd.DataFrame({
        "id": ids,
        "reason": np.broadcast_to(np.asarray(reason, dtype=object), ids.shape),
        "score": np.broadcast_to(np.asarray(score, dtype=float), ids.shape),
    })


@dataclass(kw_only=True)
class Synthetic:
    """Samples a step created (e.g. SMOTE): new ids, labels and their own content, of the dataset's kind
    (pixels, table rows with the table's columns, or texts)."""

    ids: np.ndarray
    labels: np.ndarray
    step: str
    images: np.ndarray | None = None
    table: pd.DataFrame | None = None
    texts: np.ndarray | None = None

    def content(self) -> Any:
        """The samples' content: images, table rows or texts (whichever the step made)."""
        return next(c for c in (self.images, self.table, self.texts) if c is not None)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame({"id": self.ids, "label": self.labels, "step": self.step})


@dataclass
class StepResult:
    """What a step's `run` returns: the removals (id, reason, score), metadata for the asset, and what
    the step adds to the Selection (synthetic samples, a feature mask). `state` is what the
    incremental index keeps for the step, computed by `run` itself so the index never recomputes it
    (None: nothing to keep, or the settings cannot be decided incrementally; `state_note` says why).
    `test_ids` / `pinned_keep`: the validation step's narrowing of the test split and the pinned keeps."""

    removed: pd.DataFrame
    metadata: dict[str, Any] = field(default_factory=dict)
    synthetic: Synthetic | None = None
    feature_mask: np.ndarray | None = None
    kept_features: tuple[str, ...] | None = None
    state: Any = None
    state_note: str = ""
    test_ids: np.ndarray | None = None
    pinned_keep: frozenset[str] | None = None


@dataclass(frozen=True)
class StepRecord:
    """What one step did to the Selection: its settings, sizes in and out, removals by reason, time."""

    step: str
    config: dict[str, Any]
    n_in: int
    n_out: int
    removed_by_reason: dict[str, int]
    seconds: float

    def counts(self) -> dict[str, Any]:
        """The record without its settings (what summary.json lists per step)."""
        return {"step": self.step, "n_in": self.n_in, "n_out": self.n_out,
                "removed_by_reason": dict(self.removed_by_reason), "seconds": self.seconds}


@dataclass
class Selection:
    """The current view of the training split after some pruning steps."""

    kept_ids: np.ndarray
    test_ids: np.ndarray
    n_train_split: int
    ledger: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=LEDGER_COLUMNS))
    history: list[StepRecord] = field(default_factory=list)
    synthetic: Synthetic | None = None
    feature_mask: np.ndarray | None = None  # images: the pixels the models read
    kept_features: tuple[str, ...] | None = None  # tables: the columns the models read; texts: the vocabulary
    pinned_keep: frozenset[str] = frozenset()
    # step -> what the incremental index keeps for it (StepResult.state), or a str saying why there is none
    states: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def start(cls, train_ids: np.ndarray, test_ids: np.ndarray) -> Selection:
        """The Selection before the first step: every training sample kept, nothing in the ledger."""
        train_ids = np.asarray(train_ids, dtype=object)
        return cls(kept_ids=train_ids, test_ids=np.asarray(test_ids, dtype=object), n_train_split=len(train_ids))

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({"states": {}, "kept_features": None, **state})  # pickled before these existed

    def advance(self, step: str, result: StepResult, config: dict[str, Any], seconds: float) -> Selection:
        """Apply a step's result; pinned-keep ids are never removed."""
        removed = result.removed
        if len(removed):
            unknown = ~removed["id"].isin(self.kept_ids)
            if unknown.any():
                raise ConfigError(f"step {step}: removes id {removed['id'][unknown].iloc[0]!r} that is not kept")
            if self.pinned_keep:
                removed = removed[~removed["id"].isin(self.pinned_keep)]
        rows = removed.assign(step=step)[LEDGER_COLUMNS]
        kept = self.kept_ids[~pd.Index(self.kept_ids).isin(rows["id"])]
        by_reason = {str(k): int(v) for k, v in rows["reason"].value_counts().items()}
        record = StepRecord(step=step, config=dict(config), n_in=int(len(self.kept_ids)), n_out=int(len(kept)),
                            removed_by_reason=by_reason, seconds=round(float(seconds), 3))
        ledger = rows if self.ledger.empty else pd.concat([self.ledger, rows], ignore_index=True)
        return replace(
            self,
            kept_ids=kept,
            ledger=ledger.reset_index(drop=True),
            history=[*self.history, record],
            synthetic=result.synthetic if result.synthetic is not None else self.synthetic,
            feature_mask=result.feature_mask if result.feature_mask is not None else self.feature_mask,
            kept_features=result.kept_features if result.kept_features is not None else self.kept_features,
            test_ids=result.test_ids if result.test_ids is not None else self.test_ids,
            pinned_keep=(result.pinned_keep & frozenset(kept.tolist())) if result.pinned_keep is not None
            else self.pinned_keep,
            states={**self.states, step: result.state if result.state is not None else result.state_note},
        )

    @property
    def retained_fraction(self) -> float:
        """Kept original samples / train split."""
        return len(self.kept_ids) / max(self.n_train_split, 1)

    def record(self, step: str) -> StepRecord | None:
        """The record of `step`, or None when it has not run on this Selection."""
        return next((r for r in self.history if r.step == step), None)

    def step_counts(self) -> list[dict[str, Any]]:
        return [r.counts() for r in self.history]


def undo(kept_ids: np.ndarray, ledger: pd.DataFrame, step: str) -> tuple[np.ndarray, pd.DataFrame]:
    """Take back every sample `step` removed: returns (kept ids, ledger) as if the step had kept them."""
    back = ledger["step"] == step
    return (np.concatenate([np.asarray(kept_ids, dtype=object), ledger.loc[back, "id"].to_numpy(dtype=object)]),
            ledger[~back].reset_index(drop=True))
