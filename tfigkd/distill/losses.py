"""The distillation losses of docs/method.md section 5."""

from __future__ import annotations

import tensorflow as tf


def kd_loss(teacher_logits, student_logits, temperature):
    """T^2 * KL(softmax(t / T) || softmax(s / T)), averaged over the batch."""
    t = tf.nn.log_softmax(tf.cast(teacher_logits, tf.float32) / temperature, axis=-1)
    s = tf.nn.log_softmax(tf.cast(student_logits, tf.float32) / temperature, axis=-1)
    kl = tf.reduce_sum(tf.exp(t) * (t - s), axis=-1)
    return temperature ** 2 * tf.reduce_mean(kl)


def attention_map(features):
    """L2-normalised, flattened channel mean of squared activations: (B, H*W)."""
    a = tf.reduce_mean(tf.square(tf.cast(features, tf.float32)), axis=-1)
    a = tf.reshape(a, [tf.shape(a)[0], -1])
    return tf.math.l2_normalize(a, axis=1)


def at_loss(teacher_features, student_features):
    """mean((a_t - a_s)^2) over batch and positions (Zagoruyko & Komodakis 2017)."""
    return tf.reduce_mean(tf.square(attention_map(teacher_features) - attention_map(student_features)))


def ce_loss(labels, student_logits):
    """Mean sparse cross-entropy of integer labels and logits."""
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        tf.cast(labels, tf.int64), tf.cast(student_logits, tf.float32)))
