"""Planted defects in a real table (UCI Adult) or corpus (Rotten Tomatoes): what the cleaning steps find,
side by side with cleanlab's Datalab on the same features and probabilities.

Per seed, in the training split only: 10% of the labels flipped to another class, 1% exact copies (texts:
upper-cased, extra whitespace), 1% near copies (rows: every number jittered within 1%; texts: two
adjacent words swapped and one replaced), 0.5% outliers (rows: numbers 20-100x the column's largest,
categories drawn at random; texts: strings of random letters). The dirty data is written as the file a
user would give and run through the real graph up to `features_selected` with the default settings.

Scored per defect: precision / recall / F1 of the step that targets it. Duplicates count a planted set
(source and copy) found when either is removed as a duplicate; natural duplicates of the real data
count as correct removals for exact duplicates (they are identical), as false positives for near ones.
Datalab (issue types label, outlier, near_duplicate; its defaults) gets the representation's out-of-fold
probabilities and embeddings of the samples the label and outlier steps see; for duplicates it gets the
raw features (standardised columns with one-hot categories; TF-IDF through a 128-component SVD) of the
training split, as the duplicate steps see raw content.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
from kinds_plant import plant, write_dirty  # noqa: I001 (benchmarks/ is on sys.path)

STEP_OF = {"exact": "exact_deduplicated", "near": "near_deduplicated", "outlier": "outliers_removed",
           "flip": "label_noise_removed"}


def prf(found: set, truth: set, flagged: set) -> dict:
    """Precision over `flagged`, recall over `truth`; `found` = the true items flagged."""
    p = len(found) / len(flagged) if flagged else 1.0
    r = len(found) / len(truth) if truth else 1.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0,
            "flagged": len(flagged), "planted": len(truth)}


def materialize(path: Path, kind: str, seed: int, tmp: Path):
    """The real graph up to features_selected on the dirty file (default settings)."""
    import dagster as dg

    from prune_dagster.core import pipeline
    from prune_dagster.definitions import defs

    os.environ.update(DAGSTER_HOME=str(tmp / "home"), PRUNE_OUTPUT_DIR=str(tmp / "out"),
                      MLFLOW_TRACKING_URI=f"sqlite:///{tmp / 'mlflow.db'}")
    (tmp / "home").mkdir(exist_ok=True)
    (tmp / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    keys = ["raw_dataset", *pipeline.cleaning_graph()]
    config = {"raw_dataset": {"config": {"source": str(path), "split_column": "split"}},
              "representation": {"config": {"seed": seed}}}
    job = dg.define_asset_job("defects_job", selection=keys, executor_def=dg.in_process_executor)
    with dg.DagsterInstance.get() as instance:
        result = dg.Definitions(assets=list(defs.assets), resources=defs.resources,
                                jobs=[job]).resolve_job_def("defects_job").execute_in_process(
            instance=instance, run_config={"ops": config})
    assert result.success
    return (result.output_for_node("raw_dataset"), result.output_for_node("features_selected"),
            result.output_for_node("representation"))


def score(flags: dict[str, set], truth: pd.DataFrame, natural: set) -> dict:
    """Per defect, P / R / F1 of the flagged ids (see the module docstring for how sets count)."""
    out = {}
    for defect in STEP_OF:
        flagged, mine = flags.get(defect, set()), truth[truth["defect"] == defect]
        if defect in ("exact", "near"):  # a set counts once, found when either member is removed
            sets = set(zip(mine["id"], mine["source"], strict=True))
            members = {m for pair in sets for m in pair}
            r = len({pair for pair in sets if pair[0] in flagged or pair[1] in flagged}) / max(len(sets), 1)
            correct = flagged & (members | (natural if defect == "exact" else set()))
            p = len(correct) / len(flagged) if flagged else 1.0
            out[defect] = {"precision": round(p, 4), "recall": round(r, 4),
                           "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0,
                           "flagged": len(flagged), "planted": len(sets)}
        else:
            wanted = set(mine["id"])
            out[defect] = prf(flagged & wanted, wanted, flagged)
    return out


def ours(ledger: pd.DataFrame, truth: pd.DataFrame, natural: set) -> dict:
    return score({d: set(ledger.loc[ledger["step"] == s, "id"]) for d, s in STEP_OF.items()}, truth, natural)


def datalab_issues(labels: np.ndarray, probs: np.ndarray, embeddings: np.ndarray, train_labels: np.ndarray,
                   raw: np.ndarray) -> tuple[np.ndarray, np.ndarray, list]:
    """Datalab's label and outlier flags, and its near-duplicate (flags, sets) on the raw features."""
    from cleanlab import Datalab

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lab = Datalab(data={"label": labels}, label_name="label", verbosity=0)
        lab.find_issues(pred_probs=probs, features=embeddings, issue_types={"label": {}, "outlier": {}})
        dups = Datalab(data={"label": train_labels}, label_name="label", verbosity=0)
        dups.find_issues(features=raw, issue_types={"near_duplicate": {}})
    nd = dups.get_issues("near_duplicate")
    return (lab.get_issues("label")["is_label_issue"].to_numpy(),
            lab.get_issues("outlier")["is_outlier_issue"].to_numpy(),
            list(zip(nd["is_near_duplicate_issue"], nd["near_duplicate_sets"], strict=True)))


