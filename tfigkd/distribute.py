"""Training and batched inference under ``tf.distribute`` (``train.distribute``).

The one place that turns a recipe's ``train.distribute`` into a TensorFlow
strategy and says what a worker may write (docs/scaling.md):

- ``none``: the default strategy (one device).
- ``mirrored``: ``MirroredStrategy`` over this machine's GPUs, or over its
  logical CPU devices when it has none (``TFIGKD_CPU_DEVICES=2`` splits the
  CPU in two, to try a distributed recipe without GPUs).
- ``multi_worker``: ``MultiWorkerMirroredStrategy`` over the machines named
  in ``TF_CONFIG``; every worker runs the same command.

A replicated run is the same recipe as a single-device one, not a new one:
``train.batch_size`` stays the *global* batch (each replica gets
batch / replicas rows, split by ``tf.distribute`` from the global batches of
``make_dataset``, so every worker sees the same index-aligned maps, logits
and view numbers), the learning-rate schedule counts global steps, each
replica's loss is its local mean divided by the replicas (Keras' reduction,
so the summed gradient is the global batch's), and BatchNorm normalises with
the global batch's statistics (``synced_batchnorm``). The loss trajectory
therefore matches a single-device run up to float summation order
(tests/test_distribute.py). The setting is not part of a run's recipe: a run
started on one device may resume on several.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile

from tfigkd.errors import UserError

log = logging.getLogger(__name__)

KINDS = ("none", "mirrored", "multi_worker")
# Logical CPU devices to split this process's CPU into (tests, and trying a
# distributed recipe on a laptop); read before TensorFlow initialises.
CPU_DEVICES_ENV = "TFIGKD_CPU_DEVICES"

_strategies: dict = {}


def configure_cpu_devices(count=None):
    """Splits the CPU into ``count`` logical devices (default: ``$TFIGKD_CPU_DEVICES``).

    Must run before TensorFlow initialises its devices (before the first op);
    ``prepare`` does it when a config is loaded. Initialises nothing itself.
    """
    import tensorflow as tf

    count = int(count or os.environ.get(CPU_DEVICES_ENV) or 0)
    cpu = tf.config.list_physical_devices("CPU")[0]
    if count > 1 and len(tf.config.get_logical_device_configuration(cpu) or []) != count:
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * count)
        except RuntimeError:
            raise UserError(f"{CPU_DEVICES_ENV}={count} came too late: TensorFlow had already "
                            "initialised its devices; set it in the environment of the "
                            "command.") from None


def prepare(cfg):
    """Sets up devices and strategies a config asks for, before any TensorFlow op.

    ``MultiWorkerMirroredStrategy`` and logical CPU devices must exist before
    TensorFlow initialises; the CLI calls this right after loading a config.
    """
    configure_cpu_devices()
    for section in (cfg.teacher, cfg.student):
        if section.train.distribute == "multi_worker":
            strategy_for(section.train)


def local_devices():
    """This machine's devices a replica runs on: its GPUs, else its logical CPUs."""
    import tensorflow as tf

    configure_cpu_devices()
    return [d.name for d in (tf.config.list_logical_devices("GPU")
                             or tf.config.list_logical_devices("CPU"))]


def strategy_for(kind):
    """The ``tf.distribute.Strategy`` of a ``train.distribute`` setting (or a ``TrainConfig``).

    Strategies are created once per process and reused: TensorFlow allows
    one ``MultiWorkerMirroredStrategy`` per process, created before any op.

    Raises:
        UserError: An unknown kind, or ``multi_worker`` without ``TF_CONFIG``.
    """
    import tensorflow as tf

    kind = getattr(kind, "distribute", kind) or "none"
    if kind not in KINDS:
        raise UserError(f"train.distribute must be one of {', '.join(KINDS)}, got {kind!r}.")
    if kind == "none":
        return tf.distribute.get_strategy()
    if kind not in _strategies:
        if kind == "mirrored":
            _strategies[kind] = tf.distribute.MirroredStrategy(local_devices())
        else:
            cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster")
            if not cluster:
                raise UserError("train.distribute: multi_worker needs TF_CONFIG naming the "
                                "cluster and this worker's task (docs/scaling.md); use "
                                "mirrored for one machine.")
            configure_cpu_devices()
            _strategies[kind] = tf.distribute.MultiWorkerMirroredStrategy()
            _patch_keras_multi_worker()
        s = _strategies[kind]
        log.info("train.distribute %s: %d replicas.", kind, s.num_replicas_in_sync)
    return _strategies[kind]


