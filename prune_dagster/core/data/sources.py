"""Loading a Dataset from the built-in digits, a named dataset, an `.npz` file, a folder of `.npy`
arrays, a folder of class sub-folders (images or .txt files) or a table / text file (.csv, .parquet,
.jsonl): `load_source` picks the loader from the spec.

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
from prune_dagster.core.data.frames import FRAME_SUFFIXES, FrameOptions, load_frame_file
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
from prune_dagster.core.data.text_folder import is_text_folder, load_text_folder
from prune_dagster.core.errors import ConfigError, DatasetError

__all__ = [
    "ALPHA_POLICIES", "BOMB", "BROKEN_LINK", "BUILTIN", "DEFAULT_MAX_IMAGE_PIXELS", "EMPTY_FILE", "FOLDER_OPTIONS",
    "FRAME_OPTIONS", "FRAME_SUFFIXES", "IGNORED_DIRS", "IMAGE_SUFFIXES", "KIND_CHOICES", "NAMED_SOURCES",
    "NPY_IMAGES", "OUTSIDE_ROOT", "PIL_FORMATS", "SIZE_MISMATCH",
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
# Options of table and text sources (core/data/frames.FrameOptions; max_text_bytes also for text folders).
FRAME_OPTIONS: dict[str, Any] = {name: field.default for name, field in FrameOptions.model_fields.items()}
KIND_CHOICES = ("auto", "image", "table", "text")


# Named datasets other modules provide (the benchmark fixtures register "dirty-digits"): a spec that
# starts with the prefix is loaded by the function. A registry, so core never imports the fixtures.
NAMED_SOURCES: dict[str, Callable[[str], Dataset]] = {}


def register_named_source(prefix: str, loader: Callable[[str], Dataset]) -> None:
    """Make `load_source(spec)` call `loader(spec)` for every spec that starts with `prefix`."""
    NAMED_SOURCES[prefix] = loader


def load_source(spec: str, kind: str = "auto", **options: Any) -> Dataset:
    """`digits`, a registered name (`dirty-digits…`), a path to an `.npz`, a folder holding `images.npy`,
    a folder with one sub-folder of images (or of .txt files) per class, or a .csv / .parquet / .jsonl
    table or text file.

    `kind` (auto | image | table | text) says what the source holds; `auto` reads it from the source
    (a file with a text column is text, else a table; a folder of .txt files is text). `options` are
    `load_image_folder`'s keyword options (size, on_size_mismatch, alpha, max_image_pixels,
    progress_every, progress) and `FrameOptions`' (label_column, id_column, split_column, text_column,
    na_values, max_text_bytes); a source ignores the others (with a warning when one is set to
    something other than its default).
    """
    unknown = set(options) - set(FOLDER_OPTIONS) - set(FRAME_OPTIONS)
    if unknown:
        raise ConfigError(f"unknown source option(s) {sorted(unknown)}; expected some of "
                          f"{sorted({*FOLDER_OPTIONS, *FRAME_OPTIONS})}")
    if kind not in KIND_CHOICES:
        raise ConfigError(f"kind={kind!r}; expected one of {', '.join(KIND_CHOICES)}")
    spec = (spec or "digits").strip()
    dataset = _load(spec, kind, options)
    if kind != "auto" and dataset.kind != kind:
        raise ConfigError(f"raw_dataset.kind={kind!r} but {spec} holds {dataset.kind} data; set kind to "
                          f"{dataset.kind!r} or 'auto'")
    return dataset


def _ignored(spec: str, options: dict[str, Any], used: dict[str, Any]) -> None:
    """Warn about options set for another kind of source (progress reporting is harmless anywhere)."""
    defaults = {**FOLDER_OPTIONS, **FRAME_OPTIONS}
    ignored = sorted(k for k, v in options.items() if k not in used and v != defaults[k]
                     and not k.startswith("progress"))
    if ignored:
        log.warning("source %r does not read options %s: they are ignored", spec, ignored)


def _load(spec: str, kind: str, options: dict[str, Any]) -> Dataset:
    path = Path(spec).expanduser()
    named = next((loader for prefix, loader in NAMED_SOURCES.items() if spec.startswith(prefix)), None)
    frame = {k: v for k, v in options.items() if k in FRAME_OPTIONS}
    if spec == "digits" or named is not None:
        _ignored(spec, options, {})
        return load_digits() if spec == "digits" else named(spec)
    if not path.exists():
        raise DatasetError(f"dataset {spec!r}: no such file or folder; expected 'digits', an .npz, .csv, .parquet "
                           "or .jsonl file, or a folder of class sub-folders")
    if path.is_file() and path.suffix.lower() in FRAME_SUFFIXES:
        _ignored(spec, options, frame)
        return load_frame_file(path, FrameOptions(**frame, kind=kind if kind in ("table", "text") else "auto"))
    if path.is_dir() and (kind == "text" or (kind == "auto" and is_text_folder(path))):
        _ignored(spec, options, {"max_text_bytes": 0})
        return load_text_folder(path, options.get("max_text_bytes", FRAME_OPTIONS["max_text_bytes"]))
    folder = {k: v for k, v in options.items() if k in FOLDER_OPTIONS}
    _ignored(spec, options, folder if path.is_dir() and not (path / NPY_IMAGES).is_file() else {})
    if path.is_dir() and (path / NPY_IMAGES).is_file():
        return load_npy_folder(path)
    if path.is_dir():
        return load_image_folder(path, **folder)
    if path.suffix.lower() == ".npz":
        return load_npz(path)
    raise DatasetError(f"{path}: unsupported dataset file; expected an .npz, .csv, .parquet or .jsonl file, or a "
                       "folder")


def load_digits() -> Dataset:
    """scikit-learn's 1,797 bundled 8x8 digits, pixels ÷16 into [0, 1], ids "digits/00000"…"""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = (bunch.images.astype(np.float32) / 16.0)[..., None]
    ids = np.array([f"digits/{i:05d}" for i in range(len(images))], dtype=object)
    names = tuple(str(c) for c in bunch.target_names)
    return Dataset(ids=ids, images=images, labels=bunch.target.astype(np.int64), class_names=names,
                   source="digits")
