"""``tfigkd compress``: quantisation-aware training or pruning, fine-tuned with KD.

TFMOT works only on ``tf_keras`` models, so the Keras 3 student is ported to
a ``tf_keras`` twin (same layers, same weights), wrapped by TFMOT, and
fine-tuned with the Distiller's loss terms and weighting
(``tfigkd.distill.terms``: ``LogitsKD``, ``SupervisedCE``, ``total_loss``).
``tf_keras``' own ``fit`` drives it: the wrapped model is a ``tf_keras`` model,
which cannot sit inside the Keras 3 ``Distiller``, so the labels and the
teacher's logits travel together as the target of each example. Teacher
logits are computed once on the un-augmented training images and looked up
by example index (the cached teacher mode); the student sees the usual
random crop and flip.

The result is converted to full int8 and compared, in LiteRT on the test
split, with post-training int8 quantisation (PTQ) of the same student.
"""

from __future__ import annotations

import dataclasses
import gzip
import logging
import os
import time

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


@dataclasses.dataclass(frozen=True)
class FinetuneSettings:
    """How ``compress_student`` fine-tunes (defaults: ``tfigkd compress``'s).

    Attributes:
        method: "qat" or "prune" (magnitude pruning to ``sparsity``, then PTQ int8).
        epochs, lr, batch_size: The fine-tuning recipe (Adam).
        alpha, temperature: The KD weight and temperature (as the Distiller).
        student_norm, teacher_norm: Each model's input normalisation.
        sparsity: Target share of zero weights when pruning.
        crop_pad, flip: The training augmentation.
        calibration_images: Images calibrating int8 conversion.
        check_images: Test images the LiteRT checks use (None: all).
        seed: Seed of weights, augmentation and sampling.
    """

    method: str = "qat"
    epochs: int = 1
    lr: float = 1e-4
    batch_size: int = 64
    alpha: float = 0.01
    temperature: float = 2.5
    student_norm: str = "unit"
    teacher_norm: str = "dataset"
    sparsity: float = 0.5
    crop_pad: int = 2
    flip: bool = True
    calibration_images: int = 256
    check_images: int | None = None
    seed: int = 0

    def check(self):
        if self.method not in METHODS:
            raise UserError(f"method must be one of {METHODS}, got {self.method!r}.")
        if self.method == "prune" and not 0.0 < self.sparsity < 1.0:
            raise UserError(f"sparsity must be in (0, 1), got {self.sparsity}.")
        return self


def kd_objective(alpha, temperature):
    """``loss(target, student_logits)`` for ``tf_keras``' ``fit``: the Distiller's terms.

    ``target`` is ``[label, teacher logits...]`` per example (``_with_teacher``).
    """
    from tfigkd.distill.terms import LogitsKD, SupervisedCE, total_loss

    kd_term, ce_term = LogitsKD(temperature), SupervisedCE()

    def loss(target, student_logits):
        ce, _ = ce_term.per_example(tf.cast(target[:, 0], tf.int64), student_logits)
        return total_loss(alpha, ce, kd_term.per_example(target[:, 1:], student_logits))

    return loss


def _with_teacher(dataset, teacher_of):
    """(image, [label, teacher logits]) batches from (``{"image", "index"}``, label) ones."""
    def pack(inputs, y):
        t = teacher_of(inputs["index"])
        return inputs["image"], tf.concat([tf.cast(tf.reshape(y, [-1, 1]), t.dtype), t], 1)

    return dataset.map(pack, num_parallel_calls=tf.data.AUTOTUNE)


def compress_student(student_path, teacher_path, splits, settings=None, *, out_dir=None,
                     verbose=True, **overrides):
    """Fine-tunes a student with QAT or pruning under KD and converts it to int8.

    Args:
        student_path, teacher_path: ``.keras`` models (Keras 3).
        splits: ``SplitData``; fine-tuning on train, accuracy on test.
        settings: ``FinetuneSettings`` (default: its defaults).
        out_dir: Output folder (default: ``compress/`` beside the student).
        verbose: Log each epoch and the result.
        **overrides: Fields of ``settings`` to replace (``epochs=2``, ...).

    Returns:
        The dict written to ``compress_{method}.json``: Keras, PTQ-int8 and
        {method}-int8 test accuracy, sizes, sparsity and timings.
    """
    import keras

    from tfigkd.compress.tf_keras_port import to_tf_keras
    from tfigkd.data import make_dataset, normalize
    from tfigkd.distill.logit_cache import IndexedRows, compute_logits
    from tfigkd.export.checks import litert_check
    from tfigkd.export.sampling import check_subset, representative_images
    from tfigkd.export.tflite import convert, save_tflite
    from tfigkd.models import load_model_file

    s = dataclasses.replace(settings or FinetuneSettings(), **overrides).check()
    method = s.method
    t_start = time.time()
    out_dir = out_dir or os.path.join(os.path.dirname(os.path.abspath(student_path)), "compress")
    os.makedirs(out_dir, exist_ok=True)
    student = load_model_file(student_path, "--model")
    teacher = load_model_file(teacher_path, "--teacher")
    test = check_subset(splits.test, s.check_images)
    x_test = normalize(test.x, s.student_norm, splits.mean, splits.std).numpy()
    rep = representative_images(splits, s.student_norm, s.calibration_images, s.seed)
    ref = student.predict(x_test, batch_size=256, verbose=0).argmax(1)

    def lite_acc(data):
        check, _ = litert_check(data, x_test, test.y, ref)
        return check["accuracy"], check["agreement_with_keras"]

    ptq = convert(student, "int8", rep)
    ptq_acc, ptq_agree = lite_acc(ptq)

    logits = compute_logits(teacher, splits.train, s.teacher_norm, splits.mean, splits.std)
    keras.utils.set_random_seed(s.seed)
    twin = to_tf_keras(student)
    steps_per_epoch = -(-len(splits.train) // s.batch_size)
    model, callbacks = _wrap(twin, method, s.sparsity, s.epochs * steps_per_epoch)
    import tf_keras

    model.compile(optimizer=tf_keras.optimizers.Adam(s.lr),
                  loss=kd_objective(s.alpha, s.temperature))
    train_ds = _with_teacher(make_dataset(
        splits.train, batch_size=s.batch_size, training=True, input_norm=s.student_norm,
        mean=splits.mean, std=splits.std, crop_pad=s.crop_pad, flip=s.flip, seed=s.seed,
        with_index=True, num_epochs=s.epochs), IndexedRows(logits, splits.train.index))
    t0 = time.time()
    history = model.fit(train_ds, epochs=s.epochs, steps_per_epoch=steps_per_epoch,
                        callbacks=callbacks, verbose=0)
    if verbose:
        for epoch, loss in enumerate(history.history["loss"], 1):
            log.info("[%s] epoch %d/%d: loss %.4f", method, epoch, s.epochs, loss)
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
        "epochs": s.epochs, "lr": s.lr, "batch_size": s.batch_size, "alpha": s.alpha,
        "temperature": s.temperature, "train_seconds": train_s,
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
        result["target_sparsity"] = s.sparsity
        result["kernel_sparsity"] = pruned_share
    result[f"{method}_minus_ptq"] = acc - ptq_acc
    write_json(os.path.join(out_dir, f"compress_{method}.json"), result)
    if verbose:
        log.info("Keras %.4f | PTQ int8 %.4f | %s int8 %.4f (%s B) -> %s",
                 result["keras_accuracy"], ptq_acc, method.upper(), acc, f"{len(data):,}", path)
    return result
