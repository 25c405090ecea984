"""KD from a top-k teacher-logit cache, for datasets with hundreds or thousands of classes.

A full cache holds N x C floats. The top-k cache holds, per example, the k
classes with the largest teacher logits, their log-probabilities at the KD
temperature T, and the log of the probability mass of all other classes
together: N x (2k + 1) floats. The KD loss is then the KL divergence
between the teacher's and the student's distributions over k + 1 outcomes
(the k classes, and "any other class"):

    T^2 * [ sum_{i in top-k} p_i (log p_i - log q_i) + r (log r - log Q) ]

with ``q = softmax(s / T)`` the student's and ``Q`` its total mass outside
the top k. With k = C the "other" bucket is empty (r = 0) and this is the
full KD loss exactly; with k < C it ignores how the teacher spreads the
remaining mass r among the other classes (usually tiny).

Packing (one float32 row per example, so the cache stays one array that
``IndexedRows`` can look up): ``[log p_1..log p_k, log r, class_1..class_k]``.
Class numbers are exact as float32 up to 2^24.
"""

from __future__ import annotations

import numpy as np


def top_k_in_effect(k, num_classes):
    """k when a top-k cache is smaller than the full one (0 < k < classes), else None."""
    return int(k) if k and 0 < k < num_classes else None


def pack_top_k(logits, k, temperature):
    """(N, C) teacher logits -> (N, 2k + 1) packed top-k rows at ``temperature``."""
    z = np.asarray(logits, np.float64) / float(temperature)
    logp = z - _logsumexp(z, axis=1)[:, None]
    k = int(min(k, z.shape[1]))
    top = np.argsort(-logp, axis=1, kind="stable")[:, :k]
    top_logp = np.take_along_axis(logp, top, axis=1)
    rest = np.ones_like(logp, bool)
    np.put_along_axis(rest, top, False, axis=1)
    with np.errstate(divide="ignore"):
        rest_logp = _logsumexp(np.where(rest, logp, -np.inf), axis=1)
    return np.concatenate([top_logp, rest_logp[:, None], top.astype(np.float64)],
                          axis=1).astype(np.float32)


def _logsumexp(a, axis):
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return (np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True)) + m).squeeze(axis)


def kd_loss_top_k_per_example(packed, student_logits, temperature, k):
    """T^2 * KL over (top-k classes, the rest) for each example: ``(batch,)``."""
    import tensorflow as tf

    packed = tf.cast(packed, tf.float32)
    t_logp, t_rest = packed[:, :k], packed[:, k]
    idx = tf.cast(packed[:, k + 1:], tf.int32)
    s = tf.nn.log_softmax(tf.cast(student_logits, tf.float32) / temperature, axis=-1)
    s_top = tf.gather(s, idx, batch_dims=1)
    kl = tf.reduce_sum(tf.exp(t_logp) * (t_logp - s_top), axis=-1)
    if k < s.shape[-1]:  # k = C: no "other" bucket (its -inf would poison the gradient)
        in_top = tf.reduce_sum(tf.one_hot(idx, tf.shape(s)[-1]), axis=1) > 0
        s_rest = tf.reduce_logsumexp(tf.where(in_top, tf.constant(-np.inf, tf.float32), s),
                                     axis=-1)
        # r = 0 (all mass in the top k): the bucket adds nothing.
        kl += tf.math.multiply_no_nan(t_rest - s_rest, tf.exp(t_rest))
    return temperature ** 2 * kl


def cache_bytes(n, num_classes, k=0):
    """Bytes of a float32 cache: full (k = 0 or k >= C) or top-k."""
    width = num_classes if not k or k >= num_classes else 2 * k + 1
    return 4 * n * width
