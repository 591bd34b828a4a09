"""The final model of each kind, trained on what the pruning kept: the document's CNN for images, the
MLP for tables, the text CNN for texts (core/training/encoders.py says what each reads)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from prune_dagster.core.training.augment import AugmentParams
from prune_dagster.core.training.encoders import Encoded, fit_encoder
from prune_dagster.core.training.model import PruneCNN
from prune_dagster.core.training.train import EpochPlan, TrainParams, TrainResult, predict_any, train_any


@dataclass
class TrainedModel:
    """A trained model as the graph keeps it: weights, the kind's encoder (None for images) and figures."""

    state_dict: dict[str, Any]
    shape: tuple[int, ...]  # images: (H, W, C)
    n_classes: int
    mlflow_run_id: str
    metrics: dict[str, float] = field(default_factory=dict)
    feedback_removed: pd.DataFrame | None = None  # ledger rows of dynamic feedback removal (id, reason, score)
    kind: str = "image"
    encoder: Any = None

    def build(self) -> nn.Module:
        if self.encoder is None:
            h, w, c = self.shape
            model = PruneCNN(c, h, w, self.n_classes)
        else:
            model = self.encoder.model(self.n_classes)
        model.load_state_dict(self.state_dict)
        return model.eval()

    def model_input(self, content: Any) -> Any:
        """`content` (images, table rows or texts) as the model reads it."""
        return content if self.encoder is None else Encoded(self.encoder.tensor(content), self.encoder,
                                                            self.n_classes)

    def predict(self, content: Any) -> np.ndarray:
        """Class probabilities of `content`."""
        return predict_any(self.build(), self.model_input(content))


def train_final(kind: str, content: Any, labels: np.ndarray, n_classes: int, config: TrainParams,
                feature_mask: np.ndarray | None = None, kept_features: tuple[str, ...] | None = None,
                epoch_plan: EpochPlan | None = None, augment: AugmentParams | None = None,
                class_weight: np.ndarray | None = None) -> tuple[TrainResult, Any, np.ndarray]:
    """(result, encoder, an input example for MLflow): the kind's model trained on `content` (epochs and lr
    left at 0 take the kind's defaults). Augmentation applies to images only."""
    config = config.for_kind(kind)
    if kind == "image":
        result = train_any(content, labels, n_classes, config, feature_mask, epoch_plan=epoch_plan, augment=augment,
                           class_weight=class_weight)
        return result, None, np.transpose(content[:1], (0, 3, 1, 2)).astype(np.float32)
    encoder = fit_encoder(kind, content, kept_features=kept_features)
    data = Encoded(encoder.tensor(content), encoder, n_classes)
    result = train_any(data, labels, n_classes, config, epoch_plan=epoch_plan, class_weight=class_weight)
    return result, encoder, data.x[:1].numpy()
