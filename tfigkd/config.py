"""Experiment configuration: one YAML file = one experiment.

Configs are parsed into dataclasses and validated up front, so a typo or a
missing data path fails in the first second with a message that names the
key, the problem and the fix, instead of an hour into a run. All problems
found are reported together.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from tfigkd.models.teacher_io import NORMS
# ConfigError, apply_overrides: importable from here, as before they moved.
from tfigkd.schema import (ConfigError, apply_overrides, from_dict,  # noqa: F401
                           read_yaml_mapping)
from tfigkd.config_checks import check_paths
from tfigkd.tuning.space import check_space


def _choices(*values, doc=""):
    return {"choices": values, "doc": doc}


def _range(lo=None, hi=None):
    return {"range": (lo, hi)}


@dataclass
class DataConfig:
    """Where the images come from and how they are split."""
    source: str = field(default="fashion_mnist", metadata=_choices(
        "fashion_mnist", "cifar10_tfds", "cifar10_archive", "image_folder", "numpy", "tfds"))
    # Fashion-MNIST: folder of IDX .gz files (None: search the usual places).
    # cifar10_archive: the official .tar.gz or its extracted folder.
    # image_folder: folder with class sub-folders (or train/ and test/).
    # numpy: an .npz with x_train, y_train, x_test, y_test [, class_names].
    # tfds: any tensorflow-datasets image classification set, named in data.name.
    path: Optional[str] = None
    name: Optional[str] = None        # tfds: e.g. cifar10, imagenette/160px, oxford_flowers102
    download: bool = False            # allow tfds / Keras to download
    data_dir: Optional[str] = None    # tfds data_dir
    val_fraction: float = field(default=0.1, metadata=_range(0.0, 0.9))
    test_fraction: float = field(default=0.2, metadata=_range(0.0, 0.9))  # image_folder without test/
    train_subset: Optional[int] = field(default=None, metadata=_range(1, None))
    test_subset: Optional[int] = field(default=None, metadata=_range(1, None))
    seed: int = 0
    mean: Optional[list[float]] = None  # None: the dataset's known/computed mean
    std: Optional[list[float]] = None
    # [H, W] every image is brought to (None: the data's own size, which must be uniform).
    image_size: Optional[list[int]] = None
    # Unlabelled training images (an .npz with an array "x" or "x_unlabeled", or a
    # folder of images at any depth): added to the training split with label -1,
    # they get only the distillation term (docs/method.md, "Consistent KD").
    unlabeled: Optional[str] = None
    # Keep the labels of only this many (stratified) training images and treat the
    # rest of the training split as unlabelled: the few-labels setting of a study.
    labeled_subset: Optional[int] = field(default=None, metadata=_range(1, None))
    # stretch: ignore the aspect ratio; crop: centre-crop to it; pad: letterbox with zeros.
    resize: str = field(default="stretch", metadata=_choices("stretch", "crop", "pad"))
    color: Optional[str] = field(default=None, metadata=_choices("rgb", "grayscale"))
    cache_dir: Optional[str] = None   # decoded image-folder cache (None: ~/.cache/tfigkd)
    workers: int = field(default=0, metadata=_range(0, None))  # decoder threads (0: cores, <= 8)
    # Image folders decoded larger than this stream from the disk cache (None: RAM / 4;
    # 0: always stream).
    memory_budget_mb: Optional[float] = field(default=None, metadata=_range(0.0, None))


@dataclass
class ModelConfig:
    """A registered model name and the keyword arguments of its builder."""
    name: str = "mobilenet_v2_cifar"
    kwargs: dict = field(default_factory=dict)


@dataclass
class OptimizerConfig:
    name: str = field(default="sgd", metadata=_choices("sgd", "adam"))
    lr: float = field(default=0.01, metadata=_range(0.0, None))
    momentum: float = field(default=0.9, metadata=_range(0.0, 1.0))
    nesterov: bool = True
    weight_decay: float = field(default=0.0, metadata=_range(0.0, None))
    schedule: str = field(default="warmup_cosine", metadata=_choices(
        "constant", "cosine", "warmup_cosine"))
    warmup_fraction: float = field(default=0.3, metadata=_range(0.0, 1.0))


@dataclass
class AugmentConfig:
    crop_pad: int = field(default=4, metadata=_range(0, None))
    flip: bool = True


# TrainConfig keys that say how a run is executed, not what it computes: left out
# of the recipes that key reuse and resume (a run started on one device may
# resume on several).
RUNTIME_KEYS = ("verbose", "distribute")


@dataclass
class TrainConfig:
    """A training recipe (docs/method.md sections 1 and 2)."""
    epochs: int = field(default=100, metadata=_range(1, None))
    batch_size: int = field(default=256, metadata=_range(1, None))
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # "dataset": (x/255 - mean) / std, as the teacher; "unit": x/255, as students;
    # a teacher trained elsewhere: "raw" (0-255, Keras Applications with built-in
    # preprocessing), "minus_one_one" (x/127.5 - 1), "imagenet" (ImageNet mean/std).
    input_norm: str = field(default="dataset", metadata=_choices(*NORMS))
    seed: int = 0
    verbose: int = field(default=1, metadata=_range(0, 2))
    # BatchNorm statistics re-estimated on this many training images before each
    # validation (tfigkd/models/batchnorm.py); 0 keeps the moving averages. The sample
    # also sets the statistics of the saved (and exported) model. 256 costs a quarter
    # of the forward passes but moves validation accuracy by 0.3-0.4 points on average
    # (1,024: 0.2-0.25) from a 4,096-image estimate, and in the main job 8 of 9 saved
    # models lost test accuracy with it, 0.28 points on average (one KD seed 1 point);
    # see docs/method.md. Part of every recorded run recipe.
    precise_bn_images: int = field(default=1024, metadata=_range(0, None))
    # none: one device; mirrored: this machine's GPUs (or logical CPUs); multi_worker:
    # the machines of TF_CONFIG. Same recipe, same global batch (docs/scaling.md).
    distribute: str = field(default="none", metadata=_choices("none", "mirrored", "multi_worker"))


@dataclass
class TeacherConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # A trained teacher .keras to use instead of training one.
    path: Optional[str] = None
    # [H, W] the teacher sees (images resized to it; None: data.image_size).
    input_size: Optional[list[int]] = None


@dataclass
class IGConfig:
    """Integrated Gradients of the teacher (docs/method.md section 3)."""
    n_steps: int = field(default=128, metadata=_range(1, None))
    # nested_trapezoid: the rule whose points nest (fixed: n_steps intervals);
    # with adaptive, refinements reuse every point (docs/method.md).
    method: str = field(default="gausslegendre", metadata=_choices(
        "gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "trapezoid",
        "nested_trapezoid"))
    baseline: str = field(default="zeros", metadata=_choices("zeros", "black", "blur", "uniform"))
    output: str = field(default="logits", metadata=_choices("logits", "probabilities"))
    reduce: str = field(default="sum_abs", metadata=_choices("sum_abs", "abs_sum", "sum", "l2"))
    batch_size: int = field(default=32, metadata=_range(1, None))        # images per IG call
    internal_batch_size: int = field(default=512, metadata=_range(1, None))  # interpolations per pass
    shard_size: int = field(default=1000, metadata=_range(1, None))
    # Adaptive steps: start with start_steps and double, per image, until the
    # completeness error is <= rtol * |F(x) - F(x')| + atol, up to n_steps.
    # With method nested_trapezoid only the new points are computed, and only
    # in the start_steps panels that need them (both powers of two).
    adaptive: bool = False
    start_steps: int = field(default=8, metadata=_range(1, None))
    rtol: float = field(default=0.01, metadata=_range(0.0, None))
    atol: float = field(default=1e-4, metadata=_range(0.0, None))


# Every mode, derived from the registered overlay sources and loss terms (tfigkd/modes.py).
from tfigkd.modes import MODES  # noqa: E402


def _student_train():
    return TrainConfig(epochs=100, batch_size=64, input_norm="unit",
                       optimizer=OptimizerConfig(name="adam", lr=1e-3, schedule="constant",
                                                 momentum=0.0, nesterov=False))


@dataclass
class StudentConfig:
    """Student training and the ablation modes (docs/method.md sections 2, 4-6)."""
    model: ModelConfig = field(default_factory=lambda: ModelConfig(
        "truncated_student", {"blocks_removed": 5}))
    train: TrainConfig = field(default_factory=_student_train)
    modes: list[str] = field(default_factory=lambda: ["student", "kd", "ig", "kd_ig"])
    seeds: list[int] = field(default_factory=lambda: [0])
    alpha: float = field(default=0.01, metadata=_range(0.0, 1.0))
    temperature: float = field(default=2.5, metadata=_range(1e-6, None))
    gamma: float = field(default=0.8, metadata=_range(0.0, None))
    at_layers: list[list[str]] = field(default_factory=lambda: [["features_9", "features_9"]])
    # manual: use at_layers as given (checked before training); auto: pair the
    # deepest student and teacher blocks of each spatial size they share (of each
    # stride, input size / block size, when teacher.input_size differs from the data's).
    at_pairing: str = field(default="manual", metadata=_choices("manual", "auto"))
    p: float = field(default=0.1, metadata=_range(0.0, 1.0))
    exponent_range: list[float] = field(default_factory=lambda: [1.0, 2.0])
    overlay_weight: float = field(default=0.5, metadata=_range(0.0, 1.0))
    # Chosen on validation accuracy (quickstart, 3 seeds each: mean 0.7878 aligned vs
    # 0.7800 not; within noise, and aligned is what the method intends).
    align_geometry: bool = True
    # online: the teacher labels the exact view the student trains on, every step
    # (consistent KD); per_view: the same logits, computed once per view in batched
    # inference and stored (tfigkd.distill.view_cache); cached: the teacher's logits of
    # the un-augmented image, computed once (cheapest, and inconsistent with the view).
    teacher_mode: str = field(default="online", metadata=_choices("online", "per_view", "cached"))
    # Function matching (Beyer et al. 2022): mix pairs of training images; the teacher
    # labels the mixed image and the cross-entropy takes both labels weighted by the
    # mixing fraction. Applies to every mode of the run (so a plain student of the same
    # config is the "student + mixing" control).
    mix: str = field(default="none", metadata=_choices("none", "mixup", "cutmix"))
    mix_alpha: float = field(default=1.0, metadata=_range(1e-3, None))  # Beta(a, a) of the fraction
    # teacher_mode cached with many classes: keep only the teacher's k largest logits
    # per example (+ the log of the remaining mass); null: all of them (and runs
    # recorded before this key existed still match).
    logit_top_k: Optional[int] = field(default=None, metadata=_range(1, None))


@dataclass
class AblationConfig:
    """``tfigkd ablate``: Monte Carlo subsets, attribution agreement, statistics."""
    subsets: int = field(default=0, metadata=_range(0, None))  # 0: the whole training split
    subset_fraction: float = field(default=0.8, metadata=_range(0.05, 1.0))
    agreement_images: int = field(default=200, metadata=_range(0, None))  # 0: skip agreement
    agreement_top_k: float = field(default=0.1, metadata=_range(0.001, 1.0))
    bootstrap_resamples: int = field(default=9999, metadata=_range(100, None))


@dataclass
class SweepConfig:
    """``tfigkd sweep``: the students the ablation is repeated over (README, "Sweep")."""
    # Truncation depths k: truncated_student with blocks_removed=k (the paper's compression sweep).
    truncation_depths: list[int] = field(default_factory=lambda: [5, 11])
    # Preset names (tfigkd.models.PRESETS, e.g. ds_cnn_m) or registered model names.
    designs: list[str] = field(default_factory=list)
    latency_runs: int = field(default=200, metadata=_range(5, None))  # LiteRT int8 invokes per design


@dataclass
class ControlsConfig:
    """Settings of the overlay sources other than IG (modes kd_gradcam, kd_noise, ...)."""
    # Grad-CAM layer of the teacher (None: its last layer with a spatial output).
    gradcam_layer: Optional[str] = None
    gradcam_guided: bool = True          # tf-explain's guided gradients
    smoothgrad_samples: int = field(default=16, metadata=_range(1, None))
    smoothgrad_noise: float = field(default=0.15, metadata=_range(0.0, None))  # std, [0,1] pixels
    smoothgrad_seed: int = 0
    noise_sigma: float = field(default=2.0, metadata=_range(0.0, None))  # blur of the noise maps


@dataclass
class TuneConfig:
    """``tfigkd tune``: search space and study (README, "Tuning")."""
    mode: str = field(default="kd_ig", metadata=_choices(*MODES))
    seed: int = 0                      # training seed of every trial
    # Config key -> {low, high[, log, step, type: int]} or {choices: [...]};
    # checked by tfigkd.tuning.space.check_space.
    space: dict = field(default_factory=dict)
    # ["val_accuracy"], or val_accuracy then costs for a Pareto front: "macs", and
    # "latency_ms" (int8 LiteRT latency, batch 1, 1 thread, measured once per design).
    objectives: list[str] = field(default_factory=lambda: ["val_accuracy"])
    latency_runs: int = field(default=100, metadata=_range(10, None))  # timed invokes per design
    # Values the first trials take ({key: value} each), e.g. the current defaults.
    enqueue: list[dict] = field(default_factory=list)
    sampler: str = field(default="tpe", metadata=_choices("tpe", "grid", "random"))
    sampler_seed: Optional[int] = 0
    trials: int = field(default=20, metadata=_range(1, None))   # in total, over all workers
    timeout_s: Optional[float] = field(default=None, metadata=_range(1, None))
    pruner: str = field(default="median", metadata=_choices("none", "median", "hyperband"))
    pruner_startup_trials: int = field(default=3, metadata=_range(0, None))
    pruner_warmup_epochs: int = field(default=1, metadata=_range(0, None))
    storage: Optional[str] = None      # an Optuna storage URL; None: sqlite in --out
    study: Optional[str] = None        # None: the config's name
    heartbeat_s: int = field(default=30, metadata=_range(1, None))
    grace_s: int = field(default=120, metadata=_range(2, None))  # then a silent trial is retried


@dataclass
class ExportConfig:
    """What ``tfigkd run`` ships: the best student (chosen on validation) as int8."""
    int8: bool = True
    calibration_images: int = field(default=256, metadata=_range(1, None))
    # Targets of the int8 export (tflite/<target>.yaml): phone, mcu, coral, or a profile .yaml.
    targets: list[str] = field(default_factory=lambda: ["phone"])
    # Time the int8 student against the teacher (fp32 and int8) in LiteRT.
    latency: bool = False
    latency_runs: int = field(default=200, metadata=_range(10, None))


@dataclass
class ExperimentConfig:
    """The whole experiment. Sections are added by later pipeline stages."""
    name: str = "experiment"
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    ig: IGConfig = field(default_factory=IGConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    ablation: AblationConfig = field(default_factory=AblationConfig)
    controls: ControlsConfig = field(default_factory=ControlsConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)


def config_from_dict(data: dict, source: str = "<dict>") -> ExperimentConfig:
    """Builds and validates an ``ExperimentConfig`` from a plain dict.

    Raises:
        ConfigError: Listing every unknown key, wrong type, bad value or
            missing path, each with how to fix it.
    """
    errors: list[str] = []
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got "
                          f"{type(data).__name__}.")
    cfg = from_dict(ExperimentConfig, data, "", errors)
    if not errors:
        check_paths(cfg, errors)
    if not errors and cfg.tune.space:
        check_space(cfg, errors)
    if len(errors) == 1:
        raise ConfigError(f"Invalid config {source}: {errors[0]}")
    if errors:
        raise ConfigError(f"Invalid config {source} ({len(errors)} problems):\n  - "
                          + "\n  - ".join(errors))
    return cfg


def load_config(path: str, overrides=None) -> ExperimentConfig:
    """Reads and validates a YAML experiment config.

    Args:
        path: Path of the YAML file.
        overrides: Optional ``["section.key=value"]`` strings applied on top.

    Returns:
        The validated ``ExperimentConfig``.

    Raises:
        ConfigError: If the file is missing, empty, not YAML, not a mapping, or invalid.
    """
    data = read_yaml_mapping(path)
    return config_from_dict(apply_overrides(data, overrides), source=path)


def as_config(config, overrides=None) -> ExperimentConfig:
    """An ``ExperimentConfig`` from a YAML path, a plain dict or a config object.

    Args:
        config: Path of a YAML file, a dict shaped like one, or an
            ``ExperimentConfig`` (copied, never modified).
        overrides: ``["section.key=value", ...]``, as ``--set`` on the command line.

    Returns:
        A validated ``ExperimentConfig``.

    Raises:
        ConfigError: Naming every invalid key and how to fix it.
    """
    if isinstance(config, ExperimentConfig):
        data = config_to_dict(config)
        return config_from_dict(apply_overrides(data, overrides), source="<config>")
    if isinstance(config, dict):
        return config_from_dict(apply_overrides(copy.deepcopy(config), overrides), source="<dict>")
    if dataclasses.is_dataclass(config):
        raise TypeError(f"expected an ExperimentConfig, got {type(config).__name__}")
    return load_config(str(config), overrides)


def config_to_dict(cfg: Any) -> dict:
    """The config as plain data (for JSON summaries and reproducibility)."""
    return dataclasses.asdict(cfg)
