"""What every text algorithm reads first: the normalised text and its word tokens."""

from __future__ import annotations

import re
import unicodedata

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
