import keras
import numpy as np
import pytest
import tensorflow as tf

from tfigkd.distill import (AttentionTransfer, Distiller, at_loss, attention_map, kd_loss,
                            kd_loss_per_example)
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
    d.compile(optimizer=keras.optimizers.Adam(1e-2), metrics=["accuracy"])
    x = np.random.default_rng(2).uniform(size=(32, 8, 8, 1)).astype(np.float32)
    y = np.arange(32) % 3
    s_before = [w.numpy().copy() for w in student.trainable_weights]
    hist = d.fit(x, y, batch_size=8, epochs=2, verbose=0, validation_data=(x, y))
    for key in ("loss", "ce", "kd", "at", "accuracy", "val_loss", "val_accuracy"):
        assert key in hist.history
    # Validation is the student alone: no constant-zero distillation columns.
    for key in ("val_kd", "val_at", "val_ce"):
        assert key not in hist.history
    assert all(v > 0 for v in hist.history["kd"] + hist.history["at"])
    for a, b in zip(t_before, teacher.weights):
        np.testing.assert_array_equal(a, b.numpy())
    assert any(not np.array_equal(a, b.numpy()) for a, b in zip(s_before, student.trainable_weights))


def test_unused_terms_are_not_logged():
    student, _ = _models()
    d = Distiller(student, None, alpha=0.0)
    d.compile(optimizer="adam", metrics=["accuracy"])
    x = np.random.default_rng(5).uniform(size=(16, 8, 8, 1)).astype(np.float32)
    hist = d.fit(x, np.arange(16) % 3, batch_size=8, epochs=1, verbose=0)
    assert set(hist.history) == {"loss", "accuracy"}


def test_compile_metrics_and_sample_weight_follow_keras():
    """compile(metrics=...) reaches the history; sample_weight weighs every term."""
    student, teacher = _models()
    d = Distiller(student, teacher, alpha=0.5, temperature=2.0)
    d.compile(optimizer=keras.optimizers.SGD(0.0),
              metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=2, name="top2")])
    x = np.random.default_rng(6).uniform(size=(8, 8, 8, 1)).astype(np.float32)
    y = np.arange(8) % 3
    hist = d.fit(x, y, batch_size=8, epochs=1, verbose=0, validation_data=(x, y))
    assert "top2" in hist.history and "val_top2" in hist.history
    # fit runs the student in training mode (batch statistics), the teacher in inference.
    s, t = student(x, training=True), teacher(x, training=False)
    ce_i = keras.losses.sparse_categorical_crossentropy(y, s, from_logits=True).numpy()
    kd_i = kd_loss_per_example(t, s, 2.0).numpy()
    w = np.array([1, 0, 2, 0, 1, 0, 3, 0], np.float32)
    # With lr 0 the weights do not move, so the logged loss is this batch's loss.
    hist = d.fit(x, y, sample_weight=w, batch_size=8, epochs=1, verbose=0)
    expected = 0.5 * np.sum(w * kd_i) / 8 + 0.5 * np.sum(w * ce_i) / 8
    assert hist.history["loss"][0] == pytest.approx(expected, rel=1e-4)
    unweighted = 0.5 * kd_i.mean() + 0.5 * ce_i.mean()
    assert abs(expected - unweighted) > 1e-3  # the weights make a difference


