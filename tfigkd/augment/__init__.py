"""Training-time augmentation: the IG overlay."""

from tfigkd.augment.ig_overlay import IGOverlay, ig_overlay, overlay_dataset, overlay_transform

__all__ = ["IGOverlay", "ig_overlay", "overlay_dataset", "overlay_transform"]
