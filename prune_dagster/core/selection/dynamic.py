"""Dynamic pruning during training: InfoBatch (Qin et al., ICLR 2024) plus optional feedback removal.

An `InfoBatchPlan` is an `EpochPlan` for `train_cnn`: each epoch it says which training positions
to visit (in what order) and how to weight each visited sample's loss, and it learns from the
per-sample losses `train_cnn` hands back. Positions index the arrays given to `train_cnn`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, get_args

import numpy as np
from pydantic import Field

from prune_dagster.core.errors import ConfigError
from prune_dagster.core.params import Params

PlanKind = Literal["none", "infobatch"]
PLAN_KINDS: tuple[str, ...] = get_args(PlanKind)


class DynamicParams(Params):
    """Dynamic pruning during training (InfoBatch) and feedback removal: what `make_epoch_plan` takes."""

    dynamic: Literal["auto", "none", "infobatch"] = Field(
        "auto", description="none: plain full training; infobatch: skip easy samples each epoch from their "
        "per-sample losses (full data in the last epochs); auto: the kind's default, infobatch for images "
        "(docs/pays.md), none for tables and texts.")
    prune_ratio: float = Field(0.7, ge=0, lt=1, description="infobatch: share of below-mean-loss samples "
                               "skipped each epoch (0.7: on real MNIST 0.48 of the sample passes at 0.18 points "
                               "below full training over 5 seeds; 0.5: 0.63 of them, 0.19 points below).")
    delta: float = Field(0.875, gt=0, le=1, description="infobatch: the full set is used from delta * epochs on.")
    feedback: bool = Field(False, description="Drop samples whose loss stays in the top tail (ledger step "
                                              "dynamic_feedback); needs dynamic=infobatch.")
    KIND_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {"image": {"dynamic": "infobatch"},
                                                           "table": {"dynamic": "none"}, "text": {"dynamic": "none"}}


@dataclass(frozen=True)
class Removal:
    """A sample feedback removal dropped: `epoch` is the last epoch that visited it (it is skipped
    from epoch + 1 on); `score` is its mean loss over the epochs that put it in the top tail."""

    position: int
    epoch: int
    score: float


def _check_settings(n: int, prune_ratio: float, delta: float, feedback: bool, feedback_warmup: int,
                   feedback_patience: int, feedback_quantile: float, feedback_min_loss: float,
                   feedback_max_fraction: float) -> None:
    if not 0.0 <= prune_ratio < 1.0:
        raise ConfigError(f"prune_ratio={prune_ratio} is outside [0, 1): the share of easy samples skipped")
    if not 0.0 < delta <= 1.0:
        raise ConfigError(f"delta={delta} is outside (0, 1]: the full set is used from delta * epochs on")
    if n < 1:
        raise ConfigError(f"n={n}: dynamic pruning needs at least one training sample")
    if feedback:
        if feedback_warmup < 1:
            raise ConfigError(f"feedback_warmup={feedback_warmup} must be >= 1 (epoch 0 has no losses yet)")
        if feedback_patience < 1:
            raise ConfigError(f"feedback_patience={feedback_patience} must be >= 1")
        if not 0.0 <= feedback_quantile < 1.0:
            raise ConfigError(f"feedback_quantile={feedback_quantile} is outside [0, 1)")
        if feedback_min_loss < 0:
            raise ConfigError(f"feedback_min_loss={feedback_min_loss} must be >= 0 (a cross-entropy loss)")
        if not 0.0 < feedback_max_fraction < 1.0:
            raise ConfigError(f"feedback_max_fraction={feedback_max_fraction} is outside (0, 1)")


class InfoBatchPlan:
    """InfoBatch: skip a random `prune_ratio` of the below-mean-loss samples each epoch, up-weight the
    kept ones by 1 / (1 - prune_ratio), and visit everything in epoch 0 and from ceil(delta * epochs) on.

    With `feedback`, samples whose loss stays in the top tail (above the `feedback_quantile` quantile
    of the active samples' scores and above `feedback_min_loss`) for `feedback_patience` consecutive
    epochs from epoch `feedback_warmup` on are dropped for the rest of training; see `removed`.
    The floor 2.0 means the model gives the sample's label under e^-2 = 13.5% probability: on clean
    digits few samples stay above it, while flipped labels do (benchmarks/dynamic.py). At most
    `feedback_max_fraction` of the samples are ever removed.

    Settings are checked here (ConfigError); `make_epoch_plan` is the usual way in.
    """

    def __init__(
        self,
        n: int,
        *,
        prune_ratio: float = 0.5,
        delta: float = 0.875,
        feedback: bool = False,
        feedback_warmup: int = 3,
        feedback_patience: int = 3,
        feedback_quantile: float = 0.8,
        feedback_min_loss: float = 2.0,
        feedback_max_fraction: float = 0.5,
        seed: int = 0,
    ) -> None:
        self.n = int(n)
        self.prune_ratio = float(prune_ratio)
        self.delta = float(delta)
        self.feedback = bool(feedback)
        self.feedback_warmup = int(feedback_warmup)
        self.feedback_patience = int(feedback_patience)
        self.feedback_quantile = float(feedback_quantile)
        self.feedback_min_loss = float(feedback_min_loss)
        self.feedback_max_fraction = float(feedback_max_fraction)
        self.seed = int(seed)
        _check_settings(self.n, self.prune_ratio, self.delta, self.feedback, self.feedback_warmup,
                        self.feedback_patience, self.feedback_quantile, self.feedback_min_loss,
                        self.feedback_max_fraction)
        self.reset()

    def reset(self) -> None:
        """Forget all scores and removals (done automatically when a new run asks for epoch 0)."""
        # +inf: a sample never visited is never "below the mean", so epoch 0 visits everything.
        self.scores = np.full(self.n, np.inf, dtype=np.float64)
        self.active = np.ones(self.n, dtype=bool)
        self.removed: list[Removal] = []
        self.visits = np.zeros(self.n, dtype=np.int64)  # how often each position was trained on
        self._streak = np.zeros(self.n, dtype=np.int64)
        self._streak_sum = np.zeros(self.n, dtype=np.float64)
        self.history: list[dict[str, int]] = []  # per epoch: visited, below_mean, skipped, removed so far
        self._rng = np.random.default_rng(self.seed)  # skip draws; the visit order uses the trainer's rng
        self._n_epochs: int | None = None
        self._started = False

    def full_from(self, n_epochs: int) -> int:
        """First epoch of the final full-data phase (the epsilon guards 0.9 * 10 = 9.000000000000002)."""
        return min(n_epochs, math.ceil(self.delta * n_epochs - 1e-9))

    def plan(self, epoch: int, n_epochs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if epoch == 0 and self._started:
            self.reset()
        self._started, self._n_epochs = True, n_epochs
        candidates = np.flatnonzero(self.active)
        weights = np.ones(self.n, dtype=np.float32)
        finite = np.isfinite(self.scores[candidates])
        n_low = n_skip = 0
        if epoch > 0 and epoch < self.full_from(n_epochs) and self.prune_ratio > 0 and finite.any():
            mean = self.scores[candidates][finite].mean()
            low = candidates[self.scores[candidates] < mean]
            n_low = len(low)
            n_skip = int(round(self.prune_ratio * len(low)))
            skip = self._rng.choice(low, size=n_skip, replace=False) if n_skip else low[:0]
            keep = np.ones(self.n, dtype=bool)
            keep[skip] = False
            # Kept below-mean samples stand in for the skipped ones: rescaling keeps the expected gradient.
            weights[low] = 1.0 / (1.0 - self.prune_ratio)
            candidates = candidates[keep[candidates]]
        order = rng.permutation(candidates)
        self.history.append({"epoch": int(epoch), "visited": len(order), "below_mean": n_low,
                             "skipped": n_skip, "removed": len(self.removed)})
        return order, weights[order]

    def update(self, indices: np.ndarray, losses: np.ndarray, epoch: int) -> None:
        indices = np.asarray(indices, dtype=np.int64)
        losses = np.asarray(losses, dtype=np.float64)
        if indices.shape != losses.shape:
            raise ValueError(f"update: {len(indices)} indices but {len(losses)} losses")
        # Skipped samples keep their last score (as in InfoBatch): they were below the mean anyway.
        self.scores[indices] = losses
        self.visits[indices] += 1
        if self.feedback and epoch >= self.feedback_warmup:
            self._feedback(epoch)

    def _feedback(self, epoch: int) -> None:
        act = np.flatnonzero(self.active & np.isfinite(self.scores))
        if len(act) == 0:
            return
        s = self.scores[act]
        # Quantile: only the tail counts; floor: a clean dataset's hard samples rarely stay above it.
        threshold = max(float(np.quantile(s, self.feedback_quantile)), self.feedback_min_loss)
        tail = act[s > threshold]
        rest = np.setdiff1d(act, tail, assume_unique=True)
        self._streak[rest], self._streak_sum[rest] = 0, 0.0
        self._streak[tail] += 1
        self._streak_sum[tail] += self.scores[tail]
        # Removing after the last epoch would change nothing the model saw, so the ledger would lie.
        if self._n_epochs is not None and epoch >= self._n_epochs - 1:
            return
        due = tail[self._streak[tail] >= self.feedback_patience]
        budget = int(self.feedback_max_fraction * self.n) - len(self.removed)
        if len(due) == 0 or budget <= 0:
            return
        mean_loss = self._streak_sum[due] / self._streak[due]
        pick = np.argsort(-mean_loss, kind="stable")[:budget]  # at the cap, the highest losses go first
        for p, sc in zip(due[pick], mean_loss[pick], strict=True):
            self.removed.append(Removal(position=int(p), epoch=int(epoch), score=float(sc)))
        self.active[due[pick]] = False

    @property
    def removed_positions(self) -> np.ndarray:
        return np.array([r.position for r in self.removed], dtype=np.int64)


def make_epoch_plan(kind: str, n: int, *, feedback: bool = False, **settings: Any) -> InfoBatchPlan | None:
    """The plan `train_cnn(epoch_plan=...)` takes for `kind` ("none" → None: plain full training).

    `settings` are `InfoBatchPlan`'s keyword arguments (prune_ratio, delta, feedback_*, seed).
    """
    kind = (kind or "none").strip().lower()
    if kind not in PLAN_KINDS:
        raise ConfigError(f"dynamic pruning kind={kind!r} is unknown; valid values: {', '.join(PLAN_KINDS)}")
    # Built (and so checked) for "none" too: a bad setting should fail now, not when the kind is switched on.
    plan = InfoBatchPlan(n, feedback=feedback, **settings)
    if kind == "none":
        if feedback:
            raise ConfigError("feedback=True needs kind='infobatch' (prune_ratio=0: feedback removal alone)")
        return None
    return plan


def sample_pass_fraction(sample_passes: int, epochs: int, n: int) -> float:
    """Share of the full-training sample passes (epochs x n) a run actually made (see core.selection.fractions)."""
    return float(sample_passes) / float(epochs * n) if epochs and n else float("nan")


