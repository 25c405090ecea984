import numpy as np
import pytest

from tfigkd.config import DataConfig, config_from_dict
from tfigkd.data import load_splits
from tfigkd.errors import UserError


def test_generic_tfds_source_with_mock_data():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=20):
        sd = load_splits(DataConfig(source="tfds", name="cifar10", val_fraction=0.25))
    assert sd.name == "cifar10" and sd.input_shape == (32, 32, 3)
    sizes = sd.sizes()
    assert sizes["train"] + sizes["val"] == 20 and sizes["test"] == 20 and sizes["val"] >= 4
    assert sd.num_classes == 10  # from the label feature (mock data has no names)
    assert sd.train.x.dtype == np.uint8


def test_varying_sizes_need_image_size_then_resize():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=12):
        with pytest.raises(UserError, match="varying size.*data.image_size"):
            load_splits(DataConfig(source="tfds", name="oxford_flowers102"))
        sd = load_splits(DataConfig(source="tfds", name="oxford_flowers102", image_size=[24, 20],
                                    resize="crop", color="grayscale"))
    assert sd.input_shape == (24, 20, 1) and sd.num_classes == 102
    assert sd.name == "oxford_flowers102"


def test_tfds_needs_a_name():
    with pytest.raises(UserError, match="data.name: required"):
        config_from_dict({"data": {"source": "tfds"}})
    assert DataConfig().download is False


def test_tfds_over_the_budget_streams_from_the_disk_cache(tmp_path, caplog):
    """Over data.memory_budget_mb a tfds dataset is written once to the cache and streamed."""
    import logging

    import tensorflow_datasets as tfds

    from tfigkd.data.lazy import LazyRows

    base = dict(source="tfds", name="oxford_flowers102", image_size=[16, 12], resize="pad",
                cache_dir=str(tmp_path / "cache"), val_fraction=0.25)
    with tfds.testing.mock_data(num_examples=12):
        mem = load_splits(DataConfig(**base))
        with caplog.at_level(logging.INFO, logger="tfigkd"):
            lazy = load_splits(DataConfig(**base, memory_budget_mb=0))
        assert "tfds cache hit" not in caplog.text
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="tfigkd"):
            again = load_splits(DataConfig(**base, memory_budget_mb=0))
        assert "tfds cache hit" in caplog.text  # the second run reads no dataset
        other = load_splits(DataConfig(**dict(base, resize="crop"), memory_budget_mb=0))
    assert not isinstance(mem.train.x, LazyRows)
    assert isinstance(lazy.train.x, LazyRows) and isinstance(lazy.test.x, LazyRows)
    assert lazy.fingerprint == mem.fingerprint == again.fingerprint
    assert (lazy.mean, lazy.std) == (mem.mean, mem.std)
    for part in ("train", "val", "test"):
        np.testing.assert_array_equal(np.asarray(getattr(lazy, part).x), getattr(mem, part).x)
        np.testing.assert_array_equal(getattr(lazy, part).y, getattr(mem, part).y)
        np.testing.assert_array_equal(np.asarray(getattr(again, part).x), getattr(mem, part).x)
    # Other size settings: another cache entry (crop, not pad), not the stale one.
    assert other.train.x.path != lazy.train.x.path
    assert not np.array_equal(np.asarray(other.train.x), np.asarray(lazy.train.x))
