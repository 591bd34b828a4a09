"""Loading a Dataset from the built-in digits, an `.npz` file or a folder of class sub-folders.

The source is only ever read: nothing here writes next to the user's data.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np

from prune_dagster.core.dataset import Dataset
from prune_dagster.core.errors import DatasetError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
BUILTIN = {"digits"}


def load_source(spec: str) -> Dataset:
    """`digits`, a path to an `.npz`, or a path to a folder with one sub-folder of images per class."""
    spec = (spec or "digits").strip()
    if spec == "digits":
        return load_digits()
    if spec.startswith("dirty-digits"):
        from prune_dagster.core.defects import load_dirty_digits  # optional: benchmark datasets

        return load_dirty_digits(spec)
    path = Path(spec).expanduser()
    if not path.exists():
        raise DatasetError(
            f"PRUNE_DATASET={spec!r}: no such file or folder; expected 'digits', an .npz file "
            "or a folder of class sub-folders"
        )
    if path.is_dir():
        return load_image_folder(path)
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


def _to_unit_float(images: np.ndarray, where: str) -> np.ndarray:
    """Integer pixels are scaled by their dtype's range; floats are taken as given."""
    if images.dtype == np.bool_:
        return images.astype(np.float32)
    if np.issubdtype(images.dtype, np.integer):
        info = np.iinfo(images.dtype)
        return ((images.astype(np.float64) - min(info.min, 0)) / (info.max - min(info.min, 0))).astype(np.float32)
    if np.issubdtype(images.dtype, np.floating):
        return images.astype(np.float32)
    raise DatasetError(f"{where}: images have dtype {images.dtype}; expected integer or float pixels")


def encode_labels(raw: np.ndarray, where: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Labels of any scalar kind → int indices into sorted class names."""
    raw = np.asarray(raw)
    if raw.ndim != 1:
        raise DatasetError(f"{where}: labels must be 1-D, got shape {raw.shape}")
    if raw.dtype.kind == "f" and not np.all(np.isfinite(raw)):
        raise DatasetError(f"{where}: labels contain NaN or inf")
    if raw.dtype.kind not in "iufUSb":
        raise DatasetError(f"{where}: labels have dtype {raw.dtype}; expected integers or strings")
    if raw.dtype.kind == "S":
        raw = raw.astype(str)
    classes, inverse = np.unique(raw, return_inverse=True)
    names = tuple(str(c.item() if hasattr(c, "item") else c) for c in classes)
    return inverse.astype(np.int64), names


def load_npz(path: Path) -> Dataset:
    where = str(path)
    try:
        # Never allow_pickle on user data: an object array would run a stranger's code.
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            missing = {"images", "labels"} - keys
            if missing:
                raise DatasetError(f"{where}: missing array(s) {sorted(missing)}; found {sorted(keys)}")
            images, labels = z["images"], z["labels"]
            ids = z["ids"] if "ids" in keys else None
    except ValueError as exc:  # numpy's refusal of object arrays
        if isinstance(exc, DatasetError):
            raise
        raise DatasetError(f"{where}: cannot read without pickle ({exc}); store plain numeric arrays") from exc
    except (OSError, EOFError) as exc:
        raise DatasetError(f"{where}: not a readable .npz file ({exc})") from exc
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise DatasetError(f"{where}: images must be (N, H, W) or (N, H, W, C), got shape {images.shape}")
    if len(labels) != len(images):
        raise DatasetError(f"{where}: {len(images)} images but {len(labels)} labels; expected one label per image")
    y, names = encode_labels(labels, where)
    if ids is None:
        ids = np.array([f"{i:07d}" for i in range(len(images))], dtype=object)
    else:
        if ids.shape != (len(images),):
            raise DatasetError(f"{where}: ids must have shape ({len(images)},), got {ids.shape}")
        ids = np.array([str(i) for i in ids], dtype=object)
    return Dataset(ids=ids, images=_to_unit_float(images, where), labels=y, class_names=names, source=where)


def _decode(path: Path, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        if im.mode in ("I;16", "I;16B", "I", "F"):
            arr = np.asarray(im, dtype=np.float64)
            arr = arr / (65535.0 if arr.max() > 255 else 255.0)
            im = Image.fromarray((arr * 255).astype(np.uint8))
        im = im.convert(mode)
        if size is not None and im.size != size:
            im = im.resize(size, Image.Resampling.BILINEAR)
        arr = np.asarray(im, dtype=np.float32) / 255.0
    return arr[..., None] if arr.ndim == 2 else arr


def load_image_folder(root: Path, size: tuple[int, int] | None = None) -> Dataset:
    """One sub-folder per class; id = path relative to `root`. Undecodable files become load errors."""
    from PIL import Image

    root = root.resolve()
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files: list[tuple[Path, int]] = []
    for c, name in enumerate(classes):
        for p in sorted((root / name).rglob("*")):
            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
                files.append((p, c))
    if not files:
        raise DatasetError(f"{root}: no PNG or JPEG images found in class sub-folders")
    modes, sizes = Counter(), Counter()
    for p, _ in files:
        try:
            with Image.open(p) as im:
                modes[im.mode] += 1
                sizes[im.size] += 1
        except Exception:  # counted as a load error below
            pass
    color = any(m in ("RGB", "RGBA", "P", "CMYK", "YCbCr") for m in modes)
    mode = "RGB" if color else "L"
    if size is None:
        if not sizes:
            raise DatasetError(f"{root}: none of the {len(files)} image files could be read")
        size = sizes.most_common(1)[0][0]
    w, h = size
    images = np.full((len(files), h, w, 3 if color else 1), np.nan, dtype=np.float32)
    errors: dict[str, str] = {}
    ids = np.array([p.relative_to(root).as_posix() for p, _ in files], dtype=object)
    for i, (p, _) in enumerate(files):
        if i and i % 5000 == 0:
            log.info("loaded %d / %d images from %s", i, len(files), root)
        try:
            images[i] = _decode(p, mode, size)
        except Exception as exc:  # one bad file must not stop the load: validation removes it
            errors[ids[i]] = f"unreadable: {type(exc).__name__}: {exc}"[:200]
    labels = np.array([c for _, c in files], dtype=np.int64)
    return Dataset(ids=ids, images=images, labels=labels, class_names=tuple(classes), source=str(root),
                   load_errors=errors)
