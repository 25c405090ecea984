"""The distillation losses (docs/method.md, "Losses").

Each loss has a per-example form (shape ``(batch,)``), which the Distiller
weights with ``sample_weight`` the way Keras reduces its own losses
(``sum(w * l) / batch``), and a batch-mean form for direct use.
"""

from __future__ import annotations

import keras
import tensorflow as tf


def kd_loss_per_example(teacher_logits, student_logits, temperature):
    """T^2 * KL(softmax(t / T) || softmax(s / T)) for each example: ``(batch,)``."""
    t = tf.nn.log_softmax(tf.cast(teacher_logits, tf.float32) / temperature, axis=-1)
    s = tf.nn.log_softmax(tf.cast(student_logits, tf.float32) / temperature, axis=-1)
    return temperature ** 2 * tf.reduce_sum(tf.exp(t) * (t - s), axis=-1)


def kd_loss(teacher_logits, student_logits, temperature):
    """T^2 * KL(softmax(t / T) || softmax(s / T)), averaged over the batch."""
    return tf.reduce_mean(kd_loss_per_example(teacher_logits, student_logits, temperature))


def attention_map(features, size=None):
    """L2-normalised, flattened channel mean of squared activations: (B, H*W).

    Args:
        features: (B, H, W, C) activations.
        size: Optional (h, w) to bring the map to before normalising, for a
            teacher block paired by stride with a student block of another size
            (``tfigkd.distill.pairing``). Shrinking averages the map over the
            area each cell covers ("area" resize); enlarging interpolates it
            (bilinear, antialiased). Either way the map stays non-negative, and
            the normalisation afterwards makes its overall scale irrelevant.
    """
    a = tf.reduce_mean(tf.square(tf.cast(features, tf.float32)), axis=-1)
    if size is not None and None not in tuple(size) and tuple(a.shape[1:3]) != tuple(size):
        shrink = None not in tuple(a.shape[1:3]) and a.shape[1] * a.shape[2] > size[0] * size[1]
        a = tf.image.resize(a[..., None], size, method="area" if shrink else "bilinear",
                            antialias=True)[..., 0]
    a = tf.reshape(a, [tf.shape(a)[0], -1])
    return tf.math.l2_normalize(a, axis=1)


def at_loss_per_example(teacher_features, student_features):
    """mean over positions of (a_t - a_s)^2 for each example: ``(batch,)``.

    The teacher's map is resized to the student block's height and width when
    they differ (teacher and student at different input sizes).
    """
    size = tuple(student_features.shape[1:3])
    return tf.reduce_mean(tf.square(attention_map(teacher_features, size)
                                    - attention_map(student_features)), axis=1)


def at_loss(teacher_features, student_features):
    """mean((a_t - a_s)^2) over batch and positions (Zagoruyko & Komodakis 2017)."""
    return tf.reduce_mean(at_loss_per_example(teacher_features, student_features))


def ce_loss(labels, student_logits):
    """Mean sparse cross-entropy of integer labels and logits."""
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        tf.cast(labels, tf.int64), tf.cast(student_logits, tf.float32)))


@keras.saving.register_keras_serializable(package="tfigkd")
class AttentionTransfer(keras.distillation.DistillationLoss):
    """Attention transfer as a loss object for ``keras.distillation.Distiller``.

    Matches the spatial attention maps (channel mean of squared activations,
    L2-normalised) of one teacher layer and one student layer with the same
    height and width; channel counts may differ. When the two models take
    inputs of different sizes, the layers must have equal stride (input size /
    layer size) instead, and the teacher's map is resized to the student's. Use it beside
    ``keras.distillation.LogitsDistillation``::

        distiller = keras.distillation.Distiller(
            teacher, student,
            distillation_losses=[keras.distillation.LogitsDistillation(temperature=2.5),
                                 AttentionTransfer("block_3_add", "features_2")],
            distillation_loss_weights=[1.0, 0.8], student_loss_weight=0.99)

    ``tfigkd.distill.pairing.auto_pairs`` finds such layer pairs.

    Args:
        teacher_layer_name: Teacher layer whose output is matched.
        student_layer_name: Student layer whose output is matched.
    """

    def __init__(self, teacher_layer_name, student_layer_name):
        self.teacher_layer_name = teacher_layer_name
        self.student_layer_name = student_layer_name

    def validate_model_compatibility(self, teacher, student):
        """Both layers exist and have the same spatial size.

        ``keras.distillation.Distiller`` feeds both models the same images, so
        the two must take one input size here; a teacher at its own resolution
        needs ``tfigkd.distill.Distiller``, which resizes the batch for it.
        """
        from tfigkd.distill.pairing import blocks_match, cross_resolution

        if cross_resolution(student, teacher):
            raise ValueError(
                f"AttentionTransfer: the teacher takes {teacher.input_shape[1:3]} images and the "
                f"student {student.input_shape[1:3]}; keras.distillation.Distiller feeds both "
                "the same batch. Use tfigkd.distill.Distiller, which resizes it for the teacher.")

        t = teacher.get_layer(self.teacher_layer_name).output.shape
        s = student.get_layer(self.student_layer_name).output.shape
        if len(t) != 4 or len(s) != 4 or not blocks_match(student, teacher, s[1:3], t[1:3]):
            raise ValueError(
                f"AttentionTransfer needs two 4-D feature maps of one spatial size (of one "
                f"stride, for models of different input sizes); teacher layer "
                f"{self.teacher_layer_name!r} gives {tuple(t)}, student layer "
                f"{self.student_layer_name!r} gives {tuple(s)}.")

    def validate_outputs(self, teacher_outputs, student_outputs):
        keras.tree.assert_same_structure(teacher_outputs, student_outputs)

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        """The batch-mean attention-transfer loss (a scalar)."""
        return at_loss(teacher_outputs, student_outputs)

    def get_config(self):
        return {"teacher_layer_name": self.teacher_layer_name,
                "student_layer_name": self.student_layer_name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
