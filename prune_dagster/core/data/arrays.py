"""Numpy array formats: an `.npz` archive and a folder of `.npy` arrays (the format for large datasets).

Never unpickles: object arrays are refused before their data is read. A problem with the dataset as
a whole raises DatasetError naming the file and what was expected (see RELIABILITY.md).
"""

from __future__ import annotations

import json
import logging
import math
import zipfile
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

from prune_dagster.core.data.dataset import Dataset
from prune_dagster.core.errors import DatasetError

log = logging.getLogger(__name__)


def to_unit_float(images: np.ndarray, where: str) -> np.ndarray:
    """Pixels → float32. Integers are 8-bit (÷255) unless the dtype is uint16 or a value exceeds 255
    (then ÷65535); so int64 arrays of 0..255 values, the usual result of np.array(list), read right.
    Floats are taken as given; values beyond float32's range become inf and the sample is removed."""
    kind = images.dtype.kind
    if kind == "b":
        return images.astype(np.float32)
    if kind in "iu":
        lo, hi = int(images.min()), int(images.max())
        if lo < 0 or hi > 65535:
            raise DatasetError(f"{where}: integer pixels span {lo}..{hi}; expected 0..255 (8-bit) "
                               "or 0..65535 (16-bit), or floats")
        scale = 65535.0 if images.dtype == np.uint16 or hi > 255 else 255.0
        return images.astype(np.float32) / np.float32(scale)
    if kind == "f":
        with np.errstate(over="ignore", invalid="ignore"):
            out = images.astype(np.float32)
        finite = out[np.isfinite(out)]
        if finite.size and (finite.min() < 0 or finite.max() > 1):
            log.warning("%s: float pixels span %.3g..%.3g, outside [0, 1]; used as given", where,
                        finite.min(), finite.max())
        return out
    raise DatasetError(f"{where}: images have dtype {images.dtype}; expected integer, bool or float pixels")


