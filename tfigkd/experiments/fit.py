"""``model.fit`` that keeps the best-on-validation model and resumes after a kill.

After every epoch the full training state (weights and optimiser slots, via
``save_weights``) goes to a new numbered file, then ``state.json`` is
atomically pointed at it. A job killed at any moment restarts from the last
epoch whose state.json was written; a half-written checkpoint is never read.
"""

from __future__ import annotations

import glob
import math
import os
import time

import keras

from tfigkd.io import atomic_path, read_json, write_json


def save_inference_copy(model, path):
    """Saves ``model`` as ``.keras`` without optimiser state, atomically.

    A fresh, uncompiled copy is saved so the file loads anywhere without the
    training code's custom objects (schedules, losses). ``clone_model`` would
    not do: it compiles the clone like the original.
    """
    clone = type(model).from_config(model.get_config())
    clone.set_weights(model.get_weights())
    with atomic_path(path) as tmp:
        clone.save(tmp)


class _EpochState(keras.callbacks.Callback):
    def __init__(self, work_dir, state, monitor, on_best, t_offset):
        super().__init__()
        self.work_dir, self.state, self.monitor = work_dir, state, monitor
        self.on_best, self.t_offset = on_best, t_offset
        self.t0 = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        st = self.state
        for k, v in logs.items():
            st["history"].setdefault(k, []).append(v)
        if self.monitor not in logs:
            raise KeyError(f"Monitored metric {self.monitor!r} missing from the "
                           f"epoch logs {sorted(logs)}; pass validation data.")
        value = logs[self.monitor]
        if st["best"] is None or value > st["best"]:
            st["best"], st["best_epoch"] = value, epoch + 1
            self.on_best(self.model)
        ckpt = os.path.join(self.work_dir, f"epoch-{epoch + 1:04d}.weights.h5")
        with atomic_path(ckpt) as tmp:
            self.model.save_weights(tmp)
        old = st.get("weights")
        st.update(epoch=epoch + 1, weights=os.path.basename(ckpt),
                  train_seconds=self.t_offset + time.time() - self.t0)
        write_json(os.path.join(self.work_dir, "state.json"), st)
        if old and old != st["weights"]:
            try:
                os.unlink(os.path.join(self.work_dir, old))
            except FileNotFoundError:
                pass


def fit_resumable(model, train_ds, val_ds, *, epochs, work_dir, best_path,
                  monitor="val_accuracy", callbacks=(), verbose=1,
                  tensorboard_dir=None, save_best=save_inference_copy):
    """Trains a compiled model, resuming from ``work_dir`` when it holds a state.

    Args:
        model: A compiled Keras model (same architecture as any saved state).
        train_ds, val_ds: Training and validation datasets.
        epochs: Total epochs (including those already done).
        work_dir: Folder for ``state.json`` and the latest checkpoint.
        best_path: Where the best-on-``monitor`` model is saved.
        monitor: A logged metric to maximise, e.g. ``val_accuracy``.
        callbacks: Extra Keras callbacks.
        verbose: Keras ``fit`` verbosity.
        tensorboard_dir: If given, TensorBoard logs are written there.
        save_best: ``fn(model, path)`` that saves the best model.

    Returns:
        The state dict: ``epoch``, ``history`` (per-epoch metrics over all
        runs), ``best``, ``best_epoch`` and ``train_seconds``.
    """
    os.makedirs(work_dir, exist_ok=True)
    state_path = os.path.join(work_dir, "state.json")
    state = {"epoch": 0, "history": {}, "best": None, "best_epoch": None,
             "weights": None, "train_seconds": 0.0}
    if os.path.exists(state_path):
        state = read_json(state_path)
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(os.path.join(work_dir, state["weights"]))
        if verbose:
            print(f"Resuming from epoch {state['epoch']} of {epochs} "
                  f"(best {monitor} {state['best']:.4f} at epoch {state['best_epoch']}).")
    # Stale temporaries from a kill mid-write are never read; tidy them.
    for tmp in glob.glob(os.path.join(work_dir, ".tmp-*")):
        os.unlink(tmp)
    if state["epoch"] < epochs:
        cbs = [_EpochState(work_dir, state, monitor,
                           lambda m: save_best(m, best_path), state["train_seconds"])]
        if tensorboard_dir:
            cbs.append(keras.callbacks.TensorBoard(tensorboard_dir, write_graph=False))
        model.fit(train_ds, validation_data=val_ds, epochs=epochs,
                  initial_epoch=state["epoch"], callbacks=cbs + list(callbacks),
                  verbose=verbose, shuffle=False)
    if state["best"] is None or (isinstance(state["best"], float) and math.isnan(state["best"])):
        raise RuntimeError(f"Training produced no valid {monitor}.")
    return state
