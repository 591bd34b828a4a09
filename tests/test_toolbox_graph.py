"""Issue 15's toolbox wired into the graph: augmentation and class weights in training, the
image-property step and semantic deduplication as a pruning strategy (small, fast checks)."""

import dagster as dg
import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from prune_dagster.core.errors import ConfigError
from prune_dagster.core.ledger import Selection, StepResult, removed_frame
from prune_dagster.core.selection.strategies import PruneParams
from prune_dagster.core.steps.balance import BalanceParams, rebalance
from prune_dagster.core.training.augment import AugmentParams
from prune_dagster.core.training.class_weights import ClassWeightParams, class_weights
from prune_dagster.core.training.shared import SharedRepresentation
from prune_dagster.core.training.train import TrainParams, predict_proba, train_cnn


def weights_of(result) -> list[torch.Tensor]:
    return [v.clone() for v in result.model.state_dict().values()]


def same(a, b) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a, b, strict=True))


def test_augmentation_changes_training_reproducibly_and_none_is_todays_loop(digits_train, one_torch_thread):
    _, x, y = digits_train
    x, y = x[:200], y[:200]
    cfg = TrainParams(epochs=2, seed=3)
    today = weights_of(train_cnn(x, y, 10, cfg))
    assert same(today, weights_of(train_cnn(x, y, 10, cfg, augment=AugmentParams())))  # none: bit-identical
    for mode in ("shift", "standard"):
        params = AugmentParams(augment=mode)
        a = weights_of(train_cnn(x, y, 10, cfg, augment=params))
        assert same(a, weights_of(train_cnn(x, y, 10, cfg, augment=params)))  # seeded
        assert not same(a, today)
        assert not same(a, weights_of(train_cnn(x, y, 10, cfg.model_copy(update={"seed": 4}), augment=params)))


def test_class_weights_raise_minority_recall_on_a_long_tailed_set(digits, one_torch_thread):
    d = digits.with_split(0.2, 0)
    tr, te = d.split == "train", d.split == "test"
    x, y = d.images[tr], d.labels[tr]
    classes = [1, 7, 9]  # 9 is the minority: 6 samples against ~145 of each other class
    minority = np.random.default_rng(0).choice(np.flatnonzero(y == 9), 6, replace=False)
    pos = np.concatenate([np.flatnonzero(y == 1), np.flatnonzero(y == 7), minority])
    xl, yl = x[pos], np.searchsorted(classes, y[pos])
    x9 = d.images[te][d.labels[te] == 9]
    w = class_weights(yl, 3, ClassWeightParams(method="inverse_frequency"))
    assert w[2] > 10 * w[0]
    gains = []
    for seed in (0, 2):
        cfg = TrainParams(epochs=3, seed=seed, batch_size=32)
        plain = (predict_proba(train_cnn(xl, yl, 3, cfg).model, x9).argmax(1) == 2).mean()
        weighted = (predict_proba(train_cnn(xl, yl, 3, cfg, class_weight=w).model, x9).argmax(1) == 2).mean()
        gains.append(weighted - plain)
    assert min(gains) > 0.3, gains  # measured: +0.72 and +0.64


def test_class_weight_sampler_keeps_the_samples_and_trained_model_reads_its_record(digits_train):
    from prune_dagster.defs.assets.training import class_weights_of, weight_params

    ids, x, y = digits_train
    keep = np.concatenate([np.flatnonzero(y != 0), np.flatnonzero(y == 0)[:5]])
    ids, x, y = ids[keep], x[keep], y[keep]
    result = rebalance(ids, x, y, tuple(map(str, range(10))), "class_weight", 2.0, 0)
    assert result.removed.empty and result.synthetic is None
    sel = Selection(kept_ids=ids, test_ids=np.array([], dtype=object), n_train_split=len(ids))
    assert class_weights_of(sel, y, 10) is None  # no class_balanced record: unweighted
    smote = sel.advance("class_balanced", StepResult(removed=removed_frame()), BalanceParams().model_dump(), 0.0)
    assert class_weights_of(smote, y, 10) is None
    params = BalanceParams(sampler="class_weight", class_weight_kind="inverse_frequency")
    weighted = sel.advance("class_balanced", StepResult(removed=removed_frame()), params.model_dump(), 0.0)
    w = class_weights_of(weighted, y, 10)
    assert w is not None and w.argmax() == 0 and np.isclose((w[y]).mean(), 1.0, atol=1e-5)
    assert weight_params(w)["class_weights"].count(",") == 9


