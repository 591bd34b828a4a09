"""The summary of a run of the graph: what summary.json holds and the CLI prints."""


from typing import Any

from prune_dagster.core.data.dataset import TRAIN, Dataset
from prune_dagster.core.ledger import Selection


def score_step_fraction(selection: Selection, step: str = "pruned_dataset") -> float:
    """Kept / input at the score-based step: the `retained_fraction` the sweep varies."""
    for record in selection.history:
        if record["step"] == step:
            return record["n_out"] / max(record["n_in"], 1)
    return 1.0


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
        "retained_fraction": round(score_step_fraction(selection), 6),
        "overall_retained_fraction": round(selection.retained_fraction, 6),
        "steps": selection.step_counts(),
        **extra,
    }
