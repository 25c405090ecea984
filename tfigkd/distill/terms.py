"""Loss terms as objects, shaped like Keras' ``keras.distillation.DistillationLoss``.

Each term is a ``DistillationLoss`` (``compute_loss(teacher_outputs,
student_outputs)`` gives the batch mean, so each also works inside
``keras.distillation.Distiller``) with a per-example form,
``per_example(...) -> (batch,)``, that tfigkd's Distiller weights with
``sample_weight`` and sums in one place (``Distiller.compute_loss``):

    loss = (1 - alpha) * SupervisedCE + alpha * LogitsKD + gamma * AT

``total_loss`` is that sum, written once: the Distiller and the QAT/pruning
fine-tuning (``tfigkd.compress``) both use it. A new loss term is one class
here, its weight in ``tfigkd.modes.Weights`` and its place in ``total_loss``.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfigkd.distill.losses import AttentionTransfer, at_loss_per_example, kd_loss_per_example
from tfigkd.distill.topk import kd_loss_top_k_per_example


def weighted_mean(values, sample_weight=None, mask=None):
    """Keras' "sum_over_batch_size" reduction, sum(w * l) / batch, or over ``mask``'s rows.

    With a mask (labelled examples), the mean is over the rows it keeps, so
    a batch with few labels still gets a cross-entropy of the usual scale;
    a batch with none gives 0.
    """
    w = tf.ones_like(values) if sample_weight is None else \
        tf.reshape(tf.cast(sample_weight, values.dtype), [-1])
    if mask is None:
        return tf.reduce_sum(values * w) / tf.cast(tf.size(values), values.dtype)
    m = tf.cast(mask, values.dtype)
    return tf.math.divide_no_nan(tf.reduce_sum(values * w * m), tf.reduce_sum(m))


def total_loss(alpha, ce, kd=0.0, gamma=0.0, at=0.0):
    """The training objective: ``alpha * kd + (1 - alpha) * ce + gamma * at``.

    Args:
        alpha: Weight of the logits KD term (the supervised term gets 1 - alpha).
        ce: The supervised term (scalar or per example).
        kd: The logits KD term.
        gamma: Weight of attention transfer.
        at: The attention-transfer term.
    """
    return alpha * kd + (1.0 - alpha) * ce + gamma * at


@keras.saving.register_keras_serializable(package="tfigkd")
class LogitsKD(keras.distillation.DistillationLoss):
    """T^2 * KL(softmax(t / T) || softmax(s / T)), as Keras' ``LogitsDistillation``.

    ``top_k``: the teacher side are packed top-k rows (``tfigkd.distill.topk``).
    """

    def __init__(self, temperature=2.5, top_k=None):
        self.temperature = float(temperature)
        self.top_k = int(top_k) if top_k else None

    def per_example(self, teacher_logits, student_logits):
        if self.top_k:
            return kd_loss_top_k_per_example(teacher_logits, student_logits, self.temperature,
                                             self.top_k)
        return kd_loss_per_example(teacher_logits, student_logits, self.temperature)

    def validate_outputs(self, teacher_outputs, student_outputs):
        keras.tree.assert_same_structure(teacher_outputs, student_outputs)

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        return tf.reduce_mean(self.per_example(teacher_outputs, student_outputs))

    def get_config(self):
        return {"temperature": self.temperature, "top_k": self.top_k}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="tfigkd")
class SupervisedCE(keras.distillation.DistillationLoss):
    """Sparse cross-entropy on logits that knows mixed and unlabelled examples.

    - An example whose label is negative (unlabelled, ``tfigkd.data.unlabeled``)
      gets no cross-entropy; the mean is over the labelled examples.
    - A mixed example (``tfigkd.augment.mixing``) takes
      ``lam * CE(label) + (1 - lam) * CE(partner's label)``; a missing partner
      label drops that half.

    Here ``teacher_outputs`` are the labels: the term has no teacher.
    """

    @staticmethod
    def _ce(labels, logits):
        safe = tf.maximum(tf.cast(labels, tf.int64), 0)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(safe, tf.cast(logits, tf.float32))
        return ce, tf.cast(labels >= 0, tf.float32)

    def per_example(self, labels, student_logits, mix_label=None, mix_lambda=None):
        """(per-example CE, per-example label weight in [0, 1])."""
        labels = tf.reshape(labels, [-1])
        ce, has = self._ce(labels, student_logits)
        if mix_lambda is None:
            return ce * has, has
        lam = tf.cast(mix_lambda, tf.float32)
        ce2, has2 = self._ce(tf.reshape(mix_label, [-1]), student_logits)
        value = lam * ce * has + (1.0 - lam) * ce2 * has2
        weight = lam * has + (1.0 - lam) * has2
        return value, tf.cast(weight > 0, tf.float32)

    def mean(self, labels, student_logits, mix_label=None, mix_lambda=None, sample_weight=None):
        value, has = self.per_example(labels, student_logits, mix_label, mix_lambda)
        return weighted_mean(value, sample_weight, mask=has)

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        return self.mean(teacher_outputs, student_outputs)

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls()


__all__ = ["AttentionTransfer", "LogitsKD", "SupervisedCE", "at_loss_per_example", "total_loss",
           "weighted_mean"]
