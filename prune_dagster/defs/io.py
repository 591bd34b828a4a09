"""An IO manager that keeps each run's asset values apart and writes them atomically.

Dagster's default filesystem IO manager writes `storage/<asset>` for every run: two runs at once
would overwrite each other's values, and a reader could see a half-written file. Here each value
goes to `storage/<asset>/<run_id>.pkl` (temp file + rename). A step loads its own run's value when
the upstream asset ran in the same run, otherwise the latest materialization recorded by the
instance (e.g. `train_job` after `prune_job`). Pickle only ever reads files this manager wrote.

A partitioned asset (the sweep's models) gets one file per partition, `storage/<asset>/<run_id>/<key>.pkl`;
a downstream asset reading every partition gets a dict key → value of those materialized so far.

A Dataset's pixels are not pickled: they go once to `storage/arrays/<content digest>.npy` (shared by
every run that loads the same content) and come back memory-mapped read-only, so a million-image
dataset costs one file on disk and no copy in memory per step or per run. The shared representation's
arrays likewise go to `<run_id>.<field>.npy` beside its pickle and come back memory-mapped: a step that
compares pixels never reads the 1M x 138 floats it is handed (at 1M rows each step unpickled ~560 MB).
A Selection's step states (what the incremental index keeps) put their large arrays in .npy files the
same way, once: a later step passes the memory-mapped state on and its pickle points at the same file.
"""

import os
import pickle
from collections.abc import Mapping
from dataclasses import fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np

from prune_dagster import settings
from prune_dagster.core.data.dataset import Dataset
from prune_dagster.core.data.export import atomic_write
from prune_dagster.core.infra.locks import file_lock
from prune_dagster.core.infra.parallel import row_blocks
from prune_dagster.core.ledger import Selection
from prune_dagster.core.training.shared import SharedRepresentation

_PIXELS_REF = "__pixels_ref__"
_ARRAYS_REF = "__arrays_ref__"
_STATE_REF = "__state_arrays__"


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


def store_arrays(rep: SharedRepresentation, pkl_path: Path) -> dict[str, Any]:
    """Write the representation's numeric arrays to `<pkl stem>.<field>.npy` (temp file + rename);
    return the picklable rest with the field names in place of the arrays."""
    names = [f.name for f in fields(rep)
             if isinstance(getattr(rep, f.name), np.ndarray) and getattr(rep, f.name).dtype.kind in "biuf"]
    pkl_path.parent.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = pkl_path.with_name(f"{pkl_path.stem}.{name}.npy")
        array = getattr(rep, name)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        if isinstance(array, np.memmap) and array.filename and Path(array.filename).exists():
            os.link(array.filename, tmp)  # a reused representation: the stored file again, not a copy
        else:
            with open(tmp, "wb") as fh:
                np.save(fh, array)
        os.replace(tmp, path)
    return {_ARRAYS_REF: names, "value": replace(rep, **{name: None for name in names})}


# A step's state array at least this large is kept in its own .npy file and memory-mapped on load.
STATE_ARRAY_BYTES = 1 << 20


def _save_array(array: np.ndarray, path: Path) -> str:
    """The file holding `array`: the one it is already mapped from, else `path` (written atomically)."""
    if isinstance(array, np.memmap) and array.filename and Path(array.filename).exists():
        return str(array.filename)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, np.asarray(array))
    os.replace(tmp, path)
    return str(path)


def store_states(selection: Selection, pkl_path: Path) -> Selection:
    """The Selection with each step state's large arrays moved to .npy files beside the pickle (a state
    carried on unchanged from an upstream step keeps pointing at the file it was loaded from, so the
    near-duplicate views of a million rows are written once per run, not once per later step)."""
    pkl_path.parent.mkdir(parents=True, exist_ok=True)
    states = {}
    for step, state in selection.states.items():
        if not is_dataclass(state) or isinstance(state, type):
            states[step] = state
            continue
        big = {f.name: getattr(state, f.name) for f in fields(state)
               if isinstance(getattr(state, f.name), np.ndarray) and getattr(state, f.name).nbytes >= STATE_ARRAY_BYTES}
        paths = {name: _save_array(arr, pkl_path.with_name(f"{pkl_path.stem}.{step}.{name}.npy"))
                 for name, arr in big.items()}
        states[step] = {_STATE_REF: paths, "value": replace(state, **dict.fromkeys(big))} if big else state
    return replace(selection, states=states)


def load_states(selection: Selection) -> Selection:
    """The Selection with its states' stored arrays memory-mapped back in."""
    states = {step: (replace(state["value"], **{name: np.load(path, mmap_mode="r") for name, path in
                                                  state[_STATE_REF].items()})
                     if isinstance(state, dict) and _STATE_REF in state else state)
              for step, state in selection.states.items()}
    return replace(selection, states=states)


