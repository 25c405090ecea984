"""Nested adaptive Integrated Gradients: refinements reuse every gradient computed.

The path [0, 1] is cut into ``start_steps`` equal *panels*. Each panel holds a
trapezoid sum T_p of the gradients on its own uniform grid of ``2^l_p``
intervals. Halving a panel's step keeps all its points and adds only the
``2^l_p`` midpoints:

    T_p(new) = T_p(old) / 2 + h_new * sum of the gradients at the midpoints,

so a refinement costs exactly its new points. The forward pass of the
gradient evaluation also gives F at every point, hence each panel's *own*
completeness error exactly,

    e_p = F(a_{p+1}) - F(a_p) - sum_i (x_i - x'_i) T_p,i,

and the image's error is delta = sum_p e_p. An image whose |delta| exceeds
``rtol * |F(x) - F(x')| + atol`` gets the next level only in the panels with
|e_p| > tol / P (if all panels met that, |delta| <= tol), so the points go
where the score bends. All (image, new point) pairs of a round are flattened
into one list and pushed through the model in chunks of
``internal_batch_size``, as in ``IntegratedGradients.attribute``. docs/method.md
("Nested adaptive steps") argues the rule against Romberg and Gauss-Legendre.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfigkd.attribution.baselines import check_inputs, make_baseline
from tfigkd.config import IGConfig
from tfigkd.config_checks import nested_steps_problem
from tfigkd.errors import UserError

_IG = IGConfig()  # the defaults, written once


def check_nested_steps(start_steps, max_steps):
    """Raises ``UserError`` unless both are powers of two with start <= max."""
    problem = nested_steps_problem(start_steps, max_steps)
    if problem:
        raise UserError(problem[0].upper() + problem[1:])


def _evaluate(ig, xt, bt, tt, img, seg, alphas, weights, n_segments, chunk):
    """Sum of ``weights * gradient`` per segment, and F at every point.

    ``seg`` must be non-decreasing: each chunk then touches a contiguous run
    of segments, so a chunk returns only its own rows instead of all of them.
    """
    sums = None
    outs = np.empty(len(img), np.float32)
    for start in range(0, len(img), chunk):
        sl = slice(start, start + chunk)
        s0 = int(seg[sl][0])
        k = int(seg[sl][-1]) - s0 + 1
        part, f = ig._segments(xt, bt, tt, tf.constant(img[sl], tf.int32),
                               tf.constant(seg[sl] - s0, tf.int32),
                               tf.constant(alphas[sl], tf.float32),
                               tf.constant(weights[sl], tf.float32), tf.constant(k, tf.int32))
        part = part.numpy()
        if sums is None:
            sums = np.zeros((n_segments, *part.shape[1:]), np.float32)
        sums[s0:s0 + k] += part
        outs[sl] = f.numpy()
    return sums, outs


def nested_adaptive(ig, images, targets, *, baseline=None, rtol=_IG.rtol, atol=_IG.atol,
                    start_steps=_IG.start_steps, max_steps=256, internal_batch_size=None, norm=None):
    """Per-image, per-panel adaptive IG on a nested trapezoid rule.

    Args:
        ig: An ``IntegratedGradients`` (its model, output and traced functions).
        images, targets, baseline, internal_batch_size, norm: As
            ``integrated_gradients``.
        rtol, atol: Completeness tolerance, as ``adaptive_integrated_gradients``.
        start_steps: Panels (and intervals of the first pass, ``start_steps + 1``
            points); a power of two.
        max_steps: Cap on the intervals of the whole path (each panel at most
            ``max_steps / start_steps``); a power of two.

    Returns:
        ``(attributions, delta, evaluations)``: attributions shaped like
        ``images``, the completeness error per image, and the gradient
        evaluations each image cost (each point once).
    """
    x, targets = check_inputs(images, targets)
    check_nested_steps(start_steps, max_steps)
    if rtol <= 0 and atol <= 0:
        raise UserError("Adaptive IG needs rtol > 0 or atol > 0.")
    b, p = len(x), int(start_steps)
    max_level = int(np.log2(int(max_steps) // p))
    chunk = int(internal_batch_size) if internal_batch_size else b * (p + 1)
    if chunk < 1:
        raise UserError(f"internal_batch_size must be >= 1, got {internal_batch_size}.")
    base = make_baseline(x, baseline, norm)
    xt, bt, tt = tf.constant(x), tf.constant(base), tf.constant(targets)
    h0 = 1.0 / p

    # First pass: the p + 1 panel ends of every image, one gradient each.
    n0 = b * (p + 1)
    g, f = _evaluate(ig, xt, bt, tt, np.repeat(np.arange(b), p + 1), np.arange(n0),
                     np.tile(np.linspace(0.0, 1.0, p + 1), b), np.ones(n0), n0, chunk)
    g = g.reshape(b, p + 1, *x.shape[1:])
    f_ends = f.reshape(b, p + 1).astype(np.float64)
    panels = (h0 / 2.0) * (g[:, :-1] + g[:, 1:])  # (b, p, H, W, C): T_p
    del g
    level = np.zeros((b, p), np.int64)
    evaluations = np.full(b, p + 1, np.int64)
    diff = (x - base).reshape(b, 1, -1).astype(np.float64)
    span = f_ends[:, -1] - f_ends[:, 0]
    tol = rtol * np.abs(span) + atol
    while True:
        err = (f_ends[:, 1:] - f_ends[:, :-1]) - (diff * panels.reshape(b, p, -1)).sum(-1)
        delta = err.sum(1)
        refine = ((np.abs(delta) > tol)[:, None] & (np.abs(err) > tol[:, None] / p)
                  & (level < max_level))
        if not refine.any():
            break
        rows, cols = np.nonzero(refine)  # row-major: segments come out sorted
        new = 2 ** level[rows, cols]     # midpoints of a panel at level l: 2^l
        h_new = h0 / (2.0 * new)
        which = np.repeat(np.arange(len(rows)), new)
        j = np.arange(len(which)) - np.repeat(np.cumsum(new) - new, new)
        alphas = cols[which] * h0 + (2 * j + 1) * h_new[which]
        sums, _ = _evaluate(ig, xt, bt, tt, rows[which], which, alphas, h_new[which],
                            len(rows), chunk)
        panels[rows, cols] = panels[rows, cols] / 2.0 + sums
        level[rows, cols] += 1
        evaluations += np.bincount(rows, weights=new, minlength=b).astype(np.int64)
    attributions = (x - base) * panels.sum(1)
    # delta from the returned attributions, as the fixed rules report it.
    delta = span - attributions.reshape(b, -1).astype(np.float64).sum(1)
    return attributions.astype(np.float32), delta.astype(np.float32), evaluations
