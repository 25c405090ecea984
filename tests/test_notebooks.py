"""The notebooks in notebooks/ run top to bottom (TFIGKD_FAST=1 sizes).

Each runs in a fresh Jupyter kernel of this environment (nbclient, as
nbmake does), from the notebooks folder, so a notebook that breaks when
the API changes fails here. ``make_notebooks.py`` is their source; the
committed ``.ipynb`` files must match it and carry no outputs.
"""

import importlib.util
import os
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def test_the_five_notebooks_exist_and_match_their_source(tmp_path):
    assert NAMES == ["01_quickstart", "02_integrated_gradients", "03_distill_with_fit",
                     "04_ablation_and_statistics", "05_deploy"]
    spec = importlib.util.spec_from_file_location("make_notebooks",
                                                  NOTEBOOKS / "make_notebooks.py")
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    for name in NAMES:
        nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        want = [(kind, src) for kind, src in maker.NOTEBOOKS[name]]
        got = [("md" if c.cell_type == "markdown" else "code", c.source) for c in nb.cells]
        assert got == want, f"{name}.ipynb differs from make_notebooks.py: re-run it"
        assert all(not c.get("outputs") and c.get("execution_count") is None
                   for c in nb.cells if c.cell_type == "code"), f"{name}: strip outputs"


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs(name, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("TFIGKD_FAST", "1")
    monkeypatch.setenv("TFIGKD_NOTEBOOK_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    # Importing tensorflow-model-optimization (other tests do) sets
    # TF_USE_LEGACY_KERAS=1 in this process; a kernel inheriting it would get
    # tf_keras as tf.keras, unlike a user's Jupyter.
    monkeypatch.delenv("TF_USE_LEGACY_KERAS", raising=False)
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()  # raises CellExecutionError with the failing cell and traceback
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    assert os.path.isdir(tmp_path / "out")  # it put its outputs where it was told
