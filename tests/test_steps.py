"""Each pruning step on data built so that the right answer is known."""

import numpy as np
import pytest

from prune_dagster.core.data.dataset import Dataset
from prune_dagster.core.embedding.pca import flatten, pca_embed
from prune_dagster.core.errors import ConfigError, DatasetError
from prune_dagster.core.steps.balance import rebalance
from prune_dagster.core.steps.dedup import content_hashes, find_exact_duplicates
from prune_dagster.core.steps.features import select_features
from prune_dagster.core.steps.label_noise import find_label_issues
from prune_dagster.core.steps.near_dup import find_near_duplicates
from prune_dagster.core.steps.outliers import find_outliers
from prune_dagster.core.steps.validate import validate


def _with_extra(ids, images, labels, extra_images, extra_labels, prefix):
    new_ids = np.array([f"{prefix}/{i}" for i in range(len(extra_images))], dtype=object)
    return (np.concatenate([ids, new_ids]), np.concatenate([images, extra_images]),
            np.concatenate([labels, extra_labels]), set(new_ids))


def test_validate_removes_bad_samples_with_reasons(digits):
    images = digits.images.copy()
    images[3, 0, 0, 0] = np.nan
    images[5] = 0.5
    d = Dataset(ids=digits.ids, images=images, labels=digits.labels, class_names=digits.class_names,
                source="t", load_errors={digits.ids[7]: "unreadable: truncated"})
    result = validate(d, d.ids)
    reasons = dict(zip(result.removed["id"], result.removed["reason"], strict=True))
    assert reasons == {d.ids[3]: "non_finite_pixels", d.ids[5]: "blank_image", d.ids[7]: "unreadable: truncated"}


def test_validate_stops_on_single_class(digits):
    one = digits.labels == 0
    d = Dataset(ids=digits.ids[one], images=digits.images[one], labels=digits.labels[one],
                class_names=digits.class_names, source="one-class.npz")
    with pytest.raises(DatasetError, match="one-class.npz.*1 class"):
        validate(d, d.ids)


def test_exact_duplicates_removes_exactly_the_planted_copies(digits_train):
    ids, images, labels = digits_train
    src = np.arange(0, 200, 10)
    ids2, images2, labels2, planted = _with_extra(ids, images, labels, images[src], labels[src], "dup")
    result = find_exact_duplicates(ids2, images2, labels2)
    assert set(result.removed["id"]) == planted
    assert set(result.removed["reason"]) == {"exact_duplicate"}


def test_exact_duplicates_with_different_labels_are_conflicts(digits_train):
    ids, images, labels = digits_train
    ids2, images2, labels2, planted = _with_extra(ids, images, labels, images[:3], (labels[:3] + 1) % 10, "c")
    result = find_exact_duplicates(ids2, images2, labels2)
    conflicts = result.removed[result.removed["reason"] == "label_conflict"]
    assert set(conflicts["id"]) == planted | set(ids[:3])
    # Two copies agree, one disagrees: keep_majority keeps one of the majority label.
    ids3, images3, labels3, _ = _with_extra(ids2, images2, labels2, images[:3], labels[:3], "same")
    majority = find_exact_duplicates(ids3, images3, labels3, conflict_policy="keep_majority")
    assert len(majority.removed) == 6 and not set(ids[:3]) & set(majority.removed["id"])
    with pytest.raises(ConfigError, match="conflict_policy"):
        find_exact_duplicates(ids2, images2, labels2, conflict_policy="coin_flip")


def test_training_copy_of_a_test_image_is_removed(digits_train):
    ids, images, labels = digits_train
    result = find_exact_duplicates(ids, images, labels, test_hashes=content_hashes(images[[4, 9]]))
    assert set(result.removed["id"]) == {ids[4], ids[9]}
    assert set(result.removed["reason"]) == {"duplicate_of_test"}


def test_near_duplicates_removes_the_planted_noisy_copies(digits_train, rng):
    ids, images, labels = digits_train
    src = rng.choice(len(ids), 40, replace=False)
    noisy = np.clip(images[src] + rng.normal(0, 0.02, images[src].shape), 0, 1).astype(np.float32)
    ids2, images2, labels2, planted = _with_extra(ids, images, labels, noisy, labels[src], "near")
    result = find_near_duplicates(ids2, pca_embed(images2), labels2)
    removed = set(result.removed["id"])
    # Keep-first keeps the original, so exactly the copies go, and no clean digit.
    assert removed == planted
    assert result.metadata["groups"] == 40


def test_near_duplicates_most_typical_keeps_one_per_group(digits_train, rng):
    ids, images, labels = digits_train
    src = np.array([0, 1, 2])
    noisy = np.clip(images[src] + rng.normal(0, 0.02, images[src].shape), 0, 1).astype(np.float32)
    ids2, images2, labels2, planted = _with_extra(ids, images, labels, noisy, labels[src], "near")
    result = find_near_duplicates(ids2, pca_embed(images2), labels2, keep="most_typical")
    assert len(result.removed) == 3
    for s in src:  # of each pair exactly one goes
        assert (ids[s] in set(result.removed["id"])) != (f"near/{list(src).index(s)}" in set(result.removed["id"]))


