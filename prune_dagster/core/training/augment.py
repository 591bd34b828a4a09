"""On-the-fly data augmentation for the training loop: seeded, per batch, never written into the data.

`augment`:
- none: the batch as it is.
- shift: each image moved by a whole number of pixels, up to `max_shift` per axis (zero padding, then
  a crop back to H x W: what `RandomCrop(padding=max_shift)` does), exact (no resampling).
- standard: a random shift as above plus a rotation of up to ±`max_rotation` degrees (bilinear, zero
  fill) and, only with `flips`, a horizontal flip with probability 1/2. Flips turn a 2 into a mirror
  image no one writes, so they are off by default (digits); most photos allow them.

Images arrive as the train loop holds them: a (B, C, H, W) float tensor in [0, 1] (`train.to_tensor`),
so the zero fill is black, the background of digit images. Randomness comes only from the
`torch.Generator` the caller passes (one per training run, seeded from the run's seed), so a run is
repeatable and augmentation does not disturb the loop's other random streams.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F  # noqa: N812 (the usual name)
from pydantic import Field

from prune_dagster.core.params import Params

AUGMENTS = ("none", "shift", "standard")


class AugmentParams(Params):
    """Random shifts, small rotations and (optionally) flips applied to each training batch."""

    augment: Literal[AUGMENTS] = Field(default="none", description="none; shift: random translations; "
                                                                   "standard: translations + small rotations "
                                                                   "(+ flips when `flips` is on)")
    max_shift: int = Field(default=2, ge=0, le=16, description="largest translation per axis, in pixels")
    max_rotation: float = Field(default=10.0, ge=0.0, le=45.0,
                                description="standard: largest rotation either way, in degrees")
    flips: bool = Field(default=False, description="standard: random horizontal flips (off for digits: a "
                                                   "mirrored digit is not a digit)")


def make_generator(seed: int) -> torch.Generator:
    """The augmentation stream of a training run, apart from torch's global one (model init, dropout)."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + 7)


def random_shifts(batch: int, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """(batch, 2) integer (dy, dx) in [-max_shift, max_shift]; content moves down / right for positive values."""
    return torch.randint(-max_shift, max_shift + 1, (batch, 2), generator=generator)


def shift_images(x: torch.Tensor, shifts: torch.Tensor, max_shift: int, fill: str = "zeros") -> torch.Tensor:
    """Each image moved by its (dy, dx): pad by `max_shift` (`fill`: zeros, or `replicate` the edge
    pixels), crop H x W at offset s - d."""
    if max_shift == 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, mode="replicate") if fill == "replicate" else F.pad(x, (max_shift,) * 4)
    top = (max_shift - shifts[:, 0])[:, None] + torch.arange(h)[None]  # (B, H) source rows
    left = (max_shift - shifts[:, 1])[:, None] + torch.arange(w)[None]  # (B, W) source columns
    out = padded[torch.arange(b)[:, None, None], :, top[:, :, None], left[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def affine_images(x: torch.Tensor, angles: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Rotate each image by its angle (radians, about the centre) after an optional horizontal flip."""
    b, _, h, w = x.shape
    cos, sin = torch.cos(angles), torch.sin(angles)
    sign = 1.0 - 2.0 * flip.to(x.dtype)  # -1 mirrors the sampling grid's x axis
    # Rotation in pixel space expressed in the grid's normalised coordinates (x spans W, y spans H).
    theta = torch.zeros(b, 2, 3, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 1] = cos * sign, -sin * (h / w)
    theta[:, 1, 0], theta[:, 1, 1] = sin * sign * (w / h), cos
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def augment_batch(x: torch.Tensor, params: AugmentParams, generator: torch.Generator) -> torch.Tensor:
    """The augmented copy of a (B, C, H, W) batch (`none`: the batch itself). Draws from `generator` only."""
    if x.ndim != 4:
        raise ValueError(f"augment_batch expects a (B, C, H, W) batch, got shape {tuple(x.shape)}")
    if params.augment == "none" or len(x) == 0:
        return x
    b = len(x)
    shifts = random_shifts(b, params.max_shift, generator)
    if params.augment == "standard":
        angles = (torch.rand(b, generator=generator, dtype=torch.float64) * 2 - 1) * math.radians(params.max_rotation)
        flip = torch.rand(b, generator=generator) < 0.5 if params.flips else torch.zeros(b, dtype=torch.bool)
        x = affine_images(x, angles.to(x.dtype), flip)
    return shift_images(x, shifts, params.max_shift)
