"""The Distiller: a ``keras.Model`` that trains a student with CE, KD and AT.

loss = alpha * T^2 * KL(teacher || student at temperature T)
       + (1 - alpha) * CE(labels, student)
       + gamma * sum over layer pairs of AT(teacher block, student block)

It follows the conventions of Keras' own ``keras.distillation.Distiller``:
it overrides ``compute_loss`` (not ``train_step``), so ``compile(loss=...,
metrics=...)``, ``sample_weight``, loss scaling and Keras callbacks work as
with any model, and ``model.student`` is what you save and ship. It exists
beside Keras' class because it also does what that one cannot express:

- the teacher can be replaced by **cached logits** looked up by example
  index (inputs are then dicts with "image" and "index");
- **AT-only modes** (no KD term, gamma > 0) and the paper's alpha
  convention (alpha weighs KD; Keras' ``student_loss_weight`` is 1 - alpha);
- a teacher with **its own input normalisation** (``teacher_mean``/``std``)
  while the student takes [0, 1] images.

The ``kd`` mode is exactly ``keras.distillation.Distiller(teacher, student,
LogitsDistillation(temperature=T, loss="kl_divergence"),
student_loss_weight=1 - alpha)`` compiled with sparse cross-entropy from
logits (a test checks the two losses agree on a batch); attention transfer is
also available as a Keras loss object, ``tfigkd.distill.AttentionTransfer``.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfigkd.distill.logit_cache import IndexedRows
from tfigkd.distill.terms import (LogitsKD, SupervisedCE, at_loss_per_example, total_loss,
                                  weighted_mean)
from tfigkd.errors import UserError


def _with_features(model, layer_names, name):
    if not layer_names:
        return model
    outs = [model.output] + [model.get_layer(n).output for n in layer_names]
    return keras.Model(model.inputs, outs, name=name)


def teacher_input(x, teacher, mean=None, std=None):
    """The student's [0, 1] batch as the teacher takes it: resized to its input size
    (a teacher at its own resolution) and normalised with its ``mean``/``std``."""
    size = tuple(teacher.input_shape[1:3])
    if None not in size and tuple(x.shape[1:3]) != size:
        x = tf.image.resize(x, size, antialias=True)
    if mean is None:
        return x
    return (x - tf.constant(mean)) / tf.constant(std)


class DenseRows:
    """Rows of an array looked up by a dense key 0..N-1 (the per-view cache's view number)."""

    def __init__(self, values):
        self.values = tf.constant(values, tf.float32)

    def __call__(self, key_batch):
        key = tf.cast(key_batch, tf.int64)
        tf.debugging.assert_less(key, tf.cast(tf.shape(self.values)[0], tf.int64),
                                 "A view number has no cached teacher logits: the cache "
                                 "holds fewer epochs than this training runs.")
        return tf.gather(self.values, key)


def per_replica(value, inverse=False):
    """A replica's share of a batch-mean loss: ``value / replicas`` (``* replicas`` if inverse).

    Keras' reduction under ``tf.distribute``: each replica's loss is its local
    mean over the replicas, so the gradients ``fit`` sums across replicas are
    those of the global batch's mean (Keras scales its compiled losses alike).
    The identity on one device.
    """
    n = tf.distribute.get_strategy().num_replicas_in_sync
    if n == 1:
        return value
    return value * (float(n) if inverse else 1.0 / n)


def _image(inputs):
    return inputs["image"] if isinstance(inputs, dict) else inputs


@keras.saving.register_keras_serializable(package="tfigkd")
class Distiller(keras.Model):
    """Trains ``student``; ``distiller.student`` is the model to save and ship.

    Compile it like any Keras model. ``loss`` is the student's supervised loss
    and defaults to sparse cross-entropy on logits; ``metrics`` are computed
    on the student's logits::

        d = Distiller(student, teacher, alpha=0.5, temperature=4.0)
        d.compile(optimizer="adam", metrics=["accuracy"])
        d.fit(train_ds, validation_data=val_ds, epochs=10)
        d.student.save("student.keras")

    Training logs ``loss`` (the total), and ``ce``, ``kd``, ``at`` for the
    terms this configuration uses; validation reports the student alone
    (``val_loss`` is its supervised loss, plus the compiled metrics).

    Args:
        student: Logits model taking [0, 1] images (or what ``fit`` feeds).
        teacher: Frozen logits model, or None for cached logits / no KD.
        alpha: KD weight (the paper's 0.01); the supervised loss gets 1 - alpha.
        temperature: KD temperature T (2.5).
        gamma: AT weight (0.8 in the paper; 0 disables AT).
        at_layers: ``[(student_layer, teacher_layer), ...]`` names of blocks
            whose attention maps are matched (same spatial size).
        teacher_mean, teacher_std: The teacher's input normalisation,
            applied to the student's [0, 1] inputs before the teacher.
        cached_logits: Optional (N, classes) teacher logits with
            ``cached_index`` (N,) example indices; inputs must then be dicts
            with "image" and "index", and no teacher forward pass is run.
        cached_top_k: k when ``cached_logits`` are packed top-k rows
            (``tfigkd.distill.topk``); KD is then computed from them.
        cached_key: "index" (one row per example, looked up by its index) or
            "view" (one row per training view, ``tfigkd.distill.view_cache``:
            inputs carry "view", and ``cached_index`` is not used).
        partial_labels: Some training labels are -1 (unlabelled images): the
            cross-entropy is ``SupervisedCE``'s mean over labelled examples.

    Batches whose inputs carry "mix_label" and "mix_lambda" (mixing,
    ``tfigkd.augment.mixing``) also get ``SupervisedCE``'s two-label form. Both
    need the default supervised loss (``compile(loss=None)``).
    """

    def __init__(self, student, teacher=None, alpha=0.01, temperature=2.5, gamma=0.0,
                 at_layers=(), teacher_mean=None, teacher_std=None, cached_logits=None,
                 cached_index=None, cached_top_k=None, cached_key="index",
                 partial_labels=False, **kwargs):
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
        # Packed top-k rows (tfigkd.distill.topk) instead of full logits.
        self.cached_top_k = int(cached_top_k) if cached_top_k else None
        if cached_key not in ("index", "view"):
            raise UserError(f"cached_key must be 'index' or 'view', got {cached_key!r}.")
        self.cached_key = cached_key
        self._cached = None
        if cached_logits is not None:
            self._cached = (DenseRows(cached_logits) if cached_key == "view"
                            else IndexedRows(cached_logits, cached_index))
        self.partial_labels = bool(partial_labels)
        # The loss terms (tfigkd.distill.terms), summed in compute_loss.
        self.kd_term = LogitsKD(self.temperature, self.cached_top_k if self._cached else None)
        self.ce_term = SupervisedCE()
        # Only the terms this configuration uses are logged: a constant-zero
        # "kd" or "at" column says nothing and reads like a bug.
        several = self.alpha > 0 or self.gamma > 0
        self.ce_tracker = keras.metrics.Mean(name="ce") if several else None
        self.kd_tracker = keras.metrics.Mean(name="kd") if self.alpha > 0 else None
        self.at_tracker = keras.metrics.Mean(name="at") if self.gamma > 0 else None
        self._term_names = tuple(t.name for t in (self.ce_tracker, self.kd_tracker,
                                                  self.at_tracker) if t is not None)
        # Student features of the current forward pass, handed from call()
        # to compute_loss() so AT needs no second student pass.
        object.__setattr__(self, "_stashed_features", None)
        # Student and teacher are built functional models, so the wrapper is
        # too; saying so lets save_weights/checkpoints run before any call.
        self.built = True

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, **kwargs):
        """``keras.Model.compile``; ``loss`` defaults to sparse CE on logits.

        ``jit_compile`` defaults to False: XLA measured 7x slower than the
        default graph on a 2-core CPU. Pass ``jit_compile=True`` on a GPU.
        """
        if loss is None:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        elif self.partial_labels:
            raise UserError("Unlabelled images need the Distiller's own cross-entropy (it "
                            "skips them); compile without loss=.")
        self._default_loss = loss is None or isinstance(
            loss, keras.losses.SparseCategoricalCrossentropy)
        kwargs.setdefault("jit_compile", False)
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def call(self, inputs, training=False):
        x = _image(inputs)
        if self.gamma > 0 and training:
            outs = self._s_feat(x, training=training)
            object.__setattr__(self, "_stashed_features", list(outs[1:]))
            return outs[0]
        return self.student(x, training=training)

    def _teacher_input(self, x):
        return teacher_input(x, self.teacher, self.teacher_mean, self.teacher_std)

    def distillation_terms(self, inputs, student_logits, student_features=None,
                           sample_weight=None):
        """The KD and AT terms of one batch (scalars; 0.0 when unused).

        Args:
            inputs: The batch's inputs (images, or a dict with "image" and
                "index" for cached logits).
            student_logits: The student's logits on ``inputs``.
            student_features: The student's AT layer outputs, in
                ``at_layers`` order (computed if None and AT is on).
            sample_weight: Optional per-example weights.

        Returns:
            (kd, at) scalar tensors.
        """
        x = _image(inputs)
        t_out = None
        if self._t_feat is not None and (self.gamma > 0 or (self.alpha > 0 and self._cached is None)):
            t_out = self._t_feat(self._teacher_input(x), training=False)
            t_out = [tf.stop_gradient(t) for t in (t_out if isinstance(t_out, (list, tuple)) else [t_out])]
        kd = tf.constant(0.0)
        if self.alpha > 0:
            t_logits = (self._cached(inputs[self.cached_key]) if self._cached is not None
                        else t_out[0])
            kd = weighted_mean(self.kd_term.per_example(t_logits, student_logits), sample_weight)
        at = tf.constant(0.0)
        if self.gamma > 0:
            if student_features is None:
                student_features = self._s_feat(x, training=False)[1:]
            at = tf.add_n([weighted_mean(at_loss_per_example(t_f, s_f), sample_weight)
                           for t_f, s_f in zip(t_out[1:], student_features)])
        return kd, at

    def supervised_loss(self, x, y, y_pred, sample_weight=None, training=True):
        """The student's supervised term: the compiled loss, or ``SupervisedCE`` when a
        training batch is mixed or may hold unlabelled images."""
        mixed = isinstance(x, dict) and "mix_lambda" in x
        if not training or not (mixed or self.partial_labels):
            # Keras returns a replica's share (per_replica); this is the local mean.
            return per_replica(keras.Model.compute_loss(
                self, x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                training=training), inverse=True)
        if not getattr(self, "_default_loss", True):
            raise UserError("Mixing and unlabelled images need the Distiller's own "
                            "cross-entropy; compile without loss=.")
        ce = self.ce_term.mean(y, y_pred, x.get("mix_label") if mixed else None,
                               x.get("mix_lambda") if mixed else None, sample_weight)
        if self.losses:  # model regularisers, as Keras' own compute_loss adds them
            ce = ce + tf.add_n(self.losses)
        return ce

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """alpha * KD + (1 - alpha) * (compiled loss) + gamma * AT when training;
        the compiled (supervised) loss of the student alone when evaluating.

        Every term is a mean over this replica's examples; the sum is returned
        as the replica's share (``per_replica``), as ``fit`` expects under
        ``tf.distribute``."""
        features = self._stashed_features
        object.__setattr__(self, "_stashed_features", None)
        if y_pred is None:
            y_pred = self(x, training=training)
            features = self._stashed_features
            object.__setattr__(self, "_stashed_features", None)
        supervised = self.supervised_loss(x, y, y_pred, sample_weight, training)
        if not training or not self._term_names:
            return per_replica(supervised)
        kd, at = self.distillation_terms(x, y_pred, features, sample_weight)
        total = total_loss(self.alpha, supervised, kd, self.gamma, at)
        for tracker, value in ((self.ce_tracker, supervised), (self.kd_tracker, kd),
                               (self.at_tracker, at)):
            if tracker is not None:
                tracker.update_state(value)
        return per_replica(total)

    def losses_for(self, inputs, y, training=False, sample_weight=None):
        """(total, ce, kd, at, student_logits) of one batch, for inspection and tests.

        ``ce`` is the compiled supervised loss (sparse CE by default; the
        model is compiled with the defaults if it was not compiled yet).
        """
        if not self.compiled:
            self.compile()
        logits = self(inputs, training=training)
        features = self._stashed_features
        object.__setattr__(self, "_stashed_features", None)
        # The training form of the loss, whether the student ran in training mode or not.
        ce = self.supervised_loss(inputs, y, logits, sample_weight, training=True)
        kd, at = self.distillation_terms(inputs, logits, features, sample_weight)
        total = total_loss(self.alpha, ce, kd, self.gamma, at)
        return total, ce, kd, at, logits

    def test_step(self, data):
        logs = super().test_step(data)
        # Validation is the student alone: the training-only terms are not
        # evaluated there, so their (reset) trackers are not reported.
        return {k: v for k, v in logs.items() if k not in self._term_names}

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
