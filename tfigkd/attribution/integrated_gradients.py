"""Integrated Gradients (Sundararajan et al., 2017), batched with tf.GradientTape.

IG_i(x) = (x_i - x'_i) * integral_0^1 dF_y(x' + a (x - x')) / dx_i da

The integral is a quadrature sum over ``n_steps`` points. All (image, step)
pairs of a call are flattened into one list and pushed through the model in
chunks of ``internal_batch_size`` interpolated images, so the model always
sees large batches; each chunk's gradients are weighted and summed back per
image with a segment sum.
"""

from __future__ import annotations

import weakref

import numpy as np
import tensorflow as tf

from tfigkd.config import IGConfig
from tfigkd.errors import UserError

_IG = IGConfig()  # the defaults, written once

METHODS = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "trapezoid")
# The rule whose points nest (tfigkd/attribution/nested_ig.py): a trapezoid on
# n_steps equal intervals (n_steps + 1 points) when fixed; adaptive, each of the
# start_steps panels is halved on its own and reuses every point computed.
NESTED = "nested_trapezoid"
OUTPUTS = ("logits", "probabilities")
from tfigkd.attribution.baselines import BASELINES, check_inputs, make_baseline  # noqa: E402,F401


def quadrature(method: str, n_steps: int):
    """Points in [0, 1] and weights of a quadrature rule for the path integral.

    Args:
        method: One of ``METHODS``.
        n_steps: Number of points (>= 2 for trapezoid, >= 1 otherwise).

    Returns:
        ``(alphas, weights)``, float64 arrays of length ``n_steps``; weights sum to 1.
    """
    if method not in METHODS:
        raise UserError(f"Unknown IG method {method!r}; use one of {', '.join(METHODS)}.")
    n = int(n_steps)
    if n < (2 if method == "trapezoid" else 1):
        raise UserError(f"n_steps must be >= {2 if method == 'trapezoid' else 1} for "
                        f"{method}, got {n_steps}.")
    if method == "gausslegendre":
        x, w = np.polynomial.legendre.leggauss(n)
        return (x + 1.0) / 2.0, w / 2.0
    if method == "trapezoid":
        alphas = np.linspace(0.0, 1.0, n)
        w = np.full(n, 1.0 / (n - 1))
        w[[0, -1]] /= 2.0
        return alphas, w
    offset = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}[method]
    return (np.arange(n) + offset) / n, np.full(n, 1.0 / n)


