"""One image file through Pillow: where it really is, its header (size, mode, colour), its pixels.

Only the PNG and JPEG decoders ever see user files, under explicit safety settings (`pillow_guard`).
A problem with one file is returned as a reason "category: detail", never raised: the loader records
it in `Dataset.load_errors` and `validated` removes the sample.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Only these Pillow decoders ever see user files: a file named .png that is really EPS would
# otherwise be handed to Ghostscript.
PIL_FORMATS = ("PNG", "JPEG")

# Reason categories in Dataset.load_errors ("category: detail"); group by the part before ":".
EMPTY_FILE = "empty_file"
TRUNCATED = "truncated_image"
UNREADABLE = "unreadable"
BOMB = "decompression_bomb"
OUTSIDE_ROOT = "outside_root"
BROKEN_LINK = "broken_symlink"
SIZE_MISMATCH = "size_mismatch"


@dataclass(frozen=True)
class Probe:
    """What the header of one usable image file says."""

    real: Path  # the resolved path actually opened (inside the root)
    size: tuple[int, int]  # (w, h) after EXIF rotation
    mode: str
    color: bool


@contextlib.contextmanager
def pillow_guard(max_pixels: int) -> Iterator[None]:
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


def failure_reason(exc: BaseException) -> str:
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


def probe_image(path: Path, root: Path) -> Probe | str:
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
            return Probe(real=real, size=(w, h), mode=im.mode, color=color)
    except Exception as exc:  # any per-file failure is that sample's problem, never the load's
        return failure_reason(exc)


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


def decode_image(probe: Probe, layout: str, size: tuple[int, int], alpha: str) -> np.ndarray:
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
