"""The pruning graph gives the kept ids and ledger it gave before the pipeline declaration, the typed
step parameters and the incremental loop (issue 12): pinned from `prune-dagster run --dataset X` on
the code before the change (kept_ids.csv, ledger.csv), as sha256 of the sorted kept ids and of the
sorted (id, step, reason) ledger rows, plus counts by step and reason. With `representation.features:
pixels` every step works as it did before the shared representation (issue 13) existed."""

import hashlib

import dagster as dg
import numpy as np
import pytest

from prune_dagster.core import pipeline
from prune_dagster.defs.engine import ComputeEngine
from prune_dagster.defs.io import RunScopedIOManager
from prune_dagster.defs.resources import OutputStore

BASELINE = {
    "digits": {
        "n_kept": 1143,
        "kept_sha256": "24e49f50a3998364422a9814502f7c613c773659453150ccba2562cb8113e29b",
        "ledger_sha256": "d6f9ee020400725389041648d0c2340effac144a6da717496cf9ab0d3255f7da",
        "removed_by_step_reason": {"label_noise_removed/label_issue": 10, "pruned_dataset/el2n_below_cutoff": 285},
    },
    "dirty-digits": {
        "n_kept": 904,
        "kept_sha256": "8b5167b60294d0670c40080aff23bd624dfbc08e26a030f7aebfdcc76476fe49",
        "ledger_sha256": "c847db25fe8d0719400518db2162299e943fa2bc3b723cd7d3a851137735e06f",
        "removed_by_step_reason": {
            "exact_deduplicated/exact_duplicate": 43, "exact_deduplicated/label_conflict": 14,
            "label_noise_removed/label_issue": 301, "near_deduplicated/near_duplicate": 42,
            "outliers_removed/outlier_knn": 30, "pruned_dataset/el2n_below_cutoff": 226,
        },
    },
}


def pinned(kept, ledger) -> dict:
    def digest(lines):
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()

    rows = sorted(zip(ledger["id"].astype(str), ledger["step"].astype(str), ledger["reason"].astype(str),
                      strict=True))
    counts = ledger.groupby(["step", "reason"]).size()
    return {"n_kept": len(kept), "kept_sha256": digest(sorted(map(str, kept))),
            "ledger_sha256": digest(["\t".join(r) for r in rows]),
            "removed_by_step_reason": {f"{s}/{r}": int(n) for (s, r), n in counts.items()}}


@pytest.mark.parametrize("source", sorted(BASELINE))
def test_the_graph_keeps_and_removes_what_it_did_before(source, prune_env):
    from prune_dagster.definitions import defs

    graph = ["raw_dataset", *pipeline.graph()]  # training does not change the selection
    by_key = {a.key.to_user_string(): a for a in defs.assets or ()}
    resources = {"io_manager": RunScopedIOManager(), "output_store": OutputStore(),
                 "engine": ComputeEngine(address="")}
    with dg.DagsterInstance.get() as instance:
        result = dg.materialize([by_key[k] for k in graph], instance=instance, resources=resources,
                                run_config={"ops": {"raw_dataset": {"config": {"source": source}},
                                                    # the behaviour before the shared representation
                                                    "representation": {"config": {"features": "pixels"}},
                                                    # the default then (1.0 since issue 22)
                                                    "pruned_dataset": {"config": {"target_fraction": 0.8}}}})
    assert result.success
    selection = result.output_for_node(pipeline.SCORE_STEP)
    assert pinned(selection.kept_ids, selection.ledger) == BASELINE[source]
    assert not np.isin(selection.kept_ids, selection.ledger["id"]).any()
