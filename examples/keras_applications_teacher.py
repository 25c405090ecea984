"""Fine-tune a ``keras.applications`` model on an image folder and distil it into a compact student.

The walk-through is docs/own_data.md. Run::

    python examples/keras_applications_teacher.py /path/to/images --out runs/my_images

Steps:

1. Load the folder with tfigkd (any sizes and colour modes; decoded once into
   the on-disk cache) at the student's resolution, ``data.image_size``.
2. Build a Keras Applications MobileNetV2 at its own resolution with its
   built-in ``[-1, 1]`` preprocessing left to tfigkd (``input_norm:
   minus_one_one``). Here ``weights=None`` (nothing can be downloaded);
   pass ``weights="imagenet"`` or ``--weights your.weights.h5`` for a real run.
3. Fine-tune it on the training split through ``tfigkd.data.make_dataset``
   (images resized to the teacher's size), with its BatchNorm statistics
   recomputed before each validation (``PreciseBatchNorm``), and save it.
4. Run the whole tfigkd pipeline with ``teacher.path`` pointing to it:
   ``teacher.input_size`` tells tfigkd the teacher's resolution; KD, IG and
   cached logits resize the images to it, the student trains at
   ``data.image_size``.
"""

from __future__ import annotations

import argparse
import os

import keras


def build_teacher(num_classes, size, weights=None, alpha=0.35):
    """MobileNetV2 backbone (ImageNet layout) + a new logits head."""
    base = keras.applications.MobileNetV2(input_shape=(*size, 3), include_top=False,
                                          weights=None, alpha=alpha)
    if weights:
        base.load_weights(weights)  # your own backbone weights file
    x = keras.layers.GlobalAveragePooling2D()(base.output)
    x = keras.layers.Dropout(0.2)(x)
    # Logits (no softmax): tfigkd would detect a softmax and use log-probabilities.
    return keras.Model(base.input, keras.layers.Dense(num_classes, name="logits")(x),
                       name="mobilenetv2_teacher")


def config(folder, teacher_file, image_size, teacher_size, epochs=10, modes=("student", "kd_ig"),
           data=None):
    """The experiment config (a dict; the same keys as a YAML file); ``data`` updates its data section."""
    return {
        "name": "own_data",
        "data": {"source": "image_folder", "path": folder, "image_size": list(image_size),
                 "resize": "pad", "color": "rgb", "val_fraction": 0.2, "test_fraction": 0.2,
                 **(data or {})},
        "teacher": {"path": teacher_file, "input_size": list(teacher_size),
                    "train": {"input_norm": "minus_one_one", "batch_size": 32}},
        "ig": {"n_steps": 32, "batch_size": 16},
        "student": {"model": {"name": "resnet8", "kwargs": {}}, "modes": list(modes),
                    "train": {"epochs": epochs, "batch_size": 32}},
        "export": {"int8": False},
    }


def main(folder, out, image_size=(32, 32), teacher_size=(96, 96), teacher_epochs=5,
         student_epochs=10, weights=None, modes=("student", "kd_ig"), alpha=0.35, verbose=1,
         data=None, ig_steps=32):
    """Fine-tunes the teacher and runs the pipeline; returns the run's summary dict."""
    import numpy as np

    import tfigkd
    from tfigkd.data import load_splits, make_dataset
    from tfigkd.models.batchnorm import PreciseBatchNorm

    os.makedirs(out, exist_ok=True)
    teacher_file = os.path.join(out, "my_teacher.keras")
    settings = config(folder, teacher_file, image_size, teacher_size, student_epochs, modes, data)
    settings["ig"]["n_steps"] = ig_steps
    # The data section alone (teacher.path must exist before the whole config is valid).
    splits = load_splits(tfigkd.load_config({"data": settings["data"]}).data)
    if not os.path.exists(teacher_file):
        keras.utils.set_random_seed(0)
        teacher = build_teacher(splits.num_classes, teacher_size, weights, alpha)
        data = dict(batch_size=32, input_norm="minus_one_one", image_size=teacher_size)
        train = make_dataset(splits.train, training=True, num_epochs=None, **data)
        val = make_dataset(splits.val, training=False, **data)
        teacher.compile(keras.optimizers.Adam(1e-3),
                        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                        metrics=["accuracy"])
        steps = max(1, -(-len(splits.train) // 32))
        # Keras Applications' BatchNorm layers average with momentum 0.999: after a few
        # hundred steps their moving statistics still hold much of their initial (0, 1) and
        # the model evaluates near chance. PreciseBatchNorm recomputes them for the current
        # weights from 1,024 training images before each validation (and so before saving).
        sample = splits.train.take(np.arange(min(1024, len(splits.train))))
        precise_bn = PreciseBatchNorm(make_dataset(sample, training=False, **data))
        teacher.fit(train, validation_data=val, epochs=teacher_epochs, steps_per_epoch=steps,
                    callbacks=[precise_bn], verbose=verbose)
        teacher.save(teacher_file)
    return tfigkd.run(tfigkd.load_config(settings), out, verbose=verbose)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("folder", help="image folder: <folder>/<class>/<images>")
    p.add_argument("--out", required=True)
    p.add_argument("--weights", help="backbone weights file (default: random init)")
    p.add_argument("--teacher-epochs", type=int, default=5)
    p.add_argument("--student-epochs", type=int, default=10)
    p.add_argument("--memory-budget-mb", type=float,
                   help="stream the images from the disk cache above this size (data.memory_budget_mb)")
    a = p.parse_args()
    s = main(a.folder, a.out, weights=a.weights, teacher_epochs=a.teacher_epochs,
             student_epochs=a.student_epochs,
             data=None if a.memory_budget_mb is None else {"memory_budget_mb": a.memory_budget_mb})
    print({m["name"]: round(m["test_accuracy"], 4) for m in s["models"]})
