"""An IO manager that keeps each run's asset values apart and writes them atomically.

Dagster's default filesystem IO manager writes `storage/<asset>` for every run: two runs at once
would overwrite each other's values, and a reader could see a half-written file. Here each value
goes to `storage/<asset>/<run_id>.pkl` (temp file + rename). A step loads its own run's value when
the upstream asset ran in the same run, otherwise the latest materialization recorded by the
instance (e.g. `train_job` after `prune_job`). Pickle only ever reads files this manager wrote.

A Dataset's pixels are not pickled: they go once to `storage/arrays/<content digest>.npy` (shared by
every run that loads the same content) and come back memory-mapped read-only, so a million-image
dataset costs one file on disk and no copy in memory per step or per run.
"""

import os
import pickle
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np

from prune_dagster.core.data.dataset import Dataset
from prune_dagster.core.data.export import atomic_write
from prune_dagster.core.infra.locks import file_lock
from prune_dagster.core.infra.parallel import row_blocks

_PIXELS_REF = "__pixels_ref__"


def store_pixels(dataset: Dataset, arrays_dir: Path) -> dict[str, Any]:
    """Write the dataset's pixels to `arrays_dir/<digest>.npy` unless already there; return the
    picklable rest of the dataset with a reference in place of the pixels."""
    digest = dataset.digest()
    path = arrays_dir / f"{digest}.npy"
    arrays_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(arrays_dir / f"{digest}.lock"):
        if not path.exists():
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dataset.images.dtype,
                                            shape=dataset.images.shape)
            for start, stop in row_blocks(len(dataset)):  # blockwise: never a second full copy in memory
                out[start:stop] = dataset.images[start:stop]
            out.flush()
            del out
            os.replace(tmp, path)
    fields = {k: v for k, v in dataset.__getstate__().items() if k != "images"}
    return {_PIXELS_REF: str(path), "fields": fields}


def load_pixels(stored: dict[str, Any]) -> Dataset:
    path = Path(stored[_PIXELS_REF])
    if not path.exists():
        raise dg.Failure(f"the stored pixels {path} are missing: re-materialize raw_dataset")
    return Dataset(images=np.load(path, mmap_mode="r"), **stored["fields"])


class RunScopedIOManager(dg.ConfigurableIOManager):
    base_dir: str = ""  # empty: $DAGSTER_HOME/storage

    def _root(self) -> Path:
        if self.base_dir:
            return Path(self.base_dir)
        home = os.environ.get("DAGSTER_HOME")
        return Path(home) / "storage" if home else Path.cwd() / ".dagster_storage"

    def _path(self, asset_key: dg.AssetKey, run_id: str) -> Path:
        return self._root().joinpath(*asset_key.path) / f"{run_id}.pkl"

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        path = self._path(context.asset_key, context.run_id)
        if isinstance(obj, Dataset):
            obj = store_pixels(obj, self._root() / "arrays")
        atomic_write(path, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
        context.add_output_metadata({"stored_at": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> Any:
        key = context.asset_key
        own = self._path(key, context.step_context.run_id)
        if own.exists():
            path = own
        else:
            event = context.instance.get_latest_materialization_event(key)
            if event is None:
                raise dg.Failure(f"asset {key.to_user_string()} has never been materialized: materialize it "
                                 "first (e.g. run prune_job)")
            path = self._path(key, event.run_id)
            if not path.exists():
                raise dg.Failure(f"the stored value of {key.to_user_string()} from run {event.run_id} is missing "
                                 f"at {path}: re-materialize it")
        with open(path, "rb") as fh:
            value = pickle.load(fh)
        return load_pixels(value) if isinstance(value, dict) and _PIXELS_REF in value else value
