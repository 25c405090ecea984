"""tfigkd: knowledge distillation guided by Integrated Gradients for Keras 3.

The public API is imported lazily (``import tfigkd`` does not import
TensorFlow), so ``tfigkd --help`` stays fast::

    import tfigkd
    cfg = tfigkd.load_config("configs/quickstart.yaml", ["student.seeds=[0,1]"])
    summary = tfigkd.run(cfg, "runs/qs")
    report = tfigkd.ablate(cfg, "runs/ab", seeds=range(3), modes=["student", "kd_ig"])
"""

__version__ = "0.1.0"

# name -> (module, attribute)
_API = {
    "load_config": ("tfigkd.api", "load_config"),
    "run": ("tfigkd.experiments.pipeline", "run_pipeline"),
    "distill": ("tfigkd.experiments.distill", "distill"),
    "best_recipe": ("tfigkd.recipes", "best_recipe"),
    "train_teacher": ("tfigkd.experiments.teacher", "train_teacher"),
    "train_student": ("tfigkd.experiments.student", "train_student"),
    "prepare_plan": ("tfigkd.experiments.plan", "prepare_plan"),
    "plan_of": ("tfigkd.experiments.plan", "plan_of"),
    "RunPlan": ("tfigkd.experiments.plan", "RunPlan"),
    "Unit": ("tfigkd.experiments.plan", "Unit"),
    "precompute_ig": ("tfigkd.experiments.attribution", "precompute_ig"),
    "ablate": ("tfigkd.experiments.ablate", "ablate"),
    "sweep": ("tfigkd.experiments.sweep", "sweep"),
    "tune": ("tfigkd.experiments.tune", "tune"),
    "check_config": ("tfigkd.experiments.check", "check_buildable"),
    "student_table": ("tfigkd.bench.students", "student_table"),
    "export_model": ("tfigkd.export.exporter", "export_model"),
    "Distiller": ("tfigkd.distill.distiller", "Distiller"),
    "integrated_gradients": ("tfigkd.attribution.integrated_gradients", "integrated_gradients"),
    "IGOverlay": ("tfigkd.augment.ig_overlay", "IGOverlay"),
    "UserError": ("tfigkd.errors", "UserError"),
    "models": ("tfigkd.models", None),
    "callbacks": ("tfigkd.callbacks", None),
    "overlay_dataset": ("tfigkd.augment.ig_overlay", "overlay_dataset"),
    "AttentionTransfer": ("tfigkd.distill.losses", "AttentionTransfer"),
}

__all__ = ["__version__", *_API]


from tfigkd._lazy import lazy_attributes  # noqa: E402

# tfigkd keeps its own __dir__: the public names only (__all__), not its submodules.
__getattr__ = lazy_attributes(__name__, globals(), _API)[0]


def __dir__():
    return sorted(__all__)
