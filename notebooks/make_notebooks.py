"""Writes the notebooks of this folder from the cell lists below (outputs stripped).

The ``.ipynb`` files are what users open; this script is how they are kept
consistent. Edit a notebook here, then ``python notebooks/make_notebooks.py``.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
SETUP = """\
import nbsetup  # paths, TFIGKD_FAST sizes, logging (see notebooks/nbsetup.py)
from nbsetup import FAST, OUT, ROOT, sizes, show_table
import tfigkd
print("fast mode" if FAST else "full mode", "| outputs in", OUT)"""

NOTEBOOKS = {}

NOTEBOOKS["01_quickstart"] = [
    ("md", """\
# 01 · Quickstart: the whole method through the Python API

Teacher → Integrated Gradients maps → students in the modes `student`, `kd`,
`ig`, `kd_ig` → int8 TFLite, on Fashion-MNIST, with the same functions the
`tfigkd` command line uses (`tfigkd.load_config`, `tfigkd.run`).

**Sizes.** Full mode (a few minutes on a 2-core CPU): 2,000 training images
(1,800 train + 200 validation), 2,000 test images, a MobileNetV2 teacher for
3 epochs, IG with 8 Gauss-Legendre steps, a compact `ds_cnn` student for 3 epochs
per mode. `TFIGKD_FAST=1`: 300 images, 1 epoch, a small teacher, two modes.
These sizes show the mechanics, not the method's accuracy; the README's
main job and ablation give real numbers."""),
    ("code", SETUP),
    ("code", """\
overrides = nbsetup.fashion_mnist_source() + [
    f"data.train_subset={sizes(2000, 300)}", f"data.test_subset={sizes(2000, 300)}",
    f"teacher.train.epochs={sizes(3, 1)}", "teacher.train.verbose=0",
    f"ig.n_steps={sizes(8, 4)}",
    "student.model.name=ds_cnn", "student.model.kwargs={filters: 32, blocks: 4}",
    f"student.train.epochs={sizes(3, 1)}", "student.train.verbose=0",
    f"student.modes={sizes(['student', 'kd', 'ig', 'kd_ig'], ['student', 'kd_ig'])}",
    f"export.calibration_images={sizes(256, 32)}",
]
if FAST:  # a small teacher: the smoke run is about wiring, not accuracy
    overrides += ["teacher.model.name=ds_cnn", "teacher.model.kwargs={filters: 16, blocks: 3}"]
cfg = tfigkd.load_config(ROOT / "configs" / "quickstart.yaml", overrides)
print(cfg.teacher.model, cfg.student.model, cfg.student.modes, sep="\\n")"""),
    ("code", """\
summary = tfigkd.run(cfg, OUT / "01_quickstart", verbose=0)   # re-running resumes / reuses
print(f"teacher test accuracy {summary['teacher']['test_accuracy']:.4f}; "
      f"wall time {summary['wall_seconds_this_run']:.0f} s")
show_table(summary["models"], ["mode", "seed", "trainable_params", "macs", "val_accuracy",
                                "test_accuracy"])"""),
    ("md", "The best student on **validation** is exported to int8 and checked in LiteRT:"),
    ("code", """\
print("best student:", summary["best_student"])
{k: v for k, v in (summary["int8"] or {}).items() if not isinstance(v, (dict, list))}"""),
    ("code", """\
from IPython.display import Image, display
for png in sorted((OUT / "01_quickstart" / "plots").glob("*.png")):
    print(png.name); display(Image(filename=str(png)))"""),
    ("md", """\
The same run from a shell is `tfigkd run configs/quickstart.yaml --out runs/qs --set ...`;
`report.md` in the run folder holds this table and these plots."""),
]

NOTEBOOKS["02_integrated_gradients"] = [
    ("md", """\
# 02 · Integrated Gradients: maps, completeness, baselines, and tf-explain