def test_semdedup_strategy_keeps_the_fraction_and_needs_embeddings(rng):
    from prune_dagster.core.steps.prune import semdedup_step

    ids = np.array([f"s{i}" for i in range(120)], dtype=object)
    labels = np.repeat([0, 1], 60)
    base = rng.normal(size=(60, 16))
    emb = np.concatenate([base[:30], base[:30] + 1e-4, base[30:] + 5, base[30:] + 5 + 1e-4])  # 60 duplicate pairs
    rep = SharedRepresentation(features="learned", ids=ids[::-1], embeddings=emb[::-1])  # looked up by id
    params = PruneParams(strategy="semdedup", target_fraction=0.5)
    result = semdedup_step(params, rep, ids, labels)
    removed = result.removed
    assert len(removed) == 60 and set(removed["reason"]) == {"semantic_duplicate"}
    assert (removed["score"] > 0.99).all()  # each dropped sample is a near-copy of a kept one
    kept = np.setdiff1d(np.arange(120), [int(i[1:]) for i in removed["id"]])
    assert np.bincount(labels[kept]).tolist() == [30, 30]
    assert len(np.unique(kept % 30 + 30 * (kept >= 60))) == 60  # one of each pair
    pixels = SharedRepresentation(features="pixels", ids=ids)
    with pytest.raises(ConfigError, match="representation.features"):
        semdedup_step(params, pixels, ids, labels)


SPEC = "dirty-digits?label_noise_rate=0&exact_duplicate_rate=0&near_duplicate_rate=0"
OFF = {"config": {"enabled": False}}


def test_the_toolbox_in_one_prune_job(prune_env):
    """properties_checked on, class_weight, semdedup on the learned representation, augmented training."""
    from prune_dagster.definitions import defs

    ops = {
        "raw_dataset": {"config": {"source": SPEC}},
        "properties_checked": {"config": {"enabled": True}},
        **{s: OFF for s in ("exact_deduplicated", "near_deduplicated", "outliers_removed", "label_noise_removed",
                            "features_selected")},
        "representation": {"config": {"folds": 2, "epochs": 1, "min_steps": 0}},
        "class_balanced": {"config": {"sampler": "class_weight"}},
        "pruned_dataset": {"config": {"strategy": "semdedup", "target_fraction": 0.6}},
        "trained_model": {"config": {"epochs": 2, "log_model": False, "augment": "shift"}},
    }
    with dg.DagsterInstance.get() as instance:
        result = defs.resolve_job_def("prune_job").execute_in_process(instance=instance, run_config={"ops": ops})
    assert result.success
    ledger = pd.read_csv(prune_env / "out" / "runs" / result.run_id / "ledger.csv")
    by_step = ledger.groupby("step")["reason"].agg(set).to_dict()
    assert set(by_step) == {"properties_checked", "pruned_dataset"}
    assert by_step["pruned_dataset"] == {"semantic_duplicate"}
    assert by_step["properties_checked"] <= {"dark", "light", "low_contrast", "blurry", "low_information"}
    flagged = ledger["id"][ledger["step"] == "properties_checked"]
    assert len(flagged) >= 10 and (~flagged.str.startswith("outlier/")).sum() <= 1  # planted; digits/01626 is odd
    props = result.asset_materializations_for_node("properties_checked")[0].metadata
    assert props["n_removed"].value > 0 and "removed_samples" in props
    trained = result.asset_materializations_for_node("trained_model")[0].metadata
    run = mlflow.get_run(trained["mlflow_run_id"].value)
    assert run.data.params["augment"] == "shift" and run.data.params["class_balanced.sampler"] == "class_weight"
    assert run.data.params["class_weights"] == trained["class_weights"].value
    weights = np.array(trained["class_weights"].value.split(","), dtype=float)
    assert len(weights) == 10 and weights.std() > 0
