import glob

import keras
import numpy as np
import pytest

from tfigkd.attribution.integrated_gradients import ig_map, integrated_gradients
from tfigkd.augment import overlay_dataset
from tfigkd.callbacks import ForStudent, IntegratedGradientsCallback, attribution_panels
from tfigkd.distill import Distiller
from tfigkd.models import build_model


def _events(log_dir):
    """{tag: [steps]} of every summary in the event files under log_dir."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = {}
    for path in glob.glob(f"{log_dir}/**/events.out.tfevents*", recursive=True):
        acc = EventAccumulator(path, size_guidance={"tensors": 0, "images": 0})
        acc.Reload()
        for tag in acc.Tags()["tensors"]:
            out.setdefault(tag, []).extend(e.step for e in acc.Tensors(tag))
    return out


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(24, 16, 16, 1)).astype(np.float32)
    y = np.arange(24) % 3
    keras.utils.set_random_seed(0)
    student = build_model("ds_cnn", (16, 16, 1), 3, filters=8, blocks=3)
    teacher = build_model("ds_cnn", (16, 16, 1), 3, filters=12, blocks=3)
    return x, y, student, teacher


def test_ig_callback_logs_the_students_maps_every_n_epochs(tiny, tmp_path):
    x, y, student, teacher = tiny
    d = Distiller(student, teacher, alpha=0.5)
    d.compile(optimizer="adam", metrics=["accuracy"])
    cb = IntegratedGradientsCallback((x[:4], y[:4]), log_dir=str(tmp_path / "ig"),
                                     every_n_epochs=2, n_steps=16)
    d.fit(x, y, batch_size=8, epochs=4, verbose=0, callbacks=[cb])
    tags = _events(tmp_path / "ig")
    assert sorted(tags["integrated_gradients/image_map_overlay"]) == [1, 3]
    assert sorted(tags["integrated_gradients/median_relative_completeness_error"]) == [1, 3]
    # The maps are the student's (not the Distiller's or the teacher's), after training.
    want = ig_map(integrated_gradients(student, x[:4], y[:4], n_steps=16))
    np.testing.assert_allclose(cb.last_maps, want, rtol=1e-4, atol=1e-6)
    assert [h["epoch"] for h in cb.history] == [1, 3]
    attr, delta = integrated_gradients(student, x[:4], y[:4], n_steps=16, return_delta=True)
    change = attr.reshape(4, -1).sum(1) + delta
    assert cb.history[-1]["median_relative_completeness_error"] == pytest.approx(
        float(np.median(np.abs(delta) / np.abs(change))), rel=1e-4)


def test_ig_callback_bad_arguments():
    x = np.zeros((2, 8, 8, 1), np.float32)
    with pytest.raises(ValueError, match="labels"):
        IntegratedGradientsCallback((x, None))
    with pytest.raises(ValueError, match="every_n_epochs"):
        IntegratedGradientsCallback((x, [0, 1]), every_n_epochs=0)


def test_attribution_panels_layout():
    x = np.zeros((2, 5, 7, 1), np.float32)
    maps = np.zeros((2, 5, 7), np.float32)
    maps[0, 2, 3] = 4.0
    p = attribution_panels(x, maps)
    assert p.shape == (2, 5, 21, 3) and p.min() >= 0 and p.max() <= 1
    # The hottest pixel is the map's peak, in the map panel (columns 7..13).
    heat = p[0, :, 7:14].sum(-1)
    assert np.unravel_index(heat.argmax(), heat.shape) == (2, 3)


def test_tf_explain_callbacks_run_on_the_student(tiny, tmp_path):
    # tf-explain is in the test environment (the explain extra): no skip.
    from tf_explain.callbacks.grad_cam import GradCAMCallback
    from tf_explain.callbacks.smoothgrad import SmoothGradCallback

    x, y, student, teacher = tiny
    d = Distiller(student, teacher, alpha=0.5)
    d.compile(optimizer="adam")
    gc = GradCAMCallback((x[:4], None), class_index=0, layer_name="features_2",
                         output_dir=str(tmp_path / "gradcam"))
    sg = SmoothGradCallback((x[:4], None), class_index=0, num_samples=4, noise=0.2,
                            output_dir=str(tmp_path / "smoothgrad"))
    wrapped = [ForStudent(gc), ForStudent(sg)]
    d.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=wrapped)
    assert gc.model is student and sg.model is student
    for name in ("gradcam", "smoothgrad"):
        tags = _events(tmp_path / name)
        assert tags and sorted(next(iter(tags.values()))) == [0, 1], (name, tags)


def test_overlay_dataset_keeps_each_map_with_its_image():
    n = 12
    images = np.zeros((n, 6, 6, 1), np.uint8)
    maps = np.zeros((n, 6, 6), np.float32)
    for i in range(n):
        maps[i, i // 6, i % 6] = 1.0  # each map marks one pixel, unique to its image
    labels = np.arange(n)
    ds = overlay_dataset(images, labels, maps, batch_size=5, p=1.0, exponent_range=(1, 1),
                         weight=0.5, seed=3)
    for epoch in range(2):
        seen = []
        for x, y in ds:
            for xi, yi in zip(x.numpy(), y.numpy()):
                hot = np.argwhere(xi[..., 0] > 0)
                assert hot.tolist() == [[yi // 6, yi % 6]]  # the image's own map
                assert xi.max() == pytest.approx(0.5)
                seen.append(int(yi))
        assert sorted(seen) == list(range(n))
    orders = [[int(v) for _, y in ds for v in y.numpy()] for _ in range(2)]
    assert orders[0] != orders[1]  # reshuffled every epoch
    with pytest.raises(ValueError, match="one map"):
        overlay_dataset(images, labels[:5], maps)
