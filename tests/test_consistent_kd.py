"""Consistent KD: the per-view logit cache, mixing and unlabelled images (issue "Distillation
that pays"). Each test goes through ``build_distillation``, the builder ``train_student``,
``ablate``, ``tune`` and the benchmarks use.
"""

import dataclasses
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfigkd.testing import tiny_run_config
from tfigkd.augment.mixing import mix_batch
from tfigkd.config import config_from_dict
from tfigkd.data import load_splits
from tfigkd.distill.logit_cache import LogitCacheMismatchError
from tfigkd.distill.terms import SupervisedCE
from tfigkd.distill.distiller import teacher_input
from tfigkd.experiments.student import build_distillation, teacher_affine
from tfigkd.models import build_model


@pytest.fixture(scope="module")
def setup(toy_npz, tmp_path_factory):
    cfg = config_from_dict(tiny_run_config(toy_npz, **{"student.alpha": 0.5,
                                                       "student.temperature": 2.0}))
    splits = load_splits(cfg.data)
    keras.utils.set_random_seed(5)
    teacher = build_model("truncated_student", splits.input_shape, splits.num_classes,
                          blocks_removed=16)
    tdir = tmp_path_factory.mktemp("teacher")
    tfile = str(tdir / "teacher.keras")
    teacher.save(tfile)
    return cfg, splits, teacher, tfile


def _with(cfg, **student):
    return dataclasses.replace(cfg, student=dataclasses.replace(cfg.student, **student))


def _build(cfg, splits, teacher, tfile, view_dir, mode="kd", seed=3):
    return build_distillation(cfg, splits, mode, seed, teacher=teacher, view_dir=str(view_dir),
                              teacher_file=tfile)