IG attributes a class score to input pixels by integrating the gradient
along the straight path from a baseline x' to the image x:
IG_i = (x_i − x'_i) · ∫ ∂F(x' + a(x − x'))/∂x_i da. *Completeness*: the
attributions add up to F(x) − F(x'); how far they miss measures the
quadrature error.

**Sizes.** Full: a `ds_cnn` teacher trained 3 epochs on 6,000 Fashion-MNIST
images, 16 test images explained. Fast: 600 images, 1 epoch, 8 images."""),
    ("code", SETUP),
    ("code", """\
import keras, numpy as np
import matplotlib.pyplot as plt
from tfigkd.attribution.integrated_gradients import ig_map
from tfigkd.callbacks import attribution_panels

splits = nbsetup.load_data(sizes(6000, 600), sizes(1000, 200))
x_tr, y_tr = splits.train.x / 255.0, splits.train.y
keras.utils.set_random_seed(0)
teacher = tfigkd.models.build_model("ds_cnn", splits.input_shape, splits.num_classes,
                                    filters=48, blocks=4)
teacher.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])
teacher.fit(x_tr, y_tr, batch_size=64, epochs=sizes(3, 1), verbose=0)
x, y = splits.test.x[:sizes(16, 8)] / 255.0, splits.test.y[:sizes(16, 8)]
print("test accuracy", teacher.evaluate(splits.test.x / 255.0, splits.test.y, verbose=0)[1])"""),
    ("code", """\
attr, delta = tfigkd.integrated_gradients(teacher, x, y, n_steps=64, return_delta=True)
maps = ig_map(attr)                       # sum over channels of |IG|: the overlay's map
panels = attribution_panels(x, maps)      # [image | map | overlay]
fig, axes = plt.subplots(1, 4, figsize=(12, 3))
for ax, p, label in zip(axes, panels, y):
    ax.imshow(p); ax.set_title(splits.class_names[label]); ax.axis("off")"""),
    ("md", "### Completeness error against the number of steps, per quadrature rule"),
    ("code", """\
steps = [2, 4, 8, 16, 32] + ([] if FAST else [64, 128])
rows = []
for method in ("gausslegendre", "riemann_middle", "riemann_right", "trapezoid"):
    for n in steps:
        a, d = tfigkd.integrated_gradients(teacher, x, y, n_steps=n, method=method,
                                           return_delta=True)
        change = a.reshape(len(a), -1).sum(1) + d
        rows.append({"method": method, "n_steps": n,
                     "median_rel_error": float(np.median(np.abs(d) / np.abs(change)))})
show_table(rows)
for method in sorted({r["method"] for r in rows}):
    r = [q for q in rows if q["method"] == method]
    plt.loglog([q["n_steps"] for q in r], [q["median_rel_error"] for q in r], "o-", label=method)
plt.xlabel("steps"); plt.ylabel("median relative completeness error"); plt.legend();"""),
    ("md", """\
### Baselines
The baseline decides what "absence of signal" means; the maps change with it."""),
    ("code", """\
fig, axes = plt.subplots(1, 4, figsize=(12, 3))
for ax, base in zip(axes, ["zeros", "blur", "uniform", "black"]):
    m = ig_map(tfigkd.integrated_gradients(teacher, x[:1], y[:1], baseline=base, n_steps=32))
    ax.imshow(m[0], cmap="inferno"); ax.set_title(base); ax.axis("off")"""),
    ("md", """\
### tf-explain's IntegratedGradients omits the (x − x') factor
tf-explain 0.3.1 averages the path gradients but never multiplies by
(x − baseline) (its issue #128), so its "attributions" do not add up to the
score change. Multiplying by x (the baseline is zero) recovers ours."""),
    ("code", """\
import tensorflow as tf
from tf_explain.core.integrated_gradients import IntegratedGradients as TfxIG

n = 32
# Its static methods return raw values: the path images (zero baseline), then
# the path-averaged gradients.
theirs = np.stack([TfxIG.get_integrated_gradients(
    tf.constant(TfxIG.generate_interpolations(np.asarray(xi[None], np.float32), n), tf.float32),
    teacher, int(c), n).numpy()[0] for xi, c in zip(x[:4], y[:4])])
ours, d = tfigkd.integrated_gradients(teacher, x[:4], y[:4], n_steps=n, method="riemann_right",
                                      return_delta=True)
change = ours.reshape(4, -1).sum(1) + d
show_table([{"image": i, "F(x)-F(x')": float(change[i]),
             "sum(ours)": float(ours[i].sum()), "sum(tf-explain)": float(theirs[i].sum()),
             "sum(tf-explain * x)": float((theirs[i] * x[i]).sum())} for i in range(4)])"""),
]

NOTEBOOKS["03_distill_with_fit"] = [
    ("md", """\
# 03 · Distilling with plain `model.fit`

A Keras user's path, no config files: any Keras teacher and student,
`tfigkd.Distiller` (a `keras.Model` that overrides `compute_loss`, so
`compile(metrics=...)`, `sample_weight` and callbacks work as usual), the IG
overlay through `tfigkd.overlay_dataset`, and callbacks that log IG maps
(ours) and Grad-CAM (tf-explain's) of the student to TensorBoard.

**Sizes.** Full: 6,000 Fashion-MNIST images, teacher 3 epochs, student 3
epochs. Fast: 300 images, 1 epoch each."""),
    ("code", SETUP),
    ("code", """\
import keras, numpy as np
from tfigkd.attribution.integrated_gradients import ig_map

splits = nbsetup.load_data(sizes(6000, 300), sizes(2000, 200))
x_tr, y_tr = splits.train.x, splits.train.y
x_val, y_val = splits.val.x / 255.0, splits.val.y
keras.utils.set_random_seed(0)
teacher = tfigkd.models.build_model("ds_cnn", splits.input_shape, 10, filters=sizes(64, 24),
                                    blocks=4)
teacher.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])
teacher.fit(x_tr / 255.0, y_tr, batch_size=64, epochs=sizes(3, 1), verbose=0)
print("teacher val accuracy", teacher.evaluate(x_val, y_val, verbose=0)[1])"""),
    ("md", "IG maps of the teacher for every training image (its own label), then the overlay dataset:"),
    ("code", """\
maps = np.concatenate([
    ig_map(tfigkd.integrated_gradients(teacher, x_tr[i:i + 256] / 255.0, y_tr[i:i + 256],
                                       n_steps=sizes(16, 4)))
    for i in range(0, len(x_tr), 256)])
train_ds = tfigkd.overlay_dataset(x_tr, y_tr, maps, batch_size=64, p=0.1, seed=0)
maps.shape"""),
    ("code", """\
from tf_explain.callbacks.grad_cam import GradCAMCallback
from tfigkd.callbacks import ForStudent, IntegratedGradientsCallback

student = tfigkd.models.build_model("ds_cnn", splits.input_shape, 10, filters=16, blocks=3)
distiller = tfigkd.Distiller(student, teacher, alpha=0.5, temperature=4.0)
distiller.compile(optimizer=keras.optimizers.Adam(1e-3),
                  metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(2, name="top2")])
