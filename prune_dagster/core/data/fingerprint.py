"""Fingerprints of a data source on disk: what changed since the last look, without reading pixels."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def source_files(spec: str) -> list[Path] | None:
    """The files a source reads, or None for a built-in source (nothing on disk to watch): the file, or
    every file under the folder (images, .txt files, .npy arrays, embeddings.npy), hidden ones excepted."""
    path = Path(spec).expanduser()
    if not path.exists():
        return None
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and not any(
        part.startswith(".") for part in p.relative_to(path).parts))


def fingerprint(spec: str) -> dict[str, list[int]] | None:
    """relative path → [size, mtime_ns] for every file of the source."""
    files = source_files(spec)
    if files is None:
        return None
    root = Path(spec).expanduser()
    base = root if root.is_dir() else root.parent
    out = {}
    for p in files:
        st = p.stat()
        out[p.relative_to(base).as_posix()] = [st.st_size, st.st_mtime_ns]
    return out


def digest(prints: dict[str, list[int]]) -> str:
    return hashlib.blake2b(json.dumps(prints, sort_keys=True).encode(), digest_size=12).hexdigest()


def diff(old: dict[str, list[int]], new: dict[str, list[int]]) -> dict[str, list[str]]:
    return {
        "added": sorted(set(new) - set(old)),
        "removed": sorted(set(old) - set(new)),
        "changed": sorted(k for k in set(old) & set(new) if old[k] != new[k]),
    }
