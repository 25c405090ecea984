"""Cross-check against Captum, the maintained reference IG implementation.

Captum runs on PyTorch, so the same small CNN is built in both frameworks
with identical weights. Captum runs in a subprocess: TensorFlow and PyTorch
in one process fight over threads and protobuf versions.
"""

import subprocess
import sys
import textwrap

import keras
import numpy as np

from tfigkd.attribution import integrated_gradients

CAPTUM_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import torch
    from captum.attr import IntegratedGradients

    d = np.load(sys.argv[1])
    conv = torch.nn.Conv2d(3, 5, 3, padding=1)
    fc = torch.nn.Linear(5, 4)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(d["conv_k"].transpose(3, 2, 0, 1)))
        conv.bias.copy_(torch.from_numpy(d["conv_b"]))
        fc.weight.copy_(torch.from_numpy(d["fc_k"].T))
        fc.bias.copy_(torch.from_numpy(d["fc_b"]))

    def forward(x):
        return fc(torch.tanh(conv(x)).mean(dim=(2, 3)))

    x = torch.from_numpy(d["x"].transpose(0, 3, 1, 2)).double()
    base = torch.from_numpy(d["base"].transpose(0, 3, 1, 2)).double()
    conv.double(); fc.double()
    out = {}
    for method in ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "trapezoid"):
        attr, delta = IntegratedGradients(forward).attribute(
            x, baselines=base, target=torch.from_numpy(d["t"]), n_steps=int(d["n"]),
            method="riemann_trapezoid" if method == "trapezoid" else method,
            return_convergence_delta=True)
        out[method] = attr.detach().numpy().transpose(0, 2, 3, 1)
        out[method + "_delta"] = delta.detach().numpy()
    np.savez(sys.argv[2], **out)
""")


def test_matches_captum(tmp_path):
    keras.utils.set_random_seed(4)
    inp = keras.Input((6, 6, 3))
    conv = keras.layers.Conv2D(5, 3, padding="same", activation="tanh")
    fc = keras.layers.Dense(4)
    model = keras.Model(inp, fc(keras.layers.GlobalAveragePooling2D()(conv(inp))))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 6, 6, 3)).astype(np.float32)
    base = rng.normal(scale=0.3, size=(3, 6, 6, 3)).astype(np.float32)
    t, n = np.array([0, 3, 1]), 9
    np.savez(tmp_path / "in.npz", conv_k=conv.kernel.numpy(), conv_b=conv.bias.numpy(),
             fc_k=fc.kernel.numpy(), fc_b=fc.bias.numpy(), x=x, base=base, t=t, n=n)
    (tmp_path / "ref.py").write_text(CAPTUM_SCRIPT)
    proc = subprocess.run([sys.executable, str(tmp_path / "ref.py"), str(tmp_path / "in.npz"),
                           str(tmp_path / "out.npz")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ref = np.load(tmp_path / "out.npz")
    for method in ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "trapezoid"):
        ours, delta = integrated_gradients(model, x, t, baseline=base, n_steps=n, method=method,
                                           return_delta=True)
        expected = ref[method]
        if method == "trapezoid":
            # Captum's riemann_trapezoid weights are 1/n with halved ends: they
            # sum to (n-1)/n, not 1, so its attributions are short by that
            # factor. Ours are the textbook rule (weights 1/(n-1)), whose
            # completeness error is accordingly far smaller.
            expected = expected * n / (n - 1)
            assert np.abs(delta).max() < np.abs(ref[method + "_delta"]).min() / 10
        scale = np.abs(expected).max()
        np.testing.assert_allclose(ours, expected, atol=2e-5 * scale, rtol=1e-3, err_msg=method)
        if method != "trapezoid":
            # Captum's delta is sum(IG) - (F(x) - F(x')): the negative of ours.
            np.testing.assert_allclose(delta, -ref[method + "_delta"], atol=1e-4, err_msg=method)
