"""Loading a Dataset from the built-in digits, an `.npz` file or a folder of class sub-folders.

The source is only ever read: nothing here writes next to the user's data.

Two kinds of problem, two outcomes (see RELIABILITY.md):
- a problem with one sample (a truncated or empty file, a decompression bomb, a symlink out of the
  root, a size mismatch under `on_size_mismatch="reject"`) never stops the load: the sample's pixels
  stay NaN and `Dataset.load_errors[id]` says why, as "category: detail"; `validated` removes it;
- a problem with the dataset as a whole (no images, arrays that disagree, object arrays, labels of
  the wrong shape or kind) raises DatasetError naming the file and what was expected.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import time
import warnings
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prune_dagster.core.data.dataset import Dataset
from prune_dagster.core.errors import ConfigError, DatasetError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
# Only these Pillow decoders ever see user files: a file named .png that is really EPS would
# otherwise be handed to Ghostscript.
PIL_FORMATS = ("PNG", "JPEG")
IGNORED_DIRS = frozenset({"__MACOSX"})  # zip-extraction debris, never a class
BUILTIN = {"digits"}
# 8192 x 8192. Pillow's own default (~89 Mpx) only warns; here anything above the limit is refused.
DEFAULT_MAX_IMAGE_PIXELS = 64 * 1024 * 1024
SIZE_POLICIES = ("resize", "reject")
ALPHA_POLICIES = ("white", "black", "drop")

# Reason categories in Dataset.load_errors ("category: detail"); group by the part before ":".
EMPTY_FILE = "empty_file"
TRUNCATED = "truncated_image"
UNREADABLE = "unreadable"
BOMB = "decompression_bomb"
OUTSIDE_ROOT = "outside_root"
BROKEN_LINK = "broken_symlink"
SIZE_MISMATCH = "size_mismatch"

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
    """`digits`, a path to an `.npz`, or a path to a folder with one sub-folder of images per class.

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
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = (bunch.images.astype(np.float32) / 16.0)[..., None]
    ids = np.array([f"digits/{i:05d}" for i in range(len(images))], dtype=object)
    names = tuple(str(c) for c in bunch.target_names)
    return Dataset(ids=ids, images=images, labels=bunch.target.astype(np.int64), class_names=names,
                   source="digits")


# --------------------------------------------------------------------------------------------- .npz


def _to_unit_float(images: np.ndarray, where: str) -> np.ndarray:
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


