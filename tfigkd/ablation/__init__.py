"""The ablation layer: paired statistics between modes and attribution agreement."""

from tfigkd.ablation.agreement import spearman, topk_iou
from tfigkd.ablation.stats import describe, holm, minimum_detectable_difference, paired_compare

__all__ = ["describe", "holm", "minimum_detectable_difference", "paired_compare", "spearman",
           "topk_iou"]
