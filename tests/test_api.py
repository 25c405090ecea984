import subprocess
import sys

import pytest

from tfigkd.testing import ROOT, tiny_run_config


def test_import_is_light_and_names_resolve():
    code = ("import sys, tfigkd; assert 'tensorflow' not in sys.modules; "
            "tfigkd.run, tfigkd.Distiller, tfigkd.integrated_gradients, tfigkd.load_config, "
            "tfigkd.ablate, tfigkd.IGOverlay, tfigkd.export_model, tfigkd.models.resnet8, "
            "tfigkd.callbacks.IntegratedGradientsCallback, tfigkd.callbacks.ForStudent, "
            "tfigkd.overlay_dataset, tfigkd.AttentionTransfer; "
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_load_config_from_path_dict_and_object(toy_npz, tiny_yaml):
    import tfigkd

    a = tfigkd.load_config(tiny_yaml, ["student.seeds=[0,1]"])
    d = tiny_run_config(toy_npz)
    b = tfigkd.load_config(d, ["student.seeds=[0,1]"])
    assert a == b and a.student.seeds == [0, 1]
    assert "seeds" not in d["student"]  # the caller's dict is not modified
    c = tfigkd.load_config(a, ["student.alpha=0.3"])
    assert c.student.alpha == 0.3 and a.student.alpha != 0.3
    with pytest.raises(tfigkd.UserError, match="student.alpha: 3.0 is out of range"):
        tfigkd.load_config(a, ["student.alpha=3.0"])
    with pytest.raises(AttributeError):
        tfigkd.no_such_thing
