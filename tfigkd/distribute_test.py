"""Batched inference and the loss share under a 2-replica MirroredStrategy (logical CPUs).

Logical devices must be set before TensorFlow initialises, so the checks run in a
fresh process; the cross-module training tests are in tests/test_distribute.py.
"""

import os
import subprocess
import sys
import textwrap

from tfigkd.config import RUNTIME_KEYS, TrainConfig
from tfigkd.distribute import KINDS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = textwrap.dedent("""
    import numpy as np, keras, tensorflow as tf
    from tfigkd.distribute import strategy_for, inference_strategy, replicated
    from tfigkd.attribution.integrated_gradients import IntegratedGradients
    from tfigkd.distill import Distiller
    from tfigkd.models import build_model

    s = strategy_for("mirrored")
    assert s.num_replicas_in_sync == 2 and inference_strategy("mirrored") is s
    assert inference_strategy("none") is None
    keras.utils.set_random_seed(0)
    teacher = build_model("truncated_student", (12, 12, 1), 3, blocks_removed=16)
    x = np.random.default_rng(0).uniform(size=(7, 12, 12, 1)).astype("float32")
    y = np.array([0, 1, 2, 0, 1, 2, 0])
    # Each batch split over the replicas, rows back in batch order (odd and tiny sizes too).
    ref = teacher(x, training=False).numpy()
    fn = replicated(lambda b: teacher(b["image"], training=False), s)
    for n in (7, 2, 1):
        np.testing.assert_allclose(np.asarray(fn({"image": x[:n]})), ref[:n], rtol=1e-5, atol=1e-6)
    # IG: interpolation chunks spread over the replicas give the same attributions.
    one = IntegratedGradients(teacher).attribute(x, y, n_steps=8, internal_batch_size=10)
    two = IntegratedGradients(teacher, strategy=s).attribute(x, y, n_steps=8,
                                                            internal_batch_size=10)
    np.testing.assert_allclose(two, one, rtol=1e-4, atol=1e-6)
    # The Distiller's training loss is each replica's share: summed over replicas it is
    # the global batch's mean.
    with s.scope():
        keras.utils.set_random_seed(1)
        student = build_model("truncated_student", (12, 12, 1), 3, blocks_removed=16)
        d = Distiller(student, teacher, alpha=0.5, temperature=2.0)
        d.compile(optimizer="adam")
    x8, y8 = np.concatenate([x, x[:1]]), np.concatenate([y, y[:1]])

    @tf.function
    def shares(xb, yb):
        def step(xr, yr):
            return d.compute_loss(xr, yr, d(xr, training=False), training=True)
        return s.run(step, args=(xb, yb))

    dist = s.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices((x8, y8)).batch(8))
    total = float(s.reduce("SUM", shares(*next(iter(dist))), axis=None))
    single = float(d.losses_for(x8, y8, training=False)[0])
    assert abs(total - single) < 1e-5 * max(1.0, abs(single)), (total, single)
    print("OK")
""")


def test_inference_and_loss_share_under_two_logical_cpus():
    env = dict(os.environ, TFIGKD_CPU_DEVICES="2", CUDA_VISIBLE_DEVICES="")
    code = "from tfigkd.distribute import configure_cpu_devices\n" \
           "configure_cpu_devices()\n" + SCRIPT
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       cwd=ROOT, timeout=300)
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-3000:]


def test_distribute_is_a_runtime_key_not_part_of_recipes():
    assert "distribute" in RUNTIME_KEYS and TrainConfig().distribute == "none"
    assert KINDS == ("none", "mirrored", "multi_worker")
