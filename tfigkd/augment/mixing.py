"""Image mixing for function matching (Beyer et al., CVPR 2022): mixup and cutmix.

Each image of a batch is mixed with its neighbour in the batch (a roll by
one), with a fraction ``lam`` of its own content drawn from Beta(a, a). The
teacher labels the *mixed* image (online, or per view in
``tfigkd.distill.view_cache``), so teacher and student see the same function
input; the cross-entropy, where labels exist, takes both labels weighted by
``lam`` (``tfigkd.distill.terms.SupervisedCE``).

Everything is a pure function of the batch's stateless seed, like the crop
and flip, so a per-view logit cache can replay it exactly.
"""

from __future__ import annotations

import tensorflow as tf

KINDS = ("none", "mixup", "cutmix")


def _beta(shape, seed, a):
    s1, s2 = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    g1 = tf.random.stateless_gamma(shape, s1, alpha=a)
    g2 = tf.random.stateless_gamma(shape, s2, alpha=a)
    return g1 / (g1 + g2)


def _cutmix_mask(batch, h, w, lam, seed):
    """(B, H, W, 1) float mask, 1 where the partner's box is pasted; and the box's area fraction."""
    sy, sx = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    r = tf.sqrt(1.0 - lam)
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    cy = tf.random.stateless_uniform([batch], sy, 0.0, hf)
    cx = tf.random.stateless_uniform([batch], sx, 0.0, wf)
    y0 = tf.clip_by_value(tf.round(cy - r * hf / 2), 0.0, hf)
    y1 = tf.clip_by_value(tf.round(cy + r * hf / 2), 0.0, hf)
    x0 = tf.clip_by_value(tf.round(cx - r * wf / 2), 0.0, wf)
    x1 = tf.clip_by_value(tf.round(cx + r * wf / 2), 0.0, wf)
    rows = tf.range(hf)[None, :]
    cols = tf.range(wf)[None, :]
    in_y = tf.cast((rows >= y0[:, None]) & (rows < y1[:, None]), tf.float32)
    in_x = tf.cast((cols >= x0[:, None]) & (cols < x1[:, None]), tf.float32)
    mask = in_y[:, :, None] * in_x[:, None, :]
    area = (y1 - y0) * (x1 - x0) / (hf * wf)
    return mask[..., None], area


def mix_batch(images, labels, seed, kind, alpha=1.0):
    """Mixes each image with the next one in the batch.

    Args:
        images: (B, H, W, C) float images (any pixel scale).
        labels: (B,) integer labels (-1 for unlabelled images).
        seed: Stateless seed, shape (2,).
        kind: "mixup" (pixel blend) or "cutmix" (a box of the partner pasted).
        alpha: Beta(alpha, alpha) of the mixing fraction.

    Returns:
        (mixed images, partner labels, lam): ``lam`` (B,) is the fraction of
        each mixed image that is its own (for cutmix, 1 - the box's area).
    """
    images = tf.cast(images, tf.float32)
    b = tf.shape(images)[0]
    partner = tf.roll(tf.range(b), shift=1, axis=0)
    other = tf.gather(images, partner)
    other_labels = tf.gather(labels, partner)
    s_lam, s_box = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    lam = _beta([b], s_lam, float(alpha))
    if kind == "mixup":
        lam4 = lam[:, None, None, None]
        return lam4 * images + (1.0 - lam4) * other, other_labels, lam
    if kind == "cutmix":
        shape = tf.shape(images)
        mask, area = _cutmix_mask(b, shape[1], shape[2], lam, s_box)
        return images * (1.0 - mask) + other * mask, other_labels, 1.0 - area
    raise ValueError(f"Unknown mixing {kind!r}; use one of {KINDS}.")


def mix_transform(kind, alpha=1.0):
    """A ``batch_transform`` for ``make_dataset``: mixes the batch and records how.

    Adds ``mix_label`` and ``mix_lambda`` to the batch; the pipeline passes
    them to the model's inputs, where the Distiller's cross-entropy reads them.
    """

    def transform(batch, seed):
        mseed = tf.random.experimental.stateless_fold_in(seed, 11)
        mixed, other, lam = mix_batch(batch["image"], batch["label"], mseed, kind, alpha)
        return dict(batch, image=mixed, mix_label=other, mix_lambda=lam)

    return transform


def chain(*transforms):
    """One ``batch_transform`` running the given ones (None skipped) in order."""
    fns = [t for t in transforms if t is not None]
    if not fns:
        return None
    if len(fns) == 1:
        return fns[0]

    def transform(batch, seed):
        for fn in fns:
            batch = fn(batch, seed)
        return batch

    return transform