def encode_labels(raw: np.ndarray, where: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Labels → int64 indices into sorted class names.

    Integers and strings work; floats must be finite whole numbers (3.0 → class "3"); bool, complex,
    dates and anything else raise, since their classes would be guesses.
    """
    raw = np.asarray(raw)
    if raw.ndim != 1:
        raise DatasetError(f"{where}: labels must be 1-D (one label per image), got shape {raw.shape}")
    kind = raw.dtype.kind
    if kind in "iuU":
        values = raw
    elif kind == "S":
        values = np.char.decode(raw, "utf-8", errors="replace")
    elif kind == "f":
        if not np.isfinite(raw).all():
            raise DatasetError(f"{where}: labels contain NaN or inf; expected one class per image")
        if len(raw) and (np.abs(raw.astype(np.float64)).max() >= 2.0**53 or not np.array_equal(raw, np.round(raw))):
            bad = raw[raw != np.round(raw)][:1].tolist() or [float(np.abs(raw).max())]
            raise DatasetError(f"{where}: float labels must be whole numbers (class ids), found {bad[0]}")
        values = raw.astype(np.int64)
    else:
        raise DatasetError(f"{where}: labels have dtype {raw.dtype}; expected integers, whole-number floats "
                           "or strings")
    classes, inverse = np.unique(values, return_inverse=True)
    names = tuple(str(c) for c in classes.tolist())
    return inverse.reshape(-1).astype(np.int64), names


def encode_ids(raw: np.ndarray, n: int, where: str) -> np.ndarray:
    if raw.ndim != 1 or len(raw) != n:
        raise DatasetError(f"{where}: ids must have shape ({n},), one per image, got shape {raw.shape}")
    if raw.dtype.kind == "S":
        raw = np.char.decode(raw, "utf-8", errors="replace")
    elif raw.dtype.kind not in "iuU":
        raise DatasetError(f"{where}: ids have dtype {raw.dtype}; expected strings or integers")
    ids = np.array([str(i) for i in raw.tolist()], dtype=object)
    counts = Counter(ids.tolist())
    dup = next((i for i, c in counts.items() if c > 1), None)
    if dup is not None:
        raise DatasetError(f"{where}: id {dup!r} appears {counts[dup]} times; ids must be unique")
    return ids


_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _read_member(zf: zipfile.ZipFile, name: str, where: str) -> np.ndarray:
    """One array of the archive, refusing object arrays before a single byte of data is read."""
    info = zf.getinfo(name)
    try:
        with zf.open(info) as fp:
            version = np.lib.format.read_magic(fp)
            if version not in _HEADER_READERS:
                raise DatasetError(f"{where}: .npy format version {version} is not supported; save with numpy.savez")
            shape, _, dtype = _HEADER_READERS[version](fp)
            if dtype.hasobject:
                raise DatasetError(f"{where}: is an object array (dtype {dtype}); reading it would need pickle, "
                                   "which is never used on user data; store numeric or string arrays")
            # A header can declare any shape: refuse one its bytes cannot hold before allocating it.
            nbytes = math.prod(shape) * dtype.itemsize
            if nbytes > info.file_size:
                raise DatasetError(f"{where}: header declares shape {shape} of {dtype} ({nbytes} bytes) but the "
                                   f"member holds {info.file_size} bytes")
        with zf.open(info) as fp:
            return np.lib.format.read_array(fp, allow_pickle=False)
    except DatasetError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, MemoryError) as exc:
        raise DatasetError(f"{where}: unreadable array ({type(exc).__name__}: {exc})") from exc


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    where = str(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:  # e.g. a pickle or .npy renamed .npz
        raise DatasetError(f"{where}: not a readable .npz file ({exc}); expected arrays saved with "
                           "numpy.savez(images=..., labels=...)") from exc
    with zf:
        members = {n.removesuffix(".npy"): n for n in zf.namelist()}
        missing = {"images", "labels"} - set(members)
        if missing:
            raise DatasetError(f"{where}: missing array(s) {sorted(missing)}; found {sorted(members)}; "
                               "expected 'images', 'labels' and optionally 'ids'")
        return {key: _read_member(zf, members[key], f"{where}[{key!r}]")
                for key in ("images", "labels", "ids") if key in members}


def read_npz_member(path: Path | str, name: str) -> np.ndarray | None:
    """One array of an .npz (read without pickle, like the dataset's own), or None when it has none."""
    where = str(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DatasetError(f"{where}: not a readable .npz file ({exc})") from exc
    with zf:
        members = {n.removesuffix(".npy"): n for n in zf.namelist()}
        return _read_member(zf, members[name], f"{where}[{name!r}]") if name in members else None


def load_npz(path: Path | str) -> Dataset:
    """`images` (N, H, W) or (N, H, W, C), `labels` (N,), optional `ids` (N,) unique strings or ints.

    Never unpickles: object arrays are refused. NaN/inf pixels are kept and removed per sample by
    `validated`; every other inconsistency raises DatasetError naming the file.
    """
    path = Path(path)
    where = str(path)
    arrays = _read_npz(path)
    images, labels = arrays["images"], arrays["labels"]
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise DatasetError(f"{where}: images must be (N, H, W) or (N, H, W, C), got shape {images.shape}")
    if len(images) == 0:
        raise DatasetError(f"{where}: the dataset is empty (images has shape {arrays['images'].shape}); "
                           "expected at least one sample")
    if 0 in images.shape[1:]:
        raise DatasetError(f"{where}: images have shape {images.shape}; expected non-zero height, width, channels")
    if labels.ndim != 1:
        raise DatasetError(f"{where}: labels must be 1-D (one label per image), got shape {labels.shape}")
    if len(labels) != len(images):
        raise DatasetError(f"{where}: {len(images)} images but {len(labels)} labels; expected one label per image")
    y, names = encode_labels(labels, where)
    if "ids" in arrays:
        ids = encode_ids(arrays["ids"], len(images), f"{where}['ids']")
    else:
        ids = np.array([f"{i:07d}" for i in range(len(images))], dtype=object)
    return Dataset(ids=ids, images=to_unit_float(images, where), labels=y, class_names=names, source=where,
                   load_info={"format": "npz", "n_files": 1})


# ------------------------------------------------------------------------------------- .npy folder

NPY_IMAGES = "images.npy"


def _load_npy(path: Path, mmap: bool) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as exc:  # object arrays, truncated files, not an .npy at all
        raise DatasetError(f"{path}: not a readable .npy array ({exc}); expected a numeric or string array "
                           "saved with numpy.save") from exc


def load_npy_folder(root: Path | str) -> Dataset:
    """A folder of `.npy` arrays, the format for large datasets: `images.npy` (N, H, W[, C]),
    `labels.npy` (N,), optional `ids.npy` (N,) unique strings or ints, `split.npy` (N,) of
    "train"/"test", and `class_names.json` (labels are then indices into it).

    float32 images are memory-mapped read-only, not loaded: every step reads the rows it needs from
    the page cache, so a million 8x8 images cost no extra memory per run. Other dtypes are converted
    in memory as for `.npz`.
    """
    root = Path(root)
    images = _load_npy(root / NPY_IMAGES, mmap=True)
    where = str(root / NPY_IMAGES)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or len(images) == 0 or 0 in images.shape[1:]:
        raise DatasetError(f"{where}: images have shape {images.shape}; expected (N, H, W) or (N, H, W, C) "
                           "with N, H, W, C > 0")
    if images.dtype != np.float32:
        images = to_unit_float(np.asarray(images), where)
    n = len(images)
    if not (root / "labels.npy").is_file():
        raise DatasetError(f"{root}: {NPY_IMAGES} found but labels.npy is missing; expected one label per image")
    labels = _load_npy(root / "labels.npy", mmap=False)
    if labels.ndim != 1 or len(labels) != n:
        raise DatasetError(f"{root / 'labels.npy'}: shape {labels.shape}; expected ({n},), one label per image")
    names_file = root / "class_names.json"
    if names_file.is_file():
        try:
            names = tuple(str(c) for c in json.loads(names_file.read_text()))
        except (ValueError, TypeError) as exc:
            raise DatasetError(f"{names_file}: not a JSON list of class names ({exc})") from exc
        if labels.dtype.kind not in "iu":
            raise DatasetError(f"{root / 'labels.npy'}: dtype {labels.dtype}; with class_names.json labels must "
                               "be integer indices into it")
        y = labels.astype(np.int64)
        if len(y) and (y.min() < 0 or y.max() >= len(names)):
            raise DatasetError(f"{root / 'labels.npy'}: labels span {y.min()}..{y.max()}; expected indices into "
                               f"the {len(names)} names of {names_file.name}")
    else:
        y, names = encode_labels(labels, str(root / "labels.npy"))
    if (root / "ids.npy").is_file():
        ids = encode_ids(_load_npy(root / "ids.npy", mmap=False), n, str(root / "ids.npy"))
    else:
        ids = np.array([f"{i:07d}" for i in range(n)], dtype=object)
    split = np.array([], dtype=object)
    if (root / "split.npy").is_file():
        raw = _load_npy(root / "split.npy", mmap=False)
        if raw.shape != (n,) or raw.dtype.kind not in "US":
            raise DatasetError(f"{root / 'split.npy'}: shape {raw.shape}, dtype {raw.dtype}; expected ({n},) "
                               "strings 'train' / 'test'")
        split = raw.astype(str).astype(object)
        bad = ~np.isin(split, ["train", "test"])
        if bad.any():
            raise DatasetError(f"{root / 'split.npy'}: value {split[bad][0]!r} at row {np.flatnonzero(bad)[0]}; "
                               "expected 'train' or 'test'")
    return Dataset(ids=ids, images=images, labels=y, class_names=names, source=str(root), split=split,
                   load_info={"format": "npy", "memory_mapped": isinstance(images, np.memmap)})


