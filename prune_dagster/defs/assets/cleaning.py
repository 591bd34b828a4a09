"""Stage `cleaning`: exact duplicates, near duplicates, outliers, label noise."""


import dagster as dg

from prune_dagster.core.data.dataset import Dataset
from prune_dagster.core.embedding.pca import flatten, pca_embed
from prune_dagster.core.ledger import Selection
from prune_dagster.core.steps.dedup import content_hashes, find_exact_duplicates
from prune_dagster.core.steps.label_noise import find_label_issues
from prune_dagster.core.steps.near_dup import find_near_duplicates, near_duplicate_views
from prune_dagster.core.steps.outliers import find_outliers
from prune_dagster.defs.assets.common import StepConfig, run_step
from prune_dagster.defs.engine import ComputeEngine


class ExactDedupConfig(StepConfig):
    conflict_policy: str = "drop_all"  # identical images with different labels: drop_all | keep_majority
    check_test_leaks: bool = True  # remove training images identical to a test image


@dg.asset(group_name="cleaning")
def exact_deduplicated(config: ExactDedupConfig, raw_dataset: Dataset, validated: Selection,
                       engine: ComputeEngine) -> dg.Output[Selection]:
    """Keeps one of each set of byte-identical images (content hash); label conflicts and copies of
    test images are removed and named as such in the ledger."""
    def compute(ids, images, labels):
        test_hashes = None
        if config.check_test_leaks and len(validated.test_ids):
            test_images = raw_dataset.images[raw_dataset.index_of(validated.test_ids)]
            test_hashes = engine.supply(content_hashes)(test_images)
        return engine.supply(find_exact_duplicates)(ids, images, labels, test_hashes, config.conflict_policy)

    return run_step("exact_deduplicated", raw_dataset, validated, config, compute, engine=engine)


class NearDedupConfig(StepConfig):
    threshold: float = 0.3  # radius as a multiple of the median nearest-neighbour distance
    keep: str = "first"  # first | most_typical
    n_components: int = 32
    seed: int = 0


@dg.asset(group_name="cleaning")
def near_deduplicated(config: NearDedupConfig, raw_dataset: Dataset, exact_deduplicated: Selection,
                      engine: ComputeEngine) -> dg.Output[Selection]:
    """Groups images closer than the threshold (kNN radius graph + union-find) and keeps one per group.
    Each image is compared as itself and as its one-pixel shifts, brightness-normalised, in PCA space,
    so shifted and re-exposed copies count as duplicates too."""
    def compute(ids, images, labels):
        emb = engine.supply(near_duplicate_views)(images, config.n_components, config.seed)
        return engine.supply(find_near_duplicates)(ids, emb, labels, config.threshold, config.keep)

    return run_step("near_deduplicated", raw_dataset, exact_deduplicated, config, compute, engine=engine)


class OutlierConfig(StepConfig):
    method: str = "knn"  # knn | isolation_forest | lof | none
    contamination: float = 0.0  # 0 = automatic robust threshold
    z_threshold: float = 4.0
    n_components: int = 64
    seed: int = 0


@dg.asset(group_name="cleaning")
def outliers_removed(config: OutlierConfig, raw_dataset: Dataset, near_deduplicated: Selection,
                     engine: ComputeEngine) -> dg.Output[Selection]:
    """Removes images far from the rest of the data (IsolationForest or LOF on the PCA embedding)."""
    def compute(ids, images, labels):
        emb = engine.supply(pca_embed)(images, config.n_components, config.seed)
        return engine.supply(find_outliers)(ids, emb, config.method, config.contamination, config.z_threshold,
                                            config.seed)

    return run_step("outliers_removed", raw_dataset, near_deduplicated, config, compute, engine=engine)


class LabelNoiseConfig(StepConfig):
    classifier: str = "svc"  # svc | logreg: the model whose out-of-fold probabilities CL uses
    folds: int = 5
    filter_by: str = "predicted_neq_given+recheck"  # a cleanlab filter, optionally + "+recheck"
    seed: int = 0


@dg.asset(group_name="cleaning")
def label_noise_removed(config: LabelNoiseConfig, raw_dataset: Dataset, outliers_removed: Selection,
                        engine: ComputeEngine) -> dg.Output[Selection]:
    """Removes samples whose label confident learning (cleanlab) finds wrong, from out-of-fold
    predicted probabilities."""
    return run_step("label_noise_removed", raw_dataset, outliers_removed, config,
                    lambda ids, images, labels: engine.supply(find_label_issues)(
                        ids, flatten(images), labels, config.classifier, config.folds, config.filter_by, config.seed),
                    engine=engine)
