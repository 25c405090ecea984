"""Runs a ``.tflite`` in MediaPipe Tasks' ``ImageClassifier``, the way an app would.

``mediapipe`` is optional (the ``android`` extra; installed by
``scripts/setup_venv.sh``): without it the check says "not checked".
"""

from __future__ import annotations

import logging
import time

import numpy as np

log = logging.getLogger(__name__)

NOT_INSTALLED = ("not checked: mediapipe is not installed "
                 "(pip install 'mediapipe>=1.2.3,<2')")


def rgb_pixels(images):
    """uint8 (N, H, W, 1 or 3) -> (N, H, W, 3): gray pictures become gray RGB frames."""
    images = np.asarray(images, np.uint8)
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def mediapipe_classify(tflite_path, images):
    """Classifies RGB uint8 images with MediaPipe's ``ImageClassifier`` (all classes returned).

    Returns:
        (indices (N, K), scores (N, K), names (N, K)): each row sorted by score.

    Raises:
        ImportError: mediapipe is not installed.
        Exception: whatever MediaPipe raises when it refuses the model.
    """
    import mediapipe as mp
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    opts = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=tflite_path),
                                         max_results=-1)
    idx, scores, names = [], [], []
    with vision.ImageClassifier.create_from_options(opts) as clf:
        for im in images:
            frame = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(im))
            cats = clf.classify(frame).classifications[0].categories
            idx.append([c.index for c in cats])
            scores.append([c.score for c in cats])
            names.append([c.category_name for c in cats])
    return np.array(idx), np.array(scores, np.float64), np.array(names, dtype=object)


def mediapipe_check(tflite_path, images, labels, litert_pred, class_names):
    """Whether MediaPipe loads ``tflite_path``, and how it classifies ``images``.

    Args:
        tflite_path: The exported file.
        images: uint8 test images (N, H, W, C); gray ones are fed as gray RGB frames.
        labels: True classes (N,).
        litert_pred: LiteRT's top-1 on the same images (N,).
        class_names: The class names in output order.

    Returns:
        Dict: ``loads`` (True, False or "not checked"), and either ``error``
        or images, accuracy, agreement_with_litert, labels_match (MediaPipe's
        category names are the class names), scores_in_0_1, seconds_per_image.
    """
    try:
        import mediapipe  # noqa: F401
    except ImportError:
        return {"loads": "not checked", "error": NOT_INSTALLED}
    t0 = time.time()
    try:
        idx, scores, names = mediapipe_classify(str(tflite_path), rgb_pixels(images))
    except Exception as e:  # noqa: BLE001 - MediaPipe's refusal is the result
        return {"loads": False, "error": str(e).strip().splitlines()[0][:400]}
    secs = time.time() - t0
    top = idx[:, 0]
    want = np.array(class_names, dtype=object)[idx]
    return {"loads": True, "images": int(len(top)),
            "accuracy": float((top == np.asarray(labels)).mean()),
            "agreement_with_litert": float((top == np.asarray(litert_pred)).mean()),
            "labels_match": bool((names == want).all()),
            "scores_in_0_1": bool(((scores >= 0) & (scores <= 1)).all()),
            "seconds_per_image": secs / max(1, len(top))}


def describe(check):
    """One line for the export log."""
    if check["loads"] == "not checked":
        return f"MediaPipe ImageClassifier: {check['error']}"
    if not check["loads"]:
        return f"MediaPipe ImageClassifier cannot load it: {check['error']}"
    return (f"MediaPipe ImageClassifier loads it: top-1 agrees with LiteRT on "
            f"{check['agreement_with_litert']:.2%} of {check['images']} images, accuracy "
            f"{check['accuracy']:.4f}, labels {'right' if check['labels_match'] else 'WRONG'}, "
            f"scores {'in [0, 1]' if check['scores_in_0_1'] else 'OUTSIDE [0, 1]'}")


def check_phone_file(tflite_path, splits, check_images=None):
    """Checks an exported file the way an app would run it, before shipping.

    Runs ``tflite_path`` on the test split's pixels in LiteRT and in
    MediaPipe's ``ImageClassifier`` and reads its metadata.

    Args:
        tflite_path: A ``.tflite`` file.
        splits: ``SplitData`` of the model's dataset (the test split is used).
        check_images: Test images to use (None: all).

    Returns:
        Dict with ``metadata`` (entry names), ``files`` (zipped files), ``input``,
        ``output`` (IO details), ``litert`` (accuracy on pixels) and ``mediapipe``
        (``mediapipe_check``).
    """
    from tfigkd.export.flatbuffer import io_details
    from tfigkd.export.metadata import read_metadata_summary
    from tfigkd.export.tflite import tflite_predict

    with open(tflite_path, "rb") as f:
        data = f.read()
    io = io_details(data)
    from tfigkd.export.inputs import model_pixels
    from tfigkd.export.sampling import check_subset

    test = check_subset(splits.test, check_images)

    x = test.x
    shape = io["inputs"][0]["shape"]
    if shape[-1] == 3 and x.shape[-1] == 1:
        x = rgb_pixels(x)
    # A model at its own input size (teacher.input_size) gets the pixels resized to it,
    # as the export's own check fed them.
    lite = tflite_predict(data, model_pixels(x, tuple(int(v) for v in shape[1:3])),
                          batch_size=256).argmax(1)
    report = read_metadata_summary(data)
    report.update(input=io["inputs"][0], output=io["outputs"][0],
                  litert={"images": int(len(x)), "accuracy": float((lite == test.y).mean())},
                  mediapipe=mediapipe_check(tflite_path, test.x, test.y, lite,
                                            splits.class_names))
    return report
