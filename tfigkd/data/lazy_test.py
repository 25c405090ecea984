import os

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


def test_row_writer_fills_a_npy_file_in_any_order_from_threads(tmp_path):
    import concurrent.futures

    from tfigkd.data.lazy import NpyRowWriter

    arr = np.random.default_rng(1).standard_normal((41, 3, 5)).astype(np.float16)
    path = str(tmp_path / "m.npy")
    with NpyRowWriter(path, arr.shape, arr.dtype) as w:
        order = np.random.default_rng(2).permutation(len(arr))
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda i: w.write(i, arr[i:i + 1]), order))
        w.write(10, arr[10:14])  # a block of consecutive rows
        with pytest.raises(ValueError):
            w.write(0, np.zeros((1, 3, 4), np.float16))
    np.testing.assert_array_equal(np.load(path), arr)
    lazy = LazyRows.open(path)
    assert lazy.dtype == np.float16 and lazy.ndim == 3
    np.testing.assert_array_equal(lazy[np.array([40, 2, 3, 1])], arr[[40, 2, 3, 1]])
    np.testing.assert_array_equal(lazy.take(np.array([5, 6]))[1], arr[6])


def test_derived_controls_of_streamed_maps_equal_in_memory(tmp_path):
    from tfigkd.augment.controls import noise_maps, shuffled_maps

    arr = np.random.default_rng(4).random((30, 6, 6)).astype(np.float16)
    np.save(tmp_path / "maps.npy", arr)
    lazy = LazyRows.open(str(tmp_path / "maps.npy")).take(np.arange(30)[::-1])
    view = arr[::-1]
    sh = shuffled_maps(lazy, seed=3)
    assert isinstance(sh, LazyRows)  # re-indexed, not read
    np.testing.assert_array_equal(np.asarray(sh), shuffled_maps(view, seed=3))
    nz = noise_maps(lazy, seed=3, sigma=1.5)
    assert isinstance(nz, LazyRows)
    np.testing.assert_array_equal(np.asarray(nz), noise_maps(view, seed=3, sigma=1.5))
    # Another seed is another file, with other maps.
    other = noise_maps(lazy, seed=4, sigma=1.5)
    assert other.path != nz.path and not np.array_equal(np.asarray(other), np.asarray(nz))


def test_streamed_extras_are_read_per_batch(folder_pair, tmp_path):
    """IG maps streamed from a file reach the batches exactly as in-memory maps do."""
    mem, lazy = folder_pair
    maps = np.random.default_rng(0).uniform(size=(len(mem.train), 9, 7)).astype("float16")
    np.save(tmp_path / "m.npy", maps)
    lazy_maps = LazyRows.open(str(tmp_path / "m.npy"))
    opts = dict(batch_size=4, training=True, crop_pad=1, flip=True, seed=5, num_epochs=1,
                batch_transform=lambda b, s: dict(b, image=tf.cast(
                    tf.cast(b["image"], tf.float32) * (1 + tf.cast(b["ig_map"], tf.float32)[
                        ..., None]), tf.uint8)))
    a = list(make_dataset(mem.train, extras={"ig_map": maps}, **opts))
    b = list(make_dataset(lazy.train, extras={"ig_map": lazy_maps}, **opts))
    assert len(a) == len(b) > 1
    for (xa, _), (xb, _) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)


def test_large_reads_and_writes_go_in_chunks_and_truncation_is_named(tmp_path, monkeypatch):
    """Reads and writes bigger than one system call are split; a truncated file says so."""
    from tfigkd.data import lazy

    monkeypatch.setattr(lazy, "_IO_CHUNK", 7)  # bytes: every row spans several calls
    arr = np.arange(6 * 5 * 3, dtype=np.uint16).reshape(6, 5, 3)
    path = str(tmp_path / "a.npy")
    with lazy.NpyRowWriter(path, arr.shape, arr.dtype) as w:
        w.write(0, arr)
    np.testing.assert_array_equal(np.load(path), arr)
    lazy_rows = LazyRows.open(path)
    np.testing.assert_array_equal(lazy_rows[np.array([5, 0, 1, 2])], arr[[5, 0, 1, 2]])
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 4)
    with pytest.raises(OSError, match="ends 4 bytes early"):
        lazy_rows.take(np.array([5]))[np.array([0])]
