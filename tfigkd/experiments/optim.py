"""Optimisers and learning-rate schedules built from a ``TrainConfig``."""

from __future__ import annotations

import math

import keras
from keras import ops

from tfigkd.errors import UserError


@keras.saving.register_keras_serializable(package="tfigkd")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to ``base_lr`` over ``warmup_steps``, then cosine to 0.

    With ``warmup_steps=0`` this is plain cosine decay.
    """

    def __init__(self, base_lr, total_steps, warmup_steps=0):
        self.base_lr = float(base_lr)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warm = float(max(self.warmup_steps, 1))
        decay_steps = float(max(self.total_steps - self.warmup_steps, 1))
        progress = ops.clip((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
        cosine = 0.5 * self.base_lr * (1.0 + ops.cos(math.pi * progress))
        warmup = self.base_lr * (step + 1.0) / warm
        if self.warmup_steps == 0:
            return cosine
        return ops.where(step < self.warmup_steps, warmup, cosine)

    def get_config(self):
        return {"base_lr": self.base_lr, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps}


def build_optimizer(opt_cfg, epochs, steps_per_epoch):
    """The optimiser of a recipe, with its schedule over ``epochs * steps_per_epoch``.

    Args:
        opt_cfg: An ``OptimizerConfig``.
        epochs: Number of training epochs.
        steps_per_epoch: Batches per epoch.

    Returns:
        A ``keras.optimizers.Optimizer``.
    """
    total = epochs * steps_per_epoch
    if opt_cfg.schedule == "constant":
        lr = opt_cfg.lr
    else:
        warm = int(opt_cfg.warmup_fraction * total) if opt_cfg.schedule == "warmup_cosine" else 0
        lr = WarmupCosine(opt_cfg.lr, total, warm)
    wd = opt_cfg.weight_decay or None
    if opt_cfg.name == "sgd":
        return keras.optimizers.SGD(lr, momentum=opt_cfg.momentum,
                                    nesterov=opt_cfg.nesterov, weight_decay=wd)
    if opt_cfg.name == "adam":
        return keras.optimizers.Adam(lr, weight_decay=wd)
    raise UserError(f"Unknown optimizer {opt_cfg.name!r}.")