@pytest.mark.parametrize("mix", ["none", "mixup"])
def test_per_view_cache_equals_online(setup, tmp_path, mix):
    cfg, splits, teacher, tfile = setup
    online_cfg = _with(cfg, teacher_mode="online", mix=mix)
    view_cfg = _with(cfg, teacher_mode="per_view", mix=mix)
    d_on, data_on = _build(online_cfg, splits, teacher, tfile, tmp_path)
    d_pv, data_pv = _build(view_cfg, splits, teacher, tfile, tmp_path)
    assert d_pv.teacher is None  # no teacher pass at all: the logits come from the cache
    # Same loss on the same batch (epoch 1, so the view numbers are past the first epoch).
    (x_on, y_on), (x_pv, y_pv) = next(iter(data_on(1, 1))), next(iter(data_pv(1, 1)))
    np.testing.assert_array_equal(x_on["image"] if isinstance(x_on, dict) else x_on,
                                  x_pv["image"])
    t_on = d_on.losses_for(x_on, y_on, training=False)
    t_pv = d_pv.losses_for(x_pv, y_pv, training=False)
    for a, b in zip(t_on[:4], t_pv[:4]):
        np.testing.assert_allclose(float(a), float(b), rtol=1e-5, atol=1e-6)
    assert float(t_pv[2]) > 0  # the KD term is on
    # Same weights after an epoch with a fixed seed.
    steps = -(-len(splits.train) // cfg.student.train.batch_size)
    d_on.fit(data_on(0, 1), epochs=1, steps_per_epoch=steps, verbose=0)
    d_pv.fit(data_pv(0, 1), epochs=1, steps_per_epoch=steps, verbose=0)
    for w_on, w_pv in zip(d_on.student.get_weights(), d_pv.student.get_weights()):
        np.testing.assert_allclose(w_on, w_pv, rtol=1e-4, atol=1e-5)


def test_per_view_cache_is_shared_and_foreign_or_stale_caches_are_refused(setup, tmp_path):
    cfg, splits, teacher, tfile = setup
    vcfg = _with(cfg, teacher_mode="per_view")
    _build(vcfg, splits, teacher, tfile, tmp_path)
    (folder,) = os.listdir(tmp_path)
    # Another alpha sees the same views: the same cache, nothing recomputed.
    _build(_with(vcfg, alpha=0.9), splits, teacher, tfile, tmp_path)
    assert os.listdir(tmp_path) == [folder]
    # Another seed gets its own cache; a foreign cache copied into its folder is refused.
    _build(vcfg, splits, teacher, tfile, tmp_path, seed=4)
    other = next(f for f in os.listdir(tmp_path) if f != folder)
    shutil.rmtree(tmp_path / other)
    shutil.copytree(tmp_path / folder, tmp_path / other)
    with pytest.raises(LogitCacheMismatchError, match="seed"):
        _build(vcfg, splits, teacher, tfile, tmp_path, seed=4)
    # A damaged (stale, rewritten) logits file is refused by its checksum.
    path = tmp_path / folder / "view_logits.npy"
    np.save(path, np.zeros_like(np.load(path)))
    with pytest.raises(LogitCacheMismatchError, match="checksum"):
        _build(vcfg, splits, teacher, tfile, tmp_path)


def test_mixup_labels_come_from_the_mixed_image():
    rng = np.random.default_rng(0)
    x = rng.random((6, 8, 8, 1)).astype(np.float32) * 255
    y = np.array([0, 1, 2, 0, 1, 2])
    mixed, other, lam = (t.numpy() for t in mix_batch(x, y, tf.constant([1, 2], tf.int64),
                                                      "mixup", 1.0))
    partner = np.roll(np.arange(6), 1)
    np.testing.assert_array_equal(other, y[partner])
    np.testing.assert_allclose(mixed, lam[:, None, None, None] * x
                               + (1 - lam[:, None, None, None]) * x[partner], rtol=1e-5)
    # The CE takes both labels weighted by the mixing fraction.
    logits = tf.constant(rng.normal(size=(6, 3)), tf.float32)
    ce, _ = SupervisedCE().per_example(y, logits, other, lam)
    logp = tf.nn.log_softmax(logits).numpy()
    want = -(lam * logp[np.arange(6), y] + (1 - lam) * logp[np.arange(6), other])
    np.testing.assert_allclose(ce.numpy(), want, rtol=1e-5)
    # Cutmix: lam is the fraction of the image that is its own.
    cm, _, lam_c = (t.numpy() for t in mix_batch(x, y, tf.constant([3, 4], tf.int64),
                                                 "cutmix", 1.0))
    own = np.isclose(cm, x).all(-1).mean((1, 2))
    np.testing.assert_allclose(own, lam_c, atol=1e-6)


def test_the_teacher_labels_the_mixed_image(setup, tmp_path):
    cfg, splits, teacher, tfile = setup
    d, data = _build(_with(cfg, teacher_mode="per_view", mix="mixup"), splits, teacher, tfile,
                     tmp_path)
    x, _ = next(iter(data(0, 1)))
    assert "mix_lambda" in x and "view" in x
    cached = d._cached(x["view"]).numpy()
    fed = teacher_input(x["image"], teacher, *teacher_affine(cfg, splits))
    np.testing.assert_allclose(cached, teacher(fed, training=False).numpy(), rtol=1e-5,
                               atol=1e-5)
    # ... and not the un-mixed one.
    assert not np.allclose(cached, teacher(teacher_input(
        next(iter(_build(cfg, splits, teacher, tfile, tmp_path)[1](0, 1)))[0], teacher,
        *teacher_affine(cfg, splits)), training=False).numpy(), atol=1e-5)


def test_unlabeled_images_get_no_ce_term(setup, tmp_path, toy_npz):
    cfg, _, teacher, tfile = setup
    rng = np.random.default_rng(1)
    upath = tmp_path / "unlabeled.npz"
    with np.load(toy_npz) as z:
        np.savez(upath, x=z["x_train"][:40])
    ucfg = config_from_dict(tiny_run_config(toy_npz, **{"data.unlabeled": str(upath),
                                                        "student.alpha": 0.5}))
    splits = load_splits(ucfg.data)
    unl = splits.train.y < 0
    assert unl.sum() == 40
    d, data = build_distillation(ucfg, splits, "kd", 0, teacher=teacher)
    assert d.partial_labels
    x, y = next(iter(data(0, 1)))
    logits = d.student(x, training=False)
    total, ce, kd, _, _ = d.losses_for(x, y)
    lab = y.numpy() >= 0
    per = tf.nn.sparse_softmax_cross_entropy_with_logits(np.maximum(y.numpy(), 0), logits).numpy()
    np.testing.assert_allclose(float(ce), per[lab].mean(), rtol=1e-5)
    # Changing the unlabelled images' "labels" changes nothing.
    y2 = np.where(lab, y.numpy(), rng.integers(0, 3, len(lab)))
    _, ce2, _, _, _ = d.losses_for(x, tf.constant(np.where(lab, y2, -1)))
    assert float(ce2) == pytest.approx(float(ce))
    # A plain student trains on the labelled images only.
    _, plain = build_distillation(ucfg, splits, "student", 0)
    seen = np.concatenate([yb.numpy() for _, yb in plain(0, 1)])
    assert len(seen) == int((~unl).sum()) and (seen >= 0).all()


def test_labeled_subset_hides_labels_and_changes_the_fingerprint(toy_npz):
    full = load_splits(config_from_dict(tiny_run_config(toy_npz)).data)
    few = load_splits(config_from_dict(tiny_run_config(toy_npz, **{"data.labeled_subset": 20})).data)
    assert (few.train.y >= 0).sum() == 20
    assert few.fingerprint != full.fingerprint
    np.testing.assert_array_equal(few.train.x, full.train.x)


def test_mixing_with_clean_cached_logits_is_refused(setup):
    cfg, splits, teacher, _ = setup
    with pytest.raises(Exception, match="per_view"):
        build_distillation(_with(cfg, teacher_mode="cached", mix="mixup"), splits, "kd", 0,
                           teacher=teacher, cached=np.zeros((len(splits.train), 3), np.float32))


def test_a_teacher_trains_on_the_labelled_images_only(toy_npz, tmp_path):
    from tfigkd.experiments.teacher import train_teacher

    cfg = config_from_dict(tiny_run_config(toy_npz, **{"data.labeled_subset": 30,
                                                       "teacher.train.epochs": 1}))
    metrics = train_teacher(cfg, str(tmp_path))  # label -1 would fail the cross-entropy
    assert metrics["fingerprint"] == load_splits(cfg.data).fingerprint