class IntegratedGradients:
    """IG for one Keras model, with the traced gradient function cached.

    Args:
        model: A Keras model mapping (B, H, W, C) inputs to (B, classes)
            logits (or probabilities, see ``output``).
        output: "logits" explains the logit of the target; "probabilities"
            explains softmax(logits) of the target.
    """

    def __init__(self, model, output=_IG.output, strategy=None):
        if output not in OUTPUTS:
            raise UserError(f"output must be one of {OUTPUTS}, got {output!r}.")
        self.model = model
        self.output = output
        self._chunk = tf.function(self._chunk_grads, reduce_retracing=True)
        self._forward = tf.function(self._target_outputs, reduce_retracing=True)
        self._segments = tf.function(self._segment_grads, reduce_retracing=True)
        # Several local replicas (tfigkd.distribute.inference_strategy):
        # each takes up to a chunk of interpolations per step, on its own device.
        self.strategy = strategy if strategy is not None and \
            strategy.num_replicas_in_sync > 1 else None
        if self.strategy is not None:
            self._replica_chunks = tf.function(
                lambda *a: self.strategy.run(self._chunk_grads, args=a), reduce_retracing=True)

    def _rows(self, xt, bt, tt, img_idx, alphas, weights):
        """The weighted gradient sum of these (image, alpha) rows, on every replica a share."""
        n_rep = 1 if self.strategy is None else self.strategy.num_replicas_in_sync
        if len(img_idx) < n_rep or n_rep == 1:  # no replica may get an empty batch
            return self._chunk(xt, bt, tt, *map(tf.constant, (img_idx, alphas, weights)))
        bounds = np.linspace(0, len(img_idx), n_rep + 1).astype(int)

        def local(values):
            return self.strategy.experimental_distribute_values_from_function(
                lambda ctx: tf.constant(values[bounds[ctx.replica_id_in_sync_group]:
                                               bounds[ctx.replica_id_in_sync_group + 1]]))

        out = self._replica_chunks(xt, bt, tt, local(img_idx), local(alphas), local(weights))
        return self.strategy.reduce("SUM", out, axis=None)

    def _target_outputs(self, x, targets):
        out = self.model(x, training=False)
        if self.output == "probabilities":
            out = tf.nn.softmax(out, axis=-1)
        return tf.gather(out, targets, axis=1, batch_dims=1)

    def _chunk_grads(self, x, base, targets, img_idx, alphas, weights):
        xi = tf.gather(x, img_idx)
        bi = tf.gather(base, img_idx)
        interp = bi + tf.reshape(alphas, [-1, 1, 1, 1]) * (xi - bi)
        with tf.GradientTape() as tape:
            tape.watch(interp)
            # Samples are independent in inference mode, so the gradient of
            # the sum is each sample's own gradient.
            total = tf.reduce_sum(self._target_outputs(interp, tf.gather(targets, img_idx)))
        grads = tape.gradient(total, interp)
        return tf.math.unsorted_segment_sum(grads * tf.reshape(weights, [-1, 1, 1, 1]),
                                            img_idx, num_segments=tf.shape(x)[0])

    def _segment_grads(self, x, base, targets, img_idx, seg_idx, alphas, weights, num_segments):
        """Weighted gradients summed per ``seg_idx``, and each point's target output.

        The nested rule's workhorse: its segments are (image, panel) pairs,
        and the outputs F(x' + a (x - x')) at the points give each panel's
        exact completeness error without another forward pass.
        """
        xi = tf.gather(x, img_idx)
        bi = tf.gather(base, img_idx)
        interp = bi + tf.reshape(alphas, [-1, 1, 1, 1]) * (xi - bi)
        with tf.GradientTape() as tape:
            tape.watch(interp)
            outs = self._target_outputs(interp, tf.gather(targets, img_idx))
            total = tf.reduce_sum(outs)
        grads = tape.gradient(total, interp)
        sums = tf.math.unsorted_segment_sum(grads * tf.reshape(weights, [-1, 1, 1, 1]),
                                            seg_idx, num_segments=num_segments)
        return sums, outs

    def attribute(self, images, targets, *, baseline=None, n_steps=_IG.n_steps,
                  method=_IG.method, internal_batch_size=None,
                  return_delta=False, norm=None):
        """See ``integrated_gradients``."""
        x, targets = check_inputs(images, targets)
        base = make_baseline(x, baseline, norm)
        alphas, weights = (quadrature("trapezoid", int(n_steps) + 1) if method == NESTED
                           else quadrature(method, n_steps))
        b = len(x)
        img_idx = np.repeat(np.arange(b, dtype=np.int32), len(alphas))
        a = np.tile(alphas, b).astype(np.float32)
        w = np.tile(weights, b).astype(np.float32)
        total = len(img_idx)
        chunk = total if not internal_batch_size else int(internal_batch_size)
        if chunk < 1:
            raise UserError(f"internal_batch_size must be >= 1, got {internal_batch_size}.")
        xt, bt, tt = tf.constant(x), tf.constant(base), tf.constant(targets)
        acc = tf.zeros_like(xt)
        # Several replicas: each step's rows are split over them, at most a chunk each.
        chunk *= 1 if self.strategy is None else self.strategy.num_replicas_in_sync
        for start in range(0, total, chunk):
            sl = slice(start, start + chunk)
            acc += self._rows(xt, bt, tt, img_idx[sl], a[sl], w[sl])
        attributions = ((xt - bt) * acc).numpy()
        if not return_delta:
            return attributions
        ends = self._forward(tf.concat([xt, bt], 0), tf.concat([tt, tt], 0)).numpy()
        delta = ends[:b] - ends[b:] - attributions.reshape(b, -1).sum(1)
        return attributions, delta.astype(np.float32)


    def attribute_adaptive(self, images, targets, *, baseline=None, rtol=_IG.rtol, atol=_IG.atol,
                           start_steps=_IG.start_steps, max_steps=256, method=_IG.method,
                           internal_batch_size=None, norm=None):
        """See ``adaptive_integrated_gradients``."""
        if method == NESTED:
            from tfigkd.attribution.nested_ig import nested_adaptive

            return nested_adaptive(self, images, targets, baseline=baseline, rtol=rtol,
                                   atol=atol, start_steps=start_steps, max_steps=max_steps,
                                   internal_batch_size=internal_batch_size, norm=norm)
        x = np.asarray(images, np.float32)
        targets = np.asarray(targets, np.int64).reshape(-1)
        if not (1 <= int(start_steps) <= int(max_steps)):
            raise UserError(f"Adaptive IG needs 1 <= start_steps <= max_steps, got "
                            f"{start_steps} and {max_steps}.")
        if rtol <= 0 and atol <= 0:
            raise UserError("Adaptive IG needs rtol > 0 or atol > 0.")
        # One baseline for all levels: a seeded random baseline drawn again
        # for a subset would differ.
        base = make_baseline(x, baseline, norm)
        attr = np.zeros_like(x)
        delta = np.zeros(len(x), np.float32)
        change = np.zeros(len(x), np.float32)
        steps = np.zeros(len(x), np.int64)
        pending = np.arange(len(x))
        n = int(start_steps)
        while len(pending):
            a, d = self.attribute(x[pending], targets[pending], baseline=base[pending],
                                  n_steps=n, method=method,
                                  internal_batch_size=internal_batch_size, return_delta=True)
            attr[pending], delta[pending], steps[pending] = a, d, n
            change[pending] = a.reshape(len(a), -1).sum(1) + d
            ok = np.abs(d) <= rtol * np.abs(change[pending]) + atol
            if n >= max_steps:
                break
            pending = pending[~ok]
            n = min(2 * n, int(max_steps))
        return attr, delta, steps


