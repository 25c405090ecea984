"""Deterministic, stratified splits that keep every example's index, and fingerprints."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


@dataclass
class Subset:
    """Images, labels and each example's stable index into its source array."""
    x: np.ndarray      # uint8, (N, H, W, C)
    y: np.ndarray      # int64, (N,)
    index: np.ndarray  # int64, (N,)

    def __len__(self):
        return len(self.y)

    def take(self, positions):
        from tfigkd.data.lazy import select_rows

        return Subset(select_rows(self.x, positions), self.y[positions], self.index[positions])


def stratified_split(labels, fraction, seed):
    """Splits positions ``0..N-1`` into (kept, held_out), stratified by label.

    Each class gives ``round(fraction * n_class)`` examples to the held-out
    part, chosen by a seeded permutation, so the split depends only on the
    labels, the fraction and the seed. Both parts are returned sorted.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(labels):
        pos = np.flatnonzero(labels == c)
        n = int(round(fraction * len(pos)))
        held.append(rng.permutation(pos)[:n])
    held = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    kept = np.setdiff1d(np.arange(len(labels)), held)
    return kept, held


def stratified_subset(labels, size, seed):
    """Sorted positions of a stratified random subset of ``size`` examples."""
    labels = np.asarray(labels)
    if size >= len(labels):
        return np.arange(len(labels))
    _, held = stratified_split(labels, size / len(labels), seed)
    # Rounding per class can miss the target by a few; trim or top up.
    if len(held) > size:
        held = np.sort(np.random.default_rng(seed).permutation(held)[:size])
    elif len(held) < size:
        rest = np.setdiff1d(np.arange(len(labels)), held)
        extra = np.random.default_rng(seed + 1).permutation(rest)[:size - len(held)]
        held = np.sort(np.concatenate([held, extra]))
    return held


def fingerprint(subset: Subset) -> str:
    """SHA-256 of a split's indices, pixels and labels, in index order.

    Any change to which examples are in the split, their order, a pixel or a
    label changes the fingerprint; later stages (IG maps, cached logits)
    store it and refuse data that does not match.
    """
    order = np.argsort(subset.index, kind="stable")
    h = hashlib.sha256(b"tfigkd-fingerprint-v1")
    h.update(str(subset.x.shape[1:]).encode())
    h.update(np.ascontiguousarray(subset.index[order], "<i8").tobytes())
    # In blocks of ~16 MB: the same bytes as the whole array, without a second copy of it.
    step = max(1, (16 << 20) // max(1, int(np.prod(subset.x.shape[1:]))))
    for s in range(0, len(order), step):
        h.update(np.ascontiguousarray(subset.x[order[s:s + step]]).tobytes())
    h.update(np.ascontiguousarray(subset.y[order], "<i8").tobytes())
    return h.hexdigest()
