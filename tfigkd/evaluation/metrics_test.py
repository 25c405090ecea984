import numpy as np
import pytest

from tfigkd.evaluation.metrics import (agreement, classification_metrics, confused_pairs,
                                       confusion_matrix)


def test_per_class_figures_by_hand():
    y = np.array([0, 0, 0, 1, 1, 2])
    p = np.array([0, 1, 1, 1, 1, 0])
    m = classification_metrics(y, p, 3)
    assert m["confusion"] == [[1, 2, 0], [0, 2, 0], [1, 0, 0]]
    assert m["accuracy"] == pytest.approx(3 / 6)
    # class 0: tp 1, predicted 2, support 3; class 1: tp 2, predicted 4, support 2;
    # class 2: never predicted (precision 0 by convention), recall 0.
    assert m["precision"] == pytest.approx([1 / 2, 2 / 4, 0.0])
    assert m["recall"] == pytest.approx([1 / 3, 1.0, 0.0])
    f1 = [2 * 0.5 * (1 / 3) / (0.5 + 1 / 3), 2 * 0.5 * 1 / 1.5, 0.0]
    assert m["f1"] == pytest.approx(f1)
    assert m["macro_f1"] == pytest.approx(np.mean(f1))
    assert m["support"] == [3, 2, 1]


def test_confusion_matrix_counts_every_example_once():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 5, 500), rng.integers(0, 5, 500)
    cm = confusion_matrix(y, p, 5)
    assert cm.sum() == 500 and np.trace(cm) == int((y == p).sum())
    assert cm[2, 3] == int(((y == 2) & (p == 3)).sum())


def test_confused_pairs_are_the_largest_off_diagonal_cells():
    cm = np.array([[50, 3, 9], [7, 40, 0], [9, 1, 30]])
    assert confused_pairs(cm, 3) == [(0, 2, 9), (2, 0, 9), (1, 0, 7)]
    assert confused_pairs(np.eye(3, dtype=int) * 5) == []


def test_agreement_counts_what_the_student_lost():
    y = np.array([0, 1, 2, 0, 1])
    t = np.array([0, 1, 0, 0, 2])       # right on 0, 1, 3
    s = np.array([0, 0, 2, 1, 2])       # right on 0, 2
    a = agreement(y, t, s)
    assert (a["both_right"], a["teacher_only"], a["student_only"], a["both_wrong"]) == (1, 2, 1, 1)
    assert a["teacher_only_positions"] == [1, 3]


def test_class_order_check_finds_a_relabelling():
    from tfigkd.evaluation.metrics import class_order_check

    good = np.diag([50, 40, 45]) + 2
    assert class_order_check(good) is None
    # Outputs 0 and 1 swapped: the model is right on class 2 only, as labelled.
    swapped = good[:, [1, 0, 2]]
    r = class_order_check(swapped)
    assert r["mapping"] == {1: 0, 0: 1}
    assert r["accuracy"] == pytest.approx(np.trace(swapped) / swapped.sum())
    assert r["relabelled_accuracy"] == pytest.approx(np.trace(good) / good.sum())
    # A weak but honest model: relabelling gains little, no warning.
    rng = np.random.default_rng(0)
    assert class_order_check(rng.integers(5, 9, (4, 4)) + np.eye(4, dtype=int) * 3) is None
