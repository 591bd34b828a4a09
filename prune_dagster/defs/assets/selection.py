"""Stage `selection`: score-based pruning of the cleaned set to a retained fraction."""


import dagster as dg

from prune_dagster.core.data.dataset import Dataset
from prune_dagster.core.data.export import export_dataset, write_selection
from prune_dagster.core.ledger import Selection
from prune_dagster.core.selection.prune_step import prune_step
from prune_dagster.core.selection.strategies import PruneParams
from prune_dagster.core.training.shared import SharedRepresentation
from prune_dagster.defs.assets.common import run_step
from prune_dagster.defs.config import dagster_config, to_params
from prune_dagster.defs.engine import ComputeEngine
from prune_dagster.defs.resources import OutputStore
from prune_dagster.defs.summary import selection_summary

PruneConfig = dagster_config(PruneParams, doc="Score-based pruning of the cleaned set to a retained fraction "
                                              "(core PruneParams: strategy, retained_fraction, scoring settings).")


@dg.asset(group_name="selection")
def pruned_dataset(context: dg.AssetExecutionContext, config: PruneConfig, raw_dataset: Dataset,
                   features_selected: Selection, representation: SharedRepresentation, output_store: OutputStore,
                   engine: ComputeEngine) -> dg.Output[Selection]:
    """Keeps `retained_fraction` of the cleaned set by a per-sample score (EL2N by default; random is
    the baseline), per class. Writes kept_ids.csv, ledger.csv and the pruned dataset itself
    (`dataset/`, in the input's format) for this run."""
    out = run_step("pruned_dataset", raw_dataset, features_selected, config,
                   lambda ids, images, labels: prune_step(to_params(config, PruneParams), ids, images, labels,
                                                          raw_dataset.n_classes, features_selected.feature_mask,
                                                          representation),
                   engine=engine)
    selection = out.value
    folder = output_store.run_folder(context.run_id)
    export_dataset(raw_dataset, selection, folder / "dataset")
    write_selection(folder, selection, selection_summary(raw_dataset, selection, context.run_id))
    return dg.Output(selection, metadata={**out.metadata, "output_folder": dg.MetadataValue.path(str(folder))})
