"""Test-split predictions and the classification figures the evaluation reports."""

from __future__ import annotations

import numpy as np


def predict_classes(model, subset, input_norm, mean, std, image_size=None, batch_size=256):
    """Top-1 classes of a logits model on a split, fed as in training and evaluation.

    Args:
        model: A ``keras.Model`` (logits or probabilities: the argmax is the same).
        subset: A ``tfigkd.data.Subset`` (in memory or streamed).
        input_norm, mean, std: The model's input normalisation (``teacher_io.NORMS``).
        image_size: The model's (H, W) when it differs from the data's.

    Returns:
        int64 array (N,), in the split's order.
    """
    from tfigkd.data import make_dataset

    ds = make_dataset(subset, batch_size=batch_size, training=False, input_norm=input_norm,
                      mean=mean, std=std, image_size=image_size)
    out = [np.asarray(model(x, training=False)).argmax(1) for x, _ in ds]
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)


def confusion_matrix(y, pred, num_classes):
    """Counts ``cm[true, predicted]``."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (np.asarray(y, np.int64), np.asarray(pred, np.int64)), 1)
    return cm


def classification_metrics(y, pred, num_classes):
    """Accuracy, macro F1 and per-class precision, recall, F1 and support.

    A class never predicted has precision 0 (and F1 0), as scikit-learn's
    ``zero_division=0``; a class absent from the split has recall 0.

    Returns:
        ``{"accuracy", "macro_f1", "precision", "recall", "f1", "support",
        "confusion"}`` (lists per class; ``confusion`` as nested lists).
    """
    cm = confusion_matrix(y, pred, num_classes)
    tp = np.diag(cm).astype(np.float64)
    predicted, support = cm.sum(0), cm.sum(1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"accuracy": float(tp.sum() / max(1, cm.sum())), "macro_f1": float(f1.mean()),
            "precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist(),
            "support": support.tolist(), "confusion": cm.tolist()}


def confused_pairs(cm, top=5):
    """The largest off-diagonal cells: ``[(true, predicted, count), ...]``, most first.

    Ties are broken by class order, so the list is deterministic.
    """
    cm = np.asarray(cm)
    cells = [(int(cm[i, j]), i, j) for i in range(len(cm)) for j in range(len(cm))
             if i != j and cm[i, j] > 0]
    cells.sort(key=lambda c: (-c[0], c[1], c[2]))
    return [(i, j, n) for n, i, j in cells[:top]]


def agreement(y, teacher_pred, student_pred):
    """How the teacher's and the student's correct answers overlap.

    Returns:
        Counts ``both_right``, ``teacher_only`` (the student got wrong what the
        teacher got right), ``student_only``, ``both_wrong``, and
        ``teacher_only_positions`` (their positions in the split, in order).
    """
    t, s = teacher_pred == y, student_pred == y
    return {"both_right": int((t & s).sum()), "teacher_only": int((t & ~s).sum()),
            "student_only": int((~t & s).sum()), "both_wrong": int((~t & ~s).sum()),
            "teacher_only_positions": np.flatnonzero(t & ~s).tolist()}


def class_order_check(cm, margin=0.25):
    """Whether the model's outputs look like the data's classes in another order.

    A teacher trained elsewhere numbers its classes its own way (e.g. Keras'
    ``image_dataset_from_directory`` sorts folder names, a dataset's labels
    may not); fed a folder whose sorted names differ, it is "wrong" on whole
    classes in a consistent way. The best one-to-one relabelling of its
    outputs (``scipy.optimize.linear_sum_assignment`` on the confusion
    matrix) then gains far more than chance could.

    Returns:
        None, or ``{"accuracy", "relabelled_accuracy", "mapping"}`` (mapping:
        ``{output: data class}`` for the outputs that move) when relabelling
        gains more than ``margin`` and reaches at least 0.5.
    """
    from scipy.optimize import linear_sum_assignment

    cm = np.asarray(cm, np.float64)
    total = max(1.0, cm.sum())
    rows, cols = linear_sum_assignment(-cm)
    acc, best = float(np.trace(cm) / total), float(cm[rows, cols].sum() / total)
    if best - acc <= margin or best < 0.5:
        return None
    return {"accuracy": acc, "relabelled_accuracy": best,
            "mapping": {int(c): int(r) for r, c in zip(rows, cols) if r != c}}
