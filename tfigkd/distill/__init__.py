"""Knowledge distillation: the Distiller and its losses."""

from tfigkd.distill.distiller import Distiller
from tfigkd.distill.losses import at_loss, attention_map, ce_loss, kd_loss

__all__ = ["Distiller", "at_loss", "attention_map", "ce_loss", "kd_loss"]
