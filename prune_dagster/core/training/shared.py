"""The representation the comparing steps share: what `representation` hands to near duplicates,
outliers, label noise and the score step.

`features` says where it comes from:

- `learned` (default): K-fold training of a small CNN (`representation.compute_representation`):
  out-of-fold probabilities, embeddings from the fold model that did not see each sample, and EL2N
  from the same fold runs. Label noise then decides from probabilities of a model that never saw the
  sample, and the score step reuses the EL2N instead of training its own runs.
- `pixels`: nothing is trained; every step works on pixels as it did before the representation
  existed (no probabilities, no embeddings, no EL2N).
- `provided`: embeddings the user already has (CLIP or any foundation model), one row per sample of
  the source, in the source's order: the `embeddings` array of an `.npz`, or `embeddings.npy` in an
  `.npy` folder or beside an image folder. No probabilities: label noise fits its classifier on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from prune_dagster.core.errors import DatasetError
from prune_dagster.core.training.encoders import Encoded
from prune_dagster.core.training.representation import RepresentationParams, compute_representation, fold_predict

Features = Literal["learned", "pixels", "provided"]


class SharedRepresentationParams(RepresentationParams):
    """Where the shared representation comes from, and the K-fold settings when it is learned."""

    features: Features = Field("learned", description="learned: K-fold CNN out-of-fold probabilities, embeddings "
                               "and EL2N; pixels: no representation (steps use pixels, the behaviour before it "
                               "existed); provided: the source's own `embeddings` (npz key or embeddings.npy).")


@dataclass(frozen=True)
class SharedRepresentation:
    """Per sample of `ids` (the exact-deduplicated training set); arrays are None where `features`
    does not provide them."""

    features: str
    ids: np.ndarray
    probs: np.ndarray | None = None
    embeddings: np.ndarray | None = None
    el2n: np.ndarray | None = None
    oof_accuracy: float | None = None
    seconds: float = 0.0
    sample_passes: int = 0  # training passes of the fold models (learned only)
    # The fold models (`learned` only): what predicts samples that arrive after the run.
    models: tuple[dict, ...] = ()
    model_kind: str = ""
    sample_shape: tuple[int, ...] = ()
    n_classes: int = 0
    encoder: Any = None  # tables and texts: how new samples become the fold models' input

    def predict(self, content: Any) -> tuple[np.ndarray, np.ndarray] | None:
        """(probabilities, embeddings) of new samples (images, table rows or texts) from the fold models,
        none of which saw them (None when the representation was not learned)."""
        return None if not self.models else self.predictor()(content)

    def predictor(self) -> FoldPredictor:
        """The fold models alone (small, picklable): what the incremental index keeps of the representation."""
        return FoldPredictor(self.models, self.model_kind, self.sample_shape, self.n_classes, self.encoder)

    def positions(self, ids: np.ndarray) -> np.ndarray:
        """Rows of `ids` in this representation; a DatasetError names the first id it lacks."""
        index = pd.Index(np.asarray(self.ids, dtype=object))
        pos = index.get_indexer(np.asarray(ids, dtype=object))
        if (pos < 0).any():
            missing = np.asarray(ids, dtype=object)[pos < 0][0]
            raise DatasetError(f"representation: sample {missing!r} is not in the representation; "
                               "materialize `representation` again for this run")
        return pos

    def embeddings_of(self, ids: np.ndarray) -> np.ndarray | None:
        return None if self.embeddings is None else self.embeddings[self.positions(ids)]

    def probs_of(self, ids: np.ndarray) -> np.ndarray | None:
        return None if self.probs is None else self.probs[self.positions(ids)]

    def el2n_of(self, ids: np.ndarray) -> np.ndarray | None:
        return None if self.el2n is None else self.el2n[self.positions(ids)]


@dataclass(frozen=True)
class FoldPredictor:
    """The representation's fold models: (probabilities, embeddings) of samples none of them saw."""

    models: tuple[dict, ...]
    model_kind: str
    sample_shape: tuple[int, ...]
    n_classes: int
    encoder: Any = None

    def __call__(self, content: Any) -> tuple[np.ndarray, np.ndarray]:
        data = content if self.encoder is None else Encoded(self.encoder.tensor(content), self.encoder,
                                                              self.n_classes)
        return fold_predict(self.model_kind, self.sample_shape, self.n_classes, self.models, data)

    def embed(self, content: Any, mapper: Any = None) -> np.ndarray:
        return self(content)[1]

def check_embeddings(embeddings: np.ndarray, n: int, where: str) -> np.ndarray:
    """(n, d) finite float32, or one DatasetError naming `where` and what is wrong."""
    arr = np.asarray(embeddings)
    if arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] < 1:
        raise DatasetError(f"{where}: shape {arr.shape}; expected ({n}, d), one row per sample")
    if not np.issubdtype(arr.dtype, np.number):
        raise DatasetError(f"{where}: dtype {arr.dtype}; expected numbers")
    arr = arr.astype(np.float32)
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise DatasetError(f"{where}: row {int(np.flatnonzero(bad)[0])} is not finite "
                           f"({int(bad.sum())} such rows)")
    return arr


def build_representation(params: SharedRepresentationParams, ids: np.ndarray, images: np.ndarray | Encoded,
                         labels: np.ndarray, n_classes: int,
                         provided: np.ndarray | None = None) -> SharedRepresentation:
    """The shared representation of the samples `ids` (pixels `images`, or a table's or texts' encoded
    rows; labels `labels`).

    `provided`: the user's embeddings of exactly these samples (rows in `ids` order), needed when
    `features='provided'`."""
    ids = np.asarray(ids, dtype=object)
    if params.features == "pixels":
        return SharedRepresentation("pixels", ids)
    if params.features == "provided":
        if provided is None:
            raise DatasetError("representation.features='provided' but the source has no embeddings: add an "
                               "`embeddings` array to the .npz, or embeddings.npy to the .npy folder / beside "
                               "the image folder")
        embeddings = check_embeddings(provided, len(ids), "provided embeddings")
        return SharedRepresentation("provided", ids, embeddings=embeddings)
    core = RepresentationParams.model_validate(params.model_dump(exclude={"features"}))
    rep = compute_representation(ids, images, labels, n_classes, core)
    image = isinstance(images, np.ndarray)
    return SharedRepresentation("learned", ids, probs=rep.probs, embeddings=rep.embeddings, el2n=rep.el2n,
                                oof_accuracy=rep.oof_accuracy, seconds=rep.seconds, models=rep.models,
                                sample_passes=rep.sample_passes,
                                model_kind=params.model if image else "encoder",
                                sample_shape=tuple(images.shape[1:]) if image else (), n_classes=n_classes,
                                encoder=None if image else images.encoder)
