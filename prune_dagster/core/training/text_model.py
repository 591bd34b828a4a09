"""The document's CNN for texts: Kim (2014)'s sentence CNN, one convolution layer in one dimension.

Token ids (`Vocabulary`) -> embedding -> convolutions of widths 3, 4 and 5 -> ReLU -> max over time ->
dropout -> FC 128 -> ReLU (`features`, the penultimate embedding) -> FC classes (`fc2`). The sizes and the
training defaults (epochs, learning rate) were measured on Rotten Tomatoes: benchmarks/text_model_check.py.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from prune_dagster.core.errors import ConfigError, DatasetError
from prune_dagster.core.kinds.text_tokens import tokens

PAD, UNKNOWN = 0, 1  # token ids: every known token's id is its rank + 2
EMBED_DIM = 64
FILTERS = 64
WIDTHS = (3, 4, 5)
HIDDEN = 128
DROPOUT = 0.5
MAX_LEN_CAP, MAX_LEN_FLOOR, MAX_LEN_QUANTILE = 256, 8, 95
# Training defaults measured on Rotten Tomatoes (benchmarks/results/text_model_check.json; Adam, batch 64,
# one thread, 11,112 training texts): lr 3e-3 peaks at epoch 5 (test accuracy 0.762, 21 s) and then
# overfits; lr 1e-3 needs 10 epochs for 0.741; embedding 128 gains nothing (0.733) at twice the time;
# dropout 0.2 is worse (0.727). TF-IDF + logistic regression reaches 0.786 on the same split.
TEXT_EPOCHS = 5
TEXT_LR = 3e-3


@dataclass
class Vocabulary:
    """The known tokens, most frequent first; id = rank + 2 (0 = padding, 1 = unknown). Picklable."""

    tokens: tuple[str, ...]
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.index = {t: k + 2 for k, t in enumerate(self.tokens)}

    def __len__(self) -> int:
        """Ids in use, padding and unknown included: the embedding's number of rows."""
        return len(self.tokens) + 2

    @classmethod
    def fit(cls, texts: Any, min_count: int = 2, max_size: int = 30_000,
            keep: tuple[str, ...] | None = None) -> Vocabulary:
        """The tokens seen at least `min_count` times in `texts` (and in `keep`, when given: vocabulary
        pruning), the `max_size` most frequent; ties by token, so the ids are reproducible."""
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
            raise ConfigError(f"min_count={min_count!r}; expected an integer >= 1")
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
            raise ConfigError(f"max_size={max_size!r}; expected an integer >= 1")
        counts = Counter(t for text in texts for t in tokens(text))
        allowed = None if keep is None else set(keep)
        ranked = sorted((-c, t) for t, c in counts.items() if c >= min_count and (allowed is None or t in allowed))
        if not ranked:
            where = "" if keep is None else f" among the {len(allowed)} kept tokens"
            raise DatasetError(f"vocabulary: no token occurs {min_count} or more times in the {len(counts)} distinct "
                               f"tokens of the training texts{where}")
        return cls(tokens=tuple(t for _, t in ranked[:max_size]))

    def encode(self, texts: Any, max_len: int) -> torch.Tensor:
        """int64 (N, max_len): each text's token ids, truncated at max_len, padded with 0; 1 = unknown."""
        if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
            raise ConfigError(f"max_len={max_len!r}; expected an integer >= 1")
        texts = list(texts)
        out = np.zeros((len(texts), max_len), dtype=np.int64)
        for row, text in enumerate(texts):
            ids = [self.index.get(t, UNKNOWN) for t in tokens(text)[:max_len]]
            out[row, :len(ids)] = ids
        return torch.from_numpy(out)

    def __getstate__(self) -> dict[str, Any]:
        return {"tokens": self.tokens}  # the index is rebuilt: half the pickle

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.tokens = state["tokens"]
        self.__post_init__()


class TextCNN(nn.Module):
    """Input int64 (N, L) token ids; texts shorter than the widest filter are padded here."""

    def __init__(self, vocab_size: int, n_classes: int, embed_dim: int = EMBED_DIM, filters: int = FILTERS,
                 widths: tuple[int, ...] = WIDTHS, dropout: float = DROPOUT) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, filters, kernel_size=w) for w in widths)
        self.dropout = nn.Dropout(dropout)
        self.fc1 = nn.Linear(filters * len(widths), HIDDEN)  # `fc1`, as the image CNN: the pipeline reads its size
        self.fc2 = nn.Linear(HIDDEN, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The 128-d penultimate embedding (after FC 128 + ReLU)."""
        widest = max(c.kernel_size[0] for c in self.convs)
        if x.shape[1] < widest:
            x = nn.functional.pad(x, (0, widest - x.shape[1]), value=PAD)
        e = self.embedding(x).transpose(1, 2)  # (N, embed_dim, L): Conv1d convolves over the last axis
        pooled = torch.cat([torch.relu(conv(e)).amax(dim=2) for conv in self.convs], dim=1)
        return torch.relu(self.fc1(self.dropout(pooled)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.features(x))


@dataclass
class TextEncoder:
    """Texts to the model's input: a vocabulary fitted on the training texts and a fixed length. Picklable."""

    vocabulary: Vocabulary
    max_len: int

    @classmethod
    def fit(cls, texts: Any, vocabulary: tuple[str, ...] | None = None) -> TextEncoder:
        """Vocabulary from `texts` (restricted to `vocabulary` when given); max_len = the 95th percentile of
        their token counts, within [8, 256] (longer texts are truncated: their tail rarely decides)."""
        texts = list(texts)
        if not texts:
            raise DatasetError("text encoder: no training texts")
        counts = np.array([len(tokens(t)) for t in texts])
        quantile = math.ceil(float(np.percentile(counts, MAX_LEN_QUANTILE)))
        max_len = int(min(MAX_LEN_CAP, max(MAX_LEN_FLOOR, quantile)))
        return cls(vocabulary=Vocabulary.fit(texts, keep=vocabulary), max_len=max_len)

    def tensor(self, texts: Any) -> torch.Tensor:
        return self.vocabulary.encode(texts, self.max_len)

    def model(self, n_classes: int) -> TextCNN:
        """A fresh, untrained model (weights from torch's global RNG: the caller seeds)."""
        if n_classes < 2:
            raise ConfigError(f"n_classes={n_classes}; expected at least 2 classes")
        return TextCNN(len(self.vocabulary), n_classes)
