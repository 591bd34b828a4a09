"""What every text algorithm reads first: the normalised text and its word tokens."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import Any

import numpy as np

# Words of letters and digits; an inner apostrophe keeps "don't" one word. Punctuation is not a token:
# keeping ! and ? as tokens did not help TF-IDF + logistic regression on Rotten Tomatoes (test accuracy
# 0.7827 with, 0.7848 without: benchmarks/results/text_model_check.json), and without them "Terrible!"
# and "Terrible." are the same text to the near-duplicate search.
TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def normalize(text: str) -> str:
    """Unicode NFKC, casefolded, every run of whitespace one space, stripped.

    NFKC runs again after casefolding, because casefolding can undo it (e.g. "ǅ" → "ǆ"); the result is
    then idempotent: normalize(normalize(t)) == normalize(t).
    """
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return " ".join(folded.split())


def tokens(text: str) -> list[str]:
    """The word tokens of the normalised text; typographic apostrophes count as "'"."""
    return TOKEN.findall(normalize(text).replace("\u2019", "'"))


def unknown_words(texts: Any, known: frozenset[str] | None = None) -> tuple[np.ndarray, np.ndarray, frozenset[str]]:
    """Per text, the share and the number of its distinct words that occur in no other text of `texts`
    (or, given `known`, that are not in it: the vocabulary of the texts a new batch is compared with);
    and the vocabulary of `texts`. Text in another script, encoding debris and random strings are made
    of such words; real snippets rarely are (benchmarks/kinds_defects.py)."""
    words = [set(tokens(str(t))) for t in texts]
    counts = Counter(w for ws in words for w in ws)
    if known is None:
        unknown = np.array([sum(counts[w] == 1 for w in ws) for ws in words], dtype=np.int64)
    else:
        unknown = np.array([sum(w not in known for w in ws) for ws in words], dtype=np.int64)
    sizes = np.array([len(ws) for ws in words], dtype=np.int64)
    return unknown / np.maximum(sizes, 1), unknown, frozenset(counts)
