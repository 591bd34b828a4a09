"""Embeddings a user provides with the dataset (`representation.features='provided'`).

Where they are read from, one row per sample of the loaded dataset, in its order:
- an `.npz` source: its `embeddings` array (N, d);
- an `.npy` folder source: `embeddings.npy` in the folder, rows as `images.npy`;
- an image folder: `embeddings.npy` in the folder's root, rows in the loaded dataset's order (class
  folder, then file name: the order of the ids in kept_ids.csv and ledger.csv).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prune_dagster.core.data.arrays import read_npz_member
from prune_dagster.core.data.dataset import Dataset
from prune_dagster.core.errors import DatasetError

EMBEDDINGS_FILE = "embeddings.npy"


def provided_embeddings(dataset: Dataset) -> np.ndarray | None:
    """The source's embeddings (N, d) as stored, or None when the source has none."""
    path = Path(dataset.source)
    if path.is_file() and path.suffix.lower() == ".npz":
        return read_npz_member(path, "embeddings")
    if path.is_dir() and (path / EMBEDDINGS_FILE).is_file():
        try:
            return np.load(path / EMBEDDINGS_FILE, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DatasetError(f"{path / EMBEDDINGS_FILE}: unreadable array ({type(exc).__name__}: {exc})") from exc
    return None
