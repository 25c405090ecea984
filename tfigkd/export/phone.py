"""Phone exports that apps load as they are: pixels in, probabilities out, TFLite metadata.

MediaPipe Tasks' ``ImageClassifier`` (Android, iOS, web, Python) and the older
TFLite Task Library feed a model camera pixels: RGB, uint8 0..255 into a uint8
input, or ``(pixel - mean) / std`` from the metadata into a float input, and
read class scores with the labels from the metadata. So a phone export wraps
the trained logits model in:

1. one fixed 1x1 convolution from RGB pixels (0..255) to the model's input:
   its normalisation (``x / 255`` or ``(x / 255 - mean) / std``) and, for a
   grayscale model, the ITU-R BT.601 luminance ``0.299 R + 0.587 G + 0.114 B``
   (what PIL's and OpenCV's RGB -> gray conversions compute), so that a camera
   frame goes straight in; a gray picture (R = G = B) gives exactly the model's
   original input;
2. the model itself;
3. a softmax, so that scores are probabilities and MediaPipe's
   ``score_threshold`` means something.

The metadata then says "pixel values as they are" (mean 0, std 1).
"""

from __future__ import annotations

import numpy as np

# ITU-R BT.601 luma weights; they sum to 1, so a gray RGB pixel keeps its value.
LUMA = (0.299, 0.587, 0.114)


def input_affine(channels_in, channels_out, norm, mean, std):
    """Weights (1, 1, Cin, Cout) and bias (Cout,) mapping pixels 0..255 to the model's input.

    ``norm`` is any input normalisation (``tfigkd.models.teacher_io.NORMS``):
    one affine formula for training, IG and export, so an adopted teacher
    (``raw``, ``minus_one_one``, ``imagenet``) is fed exactly as in training.
    """
    from tfigkd.models.teacher_io import affine

    m, s = affine(norm, mean, std, channels_out)
    mean, std = np.asarray(m, np.float64), np.asarray(s, np.float64)
    if channels_in == channels_out:
        mix = np.eye(channels_in)
    elif channels_in == 3 and channels_out == 1:
        mix = np.asarray(LUMA, np.float64).reshape(3, 1)
    else:
        raise ValueError(f"cannot map {channels_in} input channels to {channels_out}")
    w = mix / (255.0 * std.reshape(1, -1))
    b = -mean / std
    return w.reshape(1, 1, channels_in, channels_out).astype(np.float32), b.astype(np.float32)


def has_softmax(model):
    """Whether the model's last layer already outputs probabilities."""
    import keras

    last = model.layers[-1]
    return (isinstance(last, keras.layers.Softmax) or
            getattr(last, "activation", None) is keras.activations.softmax)


def app_model(model, norm, mean, std, rgb_input=True):
    """The model an app runs: pixels (0..255, float) in, probabilities out.

    Args:
        model: The trained Keras logits model, input (H, W, C) in its own
            normalisation.
        norm: The model's input normalisation (see ``tfigkd.data.normalize``).
        mean, std: Per-channel dataset statistics (for "dataset").
        rgb_input: For a grayscale model (C = 1): take RGB input and convert it
            to luminance inside the model.

    Returns:
        A Keras model with input (H, W, 3) (or (H, W, 1) for a grayscale model
        with ``rgb_input=False``).
    """
    import keras

    h, w, c = model.input_shape[1:]
    c_in = 3 if (c == 1 and rgb_input) else c
    inp = keras.Input((h, w, c_in), name="image")
    pre = keras.layers.Conv2D(c, 1, name="pixels_to_input", trainable=False)
    x = pre(inp)
    pre.set_weights(list(input_affine(c_in, c, norm, mean, std)))
    x = model(x)
    if not has_softmax(model):
        x = keras.layers.Softmax(name="probability")(x)
    return keras.Model(inp, x, name=f"{model.name}_app")
