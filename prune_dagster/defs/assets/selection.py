"""Stage `selection`: score-based pruning of the cleaned set to a retained fraction."""


import dagster as dg
import numpy as np

from prune_dagster.core.data.dataset import Dataset
from prune_dagster.core.data.export import export_dataset, write_selection
from prune_dagster.core.ledger import Selection, StepResult, removed_frame
from prune_dagster.core.selection.scoring import ScoreConfig, prune_to_fraction
from prune_dagster.defs.assets.common import StepConfig, run_step
from prune_dagster.defs.engine import ComputeEngine
from prune_dagster.defs.resources import OutputStore
from prune_dagster.defs.summary import selection_summary


class PruneConfig(StepConfig):
    strategy: str = "el2n"  # random | el2n | forgetting | prototype_easy | prototype_hard | ccs
    retained_fraction: float = 0.8  # share of the cleaned set to keep, in (0, 1]
    score_epochs: int = 5
    score_seeds: int = 3
    per_class: bool = True
    seed: int = 0


def score_prune(config: PruneConfig, n_classes: int, feature_mask: np.ndarray | None,
                engine: ComputeEngine | None = None):
    def compute(ids: np.ndarray, images: np.ndarray, labels: np.ndarray) -> StepResult:
        score_config = ScoreConfig(score_epochs=config.score_epochs, score_seeds=config.score_seeds,
                                   per_class=config.per_class)
        prune = engine.supply(prune_to_fraction) if engine is not None else prune_to_fraction
        kept, scores = prune(config.strategy, images, labels, n_classes, config.retained_fraction,
                             config.seed, score_config, feature_mask)
        out = np.ones(len(ids), dtype=bool)
        out[kept] = False
        removed = removed_frame(ids[out], f"{config.strategy}_below_cutoff", scores[out])
        return StepResult(removed=removed, metadata={"strategy": config.strategy,
                                                     "target_fraction": config.retained_fraction})
    return compute


@dg.asset(group_name="selection")
def pruned_dataset(context: dg.AssetExecutionContext, config: PruneConfig, raw_dataset: Dataset,
                   features_selected: Selection, output_store: OutputStore,
                   engine: ComputeEngine) -> dg.Output[Selection]:
    """Keeps `retained_fraction` of the cleaned set by a per-sample score (EL2N by default; random is
    the baseline), per class. Writes kept_ids.csv, ledger.csv and the pruned dataset itself
    (`dataset/`, in the input's format) for this run."""
    out = run_step("pruned_dataset", raw_dataset, features_selected, config,
                   score_prune(config, raw_dataset.n_classes, features_selected.feature_mask, engine), engine=engine)
    selection = out.value
    folder = output_store.run_folder(context.run_id)
    export_dataset(raw_dataset, selection, folder / "dataset")
    write_selection(folder, selection, selection_summary(raw_dataset, selection, context.run_id))
    return dg.Output(selection, metadata={**out.metadata, "output_folder": dg.MetadataValue.path(str(folder))})
