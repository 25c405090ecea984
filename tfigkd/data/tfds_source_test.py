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
