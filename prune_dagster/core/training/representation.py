"""One learned representation shared by every step: K-fold training of the document's CNN.

Every training sample is assigned to one of `folds` stratified folds. Fold model f trains on the other
folds (at most `fit_rows` of them, a stratified seeded sample, so the cost is bounded at any N) for a
few epochs and then predicts every sample. From those K passes each sample gets

- `probs` (n, C): the softmax of the model that never saw it (its own fold's): out-of-fold
  probabilities for confident learning;
- `embeddings` (n, 128): the penultimate layer (after FC 128 + ReLU), by default averaged over all K
  fold models (`embedding="all_folds"`): one fixed map for every sample, so distances between
  samples mean something. `own_fold` takes each sample's from the model that did not see it, but
  then two samples of different folds are embedded by different networks: an exact copy in another
  fold lands far from its original (measured: duplicate F1 0.12 against 0.94 for pixels);
- `el2n` (n,): ||softmax - onehot(label)||_2 averaged over the K-1 models whose training pool held it:
  Paul et al.'s early-training EL2N, averaged over runs, from the same fold runs (nothing trained twice).

Measured on real MNIST, 8,000 training images, split seed 0, one torch thread on a shared 2-core
machine (load 1.6-2.3 for two_conv rows and the document row marked *; 1.5-5 for the others),
batch 128, Adam 2e-3, `benchmarks/real.py --part representation` (results/real.json and
results/real_representation.json): out-of-fold accuracy / seconds / estimated noise rate

    two_conv  4 folds x 4 epochs, shifts <= 2 px   96.99% /  57 s / 0.23%     <- the default until 2 folds (below)
    two_conv  4 x 3, shifts                        96.85% /  42 s / 0.28%
    two_conv  4 x 4, no shifts                     96.60% /  47 s / 0.58%
    two_conv  4 x 6, shifts                        97.31% /  84 s / 0.33%
    document  4 x 4, shifts *                      95.85% /  77 s / 0.34%
    document  4 x 4, no shifts                     95.50% /  95 s / 0.84%
    document  5 x 4 / 4 x 6 / 4 x 8, shifts        96.06 / 95.97 / 96.45% (160 / 166 / 281 s)

The final CNN (document's, `train_cnn` 20 epochs, batch 64) took 114-145 s in the same runs, so the
4-fold representation cost 0.59 / 0.76 / 0.66x of it side by side (seeds 0 / 1 / 2).

Cheaper, on a quiet 2-core machine (benchmarks/cheaper.py --part representation, seeds 0-2, mean):
seconds / out-of-fold accuracy / F1 of the label step on 10% flips / final CNN on EL2N's 80%

    4 folds, 1 thread        47.3 s / 97.18% / 0.941 / 97.52%
    4 folds, 2 threads       29.8 s / 97.17% / 0.945 / 97.37%
    3 folds, 2 threads       22.4 s / 97.16% / 0.945 / 97.63%
    2 folds, 2 threads       13.6 s / 96.97% / 0.935 / 97.50%     <- default from 8,000 rows
    2 folds, min_steps 120   10.3 s / 96.70% / 0.934 / 97.52%
    4 folds, min_steps 90    16.9 s / 96.04% / 0.928 / 97.48%

`min_steps` (180 at batch 128) sets the fold runs' length on 8,000 rows, not `epochs`: fewer steps cost
out-of-fold accuracy; fewer folds cost little (each fold model sees half the data, for 6 epochs). Shifts halve
the noise estimate (fewer hard, correct samples look mislabelled); with 10% flips two_conv found
them with F1 0.93-0.95, the document's CNN 0.91-0.92 (noise_rate.py). EL2N from the fold runs at
retained fraction 0.5 beat random by 1.5 points of test accuracy over 3 seeds (97.53 vs 96.05%; no
pruning 97.70%) and, on seed 0, EL2N from the out-of-fold probabilities (97.90 vs 97.50%).

Scale: fold models train on at most `fit_rows` rows and every row is predicted in blocks, so time
is O(folds x epochs x fit_rows + folds x N) and memory O(N x 138 floats) beyond the images.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from prune_dagster.core.errors import DatasetError
from prune_dagster.core.params import Params
from prune_dagster.core.training.augment import shift_images
from prune_dagster.core.training.encoders import Encoded
from prune_dagster.core.training.train import build_model, to_tensor

# Rows per inference batch: bounds the conv activations (64 x H x W floats per row) at any N.
INFER_BATCH = 1024


class TwoConvCNN(nn.Module):
    """"two_conv": 3x3 conv 32, ReLU, 2x2 pool, 3x3 conv 64, ReLU, 2x2 pool, FC 128, ReLU, FC classes.

    A slightly stronger small CNN than the document's (which convolves 64 channels at full resolution
    into a 1.6M-weight FC layer): about half its time per batch on one CPU thread and more accurate
    after a few epochs (numbers in the module docstring). Same interface: `features`, `fc1`, `fc2`,
    and `mean`/`std` buffers fitted on the training pixels."""

    def __init__(self, in_channels: int, height: int, width: int, n_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(64 * (height // 4) * (width // 4), 128)
        self.fc2 = nn.Linear(128, n_classes)
        self.register_buffer("mean", torch.zeros(1))
        self.register_buffer("std", torch.ones(1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        return torch.relu(self.fc1(torch.flatten(x, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.features(x))


def make_model(kind: str, images: np.ndarray, n_classes: int) -> nn.Module:
    """An untrained fold model whose input standardisation is fitted on `images` (N, H, W, C)."""
    if kind == "document":
        return build_model(images, n_classes)
    _, h, w, c = images.shape
    model = TwoConvCNN(c, h, w, n_classes)
    model.mean.fill_(float(images.mean()))
    model.std.fill_(float(images.std()) or 1.0)
    return model


# With folds=0, two folds once each fold model trains on at least this many rows (half the set).
TWO_FOLD_ROWS = 4000


def resolved_folds(folds: int, n: int) -> int:
    """`folds`, or for 0 the size rule: 2 when n / 2 >= TWO_FOLD_ROWS, else 4."""
    return folds or (2 if n >= 2 * TWO_FOLD_ROWS else 4)


class RepresentationParams(Params):
    """Settings of the K-fold representation (see the module docstring)."""

    folds: int = Field(0, ge=0, le=10, description="Stratified folds; each sample is predicted by the one "
                       "model that did not train on it. 0 = by size: 2 when each fold model still trains on at "
                       f"least {TWO_FOLD_ROWS:,} rows (real MNIST: as good as 4 for every step that reads it, in "
                       "0.46x the time), else 4 (small sets need the rows: on 8x8 digits 2 folds flagged "
                       "1.2% of clean samples as label issues).")
    epochs: int = Field(4, ge=1, le=50, description="Epochs of each fold's training run.")
    batch_size: int = Field(128, ge=8, le=4096, description="Mini-batch size of the fold runs.")
    lr: float = Field(2e-3, gt=0.0, le=1.0, description="Adam learning rate of the fold runs.")
    seed: int = Field(0, ge=0, description="Seeds the fold split, the fit samples, the weights and the shifts.")
    threads: int = Field(2, ge=0, le=256, description="Torch threads (0: torch's default, one per core). 2: "
                         "1.6x faster than 1 thread on real MNIST on 2 idle cores, and the same numbers on any "
                         "machine (another thread count sums floats in another order).")
    augmentation: Literal["none", "shift"] = Field(
        "shift", description="'shift': each training image is moved by up to `max_shift` pixels per epoch "
        "(edge pixels repeated); 'none': images as given.")
    max_shift: int = Field(2, ge=1, le=8, description="Largest shift in pixels when augmentation='shift' "
                           "(at most 1/14 of the shorter image side: none on 8x8 images).")
    min_steps: int = Field(180, ge=0, le=100_000, description="Each fold model takes at least this many "
                           "optimizer steps (epochs are raised on small sets; 4 epochs on 8,000 real digits "
                           "are 188 steps).")
    model: Literal["two_conv", "document"] = Field(
        "two_conv", description="Fold model: 'document' is the document's CNN (PruneCNN); 'two_conv' a "
        "slightly stronger small CNN (TwoConvCNN), faster and more accurate after a few epochs.")
    embedding: Literal["all_folds", "own_fold"] = Field(
        "all_folds", description="'all_folds': each sample's penultimate layer averaged over the K fold "
        "models (one space for all samples); 'own_fold': from the model that did not see it.")
    fit_rows: int = Field(12_000, ge=0, description="Each fold model trains on at most this many rows (a "
                          "stratified sample of its training folds) and predicts all; 0 = no bound.")


@dataclass(frozen=True)
class Representation:
    """Per training sample, in the order of `ids` (see the module docstring)."""

    ids: np.ndarray
    probs: np.ndarray  # (n, C) float32, out-of-fold
    embeddings: np.ndarray  # (n, 128) float32, see `RepresentationParams.embedding`
    el2n: np.ndarray  # (n,) float64, mean over the fold models whose training folds held the sample
    fold: np.ndarray  # (n,) int, the fold each sample was held out in
    oof_accuracy: float
    seconds: float
    models: tuple[dict, ...] = ()  # each fold model's state_dict: a new sample is predicted by all of them
    sample_passes: int = 0  # training passes (forward and backward) over samples, all folds together


def fold_predict(model_kind: str, shape: tuple[int, ...], n_classes: int, models: tuple[dict, ...],
                 images: np.ndarray | Encoded) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, embeddings) of samples none of the fold models saw: each averaged over the models
    (the embedding as `all_folds` defines it). `images`: pixels, or encoded rows (the fold models are then
    the encoder's model)."""
    probs = np.zeros((len(images), n_classes), dtype=np.float32)
    emb: np.ndarray | None = None
    for state in models:
        if isinstance(images, np.ndarray):
            model = make_model(model_kind, np.zeros((1, *shape), dtype=np.float32), n_classes)
        else:
            model = images.model()
        model.load_state_dict(state)
        p, z = _probs_and_features(model.eval(), images)
        probs += p / len(models)
        emb = z / len(models) if emb is None else emb + z / len(models)
    return probs, (np.zeros((len(images), 0), dtype=np.float32) if emb is None else emb)


