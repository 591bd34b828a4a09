"""Detection quality of each cleaning step on dirty digits with known defects (one spec, one seed).

The floors sit below what benchmarks/defects.py measured on this spec (seed 0) with the default
settings, so a regression in a step or its defaults fails here in seconds, without the benchmark.
Duplicates are scored by set: keep-first may keep the injected copy and drop the original.
"""

import inspect

import numpy as np
import pandas as pd
import pytest

from prune_dagster.core.data.dataset import TEST, TRAIN
from prune_dagster.core.embedding.pca import flatten, pca_embed
from prune_dagster.core.steps.dedup import content_hashes, find_exact_duplicates
from prune_dagster.core.steps.label_noise import LabelNoiseParams, find_label_issues, label_issues_from_probabilities
from prune_dagster.core.steps.near_dup import find_near_duplicates, near_duplicate_views
from prune_dagster.core.steps.outliers import OutlierParams, find_outliers
from prune_dagster.core.training.representation import compute_representation
from prune_dagster.fixtures.defects import dirty_digits_truth, load_dirty_digits

SPEC = "dirty-digits?seed=0"  # default rates: 20% symmetric flips, 3% exact / 3% near duplicates, 2% outliers
SET_DEFECTS = ("exact_duplicate", "label_conflict", "near_duplicate")


def _sets(truth, defect, present):
    rows = truth[truth.defect == defect]
    sets = {}
    for sid, src in zip(rows.id, rows.source_id, strict=True):
        sets.setdefault(src, {src}).add(sid)
    return [m & present for m in sets.values() if len(m & present) >= 2]


def _f1(tp, n_removed, n_positive):
    p, r = tp / max(n_removed, 1), tp / max(n_positive, 1)
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


@pytest.fixture(scope="module")
def chain():
    """The cleaning steps in graph order, each on what the previous one kept, with default settings."""
    ds, truth = load_dirty_digits(SPEC), dirty_digits_truth(SPEC)
    train = ds.split == TRAIN
    ids, images, labels = ds.ids[train], ds.images[train], ds.labels[train]
    not_clean = set(truth.id) | set(truth.source_id[truth.defect.isin(SET_DEFECTS)])
    out = {}

    def step(name, result):
        nonlocal ids, images, labels
        present = set(ids)
        out[name] = (present, present - not_clean, result.removed)
        keep = ~np.isin(ids, result.removed["id"])
        ids, images, labels = ids[keep], images[keep], labels[keep]

    step("exact", find_exact_duplicates(ids, images, labels, content_hashes(ds.images[ds.split == TEST])))
    representation = compute_representation(ids, images, labels, ds.n_classes)  # as the graph: after exact
    step("near", find_near_duplicates(ids, near_duplicate_views(images), labels))
    step("outliers", find_outliers(ids, pca_embed(images, 64)))
    present = pd.Index(representation.ids)
    learned = label_issues_from_probabilities(ids, labels, representation.probs[present.get_indexer(ids)],
                                              LabelNoiseParams())
    out["label_learned"] = (set(ids), set(ids) - not_clean, learned.removed)
    step("label", find_label_issues(ids, flatten(images), labels))
    return truth, out


def test_exact_duplicates_every_set_handled_and_conflicts_reported(chain):
    truth, out = chain
    present, _, removed = out["exact"]
    dup_sets = _sets(truth, "exact_duplicate", present)
    as_dup = set(removed.id[removed.reason == "exact_duplicate"])
    assert len(dup_sets) == 43
    assert all(len(m & as_dup) == len(m) - 1 for m in dup_sets)  # recall 1: one member of each set kept
    assert as_dup <= set().union(*dup_sets)  # precision 1
    conflicts = set().union(*_sets(truth, "label_conflict", present))
    assert set(removed.id[removed.reason == "label_conflict"]) == conflicts  # original and copy, as conflicts
    assert set(removed.reason) == {"exact_duplicate", "label_conflict"}


def test_near_duplicates_with_shift_views(chain):
    truth, out = chain
    present, clean, removed = out["near"]
    sets = _sets(truth, "near_duplicate", present)
    got = set(removed.id)
    tp = sum(min(len(m & got), len(m) - 1) for m in sets)
    assert _f1(tp, len(got), len(sets)) >= 0.95  # measured 0.99
    assert len(got & clean) <= 0.01 * len(clean)  # measured 0
    shifted = _sets(truth[truth.kind == "shift"], "near_duplicate", present)
    assert all(len(m & got) == 1 for m in shifted)  # plain pixel PCA finds none of these


def test_outliers_find_noise_and_inverted_images(chain):
    truth, out = chain
    present, clean, removed = out["outliers"]
    outl = truth[truth.defect == "outlier"]
    noise_inverted = set(outl.id[outl.kind != "foreign"]) & present
    got = set(removed.id) - set(outl.id[outl.kind == "foreign"])
    assert len(got & noise_inverted) / len(noise_inverted) >= 0.9  # measured 1.0
    assert _f1(len(got & noise_inverted), len(got), len(noise_inverted)) >= 0.85  # measured 0.95
    assert len(set(removed.id) & clean) <= 0.005 * len(clean)  # measured 0


def test_label_flips_found_at_20_percent_symmetric_noise(chain):
    truth, out = chain
    present, clean, removed = out["label"]
    flips = set(truth.id[truth.defect == "label_flip"]) & present
    got = set(removed.id)
    assert _f1(len(got & flips), len(got), len(flips)) >= 0.9  # measured 0.98
    assert len(got & flips) / len(flips) >= 0.97  # measured 1.0
    assert len(got & flips) / len(got) >= 0.92  # measured 0.96
    assert len(got & clean) <= 0.015 * len(clean)  # measured 0.85%


def test_label_flips_found_from_the_learned_representation(chain):
    """The default path (the representation's out-of-fold CNN probabilities, capped at the estimated
    noise rate): on 8x8 digits with 20% flips it finds fewer flips than the SVC on pixels (F1 0.92 vs
    0.98 measured), the price of a default that does no harm on real images (docs/steps.md)."""
    truth, out = chain
    present, clean, removed = out["label_learned"]
    flips = set(truth.id[truth.defect == "label_flip"]) & present
    got = set(removed.id)
    assert _f1(len(got & flips), len(got), len(flips)) >= 0.88  # measured 0.923
    assert len(got & flips) / len(got) >= 0.93  # measured 0.977
    assert len(got & clean) <= 0.01 * len(clean)


def test_asset_defaults_are_the_measured_step_defaults():
    """The graph runs what the benchmark measured: the assets' Config defaults match the step functions'."""
    from prune_dagster.core import pipeline
    from prune_dagster.defs.assets.steps import step_config

    NearDedupConfig, OutlierConfig, LabelNoiseConfig = (  # noqa: N806 (classes)
        step_config(pipeline.step(name)) for name in ("near_deduplicated", "outliers_removed", "label_noise_removed"))

    def defaults(fn):
        return {k: p.default for k, p in inspect.signature(fn).parameters.items() if p.default is not p.empty}

    near, outl, label = defaults(find_near_duplicates), defaults(find_outliers), defaults(find_label_issues)
    assert NearDedupConfig().threshold == near["threshold"] and NearDedupConfig().keep == near["keep"]
    o = OutlierConfig()
    assert o.contamination == outl["contamination"]
    image = OutlierParams().for_kind("image")
    assert (image.method, image.z_threshold) == (outl["method"], outl["z_threshold"])
    assert o.n_components == 64
    lc = LabelNoiseConfig()
    assert (lc.classifier, lc.folds, lc.filter_by) == (label["classifier"], label["folds"], label["filter_by"])
