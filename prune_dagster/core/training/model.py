"""The document's CNN: 3x3 conv (64 filters, padding 1), ReLU, 2x2 max pool, FC 128, ReLU, FC classes."""

from __future__ import annotations

import torch
from torch import nn


class PruneCNN(nn.Module):
    """Input (B, C, H, W); shape and class count come from the data.

    `mean`/`std` are buffers fitted on the training pixels, so a saved model standardises its own input.
    """

    def __init__(self, in_channels: int, height: int, width: int, n_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 64, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(64 * (height // 2) * (width // 2), 128)
        self.fc2 = nn.Linear(128, n_classes)
        self.register_buffer("mean", torch.zeros(1))
        self.register_buffer("std", torch.ones(1))
        self.register_buffer("mask", torch.ones(1, 1, height, width))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer embedding (after FC 128 + ReLU)."""
        x = (x - self.mean) / self.std * self.mask
        x = self.pool(torch.relu(self.conv(x)))
        return torch.relu(self.fc1(torch.flatten(x, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.features(x))
