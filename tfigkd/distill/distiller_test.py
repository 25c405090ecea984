import keras
import numpy as np
import pytest
import tensorflow as tf

from tfigkd.distill import Distiller, at_loss, attention_map, kd_loss
from tfigkd.models import truncated_student


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_kd_loss_by_hand():
    t = np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
    s = np.array([[1.0, 1.0, 0.0], [0.5, -0.5, 2.0]])
    T = 2.5
    pt, ps = _softmax(t / T), _softmax(s / T)
    expected = T ** 2 * np.mean(np.sum(pt * np.log(pt / ps), axis=1))
    assert float(kd_loss(t, s, T)) == pytest.approx(expected, rel=1e-5)
    assert float(kd_loss(t, t, T)) == pytest.approx(0.0, abs=1e-6)


def test_at_loss_by_hand():
    rng = np.random.default_rng(0)
    ft, fs = rng.normal(size=(2, 3, 3, 4)), rng.normal(size=(2, 3, 3, 6))
    def amap(f):
        a = (f ** 2).mean(-1).reshape(2, -1)
        return a / np.linalg.norm(a, axis=1, keepdims=True)
    np.testing.assert_allclose(attention_map(ft).numpy(), amap(ft), rtol=1e-5)
    assert float(at_loss(ft, fs)) == pytest.approx(np.mean((amap(ft) - amap(fs)) ** 2), rel=1e-5)


def _models():
    keras.utils.set_random_seed(0)
    return (truncated_student(15, (8, 8, 1), 3), truncated_student(14, (8, 8, 1), 3))


def test_total_loss_is_the_paper_formula():
    student, teacher = _models()
    d = Distiller(student, teacher, alpha=0.3, temperature=2.0, gamma=0.5,
                  at_layers=[("features_2", "features_2")], teacher_mean=[0.5], teacher_std=[0.25])
    x = tf.constant(np.random.default_rng(1).uniform(size=(4, 8, 8, 1)), tf.float32)
    y = tf.constant([0, 1, 2, 1])
    total, ce, kd, at, logits = d.losses_for(x, y, training=False)
    s = student(x, training=False)
    t = teacher((x - 0.5) / 0.25, training=False)
    ce_ref = np.mean(keras.losses.sparse_categorical_crossentropy(y, s, from_logits=True))
    assert float(ce) == pytest.approx(float(ce_ref), rel=1e-5)
    assert float(kd) == pytest.approx(float(kd_loss(t, s, 2.0)), rel=1e-5)
    assert float(at) > 0
    assert float(total) == pytest.approx(0.3 * float(kd) + 0.7 * float(ce) + 0.5 * float(at), rel=1e-5)


def test_fit_logs_separate_metrics_and_only_student_learns():
    student, teacher = _models()
    t_before = [w.numpy().copy() for w in teacher.weights]
    d = Distiller(student, teacher, alpha=0.5, gamma=0.8, at_layers=[("features_2", "features_2")])
    d.compile(optimizer=keras.optimizers.Adam(1e-2))
    x = np.random.default_rng(2).uniform(size=(32, 8, 8, 1)).astype(np.float32)
    y = np.arange(32) % 3
    hist = d.fit(x, y, batch_size=8, epochs=2, verbose=0, validation_data=(x, y))
    for key in ("loss", "ce", "kd", "at", "accuracy", "val_accuracy"):
        assert key in hist.history
    for a, b in zip(t_before, teacher.weights):
        np.testing.assert_array_equal(a, b.numpy())


def test_cached_logits_by_index():
    student, teacher = _models()
    x = np.random.default_rng(3).uniform(size=(6, 8, 8, 1)).astype(np.float32)
    index = np.array([10, 11, 12, 13, 14, 15])
    logits = teacher(x, training=False).numpy()
    online = Distiller(student, teacher, alpha=0.5)
    cached = Distiller(student, None, alpha=0.5, cached_logits=logits, cached_index=index)
    perm = np.array([3, 0, 5, 1, 4, 2])
    y = tf.constant(np.arange(6)[perm] % 3)
    a = online.losses_for(tf.constant(x[perm]), y, training=False)
    b = cached.losses_for({"image": tf.constant(x[perm]), "index": tf.constant(index[perm])}, y,
                          training=False)
    assert float(a[2]) == pytest.approx(float(b[2]), rel=1e-5)


def test_save_load_round_trip(tmp_path):
    student, teacher = _models()
    d = Distiller(student, teacher, alpha=0.01, temperature=2.5)
    d.compile(optimizer="adam")
    x = np.random.default_rng(4).uniform(size=(8, 8, 8, 1)).astype(np.float32)
    d.fit(x, np.arange(8) % 3, epochs=1, verbose=0)
    d.save(tmp_path / "d.keras")
    d2 = keras.models.load_model(tmp_path / "d.keras")
    assert isinstance(d2, Distiller) and d2.alpha == 0.01 and d2.temperature == 2.5
    np.testing.assert_allclose(d2.predict(x, verbose=0), d.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    d.student.save(tmp_path / "s.keras")
    s2 = keras.models.load_model(tmp_path / "s.keras")
    np.testing.assert_allclose(s2.predict(x, verbose=0), d.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_bad_arguments():
    student, teacher = _models()
    with pytest.raises(ValueError, match="alpha"):
        Distiller(student, teacher, alpha=1.5)
    with pytest.raises(ValueError, match="needs a teacher"):
        Distiller(student, None, alpha=0.1)
    with pytest.raises(ValueError, match="at_layers"):
        Distiller(student, teacher, gamma=0.8)
