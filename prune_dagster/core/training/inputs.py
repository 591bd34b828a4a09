"""What a model trains on: the kept original samples of a Selection plus any synthetic ones."""

from __future__ import annotations

import numpy as np

from prune_dagster.core.data.dataset import Dataset
from prune_dagster.core.ledger import Selection


def training_ids(selection: Selection) -> np.ndarray:
    """Ids in the order of `training_arrays`: kept originals (dataset order), then synthetic ones."""
    return selection.kept_ids if selection.synthetic is None else np.concatenate(
        [selection.kept_ids, selection.synthetic.ids])


def training_arrays(dataset: Dataset, selection: Selection,
                    positions: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Kept original samples (or the dataset rows at `positions`) plus any synthetic ones."""
    pos = dataset.index_of(selection.kept_ids) if positions is None else positions
    images, labels = dataset.images[pos], dataset.labels[pos]
    if selection.synthetic is not None and len(selection.synthetic.ids):
        images = np.concatenate([images, selection.synthetic.images])
        labels = np.concatenate([labels, selection.synthetic.labels])
    return images, labels
