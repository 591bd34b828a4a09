"""Stage `selection`: score-based pruning of the cleaned set to a retained fraction."""


import dagster as dg
import numpy as np

from prune_dagster.core.data.dataset import Dataset
from prune_dagster.core.data.export import export_dataset, write_selection
from prune_dagster.core.ledger import Selection, StepResult, removed_frame
from prune_dagster.core.selection.scoring import prune_to_fraction, select_from_scores
from prune_dagster.core.selection.semdedup import semdedup_prune
from prune_dagster.core.selection.strategies import PruneParams
from prune_dagster.core.training.shared import SharedRepresentation
from prune_dagster.defs.assets.common import run_step
from prune_dagster.defs.config import dagster_config, to_params
from prune_dagster.defs.engine import ComputeEngine
from prune_dagster.defs.resources import OutputStore
from prune_dagster.defs.summary import selection_summary

PruneConfig = dagster_config(PruneParams, doc="Score-based pruning of the cleaned set to a retained fraction "
                                              "(core PruneParams: strategy, retained_fraction, scoring settings).")


def score_prune(config: PruneConfig, n_classes: int, feature_mask: np.ndarray | None,
                representation: SharedRepresentation | None = None):
    params = to_params(config, PruneParams)

    def compute(ids: np.ndarray, images: np.ndarray, labels: np.ndarray) -> StepResult:
        if params.strategy == "semdedup":
            return semdedup_step(params, representation, ids, labels)
        shared = shared_el2n(params, representation, ids)
        if shared is not None:  # the fold runs' EL2N: ranked like the step's own, nothing trained here
            scores = shared
            kept = select_from_scores(params.strategy, scores, labels, n_classes, params.retained_fraction,
                                      params.seed, params)
        else:  # prune_to_fraction has no `mapper`: scoring runs in this process, not through the engine
            kept, scores = prune_to_fraction(params.strategy, images, labels, n_classes, params.retained_fraction,
                                             params.seed, params, feature_mask)
        out = np.ones(len(ids), dtype=bool)
        out[kept] = False
        removed = removed_frame(ids[out], f"{params.strategy}_below_cutoff", scores[out])
        return StepResult(removed=removed, metadata={
            "strategy": params.strategy, "target_fraction": params.retained_fraction,
            "scores_from": "representation" if shared is not None else "own_runs"})
    return compute


def semdedup_step(params: PruneParams, representation: SharedRepresentation | None, ids: np.ndarray,
                  labels: np.ndarray) -> StepResult:
    """Semantic deduplication on the representation's embeddings: the kept positions it chooses, and
    each dropped sample's cosine similarity to a kept member of its cluster as its ledger score."""
    embeddings = None if representation is None else representation.embeddings_of(ids)
    result = semdedup_prune(embeddings, labels, params)
    out = np.ones(len(ids), dtype=bool)
    out[result.kept] = False
    removed = removed_frame(ids[out], "semantic_duplicate", result.scores[out])
    return StepResult(removed=removed, metadata={"strategy": "semdedup", "target_fraction": params.retained_fraction,
                                                 "scores_from": "representation", **result.metadata()})


def shared_el2n(params: PruneParams, representation: SharedRepresentation | None, ids: np.ndarray):
    """The representation's EL2N of `ids` when the step should use it, else None."""
    if params.strategy != "el2n" or params.scores_from != "representation" or representation is None:
        return None
    return representation.el2n_of(ids)


@dg.asset(group_name="selection")
def pruned_dataset(context: dg.AssetExecutionContext, config: PruneConfig, raw_dataset: Dataset,
                   features_selected: Selection, representation: SharedRepresentation, output_store: OutputStore,
                   engine: ComputeEngine) -> dg.Output[Selection]:
    """Keeps `retained_fraction` of the cleaned set by a per-sample score (EL2N by default; random is
    the baseline), per class. Writes kept_ids.csv, ledger.csv and the pruned dataset itself
    (`dataset/`, in the input's format) for this run."""
    out = run_step("pruned_dataset", raw_dataset, features_selected, config,
                   score_prune(config, raw_dataset.n_classes, features_selected.feature_mask, representation),
                   engine=engine)
    selection = out.value
    folder = output_store.run_folder(context.run_id)
    export_dataset(raw_dataset, selection, folder / "dataset")
    write_selection(folder, selection, selection_summary(raw_dataset, selection, context.run_id))
    return dg.Output(selection, metadata={**out.metadata, "output_folder": dg.MetadataValue.path(str(folder))})
