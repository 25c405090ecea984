"""The Distiller: a ``keras.Model`` that trains a student with CE, KD and AT.

loss = alpha * T^2 * KL(teacher || student at temperature T)
       + (1 - alpha) * CE(labels, student)
       + gamma * sum over layer pairs of AT(teacher block, student block)

Keras 3's ``keras.distillation.Distiller`` weights the student loss with
``student_loss_weight`` and needs teacher and student to share input
preprocessing; here the teacher takes dataset-normalised inputs and the
student [0, 1] inputs (docs/method.md sections 1-2), the paper's alpha convention
is kept, and the teacher can be replaced by cached logits, so this is a
small TF-backend subclass with an explicit ``train_step``.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfigkd.distill.logit_cache import IndexedRows
from tfigkd.distill.losses import at_loss, ce_loss, kd_loss
from tfigkd.errors import UserError


def _with_features(model, layer_names, name):
    if not layer_names:
        return model
    outs = [model.output] + [model.get_layer(n).output for n in layer_names]
    return keras.Model(model.inputs, outs, name=name)


@keras.saving.register_keras_serializable(package="tfigkd")
class Distiller(keras.Model):
    """Trains ``student``; ``distiller.student`` is the model to save and ship.

    Args:
        student: Logits model taking [0, 1] images (or what ``fit`` feeds).
        teacher: Frozen logits model, or None for cached logits / no KD.
        alpha: KD weight (the paper's 0.01); CE gets 1 - alpha.
        temperature: KD temperature T (2.5).
        gamma: AT weight (0.8 in the paper; 0 disables AT).
        at_layers: ``[(student_layer, teacher_layer), ...]`` names of blocks
            whose attention maps are matched (same spatial size).
        teacher_mean, teacher_std: The teacher's input normalisation,
            applied to the student's [0, 1] inputs before the teacher.
        cached_logits: Optional (N, classes) teacher logits with
            ``cached_index`` (N,) example indices; inputs must then be dicts
            with "image" and "index", and no teacher forward pass is run.
    """

    def __init__(self, student, teacher=None, alpha=0.01, temperature=2.5, gamma=0.0,
                 at_layers=(), teacher_mean=None, teacher_std=None, cached_logits=None,
                 cached_index=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= alpha <= 1.0:
            raise UserError(f"alpha must be in [0, 1], got {alpha}.")
        if temperature <= 0:
            raise UserError(f"temperature must be > 0, got {temperature}.")
        if gamma and not at_layers:
            raise UserError("gamma > 0 needs at_layers: pairs of (student, teacher) layer names.")
        needs_teacher = (alpha > 0 and cached_logits is None) or gamma > 0
        if needs_teacher and teacher is None:
            raise UserError("This configuration needs a teacher model (KD without cached "
                            "logits, or attention transfer).")
        self.student = student
        self.teacher = teacher
        if teacher is not None:
            teacher.trainable = False
        self.alpha, self.temperature, self.gamma = float(alpha), float(temperature), float(gamma)
        self.at_layers = [tuple(p) for p in at_layers]
        self.teacher_mean = None if teacher_mean is None else [float(v) for v in teacher_mean]
        self.teacher_std = None if teacher_std is None else [float(v) for v in teacher_std]
        self._s_feat = _with_features(student, [s for s, _ in self.at_layers], "student_features")
        self._t_feat = (_with_features(teacher, [t for _, t in self.at_layers], "teacher_features")
                        if teacher is not None else None)
        self._cached = (IndexedRows(cached_logits, cached_index)
                        if cached_logits is not None else None)
        self.trackers = {n: keras.metrics.Mean(name=n) for n in ("loss", "ce", "kd", "at")}
        self.acc = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        # Student and teacher are built functional models, so the wrapper is
        # too; saying so lets save_weights/checkpoints run before any call.
        self.built = True

    @property
    def metrics(self):
        return list(self.trackers.values()) + [self.acc]

    def call(self, inputs, training=False):
        x = inputs["image"] if isinstance(inputs, dict) else inputs
        return self.student(x, training=training)

    def _teacher_input(self, x):
        if self.teacher_mean is None:
            return x
        return (x - tf.constant(self.teacher_mean)) / tf.constant(self.teacher_std)

    def _teacher_logits(self, inputs, x, t_out):
        if self._cached is not None:
            return self._cached(inputs["index"])
        return t_out[0]

    def losses_for(self, inputs, y, training):
        """(total, ce, kd, at, student_logits) for one batch."""
        x = inputs["image"] if isinstance(inputs, dict) else inputs
        s_out = self._s_feat(x, training=training)
        s_out = s_out if isinstance(s_out, (list, tuple)) else [s_out]
        s_logits = s_out[0]
        t_out = None
        if self._t_feat is not None and (self.gamma > 0 or (self.alpha > 0 and self._cached is None)):
            t_out = self._t_feat(self._teacher_input(x), training=False)
            t_out = [tf.stop_gradient(t) for t in (t_out if isinstance(t_out, (list, tuple)) else [t_out])]
        ce = ce_loss(y, s_logits)
        kd = tf.constant(0.0)
        if self.alpha > 0:
            kd = kd_loss(self._teacher_logits(inputs, x, t_out), s_logits, self.temperature)
        at = tf.constant(0.0)
        if self.gamma > 0:
            at = tf.add_n([at_loss(t_f, s_f) for t_f, s_f in zip(t_out[1:], s_out[1:])])
        total = self.alpha * kd + (1.0 - self.alpha) * ce + self.gamma * at
        return total, ce, kd, at, s_logits

    def _update(self, values, y, logits):
        for name, v in zip(("loss", "ce", "kd", "at"), values):
            self.trackers[name].update_state(v)
        self.acc.update_state(y, logits)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        inputs, y = data[0], data[1]
        with tf.GradientTape() as tape:
            total, ce, kd, at, logits = self.losses_for(inputs, y, training=True)
        variables = self.student.trainable_variables
        grads = tape.gradient(total, variables)
        self.optimizer.apply(grads, variables)
        return self._update((total, ce, kd, at), y, logits)

    def test_step(self, data):
        inputs, y = data[0], data[1]
        x = inputs["image"] if isinstance(inputs, dict) else inputs
        logits = self.student(x, training=False)
        ce = ce_loss(y, logits)
        # Validation reports the student alone: CE and accuracy.
        return self._update((ce, ce, tf.constant(0.0), tf.constant(0.0)), y, logits)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(
            student=keras.saving.serialize_keras_object(self.student),
            teacher=(keras.saving.serialize_keras_object(self.teacher)
                     if self.teacher is not None else None),
            alpha=self.alpha, temperature=self.temperature, gamma=self.gamma,
            at_layers=[list(p) for p in self.at_layers], teacher_mean=self.teacher_mean,
            teacher_std=self.teacher_std)
        return cfg

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["student"] = keras.saving.deserialize_keras_object(config["student"])
        if config.get("teacher") is not None:
            config["teacher"] = keras.saving.deserialize_keras_object(config["teacher"])
        return cls(**config)
