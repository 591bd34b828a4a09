"""Stage `shaping`: class rebalancing and feature selection (Config classes made from the core
parameter models, as in cleaning.py)."""


import dagster as dg

from prune_dagster.core.data.dataset import Dataset
from prune_dagster.core.ledger import Selection
from prune_dagster.core.steps.balance import BalanceParams, loss_weights, rebalance
from prune_dagster.core.steps.features import FeatureParams, select_features
from prune_dagster.defs.assets.common import run_step
from prune_dagster.defs.config import dagster_config, to_params
from prune_dagster.defs.engine import ComputeEngine

BalanceConfig = dagster_config(BalanceParams)
FeatureConfig = dagster_config(FeatureParams)


@dg.asset(group_name="shaping")
def class_balanced(config: BalanceConfig, raw_dataset: Dataset, label_noise_removed: Selection,
                   engine: ComputeEngine) -> dg.Output[Selection]:
    """Brings the class ratio within `max_imbalance` with an imbalanced-learn sampler. Synthetic
    samples (SMOTE) get their own ids and pixels and are listed in synthetic.csv, never in kept_ids.
    `sampler: class_weight` keeps the samples as they are; trained_model reads this step's recorded
    config and weighs its loss per class (the weights of the current set are in the metadata)."""
    params = to_params(config, BalanceParams)

    def compute(ids, images, labels):
        # rebalance runs in this process: it has no blockwise work for the engine
        result = rebalance(ids, images, labels, raw_dataset.class_names, params.sampler, params.max_imbalance,
                           params.seed)
        weights = loss_weights(params, labels, raw_dataset.n_classes)
        if weights is not None:
            result.metadata["class_weights"] = dict(zip(raw_dataset.class_names, map(float, weights), strict=True))
        return result

    return run_step("class_balanced", raw_dataset, label_noise_removed, params, compute, engine=engine)


@dg.asset(group_name="shaping")
def features_selected(config: FeatureConfig, raw_dataset: Dataset, class_balanced: Selection,
                      engine: ComputeEngine) -> dg.Output[Selection]:
    """A pixel mask of the features that carry information; the CNN and the scores use only those.
    Removes no samples; its effect is measured in the metadata."""
    params = to_params(config, FeatureParams)
    return run_step("features_selected", raw_dataset, class_balanced, params,
                    lambda ids, images, labels: select_features(images, labels, params.method, params.threshold,
                                                                params.keep_fraction, params.seed, params.measure),
                    engine=engine)
