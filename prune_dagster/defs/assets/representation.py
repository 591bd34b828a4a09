"""The shared representation: computed once after the step the pipeline names
(`pipeline.REPRESENTATION_AFTER`), read by the steps that compare samples (so lineage shows it and
nothing is trained twice)."""


import time
from typing import Any

import dagster as dg
import numpy as np
from threadpoolctl import threadpool_limits

from prune_dagster.core import pipeline
from prune_dagster.core.data.dataset import Dataset, content_of
from prune_dagster.core.data.embeddings import provided_embeddings
from prune_dagster.core.ledger import Selection
from prune_dagster.core.steps.prune import SampleCount
from prune_dagster.core.training.encoders import encode
from prune_dagster.core.training.shared import (
    SharedRepresentation,
    SharedRepresentationParams,
    build_representation,
    check_embeddings,
)
from prune_dagster.defs import cache
from prune_dagster.defs.assets.common import current_job_name, dataset_metadata, engine_metadata, to_metadata
from prune_dagster.defs.config import dagster_config, to_params
from prune_dagster.defs.engine import ComputeEngine
from prune_dagster.defs.io import RunScopedIOManager

RepresentationConfig = dagster_config(SharedRepresentationParams, name="RepresentationConfig")


def representation_input(dataset: Dataset, pos: np.ndarray, params: SharedRepresentationParams) -> Any:
    """What the fold models read: the pixels, or a table's or texts' rows encoded (its encoder fitted on
    these training samples; no labels are read, so nothing leaks between folds)."""
    if dataset.kind == "image":
        return dataset.images[pos]
    if params.features != "learned":
        return SampleCount(len(pos))
    return encode(dataset.kind, content_of(dataset, pos), dataset.n_classes)


def build(config: RepresentationConfig, dataset: Dataset, selection: Selection,
          engine: ComputeEngine) -> dg.Output[SharedRepresentation]:
    """The representation of the samples `selection` keeps, with its metadata."""
    params = to_params(config, SharedRepresentationParams)
    pos = dataset.index_of(selection.kept_ids)
    pos.sort()
    ids, labels = dataset.ids[pos], dataset.labels[pos]
    images = representation_input(dataset, pos, params)
    provided = None
    if params.features == "provided":
        stored = provided_embeddings(dataset)
        if stored is not None:  # checked whole, so a bad row is named by its row in the user's file
            provided = check_embeddings(stored, len(dataset), f"{dataset.source}: embeddings")[pos]
    start, tasks_before = time.perf_counter(), engine.tasks_run
    with threadpool_limits(limits=engine.blas_limit()):
        rep = build_representation(params, ids, images, labels, dataset.n_classes, provided)
    metadata = {
        **dataset_metadata(dataset, current_job_name()),
        "features": rep.features,
        "kind": dataset.kind,
        "n_samples": len(rep.ids),
        "embedding_dim": None if rep.embeddings is None else int(rep.embeddings.shape[1]),
        "oof_accuracy": None if rep.oof_accuracy is None else round(rep.oof_accuracy, 4),
        "folds": len(rep.models) if rep.models else None,  # folds=0 chooses by size
        "seconds": round(time.perf_counter() - start, 3),
        "sample_passes": rep.sample_passes,
        **engine_metadata(engine, tasks_before),  # the K-fold runs train in this process (torch), on any engine
    }
    return dg.Output(rep, metadata=to_metadata(metadata))


def representation_asset(after: str = pipeline.REPRESENTATION_AFTER) -> dg.AssetsDefinition:
    """The `representation` asset, reading the output of the step `after`."""

    @dg.asset(name=pipeline.REPRESENTATION, group_name="cleaning", code_version=cache.CODE_VERSION,
              ins={"raw_dataset": dg.AssetIn("raw_dataset"), after: dg.AssetIn(after)})
    def representation(context: dg.AssetExecutionContext, config: RepresentationConfig, engine: ComputeEngine,
                       io_manager: dg.ResourceParam[RunScopedIOManager], raw_dataset: Dataset,
                       **upstream: Selection) -> dg.Output[SharedRepresentation]:
        """Out-of-fold probabilities, embeddings and EL2N of every exact-deduplicated training sample from
        K-fold training of a small model (`features: learned`: the CNN for images, the MLP for tables, the
        text CNN for texts), the user's own embeddings (`provided`), or nothing (`pixels`: the steps compare
        raw features). Unchanged settings and inputs reuse the earlier representation (defs/cache.py)."""
        key = cache.asset_key(context, pipeline.REPRESENTATION, config.model_dump(), ["raw_dataset", after])
        hit = cache.lookup(context, io_manager, pipeline.REPRESENTATION, key)
        if hit is not None:
            return cache.output(hit[0], hit[1], key)
        out = build(config, raw_dataset, upstream[after], engine)
        cache.remember(context, io_manager, pipeline.REPRESENTATION, key)
        return cache.output(out.value, dict(out.metadata), key)

    return representation
