"""Loading a Dataset from the built-in digits, a named dataset, an `.npz` file, a folder of `.npy`
arrays or a folder of class sub-folders: `load_source` picks the loader from the spec.

The loaders live in `arrays.py` (.npz, .npy folder), `image_folder.py` (scan and load a folder of
images) and `pillow.py` (one image file); their public names are re-exported here. The source is
only ever read: nothing here writes next to the user's data.

Two kinds of problem, two outcomes (see RELIABILITY.md):
- a problem with one sample (a truncated or empty file, a decompression bomb, a symlink out of the
  root, a size mismatch under `on_size_mismatch="reject"`) never stops the load: the sample's pixels
  stay NaN and `Dataset.load_errors[id]` says why, as "category: detail"; `validated` removes it;
- a problem with the dataset as a whole (no images, arrays that disagree, object arrays, labels of
  the wrong shape or kind) raises DatasetError naming the file and what was expected.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from prune_dagster.core.data.arrays import (
    NPY_IMAGES,
    encode_ids,
    encode_labels,
    load_npy_folder,
    load_npz,
    to_unit_float,
)
from prune_dagster.core.data.dataset import Dataset
from prune_dagster.core.data.image_folder import (
    ALPHA_POLICIES,
    DEFAULT_MAX_IMAGE_PIXELS,
    IGNORED_DIRS,
    IMAGE_SUFFIXES,
    SIZE_POLICIES,
    FolderScan,
    load_image_folder,
    scan_image_folder,
)
from prune_dagster.core.data.pillow import (
    BOMB,
    BROKEN_LINK,
    EMPTY_FILE,
    OUTSIDE_ROOT,
    PIL_FORMATS,
    SIZE_MISMATCH,
    TRUNCATED,
    UNREADABLE,
)
from prune_dagster.core.errors import ConfigError, DatasetError

__all__ = [
    "ALPHA_POLICIES", "BOMB", "BROKEN_LINK", "BUILTIN", "DEFAULT_MAX_IMAGE_PIXELS", "EMPTY_FILE", "FOLDER_OPTIONS",
    "IGNORED_DIRS", "IMAGE_SUFFIXES", "NAMED_SOURCES", "NPY_IMAGES", "OUTSIDE_ROOT", "PIL_FORMATS", "SIZE_MISMATCH",
    "SIZE_POLICIES", "TRUNCATED", "UNREADABLE", "FolderScan", "encode_ids", "encode_labels", "load_digits",
    "load_image_folder", "load_npy_folder", "load_npz", "load_source", "register_named_source", "scan_image_folder",
    "to_unit_float",
]

log = logging.getLogger(__name__)

BUILTIN = {"digits"}

FOLDER_OPTIONS: dict[str, Any] = {
    "size": None,
    "on_size_mismatch": "resize",
    "alpha": "white",
    "max_image_pixels": DEFAULT_MAX_IMAGE_PIXELS,
    "progress_every": 1000,
    "progress": None,
}


# Named datasets other modules provide (the benchmark fixtures register "dirty-digits"): a spec that
# starts with the prefix is loaded by the function. A registry, so core never imports the fixtures.
NAMED_SOURCES: dict[str, Callable[[str], Dataset]] = {}


def register_named_source(prefix: str, loader: Callable[[str], Dataset]) -> None:
    """Make `load_source(spec)` call `loader(spec)` for every spec that starts with `prefix`."""
    NAMED_SOURCES[prefix] = loader


def load_source(spec: str, **options: Any) -> Dataset:
    """`digits`, a registered name (`dirty-digits…`), a path to an `.npz`, a folder holding `images.npy`,
    or a folder with one sub-folder of images per class.

    `options` are `load_image_folder`'s keyword options (size, on_size_mismatch, alpha,
    max_image_pixels, progress_every, progress); other sources ignore them (with a warning when
    a size or policy is set to something other than its default).
    """
    unknown = set(options) - set(FOLDER_OPTIONS)
    if unknown:
        raise ConfigError(f"unknown source option(s) {sorted(unknown)}; expected some of {sorted(FOLDER_OPTIONS)}")
    spec = (spec or "digits").strip()
    path = Path(spec).expanduser()
    named = next((loader for prefix, loader in NAMED_SOURCES.items() if spec.startswith(prefix)), None)
    if spec == "digits" or named is not None or not path.is_dir():
        # Progress reporting is harmless anywhere; a size or policy set for an .npz is worth a warning.
        ignored = sorted(k for k, v in options.items() if v != FOLDER_OPTIONS[k] and not k.startswith("progress"))
        if ignored:
            log.warning("source %r is not an image folder: options %s are ignored", spec, ignored)
    if spec == "digits":
        return load_digits()
    if named is not None:
        return named(spec)
    if not path.exists():
        raise DatasetError(
            f"dataset {spec!r}: no such file or folder; expected 'digits', an .npz file "
            "or a folder of class sub-folders"
        )
    if path.is_dir() and (path / NPY_IMAGES).is_file():
        return load_npy_folder(path)
    if path.is_dir():
        return load_image_folder(path, **options)
    if path.suffix.lower() == ".npz":
        return load_npz(path)
    raise DatasetError(f"{path}: unsupported dataset file; expected an .npz or a folder")


def load_digits() -> Dataset:
    """scikit-learn's 1,797 bundled 8x8 digits, pixels ÷16 into [0, 1], ids "digits/00000"…"""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = (bunch.images.astype(np.float32) / 16.0)[..., None]
    ids = np.array([f"digits/{i:05d}" for i in range(len(images))], dtype=object)
    names = tuple(str(c) for c in bunch.target_names)
    return Dataset(ids=ids, images=images, labels=bunch.target.astype(np.int64), class_names=names,
                   source="digits")