def _patch_keras_multi_worker():
    """Two fixes without which Keras 3 ``fit`` fails under ``MultiWorkerMirroredStrategy``
    (keras-team/keras#20585, open in Keras 3.15):

    - before the first step Keras all-reduces a whole input batch (a nested
      structure ``strategy.reduce`` refuses) only to learn its shapes: a
      local replica's batch tells the same;
    - it averages each step's scalar logs over the workers with ``axis=0``,
      which a scalar does not have: they are averaged with ``axis=None``.

    Both patches act only when the strategy is a multi-worker one.
    """
    import tensorflow as tf
    from keras import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    if getattr(tf_trainer, "_tfigkd_patched", False):
        return
    tf_trainer._tfigkd_patched = True

    def multi_worker(strategy):
        return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)

    build = tf_trainer.TensorFlowTrainer._maybe_symbolic_build

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self.distribute_strategy
        if iterator is not None and self._distribute_strategy is not None \
                and multi_worker(strategy):
            for _, _, it in iterator:
                data_batch = tree.map_structure(
                    lambda v: (strategy.experimental_local_results(v)[0]
                               if isinstance(v, tf.distribute.DistributedValues) else v),
                    next(it))
                break
            iterator = None
        return build(self, iterator=iterator, data_batch=data_batch)

    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    reduce_per_replica = tf_trainer.reduce_per_replica

    def reduce_scalars(values, strategy, reduction):
        if multi_worker(strategy) and reduction in ("auto", "mean"):
            return tree.map_structure(
                lambda v: strategy.reduce("MEAN", v, axis=None if v.shape.rank == 0 else 0),
                values)
        return reduce_per_replica(values, strategy, reduction)

    tf_trainer.reduce_per_replica = reduce_scalars


def scope(kind):
    """``strategy_for(kind).scope()``: create models, optimizer and Distiller inside it."""
    return strategy_for(kind).scope()


def replicas(strategy=None):
    import tensorflow as tf

    return (strategy or tf.distribute.get_strategy()).num_replicas_in_sync


