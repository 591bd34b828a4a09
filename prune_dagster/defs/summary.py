"""The summary of a run of the graph: what summary.json holds and the CLI prints."""


from typing import Any

from prune_dagster.core import pipeline
from prune_dagster.core.data.dataset import TRAIN, Dataset
from prune_dagster.core.ledger import Selection
from prune_dagster.core.selection.fractions import selection_fractions


def step_summaries(selection: Selection) -> list[dict[str, Any]]:
    """Each recorded step's counts, with what its ledger scores mean (for the pipeline's steps)."""
    known = pipeline.names()
    return [{**r.counts(), **({"score_meaning": pipeline.step(r.step).score_meaning} if r.step in known else {})}
            for r in selection.history]


def selection_summary(dataset: Dataset, selection: Selection, run_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "dagster_run_id": run_id,
        "dataset": dataset.source,
        "dataset_digest": dataset.digest(),
        "n_samples": len(dataset),
        "n_train_split": int((dataset.split == TRAIN).sum()),
        "n_test": int(len(selection.test_ids)),
        "n_kept": int(len(selection.kept_ids)),
        "n_removed": int(len(selection.ledger)),
        "n_synthetic": 0 if selection.synthetic is None else int(len(selection.synthetic.ids)),
        # target_fraction, kept_fraction_of_train (= retained_fraction), kept_fraction_of_cleaned,
        # sample_pass_fraction: one meaning each, see core/selection/fractions.py
        **selection_fractions(selection, pipeline.SCORE_STEP).as_dict(),
        "steps": step_summaries(selection),
        **extra,
    }