def test_outliers_flags_planted_noise_and_nothing_on_clean_digits(digits_train, rng):
    ids, images, labels = digits_train
    clean = find_outliers(ids, pca_embed(images), seed=0)
    assert len(clean.removed) <= 0.005 * len(ids)
    noise = rng.random((15, *images.shape[1:])).astype(np.float32)
    ids2, images2, labels2, planted = _with_extra(ids, images, labels, noise, labels[:15], "noise")
    result = find_outliers(ids2, pca_embed(images2), seed=0)
    removed = set(result.removed["id"])
    assert planted <= removed
    assert len(removed - planted) <= 0.005 * len(ids)


def test_label_noise_finds_flipped_labels(digits_train, rng):
    ids, images, labels = digits_train
    noisy = labels.copy()
    flip = rng.choice(len(ids), int(0.1 * len(ids)), replace=False)
    noisy[flip] = (labels[flip] + rng.integers(1, 10, len(flip))) % 10
    result = find_label_issues(ids, flatten(images), noisy)
    found, truth = set(result.removed["id"]), set(ids[flip])
    precision, recall = len(found & truth) / len(found), len(found & truth) / len(truth)
    assert precision >= 0.9 and recall >= 0.85, (precision, recall)
    assert set(result.removed["reason"]) == {"label_issue"}


def test_label_noise_skips_classes_too_small_to_cross_validate(digits_train):
    ids, images, labels = digits_train
    keep = np.concatenate([np.flatnonzero(labels != 9), np.flatnonzero(labels == 9)[:2]])
    result = find_label_issues(ids[keep], flatten(images[keep]), labels[keep])
    assert result.metadata["classes_skipped"] == [9]


def test_rebalance_smote_synthesises_minority_up_to_the_ratio(digits_train):
    ids, images, labels = digits_train
    keep = np.concatenate([np.flatnonzero(labels != 3), np.flatnonzero(labels == 3)[:20]])
    names = tuple(str(i) for i in range(10))
    result = rebalance(ids[keep], images[keep], labels[keep], names, "smote", max_imbalance=2.0)
    assert len(result.removed) == 0
    after = result.metadata["histogram_after"]
    assert max(after.values()) / min(after.values()) <= 2.0 + 1e-9
    assert result.synthetic is not None and set(result.synthetic.labels) == {3}
    assert all(i.startswith("synthetic/") for i in result.synthetic.ids)


def test_rebalance_undersampling_and_noop(digits_train):
    ids, images, labels = digits_train
    names = tuple(str(i) for i in range(10))
    assert len(rebalance(ids, images, labels, names, "random_under", 2.0).removed) == 0  # already balanced
    keep = np.concatenate([np.flatnonzero(labels != 3), np.flatnonzero(labels == 3)[:20]])
    result = rebalance(ids[keep], images[keep], labels[keep], names, "random_under", 2.0)
    assert max(result.metadata["histogram_after"].values()) == 40
    with pytest.raises(ConfigError, match="sampler"):
        rebalance(ids, images, labels, names, "magic")


def test_feature_selection_masks_constant_pixels(digits_train):
    _, images, labels = digits_train
    result = select_features(images, labels, "variance")
    const = images.var(axis=0)[..., 0] == 0
    assert const.any() and np.array_equal(result.feature_mask, ~const)
    assert len(result.removed) == 0
    assert result.metadata["cv_accuracy_selected"] >= result.metadata["cv_accuracy_all_pixels"] - 0.01
    mi = select_features(images, labels, "mutual_info", keep_fraction=0.5, measure=False)
    assert mi.feature_mask.sum() == 32


def test_label_noise_asks_weaker_kinds_for_a_confident_other_class():
    """Tables and texts flag a sample only when the model gives another class >= 0.9 (their out-of-fold
    models are weaker, so a merely likely other class is often a hard, correct sample); images flag both."""
    from prune_dagster.core.steps.label_noise import LabelNoiseParams, label_issues_from_probabilities

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 200)
    p1 = np.where(labels == 1, 0.8, 0.2) + rng.uniform(-0.05, 0.05, len(labels))
    sure, likely = np.arange(0, 10), np.arange(200, 210)  # wrong labels: other class at 0.97 / at 0.85
    p1[sure] = 0.97
    p1[likely] = 0.15
    probs = np.stack([1 - p1, p1], axis=1)
    ids = np.array([f"s{i}" for i in range(len(labels))], dtype=object)
    flagged = {kind: set(label_issues_from_probabilities(ids, labels, probs, LabelNoiseParams().for_kind(kind))
                         .removed["id"]) for kind in ("image", "table", "text")}
    assert set(ids[sure]) <= flagged["table"] == flagged["text"]
    assert not set(ids[likely]) & flagged["table"]
    assert set(ids[likely]) <= flagged["image"]
