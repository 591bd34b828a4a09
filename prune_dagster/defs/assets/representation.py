"""The shared representation: computed once after exact deduplication, read by near duplicates,
outliers, label noise and the score step (so lineage shows it and nothing is trained twice)."""

import time

import dagster as dg
from threadpoolctl import threadpool_limits

from prune_dagster.core.data.dataset import Dataset
from prune_dagster.core.data.embeddings import provided_embeddings
from prune_dagster.core.ledger import Selection
from prune_dagster.core.training.shared import (
    SharedRepresentation,
    SharedRepresentationParams,
    build_representation,
    check_embeddings,
)
from prune_dagster.defs.assets.common import current_job_name, dataset_metadata, engine_metadata, to_metadata, view
from prune_dagster.defs.config import dagster_config, to_params
from prune_dagster.defs.engine import ComputeEngine

RepresentationConfig = dagster_config(SharedRepresentationParams, name="RepresentationConfig")


@dg.asset(group_name="cleaning")
def representation(config: RepresentationConfig, raw_dataset: Dataset, exact_deduplicated: Selection,
                   engine: ComputeEngine) -> dg.Output[SharedRepresentation]:
    """Out-of-fold probabilities, embeddings and EL2N of every exact-deduplicated training sample from
    K-fold training of a small CNN (`features: learned`), the user's own embeddings (`provided`), or
    nothing (`pixels`: the steps compare pixels)."""
    params = to_params(config, SharedRepresentationParams)
    ids, images, labels = view(raw_dataset, exact_deduplicated)
    provided = None
    if params.features == "provided":
        stored = provided_embeddings(raw_dataset)
        if stored is not None:  # checked whole, so a bad row is named by its row in the user's file
            stored = check_embeddings(stored, len(raw_dataset), f"{raw_dataset.source}: embeddings")
            provided = stored[raw_dataset.index_of(ids)]
    start, tasks_before = time.perf_counter(), engine.tasks_run
    with threadpool_limits(limits=engine.blas_limit()):
        rep = build_representation(params, ids, images, labels, raw_dataset.n_classes, provided)
    metadata = {
        **dataset_metadata(raw_dataset, current_job_name()),
        "features": rep.features,
        "n_samples": len(rep.ids),
        "embedding_dim": None if rep.embeddings is None else int(rep.embeddings.shape[1]),
        "oof_accuracy": None if rep.oof_accuracy is None else round(rep.oof_accuracy, 4),
        "seconds": round(time.perf_counter() - start, 3),
        **engine_metadata(engine, tasks_before),  # the K-fold runs train in this process (torch), on any engine
    }
    return dg.Output(rep, metadata=to_metadata(metadata))