def load_arrays(stored: dict[str, Any], pkl_path: Path) -> SharedRepresentation:
    return replace(stored["value"], **{name: np.load(pkl_path.with_name(f"{pkl_path.stem}.{name}.npy"),
                                                     mmap_mode="r") for name in stored[_ARRAYS_REF]})


class RunScopedIOManager(dg.ConfigurableIOManager):
    base_dir: str = ""  # empty: $DAGSTER_HOME/storage

    def storage_root(self) -> Path:
        """The folder this manager stores under (other stored things, like the prune index, go beside)."""
        if self.base_dir:
            return Path(self.base_dir)
        home = settings.dagster_home()
        return Path(home) / "storage" if home else Path.cwd() / ".dagster_storage"

    def _path(self, asset_key: dg.AssetKey, run_id: str) -> Path:
        return self.storage_root().joinpath(*asset_key.path) / f"{run_id}.pkl"

    def _partition_path(self, asset_key: dg.AssetKey, run_id: str, partition: str) -> Path:
        name = str(partition).replace("|", "__").replace(os.sep, "_")
        return self.storage_root().joinpath(*asset_key.path) / run_id / f"{name}.pkl"

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if context.has_asset_partitions:
            self._handle_partitions(context, obj)
            return
        path = self._path(context.asset_key, context.run_id)
        if isinstance(obj, Dataset) and obj.images is not None:  # tables and texts are pickled as they are
            obj = store_pixels(obj, self.storage_root() / "arrays")
        elif isinstance(obj, SharedRepresentation):  # the arrays first: the pickle's presence means complete
            obj = store_arrays(obj, path)
        elif isinstance(obj, Selection):
            obj = store_states(obj, path)
        atomic_write(path, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
        context.add_output_metadata({"stored_at": dg.MetadataValue.path(str(path))})

    def _handle_partitions(self, context: dg.OutputContext, obj: Any) -> None:
        """One file per partition. A run covering several partitions (a single-run backfill) returns a
        dict partition key → value; a one-partition run may return the value itself."""
        keys = [str(k) for k in context.asset_partition_keys]
        if isinstance(obj, Mapping) and set(keys) <= set(obj):
            values = obj
        elif len(keys) == 1:
            values = {keys[0]: obj}
        else:
            missing = [k for k in keys if not isinstance(obj, Mapping) or k not in obj]
            raise dg.Failure(f"{context.asset_key.to_user_string()}: expected a dict with a value per partition; "
                             f"missing {', '.join(missing[:3])}")
        for key in keys:
            atomic_write(self._partition_path(context.asset_key, context.run_id, key),
                         pickle.dumps(values[key], protocol=pickle.HIGHEST_PROTOCOL))
        folder = self._partition_path(context.asset_key, context.run_id, keys[0]).parent
        context.add_output_metadata({"stored_at": dg.MetadataValue.path(str(folder))})

    def _load_partitions(self, context: dg.InputContext) -> dict[str, Any]:
        """Partition key → value for every partition materialized so far: this run's value, else the
        one of the run the instance records as the partition's latest materialization. Partitions
        never materialized are left out (a partial sweep still reports)."""
        try:
            run_id = context.step_context.run_id
        except dg.DagsterInvariantViolationError:  # loaded outside a run (build_input_context)
            run_id = None
        out = {}
        for key in map(str, context.asset_partition_keys):
            path = self._partition_path(context.asset_key, run_id, key) if run_id else None
            if path is None or not path.exists():
                records = context.instance.fetch_materializations(
                    dg.AssetRecordsFilter(asset_key=context.asset_key, asset_partitions=[key]), limit=1).records
                path = self._partition_path(context.asset_key, records[0].run_id, key) if records else None
            if path is not None and path.exists():
                out[key] = pickle.loads(path.read_bytes())
        return out

    def load_stored(self, asset_key: dg.AssetKey, run_id: str) -> Any:
        """The value of `asset_key` a run stored (large arrays memory-mapped back), or None when it is gone."""
        path = self._path(asset_key, run_id)
        return self._read(path) if path.exists() else None

    def _read(self, path: Path) -> Any:
        with open(path, "rb") as fh:
            value = pickle.load(fh)
        if isinstance(value, dict) and _ARRAYS_REF in value:
            return load_arrays(value, path)
        if isinstance(value, Selection):
            return load_states(value)
        return load_pixels(value) if isinstance(value, dict) and _PIXELS_REF in value else value

    def load_input(self, context: dg.InputContext) -> Any:
        if context.has_asset_partitions:
            return self._load_partitions(context)
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
        return self._read(path)
