"""``model.fit`` that keeps the best-on-validation model and resumes after a kill.

After every epoch the full training state (weights and optimiser slots, as
``save_weights`` writes them) goes to a new numbered file, then ``state.json``
is atomically pointed at it; both are written in a background thread while
the next epoch trains (``tfigkd.experiments.checkpoint``). A job killed at
any moment restarts from the last epoch whose state.json was written; a
half-written checkpoint is never read.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time

import keras

from tfigkd.errors import UserError
from tfigkd.experiments.checkpoint import CheckpointWriter
from tfigkd.freshness import check_same_recipe
from tfigkd.io import atomic_path, read_json, remove_stale_temps, write_json
from tfigkd.layout import WORK_RECIPE, WORK_STATE

log = logging.getLogger(__name__)


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
    def __init__(self, work_dir, state, monitor, t_offset):
        super().__init__()
        self.work_dir, self.state, self.monitor = work_dir, state, monitor
        self.t_offset = t_offset
        self.writer = CheckpointWriter(work_dir, WORK_STATE)
        self.t0 = time.time()
        self.t_epoch = self.t0

    def on_epoch_begin(self, epoch, logs=None):
        self.t_epoch = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        st = self.state
        for k, v in logs.items():
            st["history"].setdefault(k, []).append(v)
        if self.monitor not in logs:
            raise KeyError(f"Monitored metric {self.monitor!r} missing from the "
                           f"epoch logs {sorted(logs)}; pass validation data.")
        value = logs[self.monitor]
        ckpt = f"epoch-{epoch + 1:04d}.weights.h5"
        old, old_best = st.get("weights"), st.get("best_weights")
        if st["best"] is None or value > st["best"]:
            # The best epoch's checkpoint is kept, and the best model is written
            # from it once, when training ends: saving a .keras every time the
            # score improved cost a clone and a full save per epoch.
            st.update(best=value, best_epoch=epoch + 1, best_weights=ckpt)
        st.update(epoch=epoch + 1, weights=ckpt, seed_states=_seed_states(self.model),
                  train_seconds=self.t_offset + time.time() - self.t0)
        # Wall time of the whole epoch: its steps, validation and what blocks
        # of the save (benchmarks/pipeline_efficiency.py compares it with the
        # bare step); the file itself is written while the next epoch trains.
        st.setdefault("epoch_seconds", []).append(time.time() - self.t_epoch)
        self.writer.submit(self.model, ckpt, copy.deepcopy(st),
                           {old, old_best} - {st["weights"], st.get("best_weights"), None})

    def on_train_end(self, logs=None):
        self.writer.join()


def fit_resumable(model, train_data, val_ds, *, epochs, steps_per_epoch, work_dir, best_path,
                  recipe=None, what="run", monitor="val_accuracy", callbacks=(), verbose=1,
                  tensorboard_dir=None, save_best=save_inference_copy, bn_data=None):
    """Trains a compiled model, resuming from ``work_dir`` when it holds a state.

    Resuming is exact: the weights, the optimiser state (slots and
    ``iterations``, hence the learning-rate schedule) and the random state of
    layers such as Dropout come from the checkpoint, and ``train_data``
    rebuilds the data order and augmentation of the remaining epochs from
    their epoch numbers, so a killed-and-resumed run ends with the same
    weights as an uninterrupted one.

    Args:
        model: A compiled Keras model (same architecture as any saved state).
        train_data: ``fn(first_epoch, num_epochs) -> dataset`` yielding those
            epochs back to back (``make_dataset(..., epoch=, num_epochs=)``).
        val_ds: Validation dataset.
        epochs: Total epochs (including those already done).
        steps_per_epoch: Batches per epoch.
        work_dir: Folder for ``state.json``, ``recipe.json`` and the latest checkpoint.
        best_path: Where the best-on-``monitor`` model is saved.
        recipe: Settings and data fingerprint the run depends on; recorded
            when the run starts, and a partial run with another recipe is
            refused instead of resumed.
        what: Name of the run in messages (e.g. "teacher").
        monitor: A logged metric to maximise, e.g. ``val_accuracy``.
        callbacks: Extra Keras callbacks.
        verbose: Keras ``fit`` verbosity.
        tensorboard_dir: If given, TensorBoard logs are written there.
        save_best: ``fn(model, path)`` that saves the best model.
        bn_data: Training images (array or dataset of batches) on which
            BatchNorm statistics are re-estimated before every validation
            (``tfigkd.models.batchnorm.PreciseBatchNorm``), so validation, the
            best-epoch choice and the saved model use statistics that match
            the weights; None keeps Keras' moving averages.

    Under ``tf.distribute`` (a model built in a strategy's scope,
    ``tfigkd.distribute``) the state is built in that scope, the
    data are split over the replicas and BatchNorm uses the global batch;
    on a multi-worker cluster only the chief writes ``work_dir`` and
    ``best_path``, the other workers a private copy.

    Returns:
        The state dict: ``epoch``, ``history`` (per-epoch metrics over all
        runs), ``best``, ``best_epoch`` and ``train_seconds``.

    Raises:
        UserError: If ``work_dir`` holds a partial run with another recipe.
    """
    from tfigkd import distribute

    strategy = model.distribute_strategy
    with distribute.worker_paths(strategy, work_dir, best_path) as (work_dir, best_path), \
            strategy.scope():
        return _fit_resumable(
            model, train_data, val_ds, epochs=epochs, steps_per_epoch=steps_per_epoch,
            work_dir=work_dir, best_path=best_path, recipe=recipe, what=what, monitor=monitor,
            callbacks=callbacks, verbose=verbose, save_best=save_best, bn_data=bn_data,
            tensorboard_dir=tensorboard_dir if distribute.is_chief(strategy) else None)


def _fit_resumable(model, train_data, val_ds, *, epochs, steps_per_epoch, work_dir, best_path,
                   recipe, what, monitor, callbacks, verbose, tensorboard_dir, save_best,
                   bn_data):
    from tfigkd.distribute import distributable, synced_batchnorm

    os.makedirs(work_dir, exist_ok=True)
    state_path = os.path.join(work_dir, WORK_STATE)
    recipe_path = os.path.join(work_dir, WORK_RECIPE)
    state = {"epoch": 0, "history": {}, "best": None, "best_epoch": None,
             "weights": None, "train_seconds": 0.0}
    if os.path.exists(state_path):
        state = read_json(state_path)
        recorded = read_json(recipe_path) if os.path.exists(recipe_path) else None
        if recipe is not None:
            check_same_recipe(
                recorded, recipe, work_dir,
                f"a partial {what} run (epoch {state['epoch']} of {epochs}) started",
                f"use another --out folder, or delete {work_dir} to start over")
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        ckpt = os.path.join(work_dir, state["weights"])
        try:
            model.load_weights(ckpt)
        except FileNotFoundError:
            raise UserError(f"{ckpt} is missing although {state_path} names it; delete "
                            f"{work_dir} to restart this {what} from epoch 0.") from None
        except (OSError, ValueError) as e:
            raise UserError(f"{ckpt} cannot be loaded into this {what} ({e}); delete "
                            f"{work_dir} to restart it from epoch 0.") from None
        _restore_seed_states(model, state.get("seed_states"))
        log.info("Resuming %s from epoch %d of %d (best %s %.4f at epoch %s).", what,
                 state["epoch"], epochs, monitor, state["best"], state["best_epoch"])
    elif recipe is not None:
        # Recorded before the first epoch, so even a run killed in epoch 1
        # cannot later be resumed under other settings.
        write_json(recipe_path, recipe)
    # Temporaries left by a kill mid-write are never read; tidy them.
    for folder in {work_dir, os.path.dirname(os.path.abspath(best_path))}:
        remove_stale_temps(folder)
    trained = state["epoch"] < epochs
    if trained:
        epoch_state = _EpochState(work_dir, state, monitor, state["train_seconds"])
        cbs = [epoch_state]
        if bn_data is not None:
            from tfigkd.models.batchnorm import PreciseBatchNorm

            # First, so that without validation data its epoch-end re-estimation
            # still precedes the checkpoint.
            cbs.insert(0, PreciseBatchNorm(bn_data))
        if tensorboard_dir:
            cbs.append(keras.callbacks.TensorBoard(tensorboard_dir, write_graph=False))
        try:
            with synced_batchnorm(model):
                model.fit(distributable(train_data(state["epoch"], epochs - state["epoch"])),
                          validation_data=distributable(val_ds), epochs=epochs,
                          initial_epoch=state["epoch"], steps_per_epoch=steps_per_epoch,
                          callbacks=cbs + list(callbacks), verbose=verbose, shuffle=False)
        except BaseException:
            # Interrupted: the last checkpoint and its state.json still land
            # (they are complete and consistent); the first error is the one raised.
            epoch_state.writer.join(raise_error=False)
            raise
    if state["best"] is None or (isinstance(state["best"], float) and math.isnan(state["best"])):
        raise RuntimeError(f"Training produced no valid {monitor}.")
    best_weights = state.get("best_weights")
    if best_weights and (trained or not os.path.exists(best_path)):
        # The best epoch's weights -> the best model file (also after a kill
        # between the last epoch and this save). The model ends in that state.
        model.load_weights(os.path.join(work_dir, best_weights))
        save_best(model, best_path)
    elif not best_weights and not os.path.exists(best_path):
        # A state written before best checkpoints were kept, whose best model
        # file is gone: the last epoch is all there is.
        model.load_weights(os.path.join(work_dir, state["weights"]))
        save_best(model, best_path)
    return state


def _seed_generators(model):
    """Keras ``SeedGenerator``s of the model's layers (Dropout, noise), in a stable order."""
    gens = []
    for layer in model._flatten_layers(include_self=True, recursive=True):
        gens.extend(getattr(layer, "_seed_generators", []) or [])
    return gens


def _seed_states(model):
    return [[int(v) for v in keras.ops.convert_to_numpy(g.state.value)]
            for g in _seed_generators(model)]


def _restore_seed_states(model, states):
    if not states:
        return
    gens = _seed_generators(model)
    if len(gens) != len(states):
        raise UserError(f"The checkpoint holds {len(states)} random-state entries but the "
                        f"model has {len(gens)}; it belongs to another architecture.")
    for g, st in zip(gens, states):
        g.state.assign(keras.ops.convert_to_tensor(st, dtype=g.state.dtype))
