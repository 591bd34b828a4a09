"""The Dataset: ids, content, labels, class names and the held-out split, stored once.

Three kinds of content, one class: `images` (pixels), `table` (a user's columns: numbers and
categories, kept as such) or `texts` (strings). `kind` says which. Pruning steps never copy the
content: they pass kept ids around and look rows up here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from prune_dagster.core.errors import DatasetError

TRAIN, TEST = "train", "test"
KINDS = ("image", "table", "text")


@dataclass(frozen=True, kw_only=True)
class Dataset:
    """A labelled dataset of one kind: exactly one of `images`, `table`, `texts` is given.

    images: (N, H, W, C) float32, values in [0, 1]; a sample that could not be decoded is all-NaN
    and named in `load_errors` (id → "category: detail", removed by `validated`). table: a DataFrame
    of the feature columns, one row per sample, numeric columns as numbers (NaN = missing) and
    categorical ones as pandas categories (the label, id and split columns are not in it). texts:
    (N,) object array of str ("" where a text is missing or unreadable; `load_errors` says why).
    labels: (N,) int64 indices into `class_names`. split: (N,) of "train" / "test" (empty until
    `with_split`).
    load_info: what the loader decided and skipped (channel layout, target size, ignored files,
    empty class folders), for the asset's metadata; not part of the digest.
    original_sizes: (N, 2) float of each file's (height, width) before the loader resized it (NaN
    where unreadable), for the size and aspect checks; None for array sources. Not part of the
    digest (the resized pixels already differ when a file does).
    """

    ids: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    source: str
    images: np.ndarray | None = None
    table: pd.DataFrame | None = None
    texts: np.ndarray | None = None
    split: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))
    load_errors: dict[str, str] = field(default_factory=dict)
    load_info: dict[str, Any] = field(default_factory=dict)
    original_sizes: np.ndarray | None = None

    def __post_init__(self) -> None:
        # Cheap O(N) checks only: pixels may be memory-mapped and are never scanned here.
        src = self.source
        if np.ndim(self.ids) != 1 or np.ndim(self.labels) != 1:
            raise DatasetError(f"{src}: ids and labels must be 1-D, got shapes {np.shape(self.ids)} "
                               f"and {np.shape(self.labels)}")
        n = len(self.ids)
        if n == 0:
            raise DatasetError(f"{src}: the dataset is empty (no samples found); expected at least 2 classes "
                               "with samples")
        self._check_content(n)
        if len(self.labels) != n:
            raise DatasetError(f"{src}: {len(self.labels)} labels for {n} {self.kind} samples; expected one label "
                               "per sample")
        if not np.issubdtype(np.asarray(self.labels).dtype, np.integer):
            raise DatasetError(f"{src}: labels must be integer class indices, got dtype {self.labels.dtype}")
        k = len(self.class_names)
        if k == 0 or self.labels.min() < 0 or self.labels.max() >= k:
            raise DatasetError(f"{src}: labels span {self.labels.min()}..{self.labels.max()}; expected indices "
                               f"into the {k} class names")
        if len(set(self.class_names)) != k:
            raise DatasetError(f"{src}: class names repeat: {list(self.class_names)}")
        dup = self.id_index().duplicated(keep=False)
        if dup.any():
            first = self.ids[dup][0]
            rows = np.flatnonzero(np.asarray(self.ids, dtype=object) == first)
            raise DatasetError(f"{src}: id {first!r} appears {len(rows)} times (rows {rows[:5].tolist()}); "
                               "ids must be unique")
        if len(self.split) not in (0, n):
            raise DatasetError(f"{src}: split has {len(self.split)} entries; expected 0 or {n}")
        if self.original_sizes is not None and np.shape(self.original_sizes) != (n, 2):
            raise DatasetError(f"{src}: original_sizes has shape {np.shape(self.original_sizes)}; expected "
                               f"({n}, 2) (height, width) pairs")
        unknown = [k for k in self.load_errors if k not in self.id_index()]
        if unknown:
            raise DatasetError(f"{src}: load errors name unknown id(s) {sorted(unknown)[:3]}")

    def _check_content(self, n: int) -> None:
        given = [k for k, v in zip(KINDS, (self.images, self.table, self.texts), strict=True) if v is not None]
        if len(given) != 1:
            raise DatasetError(f"{self.source}: a dataset holds exactly one of images, table or texts; got "
                               f"{given or 'none'}")
        if self.images is not None:
            if self.images.ndim != 4:
                raise DatasetError(f"{self.source}: images must be (N, H, W, C), got shape {self.images.shape}")
            size = len(self.images)
        elif self.table is not None:
            if not isinstance(self.table, pd.DataFrame) or self.table.columns.duplicated().any():
                raise DatasetError(f"{self.source}: the table must be a DataFrame with unique column names")
            size = len(self.table)
        else:
            if np.ndim(self.texts) != 1:
                raise DatasetError(f"{self.source}: texts must be 1-D, got shape {np.shape(self.texts)}")
            size = len(self.texts)
        if size != n:
            raise DatasetError(f"{self.source}: {size} {self.kind} samples for {n} ids; expected one id per sample")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def kind(self) -> str:
        """'image', 'table' or 'text': which content the dataset holds."""
        return "image" if self.images is not None else "table" if self.table is not None else "text"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value,union-attr]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}  # drop the caches

    def id_index(self) -> pd.Index:
        """pd.Index of the ids, built once (hashing a million ids takes ~0.5 s; steps look ids up often)."""
        index = self.__dict__.get("_id_index")
        if index is None:
            index = pd.Index(self.ids)
            object.__setattr__(self, "_id_index", index)  # a cache, not state: frozen otherwise
        return index

    def index_of(self, ids: np.ndarray | list[str]) -> np.ndarray:
        """Row positions of `ids`; raises naming the first id that is not in the dataset."""
        pos = self.id_index().get_indexer(np.asarray(ids, dtype=object))
        if (pos < 0).any():
            missing = np.asarray(ids, dtype=object)[pos < 0][0]
            raise DatasetError(f"{self.source}: unknown sample id {missing!r}")
        return pos

    def ids_in(self, split: str) -> np.ndarray:
        return self.ids[self.split == split]

    def digest(self) -> str:
        """Content digest of ids, labels, content and split: the asset's data version (computed once).
        An image dataset's digest is what it was before tables and texts existed."""
        cached = self.__dict__.get("_digest")
        if cached is not None:
            return cached
        h = hashlib.blake2b(digest_size=16)
        for part in (np.asarray(self.ids, dtype=str), self.labels, *self._content_parts(),
                     np.asarray(self.split, dtype=str)):
            h.update(memoryview(np.ascontiguousarray(part)).cast("B"))  # no bytes copy of the pixels
        h.update("\n".join(self.class_names).encode())
        object.__setattr__(self, "_digest", h.hexdigest())
        return self.__dict__["_digest"]

    def _content_parts(self) -> list[np.ndarray]:
        if self.images is not None:
            return [np.ascontiguousarray(self.images)]
        if self.table is not None:
            names = "\n".join(f"{c}:{t}" for c, t in self.table.dtypes.items()).encode()
            rows = pd.util.hash_pandas_object(self.table, index=False).to_numpy()
            return [np.frombuffer(b"table\n" + names, dtype=np.uint8), rows]
        joined = "\x00".join(map(str, self.texts)).encode("utf-8", "surrogatepass")
        return [np.frombuffer(b"text\n" + joined, dtype=np.uint8)]

    def with_split(self, test_fraction: float, seed: int) -> Dataset:
        return replace(self, split=stratified_split(self.labels, test_fraction, seed))