def datalab(dataset, rep, truth: pd.DataFrame, natural: set) -> dict:
    """Datalab's label, outlier and near-duplicate issues on the same inputs (see the module docstring).
    cleanlab's label search forks a pool of one process per core unless told otherwise, and a fork after
    torch started its threads hung here once: it runs on one process (cleanlab: "n_jobs only affects
    runtimes, results will be the same"), by answering its core count with 1."""
    from kinds_plant import raw_matrix

    seen = np.asarray(rep.ids, dtype=object)  # the samples the label and outlier steps' representation saw
    train = dataset.ids_in("train")
    args = (dataset.labels[dataset.index_of(seen)], np.asarray(rep.probs), np.asarray(rep.embeddings),
            dataset.labels[dataset.index_of(train)], raw_matrix(dataset, train))
    import cleanlab.filter

    with mock.patch.object(cleanlab.filter.psutil, "cpu_count", lambda logical=True: 1):
        label, outlier, near = datalab_issues(*args)
    dup = {train[i] for i, (flag, sets) in enumerate(near) if flag and len(sets) and min(sets) < i}
    flags = {"flip": set(seen[label]), "outlier": set(seen[outlier]), "exact": dup, "near": dup}
    return score(flags, truth, natural)


def flips_without_confidence_cut(dataset, ledger: pd.DataFrame, rep, truth: pd.DataFrame) -> dict:
    """The label step's rule with `min_other_probability=0` (the image default; tables and texts ask for 0.9)
    on the samples it saw: what the default gives up in recall for doing no harm on real data."""
    from prune_dagster.core.steps.label_noise import LabelNoiseParams, label_issues_from_probabilities

    before = set(ledger.loc[ledger["step"].isin(["near_deduplicated", "outliers_removed"]), "id"])
    seen = np.array([i for i in rep.ids if i not in before], dtype=object)
    labels = dataset.labels[dataset.index_of(seen)]
    result = label_issues_from_probabilities(seen, labels, rep.probs_of(seen),
                                             LabelNoiseParams(min_other_probability=0.0))
    wanted = set(truth.loc[truth["defect"] == "flip", "id"])
    flagged = set(result.removed["id"])
    return prf(flagged & wanted, wanted, flagged)


def run_seed(kind: str, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dirty, truth, natural = plant(kind, seed)
        path = write_dirty(dirty, kind, tmp)
        dataset, selection, rep = materialize(path, kind, seed, tmp)
        mine = ours(selection.ledger, truth, natural)
        mine["flip, min_other 0"] = flips_without_confidence_cut(dataset, selection.ledger, rep, truth)
        theirs = datalab(dataset, rep, truth, natural)
    return {"seed": seed, "ours": mine, "datalab": theirs,
            "removed_by_step": selection.ledger["step"].value_counts().to_dict()}


def run_all(kind: str, seeds: list[int], out: Path, command: str) -> dict:
    rows = [run_seed(kind, s) for s in seeds]
    print(f"\n{'defect':<19}{'who':<9}" + "".join(f"{'seed ' + str(r['seed']) + ' P/R/F1':>24}" for r in rows))
    lines = [(d, w) for d in STEP_OF for w in ("ours", "datalab")] + [("flip, min_other 0", "ours")]
    for defect, who in lines:
        cells = "".join(f"{r[who][defect]['precision']:>8.3f}{r[who][defect]['recall']:>8.3f}"
                        f"{r[who][defect]['f1']:>8.3f}" for r in rows)
        print(f"{defect:<19}{who:<9}{cells}")
    result = {"command": command, "kind": kind, "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                                           "load_avg": os.getloadavg()}, "rows": rows}
    out.write_text(json.dumps(result, indent=1, default=str))
    print(f"wrote {out}")
    return result