logs = OUT / "03_distill_with_fit" / "logs"
callbacks = [
    IntegratedGradientsCallback((x_val[:8], y_val[:8]), log_dir=str(logs / "ig"), n_steps=16),
    ForStudent(GradCAMCallback((x_val[:8], None), class_index=0, layer_name="features_2",
                               output_dir=str(logs / "gradcam"))),
]
hist = distiller.fit(train_ds, validation_data=(x_val, y_val), epochs=sizes(3, 1),
                     callbacks=callbacks, verbose=0)
show_table([{"epoch": e + 1, **{k: v[e] for k, v in hist.history.items()}}
            for e in range(len(hist.history["loss"]))])
print("view the maps: tensorboard --logdir", logs)"""),
    ("md", """\
`distiller.student` is the model to save and export:
`distiller.student.save("student.keras")`. The `kd` configuration is Keras'
own `keras.distillation.Distiller` with `student_loss_weight = 1 - alpha` and
`LogitsDistillation(temperature=T)`; the two give the same loss on a batch:"""),
    ("code", """\
xb, yb = x_val[:64], y_val[:64]
keras_d = keras.distillation.Distiller(
    teacher, student, keras.distillation.LogitsDistillation(temperature=4.0),
    student_loss_weight=0.5)
keras_d.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
logits = student(xb)
print(float(distiller.compute_loss(x=xb, y=yb, y_pred=logits)),
      float(keras_d.compute_loss(x=xb, y=yb, y_pred=logits)))"""),
]

NOTEBOOKS["04_ablation_and_statistics"] = [
    ("md", """\
# 04 · Reading an ablation: does IG help?

