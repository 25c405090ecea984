"""Knowledge distillation: the Distiller and its losses."""

from tfigkd.distill.distiller import Distiller
from tfigkd.distill.losses import (AttentionTransfer, at_loss, attention_map, ce_loss, kd_loss,
                                   kd_loss_per_example)

__all__ = ["AttentionTransfer", "Distiller", "at_loss", "attention_map", "ce_loss", "kd_loss",
           "kd_loss_per_example"]
