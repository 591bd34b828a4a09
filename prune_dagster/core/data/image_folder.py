"""A folder with one sub-folder of PNG/JPEG images per class: scanning it and loading it.

The files are only read. A problem with one file never stops the load: the sample's pixels stay NaN
and `Dataset.load_errors[id]` says why ("category: detail", see `pillow.py`); `validated` removes it.
A folder with no usable image at all raises DatasetError naming it.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prune_dagster.core.data.dataset import Dataset
from prune_dagster.core.data.pillow import (
    SIZE_MISMATCH,
    Probe,
    decode_image,
    failure_reason,
    pillow_guard,
    probe_image,
)
from prune_dagster.core.errors import ConfigError, DatasetError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
IGNORED_DIRS = frozenset({"__MACOSX"})  # zip-extraction debris, never a class
# 8192 x 8192. Pillow's own default (~89 Mpx) only warns; here anything above the limit is refused.
DEFAULT_MAX_IMAGE_PIXELS = 64 * 1024 * 1024
SIZE_POLICIES = ("resize", "reject")
ALPHA_POLICIES = ("white", "black", "drop")


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
    return scan_class_folders(root, IMAGE_SUFFIXES, "an image", "class sub-folders")


def scan_class_folders(root: Path | str, suffixes: frozenset[str], what: str, expected: str) -> FolderScan:
    """The layout every folder source shares: class = top-level sub-folder, files with one of `suffixes`
    anywhere below it; everything else is listed in `ignored` (relative path → why), never an error.
    `what` names a wanted file in those reasons ("not an image (.txt)"), `expected` the folder's content
    in the error for a root that is not a folder."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder; expected a folder of {expected}")
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
                elif Path(f).suffix.lower() not in suffixes:
                    ignored[rel] = f"not {what} ({Path(f).suffix or 'no suffix'})"
                else:
                    files.append((rel, name))
    files.sort()
    return FolderScan(root=root, classes=classes, files=files, ignored=ignored)


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
    "size_mismatch: WxH, expected wxh". Each file's own (height, width) after EXIF rotation is kept in
    `Dataset.original_sizes` (NaN for an unreadable file), for the size and aspect checks.
    Empty class folders are not classes (labels index classes that have files); they are listed in
    `load_info["empty_classes"]` and logged. `progress(phase, done, total)` (phase "scanned" for the
    header pass, then "decoded") and a log line every `progress_every` files report long loads.
    """
    size = _check_folder_options(size, on_size_mismatch, alpha, max_image_pixels, progress_every)
    start = time.perf_counter()
    scan = scan_image_folder(root)
    class_names, empty = _classes(scan)
    n = len(scan.files)

    def report(phase: str, i: int) -> None:
        if i % progress_every == 0 or i == n:
            log.info("%s %d / %d images from %s (%.1f s)", phase, i, n, scan.root, time.perf_counter() - start)
            if progress is not None:
                progress(phase, i, n)

    with pillow_guard(max_image_pixels):
        probes, errors = _probe_all(scan, report)
        layout = "RGB" if any(p.color for p in probes.values()) else "L"
        size_from = "option" if size is not None else "most_common"
        if size is None:  # ties go to the size met first in sorted id order: deterministic
            size = Counter(p.size for p in probes.values()).most_common(1)[0][0]
        images, n_resized = _decode_all(scan, probes, errors, layout, size, on_size_mismatch, alpha, report)
    ids = np.array([sid for sid, _ in scan.files], dtype=object)
    index = {c: k for k, c in enumerate(class_names)}
    labels = np.array([index[c] for _, c in scan.files], dtype=np.int64)
    by_category = dict(Counter(r.split(":", 1)[0] for r in errors.values()))
    if errors:
        log.warning("%s: %d of %d images unusable (%s); `validated` removes them", scan.root, len(errors), n,
                    by_category)
    info = {"format": "image_folder", "n_files": n, "channel_layout": layout, "size": list(size),
            "size_from": size_from, "on_size_mismatch": on_size_mismatch, "n_resized": int(n_resized),
            "alpha": alpha, **_folder_stats(scan, probes, empty), "load_errors_by_category": by_category,
            "max_image_pixels": max_image_pixels, "seconds": round(time.perf_counter() - start, 3)}
    sizes = np.array([probes[sid].size[::-1] if sid in probes else (np.nan, np.nan) for sid in ids],
                     dtype=np.float64)  # Probe.size is (w, h)
    return Dataset(ids=ids, images=images, labels=labels, class_names=class_names, source=str(scan.root),
                   load_errors=errors, load_info=info, original_sizes=sizes.reshape(len(ids), 2))


def _folder_stats(scan: FolderScan, probes: dict[str, Probe], empty: list[str]) -> dict[str, Any]:
    """What the folder held, for the load's metadata: modes, the commonest sizes, what was skipped."""
    return {
        "modes": dict(Counter(p.mode for p in probes.values())),
        "sizes": {f"{a}x{b}": k for (a, b), k in Counter(p.size for p in probes.values()).most_common(5)},
        "empty_classes": empty,
        "n_ignored": len(scan.ignored),
        "ignored_examples": dict(list(scan.ignored.items())[:10]),
    }


