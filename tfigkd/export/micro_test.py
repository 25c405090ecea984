import keras
import numpy as np
import pytest

from tfigkd.data import normalize
from tfigkd.export.micro import (fits_arena, micro_predict, read_c_array, smallest_arena,
                                 write_c_array)
from tfigkd.export.tflite import convert, tflite_predict


@pytest.fixture(scope="module")
def int8_model(trained_tiny):
    cfg, splits, path = trained_tiny
    model = keras.models.load_model(path)
    rep = normalize(splits.train.x[:64], "dataset", splits.mean, splits.std).numpy()
    x = normalize(splits.test.x, "dataset", splits.mean, splits.std).numpy()
    return convert(model, "int8", rep), x


def _quantise(data, x):
    from tfigkd.export.flatbuffer import io_details

    from tfigkd.export.tflite import quantize

    inp = io_details(data)["inputs"][0]
    return quantize(x, inp["scale"], inp["zero_point"], np.int8)


def test_runs_in_tflite_micro_like_litert(int8_model):
    data, x = int8_model
    q = _quantise(data, x)
    arena = smallest_arena(data, q[:1])
    micro = micro_predict(data, q, arena)
    assert micro.dtype == np.int8 and micro.shape == (len(x), 3)
    lite = tflite_predict(data, x)
    assert (micro.argmax(1) == lite.argmax(1)).mean() >= 0.95


def test_smallest_arena_is_the_boundary(int8_model):
    data, x = int8_model
    sample = _quantise(data, x[:1])
    arena = smallest_arena(data, sample, granularity=256)
    assert fits_arena(data, arena, sample)
    assert not fits_arena(data, arena - 256, sample)


def test_c_array_round_trip(int8_model, tmp_path):
    data, _ = int8_model
    h, c = write_c_array(data, str(tmp_path), name="g_tiny", arena_size=12345)
    assert read_c_array(c) == data
    header = open(h).read()
    assert "extern const unsigned char g_tiny[];" in header and "g_tiny_arena_size = 12345" in header
    assert "alignas(16)" in open(c).read()
    with pytest.raises(ValueError, match="C identifier"):
        write_c_array(data, str(tmp_path), name="3bad-name")
