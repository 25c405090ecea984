"""Shared set-up of the notebooks in this folder: paths, sizes, data, logging.

``TFIGKD_FAST=1`` (CI sets it) shrinks every notebook to a smoke run of
seconds; without it each runs at the sizes it states, in a few minutes on a
2-core CPU. Outputs go to ``runs/notebooks/`` (git-ignored) unless
``TFIGKD_NOTEBOOK_OUT`` names another folder.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAST = os.environ.get("TFIGKD_FAST", "0") not in ("", "0")
OUT = Path(os.environ.get("TFIGKD_NOTEBOOK_OUT", ROOT / "runs" / "notebooks"))
OUT.mkdir(parents=True, exist_ok=True)

# tfigkd reports progress through logging: INFO shows the stages.
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", force=True)
for noisy in ("absl", "tensorflow", "h5py", "matplotlib"):
    logging.getLogger(noisy).setLevel(logging.WARNING)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if os.environ.pop("TF_USE_LEGACY_KERAS", None):
    # Set by importing tensorflow-model-optimization; it turns tf.keras into
    # tf_keras, which tf-explain's callbacks would then mix with Keras 3 models.
    logging.getLogger("notebook").warning("Ignoring TF_USE_LEGACY_KERAS: these notebooks use Keras 3.")


def sizes(full, fast):
    """``fast`` under TFIGKD_FAST=1, else ``full``."""
    return fast if FAST else full


def fashion_mnist_source():
    """Config overrides for the data: Fashion-MNIST if installed, else a stand-in.

    Fashion-MNIST comes from Debian's ``dataset-fashion-mnist`` package (or
    any folder set as ``data.path``). Where it is missing, a synthetic
    28x28x1, 10-class set is written instead, so the notebook still runs.
    """
    from tfigkd.data.sources import load_fashion_mnist

    try:
        load_fashion_mnist()
        return ["data.source=fashion_mnist"]
    except FileNotFoundError:
        from tfigkd.testing import write_npz

        path = write_npz(str(OUT / "synthetic_28x28.npz"), n_train=3000, n_test=1000,
                         shape=(28, 28, 1), num_classes=10)
        logging.getLogger("notebook").warning(
            "Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist); "
            "using synthetic stand-in data from %s.", path)
        return ["data.source=numpy", f"data.path={path}"]


def load_data(n_train, n_test, seed=0):
    """``SplitData`` of Fashion-MNIST (or the stand-in): a stratified subset."""
    import tfigkd
    from tfigkd.data.sources import load_splits

    cfg = tfigkd.load_config(ROOT / "configs" / "quickstart.yaml",
                             fashion_mnist_source() + [f"data.train_subset={n_train}",
                                                       f"data.test_subset={n_test}",
                                                       f"data.seed={seed}"])
    return load_splits(cfg.data)


def show_table(rows, columns=None):
    """Displays a list of dicts as a table (a DataFrame when pandas is installed)."""
    from IPython.display import Markdown, display

    if not rows:
        return display(Markdown("*(no rows)*"))
    columns = columns or list(rows[0])
    try:
        import pandas as pd

        return display(pd.DataFrame(rows)[columns])
    except ImportError:
        def fmt(v):
            return f"{v:.4g}" if isinstance(v, float) else str(v)

        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
        return display(Markdown("\n".join(lines)))
