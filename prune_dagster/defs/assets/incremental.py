"""Stage `incremental`: new samples decided against an index of the last full prune (the sensor case).

`prune_index` gathers what the last `pruned_dataset` run's steps left for the index (each step's
state, nothing recomputed: prune_dagster/core/incremental.py); `incremental_update` loads a batch of
new samples, decides only them and writes the combined kept ids and ledger. When the batch would
change a decision about an old sample it writes nothing and says why: run `prune_job` then. Both are
made for a pipeline (`incremental_assets(steps)`), so a step added to it is decided here too.
"""

import hashlib
import json
import time

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from prune_dagster import settings
from prune_dagster.core import pipeline
from prune_dagster.core.data.dataset import Dataset, content_of
from prune_dagster.core.data.export import atomic_write, jsonable
from prune_dagster.core.data.sources import load_source
from prune_dagster.core.incremental import INDEX_FORMAT, PruneIndex
from prune_dagster.core.ledger import LEDGER_COLUMNS, Selection
from prune_dagster.core.training.shared import SharedRepresentation
from prune_dagster.defs.assets.common import to_metadata
from prune_dagster.defs.engine import ComputeEngine
from prune_dagster.defs.io import RunScopedIOManager
from prune_dagster.defs.resources import OutputStore


def _index_key(raw_dataset: Dataset, selection: Selection) -> str:
    h = hashlib.blake2b(raw_dataset.digest().encode(), digest_size=12)
    h.update(f"index format {INDEX_FORMAT}".encode())  # an index saved in another layout is not reused
    h.update("\n".join(map(str, selection.kept_ids)).encode())
    h.update(pd.util.hash_pandas_object(selection.ledger[["id", "step"]], index=False).to_numpy().tobytes())
    return h.hexdigest()


def index_asset(steps: tuple[pipeline.Step, ...]) -> dg.AssetsDefinition:
    @dg.asset(group_name="incremental")
    def prune_index(raw_dataset: Dataset, pruned_dataset: Selection, representation: SharedRepresentation,
                    io_manager: dg.ResourceParam[RunScopedIOManager]) -> dg.Output[str]:
        """The index new samples are checked against, as the last full prune's steps left it: content
        hashes of every old training sample, the near-duplicate views, radius and groups, the outlier
        reference and threshold, the label step's thresholds and the representation's fold models.
        Gathered once per full prune (stored by content under DAGSTER_HOME/storage/prune_index/)."""
        key = _index_key(raw_dataset, pruned_dataset)
        folder = io_manager.storage_root() / "prune_index" / key  # beside the values
        start = time.perf_counter()
        reused = folder.exists()
        if not reused:
            PruneIndex.build(raw_dataset, pruned_dataset, representation, steps).save(folder)
        return dg.Output(str(folder), metadata={"folder": dg.MetadataValue.path(str(folder)), "reused": reused,
                                                "seconds": round(time.perf_counter() - start, 3)})

    return prune_index


class IncrementalConfig(dg.Config):
    new_source: str = Field(default="", description="the new samples, of the pruned dataset's kind and classes: an "
                                                    ".npy folder, an .npz, an image or text folder, or a .csv / "
                                                    ".parquet / .jsonl file; empty = $PRUNE_NEW_SOURCE")


def update_asset(steps: tuple[pipeline.Step, ...]) -> dg.AssetsDefinition:
    @dg.asset(group_name="incremental")
    def incremental_update(context: dg.AssetExecutionContext, config: IncrementalConfig, raw_dataset: Dataset,
                           pruned_dataset: Selection, prune_index: str, engine: ComputeEngine,
                           output_store: OutputStore) -> dg.Output[dict]:
        """Decides a batch of new samples against `prune_index` and writes kept_ids.csv (old kept + new
        kept), ledger.csv (old ledger + the new samples' removals, by step and reason) and summary.json.
        New samples are training candidates; the test split stays the old one, untouched."""
        return update(context, config, raw_dataset, pruned_dataset, prune_index, engine, output_store, steps)

    return incremental_update


def incremental_assets(steps: tuple[pipeline.Step, ...] = pipeline.PIPELINE) -> list[dg.AssetsDefinition]:
    """`prune_index` and `incremental_update` for the pipeline `steps`."""
    return [index_asset(steps), update_asset(steps)]


def update(context: dg.AssetExecutionContext, config: IncrementalConfig, raw_dataset: Dataset,
           pruned_dataset: Selection, prune_index: str, engine: ComputeEngine, output_store: OutputStore,
           steps: tuple[pipeline.Step, ...]) -> dg.Output[dict]:
    """incremental_update's body: decide the batch, write the combined outputs (or say why not)."""
    spec = config.new_source or settings.new_source()
    if not spec:
        raise dg.Failure("incremental_update needs new samples: set new_source (or $PRUNE_NEW_SOURCE)")
    new = load_source(spec)
    if new.kind != raw_dataset.kind:
        raise dg.Failure(f"{spec}: holds {new.kind} data, the pruned dataset {raw_dataset.kind} data; new samples "
                         "must be of the same kind")
    clash = pd.Index(new.ids).intersection(raw_dataset.id_index())
    if len(clash):
        raise dg.Failure(f"{spec}: sample id {clash[0]!r} is already in {raw_dataset.source}; new samples need "
                         "new ids")
    unknown = sorted(set(new.class_names) - set(raw_dataset.class_names))
    if unknown:
        raise dg.Failure(f"{spec}: class {unknown[0]!r} is not one of the pruned dataset's classes "
                         f"{list(raw_dataset.class_names)}; a new class needs a full prune_job")
    labels = np.array([raw_dataset.class_names.index(c) for c in new.class_names])[new.labels]
    index = PruneIndex.load(prune_index)
    start = time.perf_counter()
    result = index.add(new.ids, content_of(new, np.arange(len(new))), labels, engine.mapper(), steps)
    seconds = time.perf_counter() - start
    summary = {"new_source": spec, "n_new": len(new), "seconds": round(seconds, 3),
               "needs_full_prune": result.needs_full_prune, "seconds_by_step": result.seconds}
    if result.needs_full_prune:
        context.log.warning(f"incremental update refused: {result.needs_full_prune[0]}; run prune_job")
        return dg.Output(summary, metadata=to_metadata(summary))
    kept = np.concatenate([np.asarray(pruned_dataset.kept_ids, dtype=object), result.kept_ids])
    ledger = pd.concat([pruned_dataset.ledger[LEDGER_COLUMNS], result.removed[LEDGER_COLUMNS]], ignore_index=True)
    folder = output_store.run_folder(context.run_id)
    atomic_write(folder / "kept_ids.csv", pd.DataFrame({"id": kept}).to_csv(index=False).encode())
    atomic_write(folder / "ledger.csv", ledger.to_csv(index=False).encode())
    summary.update({"n_new_kept": int(len(result.kept_ids)), "n_kept": int(len(kept)),
                    "new_removed_by_reason": result.removed["reason"].value_counts().to_dict()})
    atomic_write(folder / "summary.json", json.dumps(jsonable(summary), indent=2).encode())
    return dg.Output(summary, metadata={**to_metadata(summary), "output_folder": dg.MetadataValue.path(str(folder))})
