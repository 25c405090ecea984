import keras
import numpy as np
import pytest

from tfigkd.data import normalize
from tfigkd.export.flatbuffer import io_details, model_ops
from tfigkd.export.tflite import convert, tflite_predict


@pytest.fixture(scope="module")
def setup(trained_tiny):
    cfg, splits, path = trained_tiny
    model = keras.models.load_model(path)
    x = normalize(splits.test.x, "dataset", splits.mean, splits.std).numpy()
    rep = normalize(splits.train.x[:64], "dataset", splits.mean, splits.std).numpy()
    return model, x, rep, model.predict(x, verbose=0)


@pytest.mark.parametrize("quant,atol", [("fp32", 1e-4), ("fp16", 0.05)])
def test_float_quants_match_keras(setup, quant, atol):
    model, x, _, ref = setup
    out = tflite_predict(convert(model, quant), x)
    np.testing.assert_allclose(out, ref, atol=atol * max(1.0, np.abs(ref).max()))


@pytest.mark.parametrize("quant", ["dynamic", "int8"])
def test_quantised_models_agree_with_keras(setup, quant):
    model, x, rep, ref = setup
    data = convert(model, quant, rep)
    out = tflite_predict(data, x)
    assert (out.argmax(1) == ref.argmax(1)).mean() >= 0.9
    io = io_details(data)
    want = "int8" if quant == "int8" else "float32"
    assert io["inputs"][0]["dtype"] == want and io["outputs"][0]["dtype"] == want
    if quant == "int8":
        assert io["inputs"][0]["scale"] > 0
        names = {o["name"] for o in model_ops(data)}
        assert {"CONV_2D", "FULLY_CONNECTED"} <= names and "DEQUANTIZE" not in names


@pytest.mark.parametrize("io_type", ["uint8", "float32"])
def test_int8_io_types(setup, io_type):
    model, x, rep, ref = setup
    data = convert(model, "int8", rep, io_type=io_type)
    assert io_details(data)["inputs"][0]["dtype"] == io_type
    assert (tflite_predict(data, x).argmax(1) == ref.argmax(1)).mean() >= 0.9


def test_bad_arguments(setup):
    model = setup[0]
    with pytest.raises(ValueError, match="quant must be"):
        convert(model, "int4")
    with pytest.raises(ValueError, match="representative"):
        convert(model, "int8")
    with pytest.raises(ValueError, match="io_type"):
        convert(model, "int8", setup[2], io_type="int16")
