"""What a model trains on: the kept original samples of a Selection plus any synthetic ones."""

from __future__ import annotations

from typing import Any

import numpy as np

from prune_dagster.core.data.dataset import Dataset, content_of
from prune_dagster.core.ledger import Selection
from prune_dagster.core.training.encoders import join_content


def training_ids(selection: Selection) -> np.ndarray:
    """Ids in the order of `training_arrays`: kept originals (dataset order), then synthetic ones."""
    return selection.kept_ids if selection.synthetic is None else np.concatenate(
        [selection.kept_ids, selection.synthetic.ids])


def training_content(dataset: Dataset, selection: Selection,
                     positions: np.ndarray | None = None) -> tuple[Any, np.ndarray]:
    """(content, labels): the kept original samples (or the dataset rows at `positions`) plus any
    synthetic ones; content of the dataset's kind (images, table rows or texts)."""
    pos = dataset.index_of(selection.kept_ids) if positions is None else positions
    content, labels = content_of(dataset, pos), dataset.labels[pos]
    if selection.synthetic is not None and len(selection.synthetic.ids):
        content = join_content(dataset.kind, content, selection.synthetic.content())
        labels = np.concatenate([labels, selection.synthetic.labels])
    return content, labels


def training_arrays(dataset: Dataset, selection: Selection,
                    positions: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`training_content` of an image dataset: (images, labels)."""
    return training_content(dataset, selection, positions)
