"""Training and evaluation loops for the document's CNN (CPU by default, seeded)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
import torch
from pydantic import Field
from torch import nn

from prune_dagster.core.params import Params
from prune_dagster.core.training.augment import AugmentParams, augment_batch, make_generator
from prune_dagster.core.training.model import PruneCNN

# Each kind's training defaults, measured on real data: the document's CNN 20 epochs (real MNIST), the
# table MLP 15 (UCI Adult: benchmarks/table_model_check.py), the text CNN 5 at 3e-3, where it peaks before
# overfitting (Rotten Tomatoes: benchmarks/text_model_check.py).
KIND_DEFAULTS: dict[str, dict[str, Any]] = {"image": {"epochs": 20, "lr": 1e-3}, "table": {"epochs": 15, "lr": 1e-3},
                                            "text": {"epochs": 5, "lr": 3e-3}}


class OptimizerParams(Params):
    """How long and how fast the model is fitted (per-sample cross-entropy; Adam by default, or the
    document's own SGD: lr 0.001, momentum 0.9)."""

    epochs: int = Field(0, ge=0, description="Epochs over the training set (the sweep: over the full cleaned set); "
                        "0 = the kind's default: 20 for images (the document's CNN), 15 for tables, 5 for texts.")
    batch_size: int = Field(64, ge=1, description="Samples per optimisation step.")
    lr: float = Field(0.0, ge=0, description="Learning rate (Adam's, or SGD's: the document uses 0.001); 0 = the "
                      "kind's default: 0.001, 0.003 for texts.")
    weight_decay: float = Field(0.0, ge=0, description="Weight decay (L2 penalty); 0 = none.")
    optimizer: Literal["adam", "sgd"] = Field("adam", description="adam; or sgd with `momentum` (the document's "
                                              "optimiser: SGD, lr 0.001, momentum 0.9).")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="sgd: momentum (the document's 0.9); adam ignores it.")
    KIND_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = KIND_DEFAULTS

    def make_optimizer(self, parameters: Any) -> torch.optim.Optimizer:
        """The optimiser these settings name, over `parameters`."""
        if self.optimizer == "sgd":
            return torch.optim.SGD(parameters, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        return torch.optim.Adam(parameters, lr=self.lr, weight_decay=self.weight_decay)


class TrainParams(OptimizerParams):
    """One training run of the CNN: the optimiser settings plus the seed and torch's thread count."""

    seed: int = Field(0, ge=0, description="Seeds the initial weights and the visiting order.")
    threads: int = Field(0, ge=0, description="torch intra-op threads while training; 0 = the process default.")


DEFAULT_TRAINING = TrainParams().for_kind("image")  # the document's CNN's defaults, as one immutable value


class EpochPlan(Protocol):
    """Chooses which samples an epoch visits and how their losses are weighted (dynamic pruning)."""

    def plan(self, epoch: int, n_epochs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]: ...

    def update(self, indices: np.ndarray, losses: np.ndarray, epoch: int) -> None: ...


@dataclass
class TrainResult:
    model: PruneCNN
    seconds: float
    sample_passes: int
    epoch_losses: list[float] = field(default_factory=list)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, C) float array → (N, C, H, W) float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(np.transpose(images, (0, 3, 1, 2)), dtype=np.float32))


def build_model(images: np.ndarray, n_classes: int, feature_mask: np.ndarray | None = None) -> PruneCNN:
    _, h, w, c = images.shape
    model = PruneCNN(c, h, w, n_classes)
    model.mean.fill_(float(images.mean()))
    model.std.fill_(float(images.std()) or 1.0)
    if feature_mask is not None:
        model.mask.copy_(torch.from_numpy(feature_mask.astype(np.float32)).reshape(1, 1, h, w))
    return model


def train_cnn(
    images: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    config: TrainParams = DEFAULT_TRAINING,
    feature_mask: np.ndarray | None = None,
    epoch_plan: EpochPlan | None = None,
    on_epoch: Callable[[int, PruneCNN], None] | None = None,
    augment: AugmentParams | None = None,
    class_weight: np.ndarray | None = None,
) -> TrainResult:
    """The document's CNN trained on `images` by `train_model` (its input standardised by the images'
    mean and std, masked by `feature_mask`)."""
    return train_model(to_tensor(images), labels, lambda: build_model(images, n_classes, feature_mask), config,
                       epoch_plan=epoch_plan, on_epoch=on_epoch, augment=augment, class_weight=class_weight)


def train_any(data: Any, labels: np.ndarray, n_classes: int, config: TrainParams = DEFAULT_TRAINING,
              feature_mask: np.ndarray | None = None, **kwargs: Any) -> TrainResult:
    """`train_cnn` on images (an array), `train_model` on a table's or texts' `Encoded` rows (its own model)."""
    if isinstance(data, np.ndarray):
        return train_cnn(data, labels, n_classes, config, feature_mask, **kwargs)
    return train_model(data.x, labels, data.model, config, **kwargs)