def content_kind(content: Any) -> str:
    """'image' (an (N, H, W, C) array), 'table' (a DataFrame) or 'text' (an array of str)."""
    if isinstance(content, pd.DataFrame):
        return "table"
    return "image" if np.ndim(content) == 4 else "text"


def content_of(dataset: Dataset, positions: np.ndarray) -> Any:
    """The rows `positions` of the dataset's content: images, table rows (a fresh index) or texts."""
    if dataset.kind == "image":
        return dataset.images[positions]
    if dataset.kind == "table":
        return dataset.table.iloc[np.asarray(positions)].reset_index(drop=True)
    return np.asarray(dataset.texts[positions], dtype=object)


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """Seeded, per-class split. A class keeps at least one train sample, so rare classes never crash.

    A class of one sample is train-only. When rounding would leave the test set empty (every class
    tiny), one sample of the largest class with two or more goes to test, so evaluation has data.
    """
    if not 0.0 < test_fraction < 1.0:
        raise DatasetError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    split = np.full(len(labels), TRAIN, dtype=object)
    classes, counts = np.unique(labels, return_counts=True)
    for c in classes:
        members = np.flatnonzero(labels == c)
        n_test = min(int(round(test_fraction * len(members))), len(members) - 1)
        if n_test > 0:
            split[rng.choice(members, size=n_test, replace=False)] = TEST
    if len(classes) and not (split == TEST).any() and counts.max() >= 2:
        members = np.flatnonzero(labels == classes[np.argmax(counts)])
        split[rng.choice(members)] = TEST
    return split
