"""Batch augmentation: seeded, shape-preserving, identity for `none`, shifts really move content."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from prune_dagster.core.training.augment import (
    AugmentParams,
    augment_batch,
    make_generator,
    random_shifts,
    shift_images,
)


@pytest.fixture
def batch():
    torch.manual_seed(0)
    return torch.rand(16, 1, 12, 10)


@pytest.mark.parametrize("mode", ["shift", "standard"])
def test_deterministic_under_a_seed_and_shape_kept(batch, mode):
    params = AugmentParams(augment=mode, max_shift=2)
    a = augment_batch(batch, params, make_generator(3))
    b = augment_batch(batch, params, make_generator(3))
    c = augment_batch(batch, params, make_generator(4))
    assert a.shape == batch.shape and a.dtype == batch.dtype
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a, batch)


def test_none_is_identity_and_draws_nothing(batch):
    g = make_generator(0)
    state = g.get_state()
    assert augment_batch(batch, AugmentParams(), g) is batch
    assert torch.equal(g.get_state(), state)


def test_shift_moves_content_by_whole_pixels():
    x = torch.zeros(2, 1, 6, 6)
    x[:, 0, 2, 3] = 1.0
    out = shift_images(x, torch.tensor([[1, -2], [-2, 2]]), max_shift=2)
    assert out[0, 0, 3, 1] == 1.0 and out[1, 0, 0, 5] == 1.0
    assert out.sum() == 2.0  # moved, not smeared; zero fill where content left


def test_shift_draws_stay_within_the_bound():
    s = random_shifts(10_000, 3, make_generator(0))
    assert s.min() == -3 and s.max() == 3


def test_standard_rotates_without_flips_unless_asked():
    # An L shape: a rotation of <= 10 degrees keeps its mass on the left; a flip moves it right.
    x = torch.zeros(64, 1, 16, 16)
    x[:, 0, 2:14, 3:5] = 1.0
    x[:, 0, 12:14, 3:10] = 1.0
    left = slice(0, 8)
    plain = augment_batch(x, AugmentParams(augment="standard", max_shift=0), make_generator(0))
    assert (plain[:, 0, :, left].sum((1, 2)) > plain[:, 0, :, 8:].sum((1, 2))).all()
    assert not torch.allclose(plain, x)  # rotated
    flipped = augment_batch(x, AugmentParams(augment="standard", max_shift=0, flips=True), make_generator(0))
    mirrored = flipped[:, 0, :, 8:].sum((1, 2)) > flipped[:, 0, :, left].sum((1, 2))
    assert 10 < int(mirrored.sum()) < 54  # about half the images flipped


def test_zero_rotation_and_shift_is_exact(batch):
    out = augment_batch(batch, AugmentParams(augment="standard", max_shift=0, max_rotation=0.0), make_generator(0))
    assert torch.allclose(out, batch, atol=1e-5)


def test_bad_settings():
    with pytest.raises(ValidationError):
        AugmentParams(augment="crop")
    with pytest.raises(ValidationError):
        AugmentParams(max_shift=-1)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        augment_batch(torch.zeros(3, 4, 4), AugmentParams(augment="shift"), make_generator(0))
