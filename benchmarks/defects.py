"""Benchmark: what each pruning step catches on digits with known defects, side by side with
cleanlab's Datalab, and what the CNN gains from the pruning graph.

    python benchmarks/defects.py [--seeds 3] [--quick] [--no-cnn] [--out benchmarks/results/defects.json]

For every defect setting and seed it
1. runs the real Dagster graph (`dagster.materialize` of the assets in prune_dagster.definitions, from
   `raw_dataset` to `features_selected`, with their default configs and the blocking asset checks, an
   in-memory IO manager and a temporary DAGSTER_HOME) on `dirty-digits?…&seed=<seed>`;
2. scores each step's removals (read from the ledger the graph returns) against the injected ground
   truth: precision, recall, F1, the share of clean samples the step removed (clean: no defect and
   not the original of a planted duplicate set; duplicates are scored by set, see `score_sets`) and
   the step's seconds. Each step is scored on its own input, i.e. on what earlier steps left. The row
   "step fn, shift views" runs `find_near_duplicates` on `near_duplicate_views` of the same input as
   near_deduplicated, which still embeds with plain `pca_embed`;
3. runs cleanlab's Datalab (issue types near_duplicate, outlier, label; its default settings) on
   exactly the input of our matching step, with the features that step uses (`pca_embed` with the
   step's config) and the same out-of-fold probabilities (`out_of_fold_probabilities` with the label
   step's config). For features Datalab picks the cosine metric by default (more than 3 dimensions),
   which suits centred PCA features badly, so it runs twice: with the euclidean distance our steps
   use, and with its default. Datalab flags every member of a near-duplicate set; it is scored as
   keeping the first of each set, as a user would;
4. trains the CNN (`train_cnn`, TrainParams(epochs=20), the project default) on (a) the clean train
   split, (b) the dirty train split unpruned, (c) what the graph kept (+ synthetic samples, with its
   feature mask, as `trained_model` does), all evaluated on the test split, which the dirty dataset
   leaves untouched (checked). The seed of the defects is also the CNN's training seed.

Prints a table (mean ± std over seeds) and the issue's targets, and writes per-run rows, the summary
and the table as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from prune_dagster.core import pipeline
from prune_dagster.core.data.dataset import TEST, TRAIN, Dataset
from prune_dagster.core.data.sources import load_digits
from prune_dagster.core.embedding.pca import flatten, pca_embed
from prune_dagster.core.ledger import Selection
from prune_dagster.core.steps.label_noise import out_of_fold_probabilities
from prune_dagster.core.steps.near_dup import find_near_duplicates, near_duplicate_views
from prune_dagster.core.training.train import TrainParams, accuracy, train_cnn
from prune_dagster.fixtures.defects import SPLIT_KEYS, dirty_digits_truth

# (name, dirty-digits query). Every other rate stays at its DefectConfig default: 3% exact
# duplicates, 0.5% conflicting copies, 3% near duplicates (noise / shift / brightness), 2% outliers
# (noise / inverted / foreign), 20% symmetric label flips.
SETTINGS: tuple[tuple[str, str], ...] = (
    ("default: 20% symmetric", ""),
    ("40% symmetric", "label_noise_rate=0.4"),
    ("20% class-conditional", "label_noise_kind=class_conditional"),
)
GRAPH = ("raw_dataset", *pipeline.cleaning_graph())
CNN_EPOCHS = 20  # TrainConfigDg's default: the epochs the graph's trained_model uses

# (row key, detector shown, defect shown), in table order.
ROWS = (
    ("exact", "exact_deduplicated", "exact_duplicate"),
    ("conflict", "exact_deduplicated", "label_conflict"),
    ("near", "near_deduplicated", "near_duplicate"),
    ("near_views", "  step fn, shift views", "near_duplicate"),
    ("dl_near", "  Datalab, euclidean", "near_duplicate"),
    ("dl_near_cos", "  Datalab, its default", "near_duplicate"),
    ("outlier", "outliers_removed", "outlier (all)"),
    ("outlier_ni", "outliers_removed", "outlier noise+inverted"),
    ("dl_outlier", "  Datalab, euclidean", "outlier (all)"),
    ("dl_outlier_ni", "  Datalab, euclidean", "outlier noise+inverted"),
    ("dl_outlier_cos", "  Datalab, its default", "outlier (all)"),
    ("dl_outlier_ni_cos", "  Datalab, its default", "outlier noise+inverted"),
    ("label", "label_noise_removed", "label_flip"),
    ("dl_label", "  Datalab", "label_flip"),
)
SET_DEFECTS = ("exact_duplicate", "label_conflict", "near_duplicate")
METRICS = ("precision", "recall", "f1", "clean_removed", "seconds")


# ------------------------------------------------------------------------------------------------
# Scoring against the ground truth


def _f1(p: float, r: float) -> float:
    return float("nan") if np.isnan(p) or np.isnan(r) or p + r == 0 else 2 * p * r / (p + r)


def _score(tp: int, n_removed_scored: int, n_positive: int, clean_removed: int, n_clean: int) -> dict:
    p = tp / n_removed_scored if n_removed_scored else float("nan")
    r = tp / n_positive if n_positive else float("nan")
    return {"precision": p, "recall": r, "f1": _f1(p, r), "clean_removed": clean_removed / max(n_clean, 1),
            "tp": tp, "n_removed": n_removed_scored, "n_positive": n_positive, "n_clean_removed": clean_removed}


def duplicate_sets(truth: pd.DataFrame, defect: str, present: set[str]) -> list[tuple[str, set[str]]]:
    """(source id, members present) of each planted set with at least two members in `present`."""
    rows = truth[truth.defect == defect]
    sets: dict[str, set[str]] = {}
    for sid, src in zip(rows.id, rows.source_id, strict=True):
        sets.setdefault(src, {src}).add(sid)
    return [(src, members & present) for src, members in sets.items() if len(members & present) >= 2]


def score_sets(removed: set[str], sets: list[tuple[str, set[str]]], clean: set[str]) -> dict:
    """Duplicates are scored by set, not by id: the ground truth marks the added copy, but keep-first
    keeps whichever member comes first in dataset order (the copies are interleaved at random), so it
    drops the original about half the time, and either way the set is handled. A set of m members
    present expects m - 1 removals: those are true positives, whichever members they are. A removal
    beyond m - 1 (the whole set gone) is a false positive and counts as one clean sample lost (the
    injector copies clean originals only; `clean` itself excludes the originals). Any removal outside
    the planted sets is a false positive, clean or not."""
    tp = extra = 0
    members_all: set[str] = set()
    for _, members in sets:
        members_all |= members
        k = len(removed & members)
        tp += min(k, len(members) - 1)
        extra += k == len(members)
    outside = removed - members_all
    return _score(tp, tp + extra + len(outside), sum(len(m) - 1 for _, m in sets),
                  extra + len(outside & clean), len(clean))


def score_ids(removed: set[str], positives: set[str], clean: set[str], ignore: frozenset[str] = frozenset()) -> dict:
    """Plain precision / recall; removals in `ignore` (another defect the row does not judge) count
    neither way."""
    scored = removed - ignore
    return _score(len(scored & positives), len(scored), len(positives), len(removed & clean), len(clean))


def kind_recall(removed: set[str], truth: pd.DataFrame, defect: str, present: set[str], by_set: bool) -> dict:
    out = {}
    for kind, rows in truth[truth.defect == defect].groupby("kind"):
        if by_set:
            sets = duplicate_sets(rows, defect, present)
            need = sum(len(m) - 1 for _, m in sets)
            got = sum(min(len(removed & m), len(m) - 1) for _, m in sets)
        else:
            ids = set(rows.id) & present
            need, got = len(ids), len(removed & ids)
        out[str(kind)] = got / need if need else float("nan")
    return out


# ------------------------------------------------------------------------------------------------
# The graph, Datalab and the CNN


def run_graph(spec: str, instance) -> tuple[Dataset, Selection]:
    """Materialize the graph up to `features_selected` (with the blocking checks on those assets)."""
    import dagster as dg

    from prune_dagster.definitions import defs
    from prune_dagster.defs.engine import ComputeEngine

    # The asset objects as defined (defs.assets), not `resolve_assets_def`: those come bound to the
    # Definitions' resources, which would clash with the in-memory IO manager given here.
    by_key = {a.key.to_user_string(): a for a in defs.assets or ()}
    assets = [by_key[key] for key in GRAPH]
    checks = [c for c in defs.asset_checks
              if all(k.asset_key.to_user_string() in GRAPH for k in c.check_keys)]
    result = dg.materialize(
        [*assets, *checks], instance=instance, resources={"io_manager": dg.mem_io_manager,
                                                               "engine": ComputeEngine()},
        run_config={"ops": {"raw_dataset": {"config": {"source": spec}}},
                    "loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )
    return result.output_for_node("raw_dataset"), result.output_for_node("features_selected")


def step_inputs(dataset: Dataset, selection: Selection) -> dict[str, np.ndarray]:
    """Each step's input positions in the dataset (dataset order, as the assets' `view` gives them)."""
    train = np.flatnonzero(dataset.split == TRAIN)
    gone: set[str] = set()
    out = {}
    for record in selection.history:
        step = record.step
        out[step] = train[~np.isin(dataset.ids[train], list(gone))]
        assert len(out[step]) == record.n_in, (step, len(out[step]), record.n_in)
        gone |= set(selection.ledger.loc[selection.ledger.step == step, "id"])
    return out


def datalab_issues(labels: np.ndarray, issue: str, metric: str | None = None,
                   **inputs) -> tuple[pd.DataFrame, dict, float]:
    """One Datalab issue type with its default settings; `metric` None lets Datalab choose (cosine
    for features of more than 3 dimensions), "euclidean" is the distance our steps use."""
    from cleanlab import Datalab

    start = time.perf_counter()
    lab = Datalab(data={"label": labels}, label_name="label", verbosity=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        settings: dict = {} if metric is None else {"metric": metric}
        if issue == "label":  # n_jobs=1 as in our step: no process pool (results are the same)
            settings["clean_learning_kwargs"] = {"find_label_issues_kwargs": {"n_jobs": 1}}
        lab.find_issues(issue_types={issue: settings}, **inputs)
    return lab.get_issues(issue), lab.get_info(issue), time.perf_counter() - start


def keep_first_of_sets(near_duplicate_sets: list) -> np.ndarray:
    """Datalab flags every member of a near-duplicate set; a user keeps one. Union its sets into
    groups and drop all but the first member (dataset order) of each, as our `keep="first"` does."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(near_duplicate_sets)
    rows = np.concatenate([np.full(len(s), i) for i, s in enumerate(near_duplicate_sets)] or [np.zeros(0)])
    cols = np.concatenate([np.asarray(s) for s in near_duplicate_sets] or [np.zeros(0)])
    graph = coo_matrix((np.ones(len(rows)), (rows.astype(int), cols.astype(int))), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    drop = np.zeros(n, dtype=bool)
    sizes = np.bincount(comp)
    for g in np.flatnonzero(sizes > 1):
        drop[np.flatnonzero(comp == g)[1:]] = True
    return drop


def config_defaults() -> dict:
    from prune_dagster.core import pipeline

    return {name: pipeline.step(name).params().model_dump()
            for name in ("exact_deduplicated", "near_deduplicated", "outliers_removed", "label_noise_removed")}


def evaluate_run(dataset: Dataset, selection: Selection, truth: pd.DataFrame, cfg: dict) -> tuple[dict, dict]:
    """Per-row scores of our steps and Datalab, and a summary of what the whole graph left."""
    inputs = step_inputs(dataset, selection)
    ledger, seconds = selection.ledger, {r.step: r.seconds for r in selection.history}
    # Clean = no defect and not the original of a planted duplicate set (those are scored by set).
    not_clean = set(truth.id) | set(truth.source_id[truth.defect.isin(SET_DEFECTS)])
    out: dict[str, dict] = {}

    def ctx(step: str) -> tuple[np.ndarray, set[str], set[str], set[str]]:
        pos = inputs[step]
        present = set(dataset.ids[pos])
        return pos, present, present - not_clean, set(ledger.loc[ledger.step == step, "id"])

    # Exact duplicates and label conflicts (removed reasons tell them apart).
    pos, present, clean, removed = ctx("exact_deduplicated")
    reason = dict(zip(ledger.id, ledger.reason, strict=True))
    as_dup = {i for i in removed if reason[i] == "exact_duplicate"}
    as_conflict = {i for i in removed if reason[i] == "label_conflict"}
    conflict_members = set().union(*(m for _, m in duplicate_sets(truth, "label_conflict", present)))
    out["exact"] = {**score_sets(as_dup, duplicate_sets(truth, "exact_duplicate", present), clean),
                    "seconds": seconds["exact_deduplicated"]}
    out["conflict"] = {**score_ids(as_conflict, conflict_members, clean), "seconds": seconds["exact_deduplicated"]}
    # Plus the clean samples the step removed for another reason (e.g. as a copy of a test image).
    other = removed - as_dup - as_conflict
    out["exact"]["clean_removed"] = (out["exact"]["n_clean_removed"] + len(other & clean)) / max(len(clean), 1)

    # Near duplicates: the graph, the step function on shift/brightness views, Datalab.
    pos, present, clean, removed = ctx("near_deduplicated")
    sets = duplicate_sets(truth, "near_duplicate", present)
    ids, images, labels = dataset.ids[pos], dataset.images[pos], dataset.labels[pos]
    c = cfg["near_deduplicated"]
    out["near"] = {**score_sets(removed, sets, clean), "seconds": seconds["near_deduplicated"],
                   "recall_by_kind": kind_recall(removed, truth, "near_duplicate", present, True)}
    start = time.perf_counter()
    views = near_duplicate_views(images, c["n_components"], c["seed"])
    res = find_near_duplicates(ids, views, labels, c["threshold"], c["keep"], images=images)
    rem_views = set(res.removed["id"])
    out["near_views"] = {**score_sets(rem_views, sets, clean), "seconds": time.perf_counter() - start,
                         "recall_by_kind": kind_recall(rem_views, truth, "near_duplicate", present, True)}
    features = pca_embed(images, c["n_components"], c["seed"])
    for key, metric in (("dl_near", "euclidean"), ("dl_near_cos", None)):
        _, info, secs = datalab_issues(labels, "near_duplicate", metric, features=features)
        rem_dl = set(ids[keep_first_of_sets(info["near_duplicate_sets"])])
        out[key] = {**score_sets(rem_dl, sets, clean), "seconds": secs,
                    "recall_by_kind": kind_recall(rem_dl, truth, "near_duplicate", present, True)}

    # Outliers: all kinds, and noise + inverted (the issue's target; foreign ones neither way).
    pos, present, clean, removed = ctx("outliers_removed")
    outl = truth[truth.defect == "outlier"]
    all_out = set(outl.id) & present
    foreign = frozenset(set(outl.id[outl.kind == "foreign"]) & present)
    c = cfg["outliers_removed"]
    out["outlier"] = {**score_ids(removed, all_out, clean), "seconds": seconds["outliers_removed"],
                      "recall_by_kind": kind_recall(removed, truth, "outlier", present, False)}
    out["outlier_ni"] = {**score_ids(removed, all_out - foreign, clean, foreign),
                         "seconds": seconds["outliers_removed"]}
    features = pca_embed(dataset.images[pos], c["n_components"], c["seed"])
    for suffix, metric in (("", "euclidean"), ("_cos", None)):
        issues, _, secs = datalab_issues(dataset.labels[pos], "outlier", metric, features=features)
        rem_dl = set(dataset.ids[pos][issues["is_outlier_issue"].to_numpy()])
        out["dl_outlier" + suffix] = {**score_ids(rem_dl, all_out, clean), "seconds": secs,
                                      "recall_by_kind": kind_recall(rem_dl, truth, "outlier", present, False)}
        out["dl_outlier_ni" + suffix] = {**score_ids(rem_dl, all_out - foreign, clean, foreign), "seconds": secs}

    # Label flips, with the same out-of-fold probabilities for Datalab.
    pos, present, clean, removed = ctx("label_noise_removed")
    flips = set(truth.id[truth.defect == "label_flip"]) & present
    c = cfg["label_noise_removed"]
    out["label"] = {**score_ids(removed, flips, clean), "seconds": seconds["label_noise_removed"]}
    labels = dataset.labels[pos]
    assert np.bincount(labels).min() >= c["folds"], "a class too small to cross-validate: probabilities would differ"
    start = time.perf_counter()
    probs = out_of_fold_probabilities(flatten(dataset.images[pos]), labels, c["classifier"], c["folds"], c["seed"])
    prob_seconds = time.perf_counter() - start
    issues, _, secs = datalab_issues(labels, "label", pred_probs=probs)
    rem_dl = set(dataset.ids[pos][issues["is_label_issue"].to_numpy()])
    out["dl_label"] = {**score_ids(rem_dl, flips, clean), "seconds": secs + prob_seconds}

    # What the whole graph left: duplicate sets with two or more members kept, conflicting sets with
    # any member kept, outliers and flipped labels kept.
    train_ids = set(dataset.ids[dataset.split == TRAIN])
    kept = set(selection.kept_ids)
    clean_all = train_ids - not_clean
    left = {}
    for d in SET_DEFECTS:
        sets = duplicate_sets(truth, d, train_ids)
        least = 1 if d == "label_conflict" else 2
        left[d] = sum(len(m & kept) >= least for _, m in sets) / max(len(sets), 1)
    for d in ("outlier", "label_flip"):
        ids = set(truth.id[truth.defect == d])
        left[d] = len(ids & kept) / max(len(ids), 1)
    lost = sum(not (m & kept) for d in ("exact_duplicate", "near_duplicate")
               for _, m in duplicate_sets(truth, d, train_ids))
    graph = {"n_train": len(train_ids), "n_kept": len(kept),
             "n_synthetic": 0 if selection.synthetic is None else len(selection.synthetic.ids),
             "clean_removed": (len(clean_all - kept) + lost) / len(clean_all), "defects_left": left}
    return out, graph


def cnn_accuracy(images: np.ndarray, labels: np.ndarray, n_classes: int, test: tuple[np.ndarray, np.ndarray],
                 seed: int, epochs: int, feature_mask: np.ndarray | None = None) -> float:
    result = train_cnn(images, labels, n_classes, TrainParams(epochs=epochs, seed=seed), feature_mask)
    return accuracy(result.model, *test)


# ------------------------------------------------------------------------------------------------
# Aggregation and the table


def mean_std(values: list[float]) -> dict:
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    return {"mean": float(v.mean()), "std": float(v.std()), "n": int(len(v))} if len(v) else \
        {"mean": float("nan"), "std": float("nan"), "n": 0}


def summarise(runs: list[dict], cnn: bool) -> dict:
    summary: dict = {}
    for name, _ in SETTINGS:
        mine = [r for r in runs if r["setting"] == name]
        if not mine:
            continue
        s: dict = {"steps": {}, "graph": {}, "cnn": {}}
        for key, _, _ in ROWS:
            s["steps"][key] = {m: mean_std([r["steps"][key][m] for r in mine]) for m in METRICS}
            kinds = {k for r in mine for k in r["steps"][key].get("recall_by_kind", {})}
            if kinds:
                s["steps"][key]["recall_by_kind"] = {
                    k: mean_std([r["steps"][key]["recall_by_kind"].get(k, np.nan) for r in mine])["mean"]
                    for k in sorted(kinds)}
        s["graph"] = {k: mean_std([r["graph"][k] for r in mine]) for k in ("n_train", "n_kept", "clean_removed")}
        s["graph"]["defects_left"] = {d: mean_std([r["graph"]["defects_left"][d] for r in mine])["mean"]
                                      for d in mine[0]["graph"]["defects_left"]}
        if cnn:
            s["cnn"] = {k: mean_std([r["cnn"][k] for r in mine]) for k in ("clean", "dirty", "pruned")}
        summary[name] = s
    return summary


def fmt(ms: dict, scale: float = 1.0, nd: int = 3) -> str:
    if ms["n"] == 0:
        return "-"
    return f"{scale * ms['mean']:.{nd}f}±{scale * ms['std']:.{nd}f}"


def table(summary: dict, cnn: bool) -> list[str]:
    header = (f"{'setting':24} {'detector':24} {'defect':23} {'precision':>12} {'recall':>12} {'F1':>12} "
              f"{'clean rm %':>11} {'seconds':>10}")
    lines = [header, "-" * len(header)]
    for name, s in summary.items():
        for i, (key, det, defect) in enumerate(ROWS):
            m = s["steps"][key]
            lines.append(f"{name if i == 0 else '':24} {det:24} {defect:23} {fmt(m['precision']):>12} "
                         f"{fmt(m['recall']):>12} {fmt(m['f1']):>12} {fmt(m['clean_removed'], 100, 2):>11} "
                         f"{fmt(m['seconds'], 1, 2):>10}")
            if "recall_by_kind" in m:
                kinds = ", ".join(f"{k} {v:.2f}" for k, v in m["recall_by_kind"].items())
                lines.append(f"{'':24} {'':24} {'  recall by kind:':23} {kinds}")
        g = s["graph"]
        left = ", ".join(f"{k} {100 * v:.1f}%" for k, v in g["defects_left"].items())
        lines.append(f"{'':24} graph kept {g['n_kept']['mean']:.0f} of {g['n_train']['mean']:.0f} train samples; "
                     f"clean removed {fmt(g['clean_removed'], 100, 2)}%; defects left: {left}")
        if cnn:
            c = s["cnn"]
            lines.append(f"{'':24} CNN test accuracy %: clean {fmt(c['clean'], 100, 2)}, "
                         f"dirty unpruned {fmt(c['dirty'], 100, 2)}, dirty after the graph {fmt(c['pruned'], 100, 2)}")
        lines.append("")
    return lines


def check_targets(summary: dict, cnn: bool) -> dict[str, bool]:
    names = [n for n, _ in SETTINGS if n in summary]
    default, sym40 = SETTINGS[0][0], SETTINGS[1][0]
    st = {n: summary[n]["steps"] for n in names}

    def mean(n: str, key: str, metric: str) -> float:
        return st[n][key][metric]["mean"]

    targets: dict[str, bool] = {
        "exact duplicates P=R=1 (every run)": all(
            st[n]["exact"][m]["mean"] == 1.0 and st[n]["exact"][m]["std"] == 0.0
            for n in names for m in ("precision", "recall")),
        "conflicts reported as label_conflict P=R=1": all(
            mean(n, "conflict", m) == 1.0 for n in names for m in ("precision", "recall")),
    }
    if default in st:
        targets["near duplicates F1>=0.95 at default (graph)"] = mean(default, "near", "f1") >= 0.95
        targets["near duplicates clean removed <=1% (graph)"] = mean(default, "near", "clean_removed") <= 0.01
        targets["near duplicates F1>=0.95 at default (step fn, shift views)"] = (
            mean(default, "near_views", "f1") >= 0.95)
        targets["label flips F1>=0.90 at 20% symmetric"] = mean(default, "label", "f1") >= 0.90
    if sym40 in st:
        targets["label flips F1>=0.85 at 40% symmetric"] = mean(sym40, "label", "f1") >= 0.85
    targets["label flips F1 >= Datalab's (every setting)"] = all(
        mean(n, "label", "f1") >= mean(n, "dl_label", "f1") for n in names)
    targets["outliers noise+inverted F1>=0.90 (every setting)"] = all(
        mean(n, "outlier_ni", "f1") >= 0.90 for n in names)
    if cnn:
        for n in (default, sym40):
            if n in summary:
                c = summary[n]["cnn"]
                targets[f"CNN after graph > unpruned dirty ({n})"] = c["pruned"]["mean"] > c["dirty"]["mean"]
                targets[f"CNN after graph within 1 point of clean ({n})"] = (
                    c["pruned"]["mean"] >= c["clean"]["mean"] - 0.01)
    return targets


# ------------------------------------------------------------------------------------------------


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float | np.floating):
        return None if np.isnan(value) else float(value)
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    return value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3, help="defect and training seeds 0..N-1 (default 3)")
    ap.add_argument("--quick", action="store_true", help="one seed and 5 CNN epochs, for development")
    ap.add_argument("--no-cnn", action="store_true", help="skip the CNN trainings")
    ap.add_argument("--epochs", type=int, default=None, help=f"CNN epochs (default {CNN_EPOCHS}; 5 with --quick)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "defects.json")
    args = ap.parse_args(argv)
    seeds = 1 if args.quick else args.seeds
    epochs = args.epochs or (5 if args.quick else CNN_EPOCHS)
    cnn = not args.no_cnn
    torch.set_num_threads(1)  # shared 2-core machine: one thread keeps wall times comparable
    try:
        from cleanlab.datalab.datalab import Datalab  # noqa: F401  (cleanlab's lazy import hides why)
    except ImportError as exc:
        sys.exit(f"cleanlab's Datalab is not importable ({exc}); install it with pip install 'cleanlab[datalab]'")

    import dagster as dg

    started = time.perf_counter()
    cfg = config_defaults()
    clean = load_digits().with_split(SPLIT_KEYS["test_fraction"], SPLIT_KEYS["split_seed"])
    clean_train = clean.split == TRAIN
    clean_acc: dict[int, float] = {}
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="defects-bench-") as home:
        os.environ["DAGSTER_HOME"] = home
        Path(home, "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        instance = dg.DagsterInstance.get()
        for seed in range(seeds):
            if cnn:
                test = (clean.images[clean.split == TEST], clean.labels[clean.split == TEST])
                clean_acc[seed] = cnn_accuracy(clean.images[clean_train], clean.labels[clean_train],
                                               clean.n_classes, test, seed, epochs)
            for name, query in SETTINGS:
                spec = "dirty-digits?" + "&".join(q for q in (query, f"seed={seed}") if q)
                t0 = time.perf_counter()
                dataset, selection = run_graph(spec, instance)
                graph_seconds = time.perf_counter() - t0
                truth = dirty_digits_truth(spec)
                steps, graph = evaluate_run(dataset, selection, truth, cfg)
                run = {"setting": name, "spec": spec, "seed": seed, "steps": steps,
                       "graph": {**graph, "seconds": graph_seconds}}
                if cnn:
                    test_pos = dataset.split == TEST
                    assert np.array_equal(dataset.ids[test_pos], clean.ids[clean.split == TEST])
                    assert np.array_equal(dataset.images[test_pos], clean.images[clean.split == TEST])
                    assert np.array_equal(dataset.labels[test_pos], clean.labels[clean.split == TEST])
                    test = (dataset.images[test_pos], dataset.labels[test_pos])
                    train = dataset.split == TRAIN
                    kept = np.sort(dataset.index_of(selection.kept_ids))
                    images, labels = dataset.images[kept], dataset.labels[kept]
                    if selection.synthetic is not None and len(selection.synthetic.ids):
                        images = np.concatenate([images, selection.synthetic.images])
                        labels = np.concatenate([labels, selection.synthetic.labels])
                    run["cnn"] = {
                        "clean": clean_acc[seed],
                        "dirty": cnn_accuracy(dataset.images[train], dataset.labels[train], dataset.n_classes,
                                              test, seed, epochs),
                        "pruned": cnn_accuracy(images, labels, dataset.n_classes, test, seed, epochs,
                                               selection.feature_mask),
                    }
                runs.append(run)
                acc = "" if not cnn else "  CNN clean/dirty/pruned " + "/".join(
                    f"{100 * run['cnn'][k]:.2f}" for k in ("clean", "dirty", "pruned"))
                print(f"[{time.perf_counter() - started:5.0f}s] {spec}: near F1 {steps['near']['f1']:.3f}, "
                      f"outlier F1 {steps['outlier']['f1']:.3f}, label F1 {steps['label']['f1']:.3f} "
                      f"(Datalab {steps['dl_label']['f1']:.3f}){acc}", flush=True)

    summary = summarise(runs, cnn)
    lines = table(summary, cnn)
    total = time.perf_counter() - started
    lines.append(f"seeds={seeds} cnn_epochs={epochs if cnn else '-'} step defaults={json.dumps(cfg)} "
                 f"total {total:.0f}s")
    print()
    print("\n".join(lines))
    targets = check_targets(summary, cnn)
    for k, v in targets.items():
        print(f"target {'met    ' if v else 'NOT met'}  {k}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    import cleanlab
    import dagster

    args.out.write_text(json.dumps(_json_safe({
        "config": {"seeds": seeds, "cnn_epochs": epochs if cnn else None, "settings": dict(SETTINGS),
                   "step_defaults": cfg, "torch_threads": 1, "torch": torch.__version__,
                   "cleanlab": cleanlab.__version__, "dagster": dagster.__version__,
                   "python": platform.python_version()},
        "summary": summary, "targets": targets, "runs": runs, "table": lines, "total_seconds": total,
    }), indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