def test_kd_mode_equals_keras_distiller():
    """alpha = 1 - student_loss_weight; T^2 KL on logits: one batch, same loss."""
    student, teacher = _models()
    ours = Distiller(student, teacher, alpha=0.3, temperature=2.5)
    ours.compile(optimizer="sgd")
    theirs = keras.distillation.Distiller(
        teacher, student, keras.distillation.LogitsDistillation(temperature=2.5,
                                                                loss="kl_divergence"),
        student_loss_weight=0.7)
    theirs.compile(optimizer="sgd",
                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = tf.constant(np.random.default_rng(7).uniform(size=(6, 8, 8, 1)), tf.float32)
    y = tf.constant([0, 1, 2, 2, 1, 0])
    logits = student(x, training=False)
    a = ours.compute_loss(x=x, y=y, y_pred=logits, training=True)
    b = theirs.compute_loss(x=x, y=y, y_pred=logits, training=True)
    # Keras clips probabilities to 1e-7 inside KLDivergence: agreement to ~1e-5.
    assert float(a) == pytest.approx(float(b), rel=2e-4)
    kd = float(ours.losses_for(x, y)[2])
    ce = float(ours.losses_for(x, y)[1])
    # The mapping matters: with alpha = student_loss_weight it would not agree.
    assert abs((0.7 * kd + 0.3 * ce) - float(b)) > 100 * 2e-4 * float(b)


def test_attention_transfer_loss_object_in_keras_distiller():
    student, teacher = _models()
    x = tf.constant(np.random.default_rng(8).uniform(size=(4, 8, 8, 1)), tf.float32)
    y = tf.constant([0, 1, 2, 1])
    at = AttentionTransfer("features_2", "features_2")
    keras_d = keras.distillation.Distiller(teacher, student, [at], student_loss_weight=0.0)
    keras_d.compile(optimizer="sgd",
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ours = Distiller(student, teacher, alpha=0.0, gamma=1.0,
                     at_layers=[("features_2", "features_2")])
    got = float(keras_d.compute_loss(x=x, y=y, y_pred=student(x), training=True))
    # Keras runs the student's feature extractor in training mode (batch statistics).
    want = float(ours.losses_for(x, y, training=True)[3])
    assert got == pytest.approx(want, rel=1e-5) and got > 0
    cfg = at.get_config()
    assert AttentionTransfer.from_config(cfg).get_config() == cfg
    with pytest.raises(ValueError, match="spatial size"):
        AttentionTransfer("features_1", student.layers[-1].name).validate_model_compatibility(
            teacher, student)


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


# Attention transfer across input sizes: the teacher's map is resized to the student block's.

def _features_with_attention(a, channels, rng):
    """(B, H, W, C) features whose channel mean of squares is ``a`` (B, H, W)."""
    w = rng.uniform(0.5, 1.5, size=channels)
    w = w / np.sqrt(np.mean(w ** 2))  # mean of w^2 is 1, so mean over channels of f^2 is a
    return np.sqrt(a)[..., None] * w


def test_cross_resolution_at_is_zero_only_for_the_same_attention():
    rng = np.random.default_rng(0)
    a_s = rng.uniform(0.1, 2.0, size=(2, 4, 4))
    fs = _features_with_attention(a_s, 6, rng)
    # A 2x larger teacher map that is the student's upsampled (each cell repeated 2x2):
    # averaged back over each student cell, it is the student's map.
    a_t = np.repeat(np.repeat(a_s, 2, axis=1), 2, axis=2)
    ft = _features_with_attention(a_t, 10, rng)
    assert float(at_loss(ft, fs)) == pytest.approx(0.0, abs=1e-10)
    # Any other teacher map is penalised; so is the student's map transposed.
    other = _features_with_attention(a_t * rng.uniform(0.5, 1.5, size=a_t.shape), 10, rng)
    assert float(at_loss(other, fs)) > 1e-4
    assert float(at_loss(ft, np.transpose(fs, (0, 2, 1, 3)))) > 1e-4
    # A smaller teacher map is interpolated up (bilinear) to the student's size.
    small = _features_with_attention(a_s, 3, rng)
    a_up = tf.image.resize(a_s[..., None], (8, 8), antialias=True)[..., 0].numpy()
    assert float(at_loss(small, _features_with_attention(a_up, 5, rng))) == pytest.approx(
        0.0, abs=1e-10)
    assert float(at_loss(small, _features_with_attention(a_t, 5, rng))) > 1e-6


def test_cross_resolution_at_gradients_reach_the_student():
    rng = np.random.default_rng(1)
    ft = tf.constant(rng.normal(size=(2, 8, 8, 4)), tf.float32)
    fs = tf.Variable(rng.normal(size=(2, 4, 4, 3)), dtype=tf.float32)
    with tf.GradientTape() as tape:
        loss = at_loss(ft, fs)
    g = tape.gradient(loss, fs).numpy()
    assert float(loss) > 0 and np.isfinite(g).all() and np.abs(g).sum() > 0


def test_distiller_transfers_attention_from_a_larger_teacher():
    from tfigkd.distill.pairing import auto_pairs
    from tfigkd.models import build_model

    keras.utils.set_random_seed(0)
    student = build_model("resnet8", (8, 8, 1), 3)  # blocks 8, 8, 4, 2
    teacher = build_model("resnet8", (16, 16, 1), 3)  # blocks 16, 16, 8, 4
    pairs = auto_pairs(student, teacher)
    assert pairs == [("features_1", "features_1"), ("features_2", "features_2"),
                     ("features_3", "features_3")]
    d = Distiller(student, teacher, alpha=0.5, gamma=0.8, at_layers=pairs)
    x = tf.constant(np.random.default_rng(2).uniform(size=(4, 8, 8, 1)), tf.float32)
    y = tf.constant([0, 1, 2, 1])
    _, _, kd, at, _ = d.losses_for(x, y, training=False)
    # The AT term is the teacher's maps on the batch resized to 16x16, each map
    # brought to the student block's size.
    t_out = d._t_feat(tf.image.resize(x, (16, 16), antialias=True))
    s_out = d._s_feat(x)
    want = sum(float(at_loss(t, s)) for t, s in zip(t_out[1:], s_out[1:]))
    assert float(at) == pytest.approx(want, rel=1e-5) and float(at) > 0 and float(kd) > 0
    d.compile(optimizer="adam")
    hist = d.fit(x, y, epochs=1, verbose=0).history
    assert np.isfinite(hist["at"]).all()


def test_keras_distiller_attention_transfer_refuses_two_input_sizes():
    """keras.distillation.Distiller feeds both models one batch: AT there needs one input size."""
    from tfigkd.models import build_model

    student = build_model("resnet8", (8, 8, 1), 3)
    teacher = build_model("resnet8", (16, 16, 1), 3)
    with pytest.raises(ValueError, match="feeds both the same batch. Use tfigkd.distill.Distiller"):
        AttentionTransfer("features_3", "features_3").validate_model_compatibility(teacher, student)
