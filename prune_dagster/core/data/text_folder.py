"""A folder with one sub-folder of UTF-8 .txt files per class: scanning it and loading it.

The same layout rules as image folders (`image_folder.py`): class = top-level sub-folder, files anywhere
below it, hidden files and folders skipped, symlinked folders not followed, id = the file's POSIX path
relative to the root. The files are only read. A problem with one file never stops the load: its text
stays "" and `Dataset.load_errors[id]` says why ("category: detail"); `validated` removes it. An empty
file is an empty text, not an error (validation removes empty texts).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from prune_dagster.core.data.dataset import Dataset
from prune_dagster.core.data.image_folder import IMAGE_SUFFIXES, FolderScan, scan_class_folders
from prune_dagster.core.data.pillow import BROKEN_LINK, OUTSIDE_ROOT, UNREADABLE
from prune_dagster.core.errors import ConfigError, DatasetError

log = logging.getLogger(__name__)

TEXT_SUFFIXES = frozenset({".txt"})
DEFAULT_MAX_TEXT_BYTES = 10_000_000
NOT_UTF8 = "not_utf8"
TOO_LARGE = "too_large"
BOM = b"\xef\xbb\xbf"


def scan_text_folder(root: Path | str) -> FolderScan:
    """Class = top-level sub-folder; texts = .txt files anywhere below it. Other files, hidden entries and
    files directly in the root are listed in `ignored` (relative path → why), not errors."""
    return scan_class_folders(root, TEXT_SUFFIXES, "a text file", "class sub-folders of .txt files")


def is_text_folder(root: Path | str) -> bool:
    """True for a folder of class sub-folders that hold .txt files and no PNG or JPEG image."""
    try:
        scan = scan_text_folder(root)
    except (DatasetError, OSError):
        return False
    has_images = any(Path(rel).suffix.lower() in IMAGE_SUFFIXES for rel in scan.ignored)
    return bool(scan.files) and not has_images


def read_text(path: Path, root: Path, max_text_bytes: int) -> tuple[str, str | None]:
    """(text, None) or ("", reason): one file, resolved inside `root`, its size checked before it is read."""
    try:
        real = path.resolve(strict=True)
    except FileNotFoundError:
        return "", f"{BROKEN_LINK}: points to a missing file"
    except (OSError, RuntimeError) as exc:  # symlink loop, permission
        return "", f"{UNREADABLE}: {type(exc).__name__}: {exc}"[:200]
    if not real.is_relative_to(root):
        return "", f"{OUTSIDE_ROOT}: resolves to {real}, outside the dataset root {root}; not read"
    if not real.is_file():  # a FIFO named .txt would block forever
        return "", f"{UNREADABLE}: not a regular file"
    size = real.stat().st_size
    if size > max_text_bytes:
        return "", f"{TOO_LARGE}: {size} bytes (limit {max_text_bytes}); not read"
    try:
        with open(real, "rb") as fh:
            data = fh.read(max_text_bytes + 1)  # the file may have grown since stat
    except OSError as exc:
        return "", f"{UNREADABLE}: {type(exc).__name__}: {exc}"[:200]
    if len(data) > max_text_bytes:
        return "", f"{TOO_LARGE}: more than {max_text_bytes} bytes (limit {max_text_bytes}); not read"
    start = len(BOM) if data.startswith(BOM) else 0  # a UTF-8 byte-order mark is not part of the text
    try:
        return data[start:].decode("utf-8"), None
    except UnicodeDecodeError as exc:
        offset = start + exc.start
        return "", f"{NOT_UTF8}: invalid byte 0x{data[offset]:02x} at offset {offset}"


def check_max_text_bytes(max_text_bytes: Any) -> int:
    if isinstance(max_text_bytes, bool) or not isinstance(max_text_bytes, int | np.integer) or max_text_bytes < 1:
        raise ConfigError(f"max_text_bytes={max_text_bytes!r}; expected a positive number of bytes")
    return int(max_text_bytes)


def text_classes(scan: FolderScan) -> tuple[tuple[str, ...], list[str]]:
    """(class names that hold .txt files, empty class folders); raises if the folder cannot be a dataset."""
    root = scan.root
    if not scan.classes:
        raise DatasetError(f"{root}: no class sub-folders; expected {root}/<class name>/<text>.txt")
    if not scan.files:
        raise DatasetError(f"{root}: no .txt files in its class sub-folder(s) {scan.classes}; expected "
                           f"{root}/<class name>/<text>.txt")
    used = {c for _, c in scan.files}
    if len(used) < 2:
        raise DatasetError(f"{root}: only one class folder holds .txt files ({sorted(used)[0]!r}); expected at "
                           "least 2 classes")
    empty = [c for c in scan.classes if c not in used]
    if empty:
        log.warning("%s: class folder(s) %s hold no .txt files; they are not classes", root, empty)
    return tuple(c for c in scan.classes if c in used), empty


def load_text_folder(root: str | Path, max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES) -> Dataset:
    """One sub-folder per class of UTF-8 .txt files (a byte-order mark is dropped); id = POSIX path relative
    to `root`. A file larger than `max_text_bytes` is not read ("too_large"), one that is not UTF-8 is
    "not_utf8", a symlink out of the root is "outside_root": each keeps text "" and is named in
    `load_errors`. Raises DatasetError naming the folder when it has no class folders, no .txt files,
    a single class, or no readable file at all."""
    max_text_bytes = check_max_text_bytes(max_text_bytes)
    start = time.perf_counter()
    scan = scan_text_folder(root)
    class_names, empty = text_classes(scan)
    texts = np.empty(len(scan.files), dtype=object)
    errors: dict[str, str] = {}
    for row, (sid, _) in enumerate(scan.files):
        texts[row], reason = read_text(scan.root / sid, scan.root, max_text_bytes)
        if reason is not None:
            errors[sid] = reason
    if len(errors) == len(scan.files):
        sid = scan.files[0][0]
        raise DatasetError(f"{scan.root}: none of the {len(scan.files)} .txt files could be read "
                           f"(e.g. {sid}: {errors[sid]})")
    by_category = dict(Counter(r.split(":", 1)[0] for r in errors.values()))
    if errors:
        log.warning("%s: %d of %d texts unusable (%s); `validated` removes them", scan.root, len(errors),
                    len(scan.files), by_category)
    index = {c: k for k, c in enumerate(class_names)}
    n_empty = sum(1 for t, (sid, _) in zip(texts, scan.files, strict=True) if t == "" and sid not in errors)
    info = {"format": "text_folder", "kind": "text", "n_files": len(scan.files), "empty_classes": empty,
            "n_empty_texts": n_empty,
            "n_chars": int(sum(len(t) for t in texts)), "max_text_bytes": max_text_bytes,
            "load_errors_by_category": by_category, "n_ignored": len(scan.ignored),
            "ignored_examples": dict(list(scan.ignored.items())[:10]),
            "seconds": round(time.perf_counter() - start, 3)}
    return Dataset(ids=np.array([sid for sid, _ in scan.files], dtype=object),
                   labels=np.array([index[c] for _, c in scan.files], dtype=np.int64), class_names=class_names,
                   source=str(scan.root), texts=texts, load_errors=errors, load_info=info)