def _encode_ids(raw: np.ndarray, n: int, where: str) -> np.ndarray:
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
        ids = _encode_ids(arrays["ids"], len(images), f"{where}['ids']")
    else:
        ids = np.array([f"{i:07d}" for i in range(len(images))], dtype=object)
    return Dataset(ids=ids, images=_to_unit_float(images, where), labels=y, class_names=names, source=where,
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
        images = _to_unit_float(np.asarray(images), where)
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
        ids = _encode_ids(_load_npy(root / "ids.npy", mmap=False), n, str(root / "ids.npy"))
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


# ------------------------------------------------------------------------------------- image folder


@dataclass
class FolderScan:
    """What a folder holds, without opening an image: the rule the loader (and a sensor) uses."""

    root: Path
    classes: list[str]  # every class sub-folder, sorted; some may hold no image
    files: list[tuple[str, str]]  # (id = POSIX path relative to root, class name), sorted
    ignored: dict[str, str] = field(default_factory=dict)  # relative path → why it was skipped


def scan_image_folder(root: Path | str) -> FolderScan:
    """Class = top-level sub-folder; images = .png/.jpg/.jpeg files anywhere below it.

    Hidden files and folders, other suffixes (.txt, .DS_Store, Thumbs.db) and files directly in the
    root are skipped, not errors. Symlinked folders below a class folder are not followed.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder; expected a folder of class sub-folders")
    classes, files, ignored = [], [], {}
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name.startswith("."):
            ignored[entry.name] = "hidden"
        elif entry.is_dir() and entry.name not in IGNORED_DIRS:
            classes.append(entry.name)
        else:
            ignored[entry.name] = "ignored folder" if entry.is_dir() else "not in a class folder"

    def unreadable(exc: OSError) -> None:  # os.walk would skip the folder silently
        ignored[Path(os.path.relpath(exc.filename, root)).as_posix() + "/"] = f"unreadable folder ({exc.strerror})"

    for name in classes:
        # The class folder itself may be a symlink: its files are then checked against the root one
        # by one (and refused if they resolve outside it).
        for dirpath, dirnames, filenames in os.walk(root / name, onerror=unreadable, followlinks=False):
            rel_dir = Path(dirpath).relative_to(root)
            for d in list(dirnames):
                if d.startswith(".") or d in IGNORED_DIRS or os.path.islink(os.path.join(dirpath, d)):
                    ignored[(rel_dir / d).as_posix() + "/"] = "hidden" if d.startswith(".") else "folder not followed"
                    dirnames.remove(d)
            for f in filenames:
                rel = (rel_dir / f).as_posix()
                if f.startswith("."):
                    ignored[rel] = "hidden"
                elif Path(f).suffix.lower() not in IMAGE_SUFFIXES:
                    ignored[rel] = f"not an image ({Path(f).suffix or 'no suffix'})"
                else:
                    files.append((rel, name))
    files.sort()
    return FolderScan(root=root, classes=classes, files=files, ignored=ignored)


@dataclass(frozen=True)
class _Probe:
    real: Path  # the resolved path actually opened (inside the root)
    size: tuple[int, int]  # (w, h) after EXIF rotation
    mode: str
    color: bool


@contextlib.contextmanager
def _pillow_guard(max_pixels: int) -> Iterator[None]:
    """Explicit Pillow safety settings for the load, restored afterwards (they are process-global)."""
    from PIL import Image, ImageFile

    old = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    Image.MAX_IMAGE_PIXELS = max_pixels
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never silently grey-filled
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x the limit; a warning must refuse the file too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = old


def _reason(exc: BaseException) -> str:
    from PIL import Image, UnidentifiedImageError

    if isinstance(exc, Image.DecompressionBombError | Image.DecompressionBombWarning):
        # Pillow's text names 2x the limit for its error; name the limit this load set.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        declared = f"declares {found.group(1)} pixels" if found else str(exc)
        return f"{BOMB}: {declared}, more than max_image_pixels={Image.MAX_IMAGE_PIXELS}; not decoded"
    if isinstance(exc, UnidentifiedImageError):
        return f"{UNREADABLE}: not a PNG or JPEG image"
    if isinstance(exc, OSError) and "truncated" in str(exc):
        return f"{TRUNCATED}: {exc}"
    return f"{UNREADABLE}: {type(exc).__name__}: {exc}"[:200]


def _resolve_inside(path: Path, root: Path) -> Path | str:
    """The real file behind `path`, or why it must not be read. Nothing is opened here."""
    try:
        real = path.resolve(strict=True)
    except FileNotFoundError:
        return f"{BROKEN_LINK}: points to a missing file"
    except (OSError, RuntimeError) as exc:  # symlink loop, permission
        return f"{UNREADABLE}: {type(exc).__name__}: {exc}"[:200]
    if not real.is_relative_to(root):
        return f"{OUTSIDE_ROOT}: resolves to {real}, outside the dataset root {root}; not read"
    if not real.is_file():  # a FIFO or device named .png would block or stream forever
        return f"{UNREADABLE}: not a regular file"
    if real.stat().st_size == 0:
        return f"{EMPTY_FILE}: 0 bytes"
    return real


GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"})
EXIF_ORIENTATION = 0x0112


def _probe(path: Path, root: Path) -> _Probe | str:
    """Header only (plus palette pixels): size, mode, colour. Returns the reason if unusable."""
    from PIL import Image

    real = _resolve_inside(path, root)
    if isinstance(real, str):
        return real
    try:
        with Image.open(real, formats=PIL_FORMATS) as im:  # raises on a bomb before any pixel is decoded
            w, h = im.size
            if im.format in ("JPEG", "MPO") and im.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
                w, h = h, w  # rotated 90°: decoded with exif_transpose below
            if im.mode in GRAY_MODES:
                color = False
            elif im.mode in ("P", "PA"):
                # A palette image is grey if every colour it uses is grey (common for optimised PNGs).
                rgb = np.asarray(im.convert("RGBA"))[..., :3]
                color = not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]))
            else:
                color = True
            return _Probe(real=real, size=(w, h), mode=im.mode, color=color)
    except Exception as exc:  # any per-file failure is that sample's problem, never the load's
        return _reason(exc)


def _flatten_alpha(im: Any, alpha: str) -> Any:
    from PIL import Image

    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    if not has_alpha:
        return im
    rgba = im.convert("RGBA")
    if alpha == "drop":  # keep whatever colour is stored under transparent pixels
        return rgba.convert("RGB")
    background = (255, 255, 255, 255) if alpha == "white" else (0, 0, 0, 255)
    return Image.alpha_composite(Image.new("RGBA", rgba.size, background), rgba).convert("RGB")


def _decode(probe: _Probe, layout: str, size: tuple[int, int], alpha: str) -> np.ndarray:
    """(h, w, 1 or 3) float32 in [0, 1]."""
    from PIL import Image, ImageOps

    resample = Image.Resampling.BILINEAR  # antialiased when shrinking (Pillow scales the kernel)
    with Image.open(probe.real, formats=PIL_FORMATS) as im:
        im.load()
        if im.format in ("JPEG", "MPO"):
            im = ImageOps.exif_transpose(im)
        if im.mode == "I" or im.mode.startswith("I;16"):
            # 16-bit PNG: scale by the full 16-bit range in float, never via 8 bits (no banding, and a
            # dark image stays dark instead of being stretched).
            plane = Image.fromarray(np.clip(np.asarray(im, dtype=np.float32) / 65535.0, 0.0, 1.0))
            if plane.size != size:
                plane = plane.resize(size, resample)
            arr = np.asarray(plane, dtype=np.float32)[..., None]
            return np.repeat(arr, 3, axis=2) if layout == "RGB" else arr
        im = _flatten_alpha(im, alpha).convert(layout)
        if im.size != size:
            im = im.resize(size, resample)
        arr = np.asarray(im, dtype=np.float32) / 255.0
    return arr[..., None] if arr.ndim == 2 else arr


def _check_folder_options(size: Any, on_size_mismatch: str, alpha: str, max_image_pixels: Any,
                          progress_every: Any) -> tuple[int, int] | None:
    if size is not None:
        if (not isinstance(size, list | tuple) or len(size) != 2
                or not all(isinstance(v, int | np.integer) and not isinstance(v, bool) and v > 0 for v in size)):
            raise ConfigError(f"size={size!r}; expected (width, height) in positive pixels, or None for the most "
                              "common size")
        size = (int(size[0]), int(size[1]))
    if on_size_mismatch not in SIZE_POLICIES:
        raise ConfigError(f"on_size_mismatch={on_size_mismatch!r}; expected one of {SIZE_POLICIES}")
    if alpha not in ALPHA_POLICIES:
        raise ConfigError(f"alpha={alpha!r}; expected one of {ALPHA_POLICIES}")
    if not isinstance(max_image_pixels, int) or max_image_pixels < 1:
        raise ConfigError(f"max_image_pixels={max_image_pixels!r}; expected a positive number of pixels")
    if not isinstance(progress_every, int) or progress_every < 1:
        raise ConfigError(f"progress_every={progress_every!r}; expected a positive number of files")
    return size


def load_image_folder(
    root: Path | str,
    size: tuple[int, int] | None = None,
    on_size_mismatch: str = "resize",
    alpha: str = "white",
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    progress_every: int = 1000,
    progress: Callable[[str, int, int], None] | None = None,
) -> Dataset:
    """One sub-folder per class; id = POSIX path relative to `root`; the files are only read.

    Channel layout: RGB if any image is colour (RGB/RGBA/CMYK/YCbCr or a palette using a non-grey
    colour), else one grey channel. Alpha is composited on `alpha`="white" (default: what a viewer
    shows) or "black", or dropped ("drop": the stored colour under transparent pixels is kept). 16-bit
    PNGs are scaled by 65535. JPEG EXIF rotation is applied.
    Size: `size`=(w, h) or None for the most common size; a different size is resized (bilinear,
    aspect not kept) or, with `on_size_mismatch`="reject", left for `validated` to remove with reason
    "size_mismatch: WxH, expected wxh".
    Empty class folders are not classes (labels index classes that have files); they are listed in
    `load_info["empty_classes"]` and logged. `progress(phase, done, total)` (phase "scanned" for the
    header pass, then "decoded") and a log line every `progress_every` files report long loads.
    """
    size = _check_folder_options(size, on_size_mismatch, alpha, max_image_pixels, progress_every)
    start = time.perf_counter()
    scan = scan_image_folder(root)
    root = scan.root
    if not scan.classes:
        raise DatasetError(f"{root}: no class sub-folders; expected {root}/<class name>/<image>.png or .jpg")
    n = len(scan.files)
    if n == 0:
        raise DatasetError(f"{root}: no PNG or JPEG images in its class sub-folder(s) {scan.classes}; expected "
                           f"{root}/<class name>/<image>.png or .jpg")
    used = {c for _, c in scan.files}
    class_names = tuple(c for c in scan.classes if c in used)
    empty = [c for c in scan.classes if c not in used]
    if empty:
        log.warning("%s: class folder(s) %s hold no images; they are not classes", root, empty)

    def report(phase: str, i: int) -> None:
        if i % progress_every == 0 or i == n:
            log.info("%s %d / %d images from %s (%.1f s)", phase, i, n, root, time.perf_counter() - start)
            if progress is not None:
                progress(phase, i, n)

    errors: dict[str, str] = {}
    probes: dict[str, _Probe] = {}
    with _pillow_guard(max_image_pixels):
        for i, (sid, _) in enumerate(scan.files, 1):
            got = _probe(root / sid, root)
            if isinstance(got, str):
                errors[sid] = got
            else:
                probes[sid] = got
            report("scanned", i)
        if not probes:
            sid = scan.files[0][0]
            raise DatasetError(f"{root}: none of the {n} image files could be read (e.g. {sid}: {errors[sid]})")
        layout = "RGB" if any(p.color for p in probes.values()) else "L"
        size_from = "option" if size is not None else "most_common"
        if size is None:  # ties go to the size met first in sorted id order: deterministic
            size = Counter(p.size for p in probes.values()).most_common(1)[0][0]
        w, h = size
        images = np.full((n, h, w, 3 if layout == "RGB" else 1), np.nan, dtype=np.float32)
        n_resized = 0
        for i, (sid, _) in enumerate(scan.files):
            probe = probes.get(sid)
            if probe is not None and probe.size != size and on_size_mismatch == "reject":
                errors[sid] = f"{SIZE_MISMATCH}: {probe.size[0]}x{probe.size[1]}, expected {w}x{h}"
            elif probe is not None:
                try:
                    images[i] = _decode(probe, layout, size, alpha)
                    n_resized += probe.size != size
                except Exception as exc:  # one bad file must not stop the load: validation removes it
                    errors[sid] = _reason(exc)
            report("decoded", i + 1)
    ids = np.array([sid for sid, _ in scan.files], dtype=object)
    index = {c: k for k, c in enumerate(class_names)}
    labels = np.array([index[c] for _, c in scan.files], dtype=np.int64)
    if errors:
        by_cat = Counter(r.split(":", 1)[0] for r in errors.values())
        log.warning("%s: %d of %d images unusable (%s); `validated` removes them", root, len(errors), n,
                    dict(by_cat))
    info = {
        "format": "image_folder",
        "n_files": n,
        "channel_layout": layout,
        "size": [w, h],
        "size_from": size_from,
        "on_size_mismatch": on_size_mismatch,
        "n_resized": int(n_resized),
        "alpha": alpha,
        "modes": dict(Counter(p.mode for p in probes.values())),
        "sizes": {f"{a}x{b}": k for (a, b), k in Counter(p.size for p in probes.values()).most_common(5)},
        "empty_classes": empty,
        "n_ignored": len(scan.ignored),
        "ignored_examples": dict(list(scan.ignored.items())[:10]),
        "load_errors_by_category": dict(Counter(r.split(":", 1)[0] for r in errors.values())),
        "max_image_pixels": max_image_pixels,
        "seconds": round(time.perf_counter() - start, 3),
    }
    return Dataset(ids=ids, images=images, labels=labels, class_names=class_names, source=str(root),
                   load_errors=errors, load_info=info)
