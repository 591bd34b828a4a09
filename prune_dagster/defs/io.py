"""An IO manager that keeps each run's asset values apart and writes them atomically.

Dagster's default filesystem IO manager writes `storage/<asset>` for every run: two runs at once
would overwrite each other's values, and a reader could see a half-written file. Here each value
goes to `storage/<asset>/<run_id>.pkl` (temp file + rename). A step loads its own run's value when
the upstream asset ran in the same run, otherwise the latest materialization recorded by the
instance (e.g. `train_job` after `prune_job`). Pickle only ever reads files this manager wrote.
"""

import os
import pickle
from pathlib import Path
from typing import Any

import dagster as dg

from prune_dagster.core.export import atomic_write


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
            return pickle.load(fh)