@torch.no_grad()
def predict_any(model: nn.Module, data: Any, batch_size: int = 2048) -> np.ndarray:
    """Softmax of every row of `data` (images, or `Encoded` rows) in batches."""
    if isinstance(data, np.ndarray):
        return predict_proba(model, data, batch_size)
    model.eval()
    out = [torch.softmax(model(data.x[s:s + batch_size]), dim=1) for s in range(0, len(data), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, model.fc2.out_features), dtype=np.float32)


def train_model(
    x: torch.Tensor,
    labels: np.ndarray,
    make_model: Callable[[], nn.Module],
    config: TrainParams = DEFAULT_TRAINING,
    epoch_plan: EpochPlan | None = None,
    on_epoch: Callable[[int, nn.Module], None] | None = None,
    augment: AugmentParams | None = None,
    class_weight: np.ndarray | None = None,
) -> TrainResult:
    """`config`'s optimiser on per-sample cross-entropy over the rows of `x` (one model input per sample:
    images, encoded table rows or token ids); `make_model` builds the fresh model after the seed is set.
    `epoch_plan` may skip and re-weight samples per epoch.

    `augment` (images only): each batch is augmented on the fly from its own generator seeded by
    `config.seed` (never stored; None or `none`: the batch as it is, the loop unchanged). `class_weight`:
    (n_classes,) per-class loss weights (core/training/class_weights.py) multiplied into the per-sample
    loss; the losses an epoch plan sees stay unweighted."""
    config = config.for_kind("image") if not (config.epochs and config.lr) else config  # 0: the CNN's defaults
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    model = make_model()
    opt = config.make_optimizer(model.parameters())
    loss_fn = nn.CrossEntropyLoss(reduction="none")
    n, passes, epoch_losses = len(y), 0, []
    gen = make_generator(config.seed) if augment is not None and augment.augment != "none" else None
    cw = None if class_weight is None else torch.as_tensor(np.asarray(class_weight, dtype=np.float32))
    start = time.perf_counter()
    for epoch in range(config.epochs):
        model.train()
        if epoch_plan is None:
            order, weights = rng.permutation(n), np.ones(n, dtype=np.float32)
        else:
            order, weights = epoch_plan.plan(epoch, config.epochs, rng)
        total, seen_losses = _epoch(model, opt, loss_fn, x, y, order, weights, config.batch_size, cw, augment, gen)
        passes += len(order)
        epoch_losses.append(total / max(len(order), 1))
        if epoch_plan is not None:
            epoch_plan.update(np.asarray(order), seen_losses, epoch)
        if on_epoch is not None:
            on_epoch(epoch, model)
    return TrainResult(model=model.eval(), seconds=time.perf_counter() - start, sample_passes=passes,
                       epoch_losses=epoch_losses)


def _epoch(model: nn.Module, opt: torch.optim.Optimizer, loss_fn: nn.Module, x: torch.Tensor, y: torch.Tensor,
           order: np.ndarray, weights: np.ndarray, batch_size: int, cw: torch.Tensor | None,
           augment: AugmentParams | None, gen: torch.Generator | None) -> tuple[float, np.ndarray]:
    """One pass over `order` in batches: (the epoch's weighted loss sum, each visited sample's loss)."""
    w_all = torch.from_numpy(np.asarray(weights, dtype=np.float32))
    total = 0.0
    seen_losses = np.empty(len(order), dtype=np.float32)
    for s in range(0, len(order), batch_size):
        idx = torch.from_numpy(np.asarray(order[s:s + batch_size], dtype=np.int64))
        xb = x[idx] if gen is None else augment_batch(x[idx], augment, gen)
        losses = loss_fn(model(xb), y[idx])
        w = w_all[s:s + batch_size] if cw is None else w_all[s:s + batch_size] * cw[y[idx]]
        loss = (losses * w).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen_losses[s:s + len(idx)] = losses.detach().numpy()
        total += float(loss.detach()) * len(idx)
    return total, seen_losses


@torch.no_grad()
def predict_proba(model: PruneCNN, images: np.ndarray, batch_size: int = 2048) -> np.ndarray:
    model.eval()
    x = to_tensor(images)
    out = [torch.softmax(model(x[s:s + batch_size]), dim=1) for s in range(0, len(x), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, model.fc2.out_features), dtype=np.float32)


def accuracy(model: PruneCNN, images: np.ndarray, labels: np.ndarray) -> float:
    if len(labels) == 0:
        return float("nan")
    return float((predict_proba(model, images).argmax(1) == np.asarray(labels)).mean())


# Torch threads are process-wide, so this setting is too: the caller (the Dagster `engine` resource)
# sets it once per run; 0 = leave torch's own choice.
_default_threads = 0


def set_default_threads(n: int) -> None:
    global _default_threads
    _default_threads = max(0, int(n))


def default_threads() -> int:
    return _default_threads
