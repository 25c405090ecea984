"""``tfigkd compress``: quantisation-aware training or pruning, fine-tuned with KD.

TFMOT works only on ``tf_keras`` models, so the Keras 3 student is ported to
a ``tf_keras`` twin (same layers, same weights), wrapped by TFMOT, and
fine-tuned with the same loss as the Distiller: alpha * T^2 * KL(teacher ||
student) + (1 - alpha) * CE. Teacher logits are computed once on the
un-augmented training images and looked up by example index (the cached
teacher mode); the student sees the usual random crop and flip.

The result is converted to full int8 and compared, in LiteRT on the test
split, with post-training int8 quantisation (PTQ) of the same student.
"""

from __future__ import annotations

import gzip
import logging
import os
import time

import numpy as np
import tensorflow as tf

import tfigkd
from tfigkd.errors import UserError
from tfigkd.io import write_json

log = logging.getLogger(__name__)

METHODS = ("qat", "prune")


def _wrap(twin, method, sparsity, total_steps):
    import tensorflow_model_optimization as tfmot

    if method == "qat":
        return tfmot.quantization.keras.quantize_model(twin), []
    sched = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=sparsity, begin_step=0,
        end_step=max(1, int(0.7 * total_steps)), frequency=max(1, total_steps // 20))
    model = tfmot.sparsity.keras.prune_low_magnitude(twin, pruning_schedule=sched)
    return model, [tfmot.sparsity.keras.UpdatePruningStep()]


def _sparsity(model):
    """Share of zeros in the weights TFMOT prunes (call before ``strip_pruning``)."""
    zeros = total = 0
    for layer in model.layers:
        if hasattr(layer, "pruning_vars"):
            for weight, _mask, _threshold in layer.pruning_vars:
                v = weight.numpy()
                zeros += int((v == 0).sum())
                total += v.size
    return zeros / max(1, total)


def compress_student(student_path, teacher_path, splits, method="qat", out_dir=None,
                     epochs=1, lr=1e-4, batch_size=64, alpha=0.01, temperature=2.5,
                     student_norm="unit", teacher_norm="dataset", sparsity=0.5,
                     crop_pad=2, flip=True, calibration_images=256, check_images=None,
                     seed=0, verbose=True):
    """Fine-tunes a student with QAT or pruning under KD and converts it to int8.

    Args:
        student_path, teacher_path: ``.keras`` models (Keras 3).
        splits: ``SplitData``; fine-tuning on train, accuracy on test.
        method: "qat" or "prune" (magnitude pruning to ``sparsity``, then PTQ int8).
        out_dir: Output folder (default: ``compress/`` beside the student).
        epochs, lr, batch_size: Fine-tuning recipe (Adam).
        alpha, temperature: The KD loss weights (as the Distiller).
        student_norm, teacher_norm: Each model's input normalisation.

    Returns:
        The dict written to ``compress_{method}.json``: Keras, PTQ-int8 and
        {method}-int8 test accuracy, sizes, sparsity and timings.
    """
    import keras

    from tfigkd.compress.tf_keras_port import to_tf_keras
    from tfigkd.data import make_dataset, normalize
    from tfigkd.distill.logit_cache import IndexedRows, compute_logits
    from tfigkd.distill.losses import ce_loss, kd_loss
    from tfigkd.export.checks import litert_check
    from tfigkd.export.sampling import check_subset, representative_images
    from tfigkd.export.tflite import convert, save_tflite
    from tfigkd.models import load_model_file

    if method not in METHODS:
        raise UserError(f"method must be one of {METHODS}, got {method!r}.")
    if method == "prune" and not 0.0 < sparsity < 1.0:
        raise UserError(f"sparsity must be in (0, 1), got {sparsity}.")
    t_start = time.time()
    out_dir = out_dir or os.path.join(os.path.dirname(os.path.abspath(student_path)), "compress")
    os.makedirs(out_dir, exist_ok=True)
    student = load_model_file(student_path, "--model")
    teacher = load_model_file(teacher_path, "--teacher")
    test = check_subset(splits.test, check_images)
    x_test = normalize(test.x, student_norm, splits.mean, splits.std).numpy()
    rep = representative_images(splits, student_norm, calibration_images, seed)
    ref = student.predict(x_test, batch_size=256, verbose=0).argmax(1)

    def lite_acc(data):
        check, _ = litert_check(data, x_test, test.y, ref)
        return check["accuracy"], check["agreement_with_keras"]

    ptq = convert(student, "int8", rep)
    ptq_acc, ptq_agree = lite_acc(ptq)

    logits = compute_logits(teacher, splits.train, teacher_norm, splits.mean, splits.std)
    teacher_of = IndexedRows(logits, splits.train.index)
    keras.utils.set_random_seed(seed)
    twin = to_tf_keras(student)
    steps = epochs * -(-len(splits.train) // batch_size)
    model, callbacks = _wrap(twin, method, sparsity, steps)
    import tf_keras

    opt = tf_keras.optimizers.Adam(lr)
    steps_per_epoch = -(-len(splits.train) // batch_size)
    ds = iter(make_dataset(splits.train, batch_size=batch_size, training=True,
                           input_norm=student_norm, mean=splits.mean, std=splits.std,
                           crop_pad=crop_pad, flip=flip, seed=seed, with_index=True,
                           num_epochs=epochs))

    @tf.function
    def train_step(x, idx, y):
        with tf.GradientTape() as tape:
            s = model(x, training=True)
            loss = alpha * kd_loss(teacher_of(idx), s, temperature) + (1 - alpha) * ce_loss(y, s)
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    for cb in callbacks:
        cb.set_model(model)
        cb.on_train_begin()
    t0 = time.time()
    for epoch in range(epochs):
        losses = []
        for b in range(steps_per_epoch):
            inputs, y = next(ds)
            for cb in callbacks:
                cb.on_train_batch_begin(batch=b)
            losses.append(float(train_step(inputs["image"], inputs["index"], y)))
        for cb in callbacks:
            cb.on_epoch_end(epoch)
        if verbose:
            log.info("[%s] epoch %d/%d: loss %.4f", method, epoch + 1, epochs, np.mean(losses))
    train_s = time.time() - t0
    pruned_share = None
    if method == "prune":
        import tensorflow_model_optimization as tfmot

        pruned_share = _sparsity(model)
        model = tfmot.sparsity.keras.strip_pruning(model)
    float_pred = model.predict(x_test, batch_size=256, verbose=0).argmax(1)
    data = convert(model, "int8", rep)
    acc, agree = lite_acc(data)
    stem = os.path.basename(os.path.dirname(os.path.abspath(student_path))) or "student"
    path = os.path.join(out_dir, f"{stem}_{method}_int8.tflite")
    save_tflite(data, path)
    result = {
        "tfigkd_version": tfigkd.__version__, "method": method, "student": os.path.abspath(student_path),
        "teacher": os.path.abspath(teacher_path), "test_images": int(len(test)),
        "epochs": epochs, "lr": lr, "batch_size": batch_size, "alpha": alpha,
        "temperature": temperature, "train_seconds": train_s,
        "keras_accuracy": float((ref == test.y).mean()),
        "finetuned_float_accuracy": float((float_pred == test.y).mean()),
        "ptq_int8": {"accuracy": ptq_acc, "agreement_with_keras": ptq_agree, "bytes": len(ptq),
                     "gzip_bytes": len(gzip.compress(ptq))},
        f"{method}_int8": {"path": os.path.abspath(path), "accuracy": acc,
                           "agreement_with_keras": agree, "bytes": len(data),
                           "gzip_bytes": len(gzip.compress(data))},
        "wall_seconds": time.time() - t_start,
    }
    if method == "prune":
        result["target_sparsity"] = sparsity
        result["kernel_sparsity"] = pruned_share
    result[f"{method}_minus_ptq"] = acc - ptq_acc
    write_json(os.path.join(out_dir, f"compress_{method}.json"), result)
    if verbose:
        log.info("Keras %.4f | PTQ int8 %.4f | %s int8 %.4f (%s B) -> %s",
                 result["keras_accuracy"], ptq_acc, method.upper(), acc, f"{len(data):,}", path)
    return result
