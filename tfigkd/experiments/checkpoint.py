"""Epoch checkpoints written off the training thread.

``save_weights`` (model and optimiser state) blocked every epoch's end for
about 60 ms on the main job's student: half of it Keras' walk over the
model's attributes, the rest reading the variables and writing HDF5. Here
the walk is recorded once per run (``checkpoint_plan``), the epoch's end
only copies the variables into host memory (``snapshot``, a few ms), and a
background thread writes the file, then the ``state.json`` that names it,
then tidies older checkpoints (``CheckpointWriter``). The file is the one
``save_weights`` writes (same groups, names, attributes, order and
values), so ``load_weights`` and the resume logic read it unchanged.

Crash safety is that of the synchronous version: ``state.json`` is written
only after its checkpoint file is complete and renamed into place, and at
most one write is in flight (the next snapshot and the end of training wait
for it), so a kill at any moment leaves a ``state.json`` naming a complete
checkpoint of an earlier epoch or of this one.
"""

from __future__ import annotations

import logging
import os
import threading

import keras
import numpy as np

from tfigkd.faults import fault_point
from tfigkd.io import atomic_path, write_json

log = logging.getLogger(__name__)


def _keras_store():
    # Keras' own HDF5 weight store and the walk that save_weights makes over the
    # model. Private API: the `..._match_save_weights` tests in checkpoint_test.py
    # fail if a Keras release changes what they do; a removed name makes
    # `checkpoint_plan` and `snapshot` fall back (see there).
    from keras.src.saving import saving_lib

    return saving_lib


class _Entry(dict):
    """One HDF5 group of the checkpoint: its path, metadata and what fills it, in order."""

    def __init__(self, path, metadata):
        super().__init__()
        self.path, self.metadata = path, metadata


class _Marker:
    """What ``Variable.numpy`` returns while a walk is recorded: the variable itself."""

    __slots__ = ("variable",)

    def __init__(self, variable):
        self.variable = variable


def _copy(variable):
    # A copy: on CPU a variable's numpy view can alias the buffer that the
    # next optimiser step updates in place.
    return np.array(keras.ops.convert_to_numpy(variable), copy=True)


class _CopyingEntry(_Entry):
    def __setitem__(self, key, value):
        super().__setitem__(key, _copy(value))


def _walk(model, record):
    """Keras' save_weights walk over ``model`` into a list of ``_Entry`` (no file).

    ``record``: keep the objects handed to the store as they are (variables,
    markers) instead of host copies of their values.
    """
    saving_lib = _keras_store()

    class Capture(saving_lib.H5IOStore):  # Keras checks the store's type
        def __init__(self):
            self.entries = []

        def __bool__(self):
            return True

        def make(self, path, metadata=None):
            self.entries.append((_Entry if record else _CopyingEntry)(path, metadata))
            return self.entries[-1]

    store = Capture()
    saving_lib._save_state(model, weights_store=store, assets_store=None, inner_path="",
                           visited_saveables=set())
    return store.entries


def checkpoint_plan(model):
    """The walk ``save_weights`` makes over ``model``, recorded once, or None.

    Keras' walk re-reads every object's attributes (tens of milliseconds
    for a small model, more than writing the file); a training run's
    structure is fixed, so the walk is recorded once, as which variable
    fills each array, and every snapshot only copies the variables. Layers
    hand the store their variables; the optimiser hands it
    ``variable.numpy()``, so while recording, ``numpy`` returns a marker
    naming its variable.

    Returns:
        A plan for ``snapshot``; None if some array is not a variable's
        value (a layer that stores a computed array) or this Keras' saving
        internals are not the ones this module knows: ``snapshot`` then
        walks the model every time.
    """
    real = keras.Variable.numpy
    try:
        keras.Variable.numpy = lambda variable: _Marker(variable)
        entries = _walk(model, record=True)
    except (ImportError, AttributeError, TypeError) as e:
        log.warning("Checkpoints are snapshotted with Keras' own walk: this Keras' saving "
                    "internals changed (%s).", e)
        return None
    finally:
        keras.Variable.numpy = real
    plan = []
    for entry in entries:
        sources = [(k, v.variable if isinstance(v, _Marker) else v) for k, v in entry.items()]
        if not all(isinstance(v, keras.Variable) for _, v in sources):
            return None
        plan.append((entry.path, entry.metadata, sources))
    return plan


def snapshot(model, plan=None):
    """Host copies of everything ``model.save_weights`` would write, or None.

    Args:
        model: A built Keras model (with its optimiser, if compiled).
        plan: ``checkpoint_plan(model)``, or None to walk the model now.

    Returns:
        An opaque snapshot for ``write_snapshot``; None if this Keras
        version's saving internals are not the ones this module knows (the
        caller then saves synchronously).
    """
    if plan is not None:
        out = []
        for path, metadata, sources in plan:
            entry = _Entry(path, metadata)
            for key, variable in sources:
                dict.__setitem__(entry, key, _copy(variable))
            out.append(entry)
        return out
    try:
        return _walk(model, record=False)
    except (ImportError, AttributeError, TypeError) as e:
        log.warning("Checkpoints are written synchronously: this Keras' saving internals "
                    "changed (%s).", e)
        return None


def write_snapshot(entries, path):
    """Writes a ``snapshot`` to ``path`` as the ``.weights.h5`` file ``save_weights`` writes."""
    saving_lib = _keras_store()
    store = saving_lib.H5IOStore(path, mode="w")
    try:
        for entry in entries:
            # Same calls in the same order as save_weights: a group with
            # metadata is made at once, one without only when it gets an array.
            store.make(entry.path, metadata=entry.metadata)
            for key, value in entry.items():
                store[key] = value
    finally:
        store.close()


class CheckpointWriter:
    """Writes one epoch's checkpoint and ``state.json`` in a background thread.

    Args:
        work_dir: The run's work folder (checkpoints and ``state.json``).
        state_name: File name of the state (``tfigkd.layout.WORK_STATE``).
    """

    def __init__(self, work_dir, state_name):
        self.work_dir, self.state_name = work_dir, state_name
        self._thread, self._error = None, None
        self._plan = (None, None)  # (model, checkpoint_plan(model))

    def submit(self, model, ckpt_name, state, stale):
        """Saves ``model`` as ``ckpt_name``, then ``state``, then deletes ``stale`` files.

        Waits for the previous write first (and raises its error). The
        model's values are copied before returning, so training may go on
        at once; ``state`` must not change afterwards (pass a copy).
        """
        self.join()
        if self._plan[0] is not model:
            self._plan = (model, checkpoint_plan(model))
        entries = snapshot(model, self._plan[1])
        path = os.path.join(self.work_dir, ckpt_name)
        if entries is None:
            with atomic_path(path) as tmp:
                model.save_weights(tmp)
        self._thread = threading.Thread(
            target=self._write, args=(entries, path, state, stale),
            name=f"tfigkd-checkpoint-{ckpt_name}", daemon=False)
        self._thread.start()

    def _write(self, entries, path, state, stale):
        try:
            if entries is not None:
                with atomic_path(path) as tmp:
                    write_snapshot(entries, tmp)
            # Only now that the checkpoint is complete may the state name it.
            write_json(os.path.join(self.work_dir, self.state_name), state)
            for name in stale:
                try:
                    os.unlink(os.path.join(self.work_dir, name))
                except FileNotFoundError:
                    pass
            fault_point("fit:epoch_end")
        except BaseException as e:  # re-raised in the training thread by join()
            self._error = e

    def join(self, raise_error=True):
        """Waits for the write in flight; raises its error unless ``raise_error`` is False."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if error is not None and raise_error:
            raise error
