"""How a step spreads its work: a Mapper runs one function over independent work items.

Steps never import an engine. They cut their work into items (row blocks, clusters, folds), call
`mapper(fn, items, shared)` and combine the results in item order. `serial_map` (the default) runs
them in this process; the Dagster `ComputeEngine` resource supplies a Dask-backed mapper when a
cluster address is configured. Because every item is computed by the same function on the same
input, and results are combined in item order, both give identical answers.

Rules for work functions: module-level (picklable), deterministic given their arguments, and no
reliance on global state. `shared` holds large read-only arguments every item needs (a reference
sample, centroids): an engine ships them to each worker once, not once per item.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import numpy as np

T = TypeVar("T")
R = TypeVar("R")

# Rows per block: 65,536 rows of 8x8 float32 images is 16 MiB; small enough to ship, big enough
# that per-item overhead (scheduling, pickling) stays a small share of the work.
BLOCK_ROWS = 65_536


class Mapper(Protocol):
    def __call__(self, fn: Callable[..., R], items: Sequence[Any],
                 shared: Mapping[str, Any] | None = None) -> list[R]: ...


def serial_map(fn: Callable[..., R], items: Sequence[Any], shared: Mapping[str, Any] | None = None) -> list[R]:
    """Run `fn(item, **shared)` for each item in this process, in order."""
    extra = dict(shared or {})
    return [fn(item, **extra) for item in items]


def row_blocks(n: int, block_rows: int = BLOCK_ROWS) -> list[tuple[int, int]]:
    """[start, stop) ranges covering 0..n in blocks of `block_rows` (the last may be shorter)."""
    if block_rows < 1:
        raise ValueError(f"block_rows={block_rows}; expected >= 1")
    return [(s, min(s + block_rows, n)) for s in range(0, n, block_rows)]


def split_rows(array: np.ndarray, block_rows: int = BLOCK_ROWS) -> list[np.ndarray]:
    """`array` cut into row blocks (views, no copy)."""
    return [array[s:e] for s, e in row_blocks(len(array), block_rows)]


class ArrayRef:
    """A read-only memory-mapped .npy array that pickles as its path, not its bytes.

    Work items that need rows of a stored dataset get this as `shared`: an engine worker re-opens the
    file (on the same machine or a shared filesystem) and reads only the rows it is given.
    """

    def __init__(self, path: str, offset: int, shape: tuple[int, ...], dtype: str) -> None:
        self.path, self.offset, self.shape, self.dtype = path, offset, shape, dtype

    def load(self) -> np.ndarray:
        return np.memmap(self.path, dtype=np.dtype(self.dtype), mode="r", offset=self.offset, shape=self.shape)


def by_reference(array: np.ndarray) -> np.ndarray | ArrayRef:
    """An ArrayRef for a whole-file memory map, else the array itself."""
    # Only the memmap np.load returned (its base is the mmap itself); a slice of it is shipped as bytes.
    if isinstance(array, np.memmap) and array.filename and isinstance(array.base, mmap.mmap):
        return ArrayRef(str(array.filename), int(array.offset), tuple(array.shape), array.dtype.str)
    return array


def as_array(value: np.ndarray | ArrayRef) -> np.ndarray:
    return value.load() if isinstance(value, ArrayRef) else value