def worker_task(strategy=None):
    """(task_type, task_id) of this process in a multi-worker cluster, else ("chief", 0)."""
    import tensorflow as tf

    resolver = getattr(strategy or tf.distribute.get_strategy(), "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return "chief", 0
    return resolver.task_type, int(resolver.task_id or 0)


def is_chief(strategy=None):
    """Whether this process writes results: the chief, or worker 0 of a chief-less cluster."""
    task_type, task_id = worker_task(strategy)
    return task_type == "chief" or (task_type == "worker" and task_id == 0)


def worker_lock(folder, strategy=None):
    """The chief holds ``folder``'s lock; every other worker a lock of its own there.

    So a second chief (or a second copy of worker i) is refused as usual,
    while the workers of one cluster share the folder.
    """
    from tfigkd.lock import folder_lock

    if is_chief(strategy):
        return folder_lock(folder)
    task_type, task_id = worker_task(strategy)
    return folder_lock(folder, f".tfigkd-{task_type}-{task_id}.lock")


@contextlib.contextmanager
def worker_paths(strategy, work_dir, *paths):
    """Where this worker writes the resumable state and results of one ``fit``.

    The chief writes into ``work_dir`` and ``paths`` themselves. Every other
    worker checkpoints too (as TensorFlow's multi-worker guide asks) but into
    a private temporary folder, removed afterwards; it starts from a copy of
    the chief's state there, so a restarted cluster resumes every worker
    from the same epoch.

    Yields:
        (work_dir, *paths) to use on this worker.
    """
    if is_chief(strategy):
        yield (work_dir, *paths)
        return
    from tfigkd.io import read_json

    task_type, task_id = worker_task(strategy)
    tmp = tempfile.mkdtemp(prefix=f"tfigkd-{task_type}-{task_id}-")
    try:
        private = os.path.join(tmp, "work")
        os.makedirs(private)
        state_path = os.path.join(work_dir, "state.json")
        if os.path.exists(state_path):
            state = read_json(state_path)
            names = {"state.json", "recipe.json", state.get("weights"), state.get("best_weights")}
            for name in names - {None}:
                if os.path.exists(os.path.join(work_dir, name)):
                    shutil.copy(os.path.join(work_dir, name), private)
        yield (private, *(os.path.join(tmp, os.path.basename(p)) for p in paths))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def synced_batchnorm(model):
    """BatchNorm over the global batch while ``model`` trains on several replicas.

    Keras' ``BatchNormalization(synchronized=True)`` all-reduces the batch
    statistics, so a replica normalises like the single-device run of the
    same global batch. The flag is set for the duration of ``fit`` only:
    the saved models keep the layers' own configuration.
    """
    from tfigkd.models.batchnorm import batchnorm_layers

    layers = batchnorm_layers(model) if replicas(model.distribute_strategy) > 1 else []
    old = [layer.synchronized for layer in layers]
    for layer in layers:
        layer.synchronized = True
    try:
        yield
    finally:
        for layer, flag in zip(layers, old):
            layer.synchronized = flag


def distributable(dataset):
    """``dataset`` for ``fit`` under a strategy: sharded by data, not by file.

    Every worker builds the same global batches (``make_dataset`` is a pure
    function of seed, epoch and batch) and ``tf.distribute`` hands each
    replica its slice of each batch, with the example's index, view number
    and maps travelling in the same rows. Sharding by file would give the
    workers different examples but no global batch; the input pipeline's
    cost is small beside the model's.
    """
    import tensorflow as tf

    if dataset is None or not isinstance(dataset, tf.data.Dataset) or replicas() == 1:
        return dataset
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def weights_digest(model):
    """SHA-256 of a model's weights (every array's bytes, in order): equal on every worker."""
    import hashlib

    import numpy as np

    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


def worker_result(state, model):
    """What a non-chief worker returns from a training stage (it writes nothing)."""
    task_type, task_id = worker_task(model.distribute_strategy)
    return {"worker": f"{task_type}:{task_id}", "val_accuracy": state["best"],
            "best_epoch": state["best_epoch"], "history": state["history"],
            "weights_sha256": weights_digest(model)}


def inference_strategy(kind):
    """The strategy batched teacher inference (IG, logit and per-view caches) spreads over.

    The replicas of this machine when ``kind`` (the teacher's
    ``train.distribute``) is not ``none`` and it has several devices, else
    None. Spreading over machines is ``--shard i/N``.
    """
    kind = getattr(kind, "distribute", kind) or "none"
    if kind == "none":
        return None
    local = strategy_for("mirrored")  # the one local strategy: training's, when mirrored
    return local if local.num_replicas_in_sync > 1 else None


def in_scope(model, strategy):
    """A copy of ``model`` whose variables live on the replicas of ``strategy`` (a strategy
    or a ``train.distribute`` kind); ``model`` itself on one replica, None for None."""
    import tensorflow as tf

    if strategy is not None and not isinstance(strategy, tf.distribute.Strategy):
        strategy = strategy_for(strategy)
    if model is None or strategy is None or replicas(strategy) == 1:
        return model
    with strategy.scope():
        copy = type(model).from_config(model.get_config())
        copy.set_weights(model.get_weights())
    copy.trainable = model.trainable
    return copy


def replicated(fn, strategy):
    """``fn(batch) -> rows`` with each batch split over ``strategy``'s local replicas.

    ``fn`` must be per-example (inference): replica i gets the i-th
    contiguous slice of the batch, and the rows come back in batch order.
    ``batch`` is a tensor or a dict of tensors; None or one replica: ``fn``.
    """
    if strategy is None or replicas(strategy) == 1:
        return fn
    import numpy as np
    import tensorflow as tf

    n_rep = replicas(strategy)

    @tf.function(reduce_retracing=True)
    def step(parts):
        return strategy.run(fn, args=(parts,))

    def call(batch):
        size = int(tf.shape(tf.nest.flatten(batch)[0])[0])
        if size < n_rep:  # no replica may get an empty batch (BatchNorm fails on one)
            return fn(batch)
        bounds = np.linspace(0, size, n_rep + 1).astype(int)

        def part(ctx):
            i = ctx.replica_id_in_sync_group
            return tf.nest.map_structure(lambda t: t[bounds[i]:bounds[i + 1]], batch)

        out = step(strategy.experimental_distribute_values_from_function(part))
        return tf.concat(strategy.experimental_local_results(out), axis=0)

    return call
