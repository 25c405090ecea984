import numpy as np
import pytest
from PIL import Image

from tfigkd.config import DataConfig
from tfigkd.data import load_splits, split_arrays, write_idx
from tfigkd.testing import synthetic_images, write_npz


def test_split_arrays_indices_point_back_to_source():
    x, y = synthetic_images(200, (8, 8, 3), 4)
    xt, yt = synthetic_images(40, (8, 8, 3), 4, seed=5)
    sd = split_arrays(x, y, xt, yt, DataConfig(val_fraction=0.1, seed=0))
    assert sd.sizes() == {"train": 180, "val": 20, "test": 40}
    for part in (sd.train, sd.val):
        np.testing.assert_array_equal(part.x, x[part.index])
        np.testing.assert_array_equal(part.y, y[part.index])
    assert not set(sd.train.index) & set(sd.val.index)
    # Validation never comes from the test set.
    np.testing.assert_array_equal(sd.test.index, np.arange(40))
    # Unknown dataset: statistics computed from the training split.
    assert len(sd.mean) == 3 and all(0 < m < 1 for m in sd.mean)


def test_subset_then_val_and_determinism():
    x, y = synthetic_images(500, (6, 6, 1), 5)
    cfg = DataConfig(train_subset=100, val_fraction=0.2, test_subset=30, seed=1)
    a = split_arrays(x, y, x[:50], y[:50], cfg)
    b = split_arrays(x, y, x[:50], y[:50], cfg)
    assert a.sizes() == {"train": 80, "val": 20, "test": 30}
    assert a.fingerprint == b.fingerprint
    np.testing.assert_array_equal(a.val.index, b.val.index)
    c = split_arrays(x, y, x[:50], y[:50], DataConfig(train_subset=100, val_fraction=0.2, seed=2))
    assert c.fingerprint != a.fingerprint


def test_bad_arrays_are_explained():
    x, y = synthetic_images(20)
    with pytest.raises(ValueError, match="uint8"):
        split_arrays(x.astype("float32") / 255, y, None, None, DataConfig())
    with pytest.raises(ValueError, match="labels"):
        split_arrays(x, y[:-1], None, None, DataConfig())


def test_fashion_mnist_idx_folder(tmp_path):
    x, y = synthetic_images(60, (28, 28), 10)
    xt, yt = synthetic_images(20, (28, 28), 10, seed=3)
    for name, arr in [("train-images-idx3-ubyte.gz", x), ("train-labels-idx1-ubyte.gz", y),
                      ("t10k-images-idx3-ubyte.gz", xt), ("t10k-labels-idx1-ubyte.gz", yt)]:
        write_idx(str(tmp_path / name), arr.astype(np.uint8))
    sd = load_splits(DataConfig(source="fashion_mnist", path=str(tmp_path), val_fraction=0.5))
    assert sd.input_shape == (28, 28, 1) and sd.class_names[0] == "T-shirt/top"
    assert sd.mean == (0.2860,) and len(sd.test) == 20
    np.testing.assert_array_equal(sd.train.x[..., 0], x[sd.train.index])


def test_fashion_mnist_missing_files_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        load_splits(DataConfig(source="fashion_mnist", path=str(tmp_path)))


def test_image_folder_with_and_without_test(tmp_path):
    x, y = synthetic_images(30, (5, 5, 3), 3)
    for split in ("train", "test"):
        for i, (img, lab) in enumerate(zip(x, y)):
            d = tmp_path / "ds" / split / f"c{lab}"
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(d / f"{i}.png")
    sd = load_splits(DataConfig(source="image_folder", path=str(tmp_path / "ds"), val_fraction=0.2))
    assert sd.class_names == ["c0", "c1", "c2"] and len(sd.test) == 30
    sd2 = load_splits(DataConfig(source="image_folder", path=str(tmp_path / "ds" / "train"),
                                 val_fraction=0.2, test_fraction=0.2))
    assert len(sd2.test) == 6 and len(sd2.train) + len(sd2.val) == 24
    assert not set(sd2.test.index) & (set(sd2.train.index) | set(sd2.val.index))


def test_image_folder_mixed_sizes(tmp_path):
    for i, size in enumerate([(5, 5), (6, 6)]):
        (tmp_path / "a").mkdir(exist_ok=True)
        Image.fromarray(np.zeros(size, np.uint8)).save(tmp_path / "a" / f"{i}.png")
    with pytest.raises(ValueError, match="share one size"):
        load_splits(DataConfig(source="image_folder", path=str(tmp_path)))


def test_numpy_source(tmp_path):
    path = write_npz(str(tmp_path / "d.npz"), 40, 10, (7, 7, 2), 2)
    sd = load_splits(DataConfig(source="numpy", path=path, val_fraction=0.25))
    assert sd.input_shape == (7, 7, 2) and sd.class_names == ["class0", "class1"]
    assert sd.sizes() == {"train": 30, "val": 10, "test": 10}