_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def integrated_gradients(model, images, targets, *, baseline=None, n_steps=_IG.n_steps,
                         method=_IG.method, internal_batch_size=None,
                         output=_IG.output, return_delta=False, norm=None):
    """Integrated Gradients of ``model``'s target outputs w.r.t. its inputs.

    Args:
        model: Keras model, (B, H, W, C) -> (B, classes).
        images: (B, H, W, C) inputs, in the model's own input space.
        targets: (B,) integer class per image (the true label in tfigkd).
        baseline: None/"zeros", "black", "blur", "uniform" or an array; see
            ``make_baseline``.
        n_steps: Quadrature points. The default 128 is the fewest (of
            2, 4, ..., 128) whose median relative completeness error is
            <= 1 % (0.81 % with Gauss-Legendre) on the trained Fashion-MNIST
            teacher (benchmarks/ig_throughput.py); the paper used 50.
        method: "gausslegendre", "riemann_left", "riemann_right",
            "riemann_middle", "trapezoid" or "nested_trapezoid" (a trapezoid
            on ``n_steps`` intervals, i.e. ``n_steps + 1`` points).
        internal_batch_size: Cap on interpolated images per forward/backward
            pass (memory); None puts all ``B * n_steps`` in one pass.
        output: "logits" or "probabilities".
        return_delta: Also return the completeness error per example,
            F_y(x) - F_y(x') - sum(IG).
        norm: ``(mean, std)`` of the model's input normalisation, used by the
            "black" and "uniform" baselines.

    Returns:
        float32 attributions shaped like ``images``; with ``return_delta``,
        ``(attributions, delta)`` where delta is (B,).
    """
    key = model
    per_model = _CACHE.setdefault(key, {})
    if output not in per_model:
        per_model[output] = IntegratedGradients(model, output)
    return per_model[output].attribute(
        images, targets, baseline=baseline, n_steps=n_steps, method=method,
        internal_batch_size=internal_batch_size, return_delta=return_delta, norm=norm)



def adaptive_integrated_gradients(model, images, targets, *, baseline=None, rtol=_IG.rtol,
                                  atol=_IG.atol, start_steps=_IG.start_steps, max_steps=256,
                                  method=_IG.method, internal_batch_size=None,
                                  output=_IG.output, norm=None):
    """IG with as many quadrature steps per image as its completeness needs.

    Every image starts with ``start_steps``; those whose completeness error
    |F(x) - F(x') - sum(IG)| exceeds ``rtol * |F(x) - F(x')| + atol`` are
    recomputed with twice the steps, and so on up to ``max_steps``. Most
    images of a trained classifier converge with few steps, so the total
    cost is a fraction of using the worst image's step count for all
    (``benchmarks/ig_adaptive.py`` measures it). Each level is batched like
    ``integrated_gradients``.

    With ``method="nested_trapezoid"`` the levels reuse their points instead
    (``tfigkd.attribution.nested_ig.nested_adaptive``): ``[0, 1]`` is cut into
    ``start_steps`` panels, and only the panels whose own completeness error
    is large are halved, evaluating only their new midpoints.

    Args:
        model, images, targets, baseline, method, internal_batch_size,
            output, norm: As ``integrated_gradients``.
        rtol: Relative completeness tolerance (0.01 = 1 %).
        atol: Absolute tolerance, for images whose score barely changes
            along the path (where a relative error means nothing).
        start_steps: Steps of the first pass.
        max_steps: Cap; images not converged there keep that result.

    Returns:
        ``(attributions, delta, steps)``: attributions shaped like
        ``images``, the completeness error per image, and the steps each
        image's final result used (for the nested rule: the gradient
        evaluations it cost, every point counted once).
    """
    per_model = _CACHE.setdefault(model, {})
    if output not in per_model:
        per_model[output] = IntegratedGradients(model, output)
    return per_model[output].attribute_adaptive(
        images, targets, baseline=baseline, rtol=rtol, atol=atol, start_steps=start_steps,
        max_steps=max_steps, method=method, internal_batch_size=internal_batch_size, norm=norm)


def ig_map(attributions, reduce="sum_abs"):
    """Reduces (B, H, W, C) attributions to one (B, H, W) map per image.

    Args:
        attributions: IG attributions.
        reduce: "sum_abs" (sum over channels of |IG|, the paper's map),
            "abs_sum" (|sum over channels|), "sum", or "l2".
    """
    a = np.asarray(attributions, np.float32)
    if reduce == "sum_abs":
        return np.abs(a).sum(-1)
    if reduce == "abs_sum":
        return np.abs(a.sum(-1))
    if reduce == "sum":
        return a.sum(-1)
    if reduce == "l2":
        return np.sqrt((a * a).sum(-1))
    raise UserError(f"Unknown reduce {reduce!r}; use sum_abs, abs_sum, sum or l2.")
