import numpy as np
import pytest
import tensorflow as tf

from tfigkd.config import DataConfig
from tfigkd.data import load_splits, make_dataset
from tfigkd.data.images_test import mixed_folder
from tfigkd.data.lazy import LazyRows


def test_lazy_rows_read_like_the_array(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (50, 4, 3, 2)).astype(np.uint8)
    np.save(tmp_path / "a.npy", arr)
    m = np.load(tmp_path / "a.npy", mmap_mode="r")
    lazy = LazyRows.from_memmap(m)
    assert lazy.shape == arr.shape and len(lazy) == 50
    pos = np.array([7, 3, 4, 5, 49, 0, 3])
    np.testing.assert_array_equal(lazy[pos], arr[pos])
    np.testing.assert_array_equal(lazy[10:20:3], arr[10:20:3])
    np.testing.assert_array_equal(lazy[5], arr[5])
    np.testing.assert_array_equal(lazy[:, ..., 0], arr[:, ..., 0])
    sub = lazy.take(np.array([9, 1, 30, 31]))
    np.testing.assert_array_equal(sub[np.array([2, 0])], arr[[30, 9]])
    np.testing.assert_array_equal(np.asarray(sub), arr[[9, 1, 30, 31]])


@pytest.fixture
def folder_pair(tmp_path):
    root = mixed_folder(tmp_path / "imgs", n=10)
    base = dict(source="image_folder", path=str(root), image_size=[9, 7], color="rgb",
                val_fraction=0.2, test_fraction=0.2, cache_dir=str(tmp_path / "c"))
    return (load_splits(DataConfig(**base)),
            load_splits(DataConfig(**base, memory_budget_mb=0)))


def test_streamed_splits_equal_in_memory(folder_pair):
    mem, lazy = folder_pair
    assert not hasattr(mem.train.x, "read") and isinstance(lazy.train.x, LazyRows)
    assert isinstance(lazy.test.x, LazyRows)
    assert lazy.fingerprint == mem.fingerprint
    assert lazy.mean == mem.mean and lazy.std == mem.std
    for part in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(lazy, part).index, getattr(mem, part).index)
        np.testing.assert_array_equal(np.asarray(getattr(lazy, part).x), getattr(mem, part).x)


def test_streamed_batches_equal_in_memory(folder_pair):
    mem, lazy = folder_pair
    maps = np.random.default_rng(0).uniform(size=(len(mem.train), 9, 7)).astype("float32")
    opts = dict(batch_size=4, training=True, crop_pad=1, flip=True, seed=3, num_epochs=2,
                with_index=True, extras={"ig_map": maps},
                batch_transform=lambda b, s: dict(b, image=tf.cast(
                    tf.cast(b["image"], tf.float32) * (1 + b["ig_map"][..., None]), tf.uint8)))
    a = list(make_dataset(mem.train, **opts))
    b = list(make_dataset(lazy.train, **opts))
    assert len(a) == len(b) == 2 * -(-len(mem.train) // 4)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa["image"], xb["image"])
        np.testing.assert_array_equal(xa["index"], xb["index"])
        np.testing.assert_array_equal(ya, yb)
    for (xa, ya), (xb, yb) in zip(make_dataset(mem.test, batch_size=5, training=False),
                                  make_dataset(lazy.test, batch_size=5, training=False)):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