`tfigkd ablate` trains every mode with the same seeds (same initialisation,
data order and augmentation per seed) and compares modes **pairwise** with
a t-test, a Wilcoxon signed-rank test, bootstrap confidence intervals,
Cohen's d and a Holm correction over the family of comparisons. This
notebook reads the committed Fashion-MNIST result
(`benchmarks/results/ablation_fashion_mnist/`, 10 seeds) and redoes one
comparison by hand with scipy, then runs a tiny ablation of its own."""),
    ("code", SETUP),
    ("code", """\
import json
from IPython.display import Image, Markdown, display

res = json.loads((ROOT / "benchmarks/results/ablation_fashion_mnist/ablation.json").read_text())
print(len(res["runs"]), "runs;", sorted({r["mode"] for r in res["runs"]}))
show_table([c for c in res["comparisons"] if c["metric"] == "test_accuracy"],
           ["a", "b", "n", "mean_diff", "ci_low", "ci_high", "t_p", "wilcoxon_p", "holm_p",
            "cohen_d"])"""),
    ("code", """\
for png in ("ablation_accuracy.png", "ablation_differences.png"):
    display(Image(filename=str(ROOT / "benchmarks/results/ablation_fashion_mnist" / png)))"""),
    ("md", "One comparison by hand — `kd_ig` against `student`, paired by seed:"),
    ("code", """\
import numpy as np
from scipy import stats

acc = {(r["mode"], r["seed"]): r["test_accuracy"] for r in res["runs"] if r["subset"] is None}
seeds = sorted({s for m, s in acc if m == "kd_ig"} & {s for m, s in acc if m == "student"})
diff = np.array([acc["kd_ig", s] - acc["student", s] for s in seeds])
print(f"n={len(diff)} mean diff {diff.mean():+.4f}; paired t p={stats.ttest_1samp(diff, 0).pvalue:.3g}; "
      f"Wilcoxon p={stats.wilcoxon(diff).pvalue:.3g}")
ci = stats.bootstrap((diff,), np.mean, confidence_level=0.95, random_state=0).confidence_interval
print(f"bootstrap 95% CI of the mean difference: [{ci.low:+.4f}, {ci.high:+.4f}]")"""),
    ("md", """\
### A tiny ablation of your own
Three seeds (two in fast mode) of two modes on a few hundred images: far too small to detect
anything (the report says so), but it shows the calls and the files."""),
    ("code", """\
overrides = nbsetup.fashion_mnist_source() + [
    f"data.train_subset={sizes(1000, 120)}", f"data.test_subset={sizes(1000, 100)}",
    "teacher.model.name=ds_cnn", "teacher.model.kwargs={filters: 16, blocks: 3}",
    f"teacher.train.epochs={sizes(2, 1)}", "teacher.train.verbose=0", "ig.n_steps=4",
    "student.model.name=ds_cnn", "student.model.kwargs={filters: 8, blocks: 3}",
    f"student.train.epochs={sizes(2, 1)}", "student.train.verbose=0",
    f"ablation.agreement_images={sizes(100, 8)}", f"ablation.bootstrap_resamples={sizes(9999, 200)}",
]
cfg = tfigkd.load_config(ROOT / "configs" / "quickstart.yaml", overrides)
report = tfigkd.ablate(cfg, OUT / "04_ablation", seeds=range(sizes(3, 2)), modes=["student", "kd_ig"])
display(Markdown((OUT / "04_ablation" / "ablation.md").read_text()))"""),
]

NOTEBOOKS["05_deploy"] = [
    ("md", """\
# 05 · Deploying: phone, microcontroller, Coral

`tfigkd.export_model` converts a Keras model for a target profile
(`tflite/phone.yaml`, `mcu.yaml`, `coral.yaml`), quantises it, and checks the
file in the real interpreters: LiteRT for every target, TensorFlow Lite
Micro (with the smallest tensor arena) and a C array for `mcu`. This
notebook trains a small student, exports it, runs the files, and times
them. See also `docs/deploy.md` and the guides in `tflite/`.

**Sizes.** Full: a `ds_cnn` student trained 3 epochs on 6,000 images, checks
on 2,000 test images. Fast: 600 images, 1 epoch, 300 test images."""),
    ("code", SETUP),
    ("code", """\
