"""The settings of score-based pruning, declared once: the strategies, the scoring runs, the fraction kept.

`ScoreParams` (how scores are computed) and `PruneParams` (which strategy keeps what fraction) are the
one definition that `pruned_dataset`, `sweep_scores` and the core functions read; the Dagster
configs are built from them (`defs/config.py`), so a default or bound exists in one place.
"""

from __future__ import annotations

import math
from typing import Any, Literal, get_args

from pydantic import Field, ValidationError, model_validator

from prune_dagster.core.errors import ConfigError
from prune_dagster.core.params import Params

Strategy = Literal["random", "el2n", "forgetting", "prototype_easy", "prototype_hard", "ccs"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)  # ranked by a per-sample score; the sweep sweeps these
# Strategies that choose the kept positions themselves (core/selection/semdedup.py) from the shared
# representation's embeddings; pruned_dataset only (the sweep would have to re-select per fraction).
SelectStrategy = Literal["semdedup"]
SELECT_STRATEGIES: tuple[str, ...] = get_args(SelectStrategy)
PruneStrategy = Literal[Strategy, SelectStrategy]
Embedding = Literal["pca", "cnn"]
EMBEDDINGS: tuple[str, ...] = get_args(Embedding)


class ScoreParams(Params):
    """How the per-sample scores are computed (EL2N and forgetting runs, prototypes, CCS)."""

    score_epochs: int = Field(5, ge=1, description="Epochs of each short scoring run (EL2N, forgetting).")
    score_seeds: int = Field(3, ge=1, description="Scoring runs averaged (seeds seed .. seed + score_seeds - 1).")
    per_class: bool = Field(True, description="Keep round(fraction x n_c) in every class (stratified budget).")
    n_clusters: int = Field(0, ge=0, description="Prototype strategies: k-means clusters per class; 0 = automatic.")
    ccs_beta: float = Field(0.1, ge=0, lt=1, description="CCS: share of the hardest samples dropped first.")
    ccs_strata: int = Field(50, ge=1, description="CCS: number of equal-width score strata.")
    prototype_embedding: Embedding = Field("pca", description="Prototype strategies: pca = masked pixels through "
                                                              "PCA; cnn = penultimate layer of a scoring run.")
    seed: int = Field(0, ge=0, description="Seeds the scoring runs, the random strategy and tie-breaking.")
    batch_size: int = Field(64, ge=1, description="Batch size of the scoring runs.")
    lr: float = Field(1e-3, gt=0, description="Learning rate of the scoring runs.")
    fit_sample: int = Field(50_000, ge=0, description="Scoring runs and k-means fit on at most this many samples "
                                                      "(class-stratified) and score all; 0 = fit on all.")


DEFAULT_SCORING = ScoreParams()  # the defaults, as one immutable value for argument defaults


class PruneParams(ScoreParams):
    """Score-based pruning to a retained fraction: the strategy, the target fraction and its scores' settings."""

    enabled: bool = Field(True, description="false: the step passes its input through unchanged (no score pruning).")
    strategy: PruneStrategy = Field("el2n", description="Score that ranks samples: random is the baseline; see "
                                                        "core/selection/scoring.py for each. semdedup: semantic "
                                                        "deduplication on the representation's embeddings "
                                                        "(core/selection/semdedup.py).")
    target_fraction: float = Field(1.0, gt=0, le=1, description="Share of the cleaned set to keep, in (0, 1]; 1.0 "
                                   "keeps everything (the default: on real MNIST EL2N at 0.8 lost 0.3 points over 5 "
                                   "seeds, on UCI Adult and Rotten Tomatoes every fraction below 1 lost accuracy; "
                                   "trained_model's dynamic pruning is what saves compute, docs/pays.md). (The metric "
                                   "retained_fraction is what was kept of the whole training split.)")
    scores_from: Literal["representation", "own_runs"] = Field(
        "representation", description="el2n: representation = the EL2N the shared representation's fold runs "
        "computed (nothing trained twice; own runs when the representation has none); own_runs = train "
        "score_seeds short runs here. Other strategies always compute their own scores.")

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, values: Any) -> Any:
        if isinstance(values, dict) and "retained_fraction" in values:
            raise ValueError(RENAMED)
        return values


# The setting's old name is refused with this one line (the CLI, the Launchpad and the Python API say the same).
RENAMED = ("retained_fraction was renamed target_fraction (the share of the cleaned set to keep); "
           "retained_fraction is now only the metric kept / training split")


def check_config(config: ScoreParams) -> None:
    """Raise ConfigError naming the first setting out of range (a config built without validation,
    e.g. `model_construct`, or one changed after construction)."""
    try:
        ScoreParams.of(config)
    except ValidationError as err:
        first = err.errors()[0]
        name = ".".join(map(str, first["loc"]))
        raise ConfigError(f"{name}={first['input']!r}: {first['msg']}") from None


def check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy={strategy!r}: unknown pruning strategy; expected one of {', '.join(STRATEGIES)}")


def check_fraction(fraction: float) -> None:
    try:
        ok = 0.0 < float(fraction) <= 1.0 and not math.isnan(float(fraction))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"fraction={fraction!r}: the retained fraction must be in (0, 1]; 1.0 keeps everything")
