"""What every pruning asset shares: the data view, timing and metadata."""


import time
from collections.abc import Callable
from typing import Any

import dagster as dg
import numpy as np
from pydantic import BaseModel
from threadpoolctl import threadpool_limits

from prune_dagster import settings
from prune_dagster.core import pipeline
from prune_dagster.core.data.dataset import Dataset
from prune_dagster.core.data.export import jsonable
from prune_dagster.core.data.gallery import gallery_markdown
from prune_dagster.core.ledger import Selection, StepResult, removed_frame
from prune_dagster.defs.engine import ComputeEngine


class StepConfig(dg.Config):
    """Settings every optional pruning step shares (for steps whose settings are not a core Params)."""

    enabled: bool = True  # false: the step passes its input through unchanged (e.g. a no-pruning baseline)


def score_meaning(step: str) -> dict[str, str]:
    """`score_meaning` metadata: what the ledger's score column means for `step` (pipeline.py)."""
    return {"score_meaning": pipeline.step(step).score_meaning} if step in pipeline.names() else {}


def view(dataset: Dataset, selection: Selection) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, images, labels) of the currently kept training samples, in dataset order."""
    pos = np.sort(dataset.index_of(selection.kept_ids))
    return dataset.ids[pos], dataset.images[pos], dataset.labels[pos]


def to_metadata(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, dict | list | tuple):
            out[key] = dg.MetadataValue.json(jsonable(value))
        elif isinstance(value, np.generic):
            out[key] = value.item()
        else:
            out[key] = value
    return out


def removed_gallery(dataset: Dataset, selection: Selection, step: str, limit: int = 16) -> dg.MetadataValue:
    rows = selection.ledger[selection.ledger["step"] == step].head(limit)
    if rows.empty:
        return dg.MetadataValue.md("_nothing removed_")
    images = dataset.images[dataset.index_of(rows["id"].to_numpy())]
    captions = [f"`{r.id}` {dataset.class_names[dataset.labels[dataset.index_of([r.id])[0]]]}: {r.reason}"
                for r in rows.itertuples()]
    return dg.MetadataValue.md(gallery_markdown(images, captions, limit))


def blas_threads() -> int:
    """BLAS/OpenMP threads a step uses in this process: resource `engine.blas_threads`, else
    $PRUNE_BLAS_THREADS (default 1).

    Measured on this 2-core machine with two other busy processes: the feature-selection step's
    cross-validated logistic regressions on 80k samples took 20.8 s with OpenBLAS' default two
    threads and 0.26 s with one (idle threads spin while the other core is taken). Dask workers
    run one thread each already; raise this on a machine the run has to itself.
    """
    return settings.blas_threads()


def engine_metadata(engine: ComputeEngine | None, tasks_before: int = 0) -> dict[str, Any]:
    if engine is None:
        return {}
    out = engine.metadata()
    if "engine_workers" in out:
        out["engine_tasks"] = engine.tasks_run - tasks_before
    return out


def run_step(
    name: str,
    dataset: Dataset,
    selection: Selection,
    config: BaseModel,
    compute: Callable[[np.ndarray, np.ndarray, np.ndarray], StepResult],
    extra_metadata: dict[str, Any] | None = None,
    engine: ComputeEngine | None = None,
) -> dg.Output[Selection]:
    """Call a pure step on the current view, record it, and return the new Selection with metadata.

    `config` is the step's settings (its core Params, or a Dagster Config): recorded as given.

    With `engine`, the metadata names the engine that ran the step and how many work items it sent
    to the cluster (0: the step's functions ran in this process)."""
    ids, images, labels = view(dataset, selection)
    tasks_before = engine.tasks_run if engine is not None else 0
    start = time.perf_counter()
    enabled = getattr(config, "enabled", True)
    with threadpool_limits(limits=engine.blas_limit() if engine is not None else blas_threads()):
        result = compute(ids, images, labels) if enabled else StepResult(removed=removed_frame(),
                                                                         metadata={"skipped": "disabled"})
    seconds = time.perf_counter() - start
    new = selection.advance(name, result, config.model_dump(), seconds)
    record = new.history[-1]
    metadata = {
        "n_in": record.n_in,
        "n_out": record.n_out,
        "n_removed": record.n_in - record.n_out,
        "removed_by_reason": record.removed_by_reason,
        "seconds": record.seconds,
        "kept_fraction_of_train": round(new.retained_fraction, 4),  # named as in core/selection/fractions.py
        **score_meaning(name),
        **result.metadata,
        **(extra_metadata or {}),
        **engine_metadata(engine, tasks_before),
    }
    out = to_metadata(metadata)
    out["removed_samples"] = removed_gallery(dataset, new, name)
    return dg.Output(new, metadata=out)
