"""How much of the data a trained model saw: four fractions, one name and one meaning each.

The same names, with the same meanings, appear in `summary.json`, in the Dagster metadata of
`trained_model` and `sweep_models`, in the sweep's results and in each model's MLflow run:

| name                       | meaning                                                                 |
|----------------------------|-------------------------------------------------------------------------|
| `target_fraction`          | share of the cleaned set the score step is asked to keep (setting)      |
| `kept_fraction_of_train`   | kept original samples / training split (all steps; synthetic excluded)  |
| `kept_fraction_of_cleaned` | kept / input of the score step (the cleaned set): what the sweep varies |
| `sample_pass_fraction`     | sample passes made / (epochs x training samples); < 1 only if dynamic   |
| `retained_fraction`        | MLflow metric and summary.json key: equals `kept_fraction_of_train`     |

`target_fraction` is the setting `pruned_dataset.target_fraction` (a sweep partition's `fraction`), 1.0 when
the step is off; `kept_fraction_of_cleaned` matches it up to per-class rounding.
Before, `retained_fraction` stood for five of these at once (and, in MLflow, for kept/cleaned times the
pass share); a dynamic strategy's share of the work is now `sample_pass_fraction`, read beside the kept
fractions rather than multiplied into them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from prune_dagster.core.ledger import Selection

NAMES = ("target_fraction", "kept_fraction_of_train", "kept_fraction_of_cleaned", "sample_pass_fraction")


@dataclass(frozen=True)
class Fractions:
    """The four fractions of one trained model (see the module table)."""

    target_fraction: float
    kept_fraction_of_train: float
    kept_fraction_of_cleaned: float
    sample_pass_fraction: float = 1.0

    def as_dict(self, digits: int = 6) -> dict[str, float]:
        """The four names plus `retained_fraction` (= kept_fraction_of_train), rounded for reports."""
        out = {k: round(float(v), digits) for k, v in asdict(self).items()}
        out["retained_fraction"] = out["kept_fraction_of_train"]
        return out


def ratio(part: float, whole: float) -> float:
    """part / whole, NaN for an empty whole (no data, not a fraction of 0 or 1)."""
    return float(part) / float(whole) if whole else math.nan


def sample_pass_fraction(sample_passes: int, epochs: int, n_train: int) -> float:
    """Sample passes made / the passes of plain training (epochs x n_train)."""
    return ratio(sample_passes, epochs * n_train)


def fractions(*, target: float, n_kept: int, n_train_split: int, n_cleaned: int, n_selected: int,
              sample_passes: int | None = None, epochs: int = 0, n_train: int = 0) -> Fractions:
    """The fractions of one model from counts.

    `n_kept`: kept original samples in the end; `n_train_split`: samples in the training split;
    `n_cleaned` / `n_selected`: samples into / out of the score-based step (equal when it is off);
    `sample_passes`, `epochs`, `n_train`: what training did (None: not trained yet, pass share 1.0).
    """
    passes = 1.0 if sample_passes is None else sample_pass_fraction(sample_passes, epochs, n_train)
    return Fractions(target_fraction=float(target), kept_fraction_of_train=ratio(n_kept, n_train_split),
                     kept_fraction_of_cleaned=ratio(n_selected, n_cleaned), sample_pass_fraction=passes)


def selection_fractions(selection: Selection, step: str = "pruned_dataset", n_dropped: int = 0,
                        sample_passes: int | None = None, epochs: int = 0, n_train: int = 0) -> Fractions:
    """The fractions of a Selection whose score-based step is `step`.

    `n_dropped`: kept originals removed after the Selection was made (dynamic feedback removal during
    training), so the MLflow run and summary.json count the same kept set.
    """
    record = selection.record(step)
    enabled = record is not None and record.config.get("enabled", True)
    target = float(record.config.get("target_fraction", 1.0)) if enabled else 1.0
    n_cleaned, n_selected = (record.n_in, record.n_out) if record is not None else (1, 1)
    return fractions(target=target, n_kept=len(selection.kept_ids) - n_dropped,
                     n_train_split=selection.n_train_split, n_cleaned=n_cleaned, n_selected=n_selected,
                     sample_passes=sample_passes, epochs=epochs, n_train=n_train)
