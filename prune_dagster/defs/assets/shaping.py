"""Stage `shaping`: class rebalancing and feature selection."""


import dagster as dg

from prune_dagster.core.data.dataset import Dataset
from prune_dagster.core.ledger import Selection
from prune_dagster.core.steps.balance import rebalance
from prune_dagster.core.steps.features import select_features
from prune_dagster.defs.assets.common import StepConfig, run_step
from prune_dagster.defs.engine import ComputeEngine


class BalanceConfig(StepConfig):
    sampler: str = "smote"  # none | smote | random_over | random_under | near_miss | tomek
    max_imbalance: float = 2.0  # largest / smallest class size allowed before the sampler acts
    seed: int = 0


@dg.asset(group_name="shaping")
def class_balanced(config: BalanceConfig, raw_dataset: Dataset, label_noise_removed: Selection,
                   engine: ComputeEngine) -> dg.Output[Selection]:
    """Brings the class ratio within `max_imbalance` with an imbalanced-learn sampler. Synthetic
    samples (SMOTE) get their own ids and pixels and are listed in synthetic.csv, never in kept_ids."""
    return run_step("class_balanced", raw_dataset, label_noise_removed, config,
                    lambda ids, images, labels: engine.supply(rebalance)(
                        ids, images, labels, raw_dataset.class_names, config.sampler, config.max_imbalance,
                        config.seed),
                    engine=engine)


class FeatureConfig(StepConfig):
    method: str = "variance"  # variance | mutual_info | none
    threshold: float = 0.0  # variance: pixels with variance <= threshold are masked
    keep_fraction: float = 0.75  # mutual_info: share of pixels kept
    measure: bool = True  # cross-validated linear accuracy with and without the mask
    seed: int = 0


@dg.asset(group_name="shaping")
def features_selected(config: FeatureConfig, raw_dataset: Dataset, class_balanced: Selection,
                      engine: ComputeEngine) -> dg.Output[Selection]:
    """A pixel mask of the features that carry information; the CNN and the scores use only those.
    Removes no samples; its effect is measured in the metadata."""
    return run_step("features_selected", raw_dataset, class_balanced, config,
                    lambda ids, images, labels: engine.supply(select_features)(
                        images, labels, config.method, config.threshold, config.keep_fraction, config.seed,
                        config.measure),
                    engine=engine)