import keras, numpy as np

splits = nbsetup.load_data(sizes(6000, 600), sizes(2000, 300))
keras.utils.set_random_seed(0)
student = tfigkd.models.build_model("ds_cnn", splits.input_shape, 10, filters=32, blocks=4)
student.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])
student.fit(splits.train.x / 255.0, splits.train.y, batch_size=64, epochs=sizes(3, 1), verbose=0)
folder = OUT / "05_deploy"; folder.mkdir(parents=True, exist_ok=True)
student.save(folder / "student.keras")
print("Keras test accuracy", student.evaluate(splits.test.x / 255.0, splits.test.y, verbose=0)[1])"""),
    ("code", """\
results = {}
for target, quant in [("phone", "fp32"), ("phone", "int8"), ("mcu", "int8")]:
    results[target, quant] = tfigkd.export_model(
        str(folder / "student.keras"), target, splits, quant=quant, out_dir=str(folder / "export"),
        input_norm="unit", calibration_images=sizes(256, 32), micro_images=sizes(200, 20),
        verbose=False)
sorted(p.name for p in (folder / "export").iterdir())"""),
    ("md", """\
Each export carries its checks (accuracy in LiteRT and agreement with Keras,
TFLite Micro for `mcu`, whether MediaPipe's `ImageClassifier` loads the phone
files) and its input/output contract:"""),
    ("code", """\
show_table([{"target": t, "quant": q, "bytes": m["bytes"],
             "input": f"{m['input']['dtype']} {m['input']['shape']}",
             "output": f"{m['output']['dtype']} {m['output']['shape']}",
             "litert_accuracy": m["checks"]["litert"]["accuracy"],
             "agreement_with_keras": m["checks"]["litert"]["agreement_with_keras"],
             "tflm_arena_bytes": (m["checks"].get("tflm") or {}).get("arena_bytes")}
            for (t, q), m in results.items()])"""),
    ("md", """\
Running a file yourself in LiteRT (`ai_edge_litert`): the `mcu` file takes
int8 inputs, so images in [0, 1] are quantised with the input's scale and
zero point (phone files take pixels as they come from the camera; see
`tflite/ANDROID.md`):"""),
    ("code", """\
from ai_edge_litert.interpreter import Interpreter

path = results["mcu", "int8"]["path"]
interp = Interpreter(model_path=path); interp.allocate_tensors()
inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
print(inp["dtype"], inp["shape"], inp["quantization"], "->", out["dtype"], out["shape"])
scale, zero = inp["quantization"]
correct = 0
for img, label in zip(splits.test.x[:100], splits.test.y[:100]):
    x = np.clip(np.round(img[None] / 255.0 / scale + zero), -128, 127).astype(np.int8)
    interp.set_tensor(inp["index"], x); interp.invoke()
    correct += int(interp.get_tensor(out["index"]).argmax() == label)
print("LiteRT top-1 on 100 test images:", correct / 100)"""),
    ("md", "The microcontroller build: the C array and the smallest TFLite Micro arena that runs it:"),
    ("code", """\
for p in sorted((folder / "export").glob("*model_data*")):
    print(p.name, p.stat().st_size, "bytes")
    if p.suffix == ".h":
        print(p.read_text()[:600])
results["mcu", "int8"]["checks"]["tflm"]"""),
    ("md", "Latency in LiteRT (median of repeated invokes after warm-up, one thread):"),
    ("code", """\
from tfigkd.bench.latency import benchmark_tflite
models = [{"name": f"{t}_{q}", "path": m["path"]} for (t, q), m in results.items()]
rows = benchmark_tflite(models, batches=(1,), threads=(1,), runs=sizes(200, 20),
                        warmup=sizes(20, 3), rounds=sizes(10, 2), progress=False)
show_table(rows, ["name", "bytes", "median_ms", "p90_ms", "iqr_ms", "runs"])"""),
]


def build():
    for name, cells in NOTEBOOKS.items():
        nb = new_notebook(cells=[new_markdown_cell(src) if kind == "md" else new_code_cell(src)
                                 for kind, src in cells])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        nb.metadata["language_info"] = {"name": "python"}
        nbformat.write(nb, HERE / f"{name}.ipynb")


if __name__ == "__main__":
    build()
