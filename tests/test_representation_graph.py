"""The shared representation in the graph: provided embeddings, planted label flips, bad input."""

import dagster as dg
import numpy as np
import pytest

from prune_dagster.core.data.sources import load_digits
from prune_dagster.defs.engine import ComputeEngine
from prune_dagster.defs.io import RunScopedIOManager
from prune_dagster.defs.resources import OutputStore

CHAIN = ["raw_dataset", "validated", "properties_checked", "exact_deduplicated", "representation", "near_deduplicated",
         "outliers_removed", "label_noise_removed"]


def materialize(source: str, extra: dict | None = None) -> dg.ExecuteInProcessResult:
    from prune_dagster.definitions import defs

    by_key = {a.key.to_user_string(): a for a in defs.assets or ()}
    ops = {"raw_dataset": {"config": {"source": source}}, **(extra or {})}
    with dg.DagsterInstance.get() as instance:
        return dg.materialize([by_key[k] for k in CHAIN], instance=instance, raise_on_error=False,
                              resources={"io_manager": RunScopedIOManager(), "output_store": OutputStore(),
                                         "engine": ComputeEngine(address="")},
                              run_config={"ops": ops})


def write_digits(path, flip_rate: float = 0.0, embeddings: np.ndarray | None = None):
    """sklearn digits as an .npz, with `flip_rate` of the labels changed to another class (seeded)."""
    ds = load_digits()
    images = np.round(ds.images[..., 0] * 16).astype(np.uint8)
    labels = ds.labels.copy()
    rng = np.random.default_rng(7)
    flipped = rng.choice(len(labels), int(flip_rate * len(labels)), replace=False)
    labels[flipped] = (labels[flipped] + rng.integers(1, 10, len(flipped))) % 10
    arrays = {"images": images, "labels": labels, "ids": np.array([f"d{i:04d}" for i in range(len(labels))])}
    if embeddings is not None:
        arrays["embeddings"] = embeddings
    np.savez(path, **arrays)
    return {f"d{i:04d}" for i in flipped}


def failure(result: dg.ExecuteInProcessResult) -> str:
    """The failed step's error and its causes, as one text (what the CLI and the UI show)."""
    error = next(e.step_failure_data.error for e in result.all_events if e.is_step_failure)
    parts = []
    while error is not None:
        parts.append(error.message)
        error = error.cause
    return "\n".join(parts)


def removed_by(result: dg.ExecuteInProcessResult, step: str) -> set[str]:
    ledger = result.output_for_node("label_noise_removed").ledger
    return set(ledger.loc[ledger["step"] == step, "id"])


def test_learned_representation_finds_planted_flips(prune_env, tmp_path):
    flipped = write_digits(tmp_path / "noisy.npz", flip_rate=0.1)
    result = materialize(str(tmp_path / "noisy.npz"))
    assert result.success
    found = removed_by(result, "label_noise_removed")
    train = set(result.output_for_node("exact_deduplicated").kept_ids)
    truth = flipped & train
    precision, recall = len(found & truth) / max(len(found), 1), len(found & truth) / len(truth)
    assert precision >= 0.85 and recall >= 0.8, (precision, recall, len(found), len(truth))


def test_provided_embeddings_are_used_and_checked(prune_env, tmp_path):
    ds = load_digits()
    good = np.random.default_rng(0).normal(size=(len(ds.labels), 16)).astype(np.float32)
    good[:, 0] += 10 * ds.labels  # a separable embedding: the classifier on it finds no label issue
    write_digits(tmp_path / "emb.npz", embeddings=good)
    extra = {"representation": {"config": {"features": "provided"}},
             "outliers_removed": {"config": {"embedding": "representation"}}}
    result = materialize(str(tmp_path / "emb.npz"), extra)
    assert result.success
    rep = result.output_for_node("representation")
    assert rep.features == "provided" and rep.embeddings.shape[1] == 16 and rep.probs is None
    noise = result.output_for_node("label_noise_removed").record("label_noise_removed")
    assert noise.n_in - noise.n_out <= 3

    bad = good.copy()
    bad[5, 3] = np.nan
    write_digits(tmp_path / "bad.npz", embeddings=bad)
    failed = materialize(str(tmp_path / "bad.npz"), extra)
    assert not failed.success
    message = failure(failed)
    assert f"{tmp_path / 'bad.npz'}: embeddings: row 5 is not finite" in message


def test_provided_without_embeddings_says_where_to_put_them(prune_env, tmp_path):
    write_digits(tmp_path / "plain.npz")
    failed = materialize(str(tmp_path / "plain.npz"), {"representation": {"config": {"features": "provided"}}})
    assert not failed.success
    message = failure(failed)
    assert "but the source has no embeddings: add an `embeddings` array to the .npz" in message


@pytest.mark.parametrize("step", ["near_deduplicated", "outliers_removed"])
def test_asking_for_embeddings_the_representation_lacks_is_a_setting_error(prune_env, tmp_path, step):
    write_digits(tmp_path / "plain.npz")
    failed = materialize(str(tmp_path / "plain.npz"), {"representation": {"config": {"features": "pixels"}},
                                                       step: {"config": {"embedding": "representation"}}})
    assert not failed.success
    message = failure(failed)
    assert "representation.features" in message


def colour_digits(path, size: int, n_per_class: int = 30) -> None:
    """sklearn digits upscaled to size×size and painted in a random foreground and background colour:
    a 3-channel .npz like the document's 56×56 RGB input."""
    ds = load_digits()
    rng = np.random.default_rng(3)
    keep = np.concatenate([np.flatnonzero(ds.labels == c)[:n_per_class] for c in range(10)])
    grey = ds.images[keep, :, :, 0]
    scale = -(-size // 8)
    big = np.kron(grey, np.ones((scale, scale)))[:, :size, :size]
    fg, bg = rng.uniform(0.5, 1, (len(keep), 1, 1, 3)), rng.uniform(0, 0.4, (len(keep), 1, 1, 3))
    rgb = big[..., None] * fg + (1 - big[..., None]) * bg
    np.savez(path, images=np.round(rgb * 255).astype(np.uint8), labels=ds.labels[keep])


@pytest.mark.parametrize("size", [32, 56])
def test_colour_images_run_through_the_representation(prune_env, tmp_path, size):
    colour_digits(tmp_path / f"rgb{size}.npz", size)
    result = materialize(str(tmp_path / f"rgb{size}.npz"), {"representation": {"config": {"epochs": 2,
                                                                                           "min_steps": 20}}})
    assert result.success
    rep = result.output_for_node("representation")
    assert result.output_for_node("raw_dataset").images.shape[1:] == (size, size, 3)
    assert rep.features == "learned" and rep.probs.shape == (len(rep.ids), 10) and rep.embeddings.shape[1] == 128
    assert np.isfinite(rep.el2n).all()
