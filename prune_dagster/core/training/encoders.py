"""What a model reads, for each kind of data: the samples as one input tensor, and a fresh model for it.

- image: the pixels as (N, C, H, W) and the document's CNN (`train.build_model`: its input standardised
  by the training images' mean and std, masked by the feature step's pixel mask);
- table: standardised numeric columns and categorical codes, and the MLP (`table_model.py`);
- text: token ids from a vocabulary built on the training texts, and the text CNN (`text_model.py`).

An encoder is fitted on a model's training samples only (the test split never shapes it) and is
kept with the trained model, so later samples (the test split, an incremental batch) are encoded the
same way. `Encoded` pairs the tensor with its encoder: the scoring runs, the representation, the
sweep and the final training all take it in place of an image array.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from torch import nn

from prune_dagster.core.errors import ConfigError
from prune_dagster.core.training.train import build_model, to_tensor


class Encoder(Protocol):
    def tensor(self, content: Any) -> torch.Tensor: ...

    def model(self, n_classes: int) -> nn.Module: ...


@dataclass
class ImageEncoder:
    """Pixels as they are; the document's CNN standardised by the training images."""

    images: np.ndarray  # the training images (the model's input mean and std come from them)
    feature_mask: np.ndarray | None = None

    def tensor(self, content: np.ndarray) -> torch.Tensor:
        return to_tensor(content)

    def model(self, n_classes: int) -> nn.Module:
        return build_model(self.images, n_classes, self.feature_mask)


@dataclass
class Encoded:
    """Samples as a model reads them (`x`, one row per sample) and the encoder that made them."""

    x: torch.Tensor
    encoder: Any  # an Encoder
    n_classes: int

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, rows: Any) -> Encoded:
        return replace(self, x=self.x[torch.as_tensor(rows) if isinstance(rows, np.ndarray) else rows])

    def model(self) -> nn.Module:
        return self.encoder.model(self.n_classes)


def join_content(kind: str, first: Any, second: Any) -> Any:
    """Two blocks of one kind's content, one after the other (original samples, then synthetic ones)."""
    if kind == "table":
        return pd.concat([first, second.astype(first.dtypes.to_dict())], ignore_index=True)
    return np.concatenate([first, second])


def fit_encoder(kind: str, content: Any, feature_mask: np.ndarray | None = None,
                kept_features: tuple[str, ...] | None = None) -> Any:
    """The encoder of a model trained on `content`: the feature step's pixel mask (images) or kept
    columns / vocabulary (tables / texts) restrict what it reads."""
    if kind == "image":
        return ImageEncoder(content, feature_mask)
    if kind == "table":
        from prune_dagster.core.training.table_model import TableEncoder

        return TableEncoder.fit(content, kept_features)
    if kind == "text":
        from prune_dagster.core.training.text_model import TextEncoder

        return TextEncoder.fit(content, kept_features)
    raise ConfigError(f"unknown kind of data {kind!r}; expected image, table or text")


def encode(kind: str, content: Any, n_classes: int, feature_mask: np.ndarray | None = None,
           kept_features: tuple[str, ...] | None = None, encoder: Any = None) -> Encoded:
    """`content` as a model reads it, with an encoder fitted on it unless one is given."""
    encoder = encoder if encoder is not None else fit_encoder(kind, content, feature_mask, kept_features)
    return Encoded(encoder.tensor(content), encoder, n_classes)