def assign_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Stratified fold index per sample: each class dealt round-robin over the folds in seeded order."""
    rng = np.random.default_rng([seed, 11])
    out = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        out[rng.permutation(members)] = (np.arange(len(members)) + int(rng.integers(folds))) % folds
    return out


def bounded_sample(labels: np.ndarray, pool: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions: `pool` itself, or about `size` of it stratified by class (each class >= 1)."""
    if size == 0 or len(pool) <= size:
        return pool
    picks = []
    for c in np.unique(labels[pool]):
        members = pool[labels[pool] == c]
        take = max(1, round(len(members) * size / len(pool)))
        picks.append(rng.choice(members, size=min(take, len(members)), replace=False))
    return np.sort(np.concatenate(picks))


def shift_batch(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Each image (B, C, H, W) moved by its own random offset in [-max_shift, max_shift]², edges repeated
    (the training augmentation's shift, with this module's own draws and edge fill)."""
    b = x.shape[0]
    dy = torch.randint(0, 2 * max_shift + 1, (b,), generator=gen)  # crop offsets into the padded image
    dx = torch.randint(0, 2 * max_shift + 1, (b,), generator=gen)
    return shift_images(x, max_shift - torch.stack([dy, dx], dim=1), max_shift, fill="replicate")


def fold_epochs(params: RepresentationParams, n_fit: int) -> int:
    """`epochs`, raised until a fold model takes at least `min_steps` optimizer steps: on small sets a
    few epochs are a few dozen steps, and an under-trained model's errors read as label noise (sklearn
    digits, 1,078 rows a fold: 4 epochs gave 66% out-of-fold accuracy and flagged 182 of 1,438 clean
    samples; 20 epochs 93% and 5)."""
    steps_per_epoch = max(1, math.ceil(n_fit / params.batch_size))
    return max(params.epochs, math.ceil(params.min_steps / steps_per_epoch))


def fold_shift(params: RepresentationParams, height: int, width: int) -> int:
    """Largest shift used: `max_shift`, at most 1/14 of the shorter side (2 px on 28x28, none on 8x8,
    where one pixel is 12% of the digit and shifts cost accuracy)."""
    return 0 if params.augmentation == "none" else min(params.max_shift, min(height, width) // 14)


def train_fold_model(data: np.ndarray | Encoded, labels: np.ndarray, n_classes: int, params: RepresentationParams,
                     seed: int) -> nn.Module:
    """A fold model trained like `train_model` (Adam, mean cross-entropy, seeded): on images (`data` an
    array) the small CNN `params.model` with shifts; on encoded tables or texts the kind's model."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    image = isinstance(data, np.ndarray)
    x, y = to_tensor(data) if image else data.x, torch.from_numpy(np.asarray(labels, dtype=np.int64))
    model = make_model(params.model, data, n_classes) if image else data.model()
    opt = torch.optim.Adam(model.parameters(), lr=params.lr)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    shift = fold_shift(params, data.shape[1], data.shape[2]) if image else 0
    for _ in range(fold_epochs(params, len(y))):
        order = torch.from_numpy(rng.permutation(len(y)))
        for s in range(0, len(order), params.batch_size):
            idx = order[s:s + params.batch_size]
            xb = x[idx]
            if shift:
                xb = shift_batch(xb, shift, gen)
            loss = loss_fn(model(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def _probs_and_features(model: nn.Module, data: np.ndarray | Encoded) -> tuple[np.ndarray, np.ndarray]:
    """Softmax and penultimate features of every row of `data` (images, or encoded rows), in batches."""
    probs = np.empty((len(data), model.fc2.out_features), dtype=np.float32)
    feats = np.empty((len(data), model.fc2.in_features), dtype=np.float32)
    image = isinstance(data, np.ndarray)
    for s in range(0, len(data), INFER_BATCH):
        f = model.features(to_tensor(data[s:s + INFER_BATCH]) if image else data.x[s:s + INFER_BATCH])
        feats[s:s + len(f)] = f.numpy()
        probs[s:s + len(f)] = torch.softmax(model.fc2(f), dim=1).numpy()
    return probs, feats


def _check(images: np.ndarray | Encoded, labels: np.ndarray, n_classes: int, folds: int) -> None:
    image = isinstance(images, np.ndarray)
    if (image and images.ndim != 4) or len(images) != len(labels):
        raise DatasetError(f"representation: {len(images)} samples and {len(labels)} labels; expected one label "
                           "each (images as (N, H, W, C))")
    counts = np.bincount(labels, minlength=n_classes)
    if labels.min() < 0 or labels.max() >= n_classes or (counts > 0).sum() < 2:
        raise DatasetError(f"representation: labels must be 0..{n_classes - 1} with at least 2 classes present")
    if image and (images.shape[1] < 4 or images.shape[2] < 4):
        raise DatasetError(f"representation: images of {images.shape[1]}x{images.shape[2]} pixels; expected at "
                           "least 4x4")
    if len(labels) < 2 * folds:
        raise DatasetError(f"representation: {len(labels)} samples for folds={folds}; expected at least {2 * folds}")


def compute_representation(ids: np.ndarray, images: np.ndarray | Encoded, labels: np.ndarray, n_classes: int,
                           params: RepresentationParams | None = None) -> Representation:
    """K-fold out-of-fold probabilities, embeddings and EL2N of every sample (module docstring); `images`
    is the pixels, or a table's or texts' encoded rows (then each fold trains the kind's model)."""
    params = params or RepresentationParams()
    labels = np.asarray(labels, dtype=np.int64)
    params = params.model_copy(update={"folds": resolved_folds(params.folds, len(labels))})
    _check(images, labels, n_classes, params.folds)
    start = time.perf_counter()
    previous = torch.get_num_threads()
    if params.threads:
        torch.set_num_threads(params.threads)
    try:
        fold = assign_folds(labels, params.folds, params.seed)
        n = len(labels)
        probs = np.zeros((n, n_classes), dtype=np.float32)
        emb: np.ndarray | None = None  # (n, width of the penultimate layer), allocated on first use
        el2n_sum = np.zeros(n)
        eye = np.eye(n_classes, dtype=np.float32)
        states, passes = [], 0
        for f in range(params.folds):
            pool = np.flatnonzero(fold != f)
            fit = bounded_sample(labels, pool, params.fit_rows, np.random.default_rng([params.seed, 12, f]))
            model = train_fold_model(images[fit], labels[fit], n_classes, params, seed=params.seed * 100 + f)
            states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
            passes += fold_epochs(params, len(fit)) * len(fit)
            for s in range(0, n, INFER_BATCH * 8):  # all rows, in blocks: bounded memory at any N
                e = min(n, s + INFER_BATCH * 8)
                p, z = _probs_and_features(model, images[s:e])
                if emb is None:
                    emb = np.zeros((n, z.shape[1]), dtype=np.float32)
                held = fold[s:e] == f
                probs[s:e][held] = p[held]
                if params.embedding == "own_fold":
                    emb[s:e][held] = z[held]
                else:
                    emb[s:e] += z / params.folds
                el2n_sum[s:e] += np.where(held, 0.0, np.linalg.norm(p - eye[labels[s:e]], axis=1))
    finally:
        torch.set_num_threads(previous)
    oof_acc = float((probs.argmax(1) == labels).mean())
    return Representation(ids=np.asarray(ids), probs=probs, embeddings=emb, el2n=el2n_sum / (params.folds - 1),
                          fold=fold, oof_accuracy=oof_acc, seconds=time.perf_counter() - start, models=tuple(states),
                          sample_passes=passes)
