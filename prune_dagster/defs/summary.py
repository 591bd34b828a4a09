"""The summary of a run of the graph: what summary.json holds and the CLI prints."""


from typing import Any

import dagster as dg

from prune_dagster.core import pipeline
from prune_dagster.core.data.dataset import TRAIN, Dataset
from prune_dagster.core.ledger import Selection
from prune_dagster.core.selection.fractions import selection_fractions
from prune_dagster.defs.cache import REUSED


def step_summaries(selection: Selection) -> list[dict[str, Any]]:
    """Each recorded step's counts, with what its ledger scores mean (for the pipeline's steps)."""
    known = pipeline.names()
    return [{**r.counts(), **({"score_meaning": pipeline.step(r.step).score_meaning} if r.step in known else {})}
            for r in selection.history]


def selection_summary(dataset: Dataset, selection: Selection, run_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "dagster_run_id": run_id,
        "dataset": dataset.source,
        "kind": dataset.kind,
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


# Where each asset records its compute: (seconds key, sample-passes key) in its materialization metadata.
COMPUTE_KEYS = {"raw_dataset": ("seconds", None), "representation": ("seconds", "sample_passes"),
                "trained_model": ("train_seconds", "sample_passes")}


def compute_summary(instance: dg.DagsterInstance, run_id: str) -> dict[str, Any]:
    """What producing this model cost, asset by asset, from the materializations it read: seconds and
    training sample passes of the source, the representation, each step and the final training, whether
    this run computed each or reused an earlier run's (`reused_from_run`), and the totals: `compute_seconds`
    and `compute_sample_passes` (everything the model needed, reused work included: what a fresh run
    costs) and `run_seconds` (what this run spent computing)."""
    assets = ["raw_dataset", *pipeline.graph(), "trained_model"]
    out: dict[str, Any] = {}
    for asset in assets:
        event = instance.get_latest_materialization_event(dg.AssetKey(asset))
        if event is None:
            continue
        meta = event.asset_materialization.metadata
        secs_key, passes_key = COMPUTE_KEYS.get(asset, ("seconds", "sample_passes"))
        value = {"seconds": float(meta[secs_key].value) if secs_key in meta else 0.0,
                 "sample_passes": int(meta[passes_key].value) if passes_key in meta else 0}
        if REUSED in meta or event.run_id != run_id:
            value["reused_from_run"] = meta[REUSED].value if REUSED in meta else event.run_id
        out[asset] = value
    total = sum(v["seconds"] for v in out.values())
    return {"assets": out, "compute_seconds": round(total, 3),
            "compute_sample_passes": int(sum(v["sample_passes"] for v in out.values())),
            "run_seconds": round(sum(v["seconds"] for v in out.values() if "reused_from_run" not in v), 3)}