def _classes(scan: FolderScan) -> tuple[tuple[str, ...], list[str]]:
    """(class names that hold files, empty class folders); raises if there is nothing to load."""
    root = scan.root
    if not scan.classes:
        raise DatasetError(f"{root}: no class sub-folders; expected {root}/<class name>/<image>.png or .jpg")
    if not scan.files:
        raise DatasetError(f"{root}: no PNG or JPEG images in its class sub-folder(s) {scan.classes}; expected "
                           f"{root}/<class name>/<image>.png or .jpg")
    used = {c for _, c in scan.files}
    empty = [c for c in scan.classes if c not in used]
    if empty:
        log.warning("%s: class folder(s) %s hold no images; they are not classes", root, empty)
    return tuple(c for c in scan.classes if c in used), empty


def _probe_all(scan: FolderScan, report: Callable[[str, int], None]) -> tuple[dict[str, Probe], dict[str, str]]:
    """Every file's header: (usable probes, reasons for the unusable) by id; raises if none is usable."""
    errors: dict[str, str] = {}
    probes: dict[str, Probe] = {}
    for i, (sid, _) in enumerate(scan.files, 1):
        got = probe_image(scan.root / sid, scan.root)
        if isinstance(got, str):
            errors[sid] = got
        else:
            probes[sid] = got
        report("scanned", i)
    if not probes:
        sid = scan.files[0][0]
        raise DatasetError(f"{scan.root}: none of the {len(scan.files)} image files could be read "
                           f"(e.g. {sid}: {errors[sid]})")
    return probes, errors


def _decode_all(scan: FolderScan, probes: dict[str, Probe], errors: dict[str, str], layout: str,
                size: tuple[int, int], on_size_mismatch: str, alpha: str,
                report: Callable[[str, int], None]) -> tuple[np.ndarray, int]:
    """(N, h, w, C) pixels, NaN where a file failed (its reason added to `errors`), and how many were resized."""
    w, h = size
    images = np.full((len(scan.files), h, w, 3 if layout == "RGB" else 1), np.nan, dtype=np.float32)
    n_resized = 0
    for i, (sid, _) in enumerate(scan.files):
        probe = probes.get(sid)
        if probe is not None and probe.size != size and on_size_mismatch == "reject":
            errors[sid] = f"{SIZE_MISMATCH}: {probe.size[0]}x{probe.size[1]}, expected {w}x{h}"
        elif probe is not None:
            try:
                images[i] = decode_image(probe, layout, size, alpha)
                n_resized += probe.size != size
            except Exception as exc:  # one bad file must not stop the load: validation removes it
                errors[sid] = failure_reason(exc)
        report("decoded", i + 1)
    return images, n_resized
