"""Stage `cleaning`, first step: image-property checks (dark, light, low contrast, blurry, low
information, grey in colour), right after `validated` (core/steps/image_properties.py)."""


import dagster as dg

from prune_dagster.core.data.dataset import Dataset
from prune_dagster.core.ledger import Selection
from prune_dagster.core.steps.image_properties import PropertyStepParams, find_property_issues
from prune_dagster.defs.assets.common import run_step
from prune_dagster.defs.config import dagster_config, to_params
from prune_dagster.defs.engine import ComputeEngine

PropertyConfig = dagster_config(PropertyStepParams)


@dg.asset(group_name="cleaning")
def properties_checked(config: PropertyConfig, raw_dataset: Dataset, validated: Selection,
                       engine: ComputeEngine) -> dg.Output[Selection]:
    """Removes images that are robust outliers (median ± k·MAD) on brightness, contrast, sharpness,
    entropy or colourfulness; the ledger names the check and its robust z. Off by default (see
    PropertyStepParams). The loader resizes images and records no original sizes, so the size and
    aspect checks are skipped here."""
    params = to_params(config, PropertyStepParams)
    return run_step("properties_checked", raw_dataset, validated, params,
                    lambda ids, images, labels: engine.supply(find_property_issues)(ids, images, params),
                    engine=engine)
