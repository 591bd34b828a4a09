"""Nothing computed twice: an asset whose code, settings and inputs have not changed reuses its value.

Each materialization of a cached asset records a `cache_key`: a digest of the project's code version,
the asset's name and settings, and the `cache_key`s of the materializations it read (for `raw_dataset`:
the source's file fingerprints, sizes and modification times, instead of inputs). The key is also the
output's Dagster data version, and `CODE_VERSION` every asset's code version, so the UI shows what is
stale. Before computing, an asset looks its key up: when an earlier run stored a value under it, that
value is loaded (memory-mapped where it is large) and returned with the earlier materialization's
metadata plus `reused_from_run`; the run's own outputs (kept ids, ledger, summary) are still written.
A run tagged `prune/fresh=true` (`prune-dagster run --fresh`) computes everything.

The lookup is a small file per (asset, key) beside the stored values, naming the run that stored it;
a key whose stored value is gone (a cleaned storage folder) is computed again.
"""

from __future__ import annotations

import hashlib
import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

import dagster as dg

from prune_dagster.core.data.export import atomic_write, jsonable

FRESH_TAG = "prune/fresh"
KEY = "cache_key"
REUSED = "reused_from_run"


def _code_version() -> str:
    """A digest of every source file of the package and the versions of the libraries that compute."""
    h = hashlib.blake2b(digest_size=8)
    root = Path(__file__).resolve().parents[1]
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    for lib in ("numpy", "torch", "scikit-learn", "pandas", "cleanlab", "imbalanced-learn"):
        h.update(f"{lib}={version(lib)}".encode())
    return h.hexdigest()


CODE_VERSION = _code_version()


def digest(*parts: Any) -> str:
    """A stable digest of JSON-able parts (settings, upstream keys, fingerprints)."""
    text = json.dumps(jsonable(list(parts)), sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def upstream_key(instance: dg.DagsterInstance, asset: str) -> str | None:
    """The `cache_key` of the materialization of `asset` a step reads (its latest), None when it has none."""
    event = instance.get_latest_materialization_event(dg.AssetKey(asset))
    meta = event.asset_materialization.metadata if event is not None else {}
    return meta[KEY].value if KEY in meta else None


def asset_key(context: dg.AssetExecutionContext, asset: str, settings: Any, upstream: list[str]) -> str | None:
    """The cache key of `asset` run with `settings` on the latest materializations of `upstream` (None
    when one of them has no key: then the asset computes, and records no key)."""
    keys = [upstream_key(context.instance, name) for name in upstream]
    if any(k is None for k in keys):
        return None
    return digest(CODE_VERSION, asset, settings, keys)


def fresh(context: dg.AssetExecutionContext) -> bool:
    return context.run.tags.get(FRESH_TAG, "").lower() == "true"


def _entry(root: Path, asset: str, key: str) -> Path:
    return root / "cache" / asset / key


def lookup(context: dg.AssetExecutionContext, io_manager: Any, asset: str, key: str | None) -> tuple[Any, dict] | None:
    """(value, metadata of the run that computed it) stored under `key`, or None (not stored, gone, or fresh)."""
    if key is None or fresh(context):
        return None
    entry = _entry(io_manager.storage_root(), asset, key)
    if not entry.exists():
        return None
    run_id = entry.read_text().strip()
    value = io_manager.load_stored(dg.AssetKey(asset), run_id)
    if value is None:
        return None
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), storage_ids=None), limit=50).records
    meta = next((dict(r.asset_materialization.metadata) for r in records if r.run_id == run_id), {})
    meta.pop("stored_at", None)
    return value, {**meta, REUSED: run_id}


def remember(context: dg.AssetExecutionContext, io_manager: Any, asset: str, key: str | None) -> None:
    """Record that this run's value of `asset` is the one under `key` (the IO manager stores it next)."""
    if key is not None:
        atomic_write(_entry(io_manager.storage_root(), asset, key), context.run_id.encode())


def output(value: Any, metadata: dict, key: str | None) -> dg.Output:
    """The asset's output: its data version is the cache key, which the metadata records too."""
    if key is None:
        return dg.Output(value, metadata=metadata)
    return dg.Output(value, metadata={**metadata, KEY: key}, data_version=dg.DataVersion(key))
