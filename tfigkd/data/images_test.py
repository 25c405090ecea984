import json
import os

import numpy as np
import pytest
from PIL import Image

from tfigkd.config import DataConfig
from tfigkd.data import images, load_splits
from tfigkd.errors import UserError
from tfigkd.testing import write_npz


def mixed_folder(root, n=3):
    """Class folders whose images differ in size (8..20 px) and mode (L, RGB, RGBA, P, I;16)."""
    rng = np.random.default_rng(0)
    modes = ["L", "RGB", "RGBA", "P", "I;16"]
    k = 0
    for c in ("cat", "dog"):
        os.makedirs(root / c, exist_ok=True)
        for i in range(n):
            h, w = 8 + 3 * (k % 5), 20 - 2 * (k % 4)
            rgb = rng.integers(0, 255, (h, w, 3), np.uint8)
            mode = modes[k % len(modes)]
            if mode == "I;16":
                im = Image.fromarray(rgb[..., 0].astype(np.uint16) * 257)
            else:
                im = Image.fromarray(rgb).convert(mode)
            im.save(root / c / f"{i}.png")
            k += 1
    return root


def test_fit_image_policies():
    # 20 wide x 10 high: black border columns 0-4 and 15-19, white centre.
    arr = np.zeros((10, 20), np.uint8)
    arr[:, 5:15] = 255
    im = Image.fromarray(arr)
    crop = np.asarray(images.fit_image(im, (10, 10), "crop"))
    np.testing.assert_array_equal(crop, 255)  # the centre square only
    pad = np.asarray(images.fit_image(Image.fromarray(np.full((10, 20), 255, np.uint8)),
                                      (10, 10), "pad"))
    assert pad.shape == (10, 10)
    np.testing.assert_array_equal(pad[2:7], 255)  # 10x5 letterboxed at rows 2..6
    np.testing.assert_array_equal(pad[[0, 1, 7, 8, 9]], 0)
    stretch = np.asarray(images.fit_image(im, (10, 10), "stretch"))
    assert stretch.shape == (10, 10) and stretch[:, 0].max() < 128 and stretch[:, 5].min() > 128
    assert images.fit_image(im, (10, 20), "pad") is im  # already the size


@pytest.mark.parametrize("resize", images.RESIZE_POLICIES)
@pytest.mark.parametrize("color,channels", [("rgb", 3), ("grayscale", 1)])
def test_mixed_folder_to_one_size_and_mode(tmp_path, resize, color, channels):
    root = mixed_folder(tmp_path / "imgs")
    [(x, y, classes)] = images.decode_folders([str(root)], image_size=[12, 10], resize=resize,
                                              color=color, cache_dir=tmp_path / "c",
                                              progress=False)
    assert x.shape == (6, 12, 10, channels) and x.dtype == np.uint8
    assert classes == ["cat", "dog"] and list(y) == [0, 0, 0, 1, 1, 1]
    # Each cached image equals that file decoded on its own with the same policy.
    mode = "RGB" if channels == 3 else "L"
    im = Image.open(root / "dog" / "0.png")  # a palette image
    assert im.mode == "P"
    want = np.asarray(images.fit_image(im.convert(mode), (12, 10), resize))
    np.testing.assert_array_equal(x[3], want.reshape(12, 10, channels))
    # 16-bit grey is scaled to 8 bits (not clipped at 255).
    im = Image.open(root / "dog" / "1.png")
    grey = Image.fromarray((np.asarray(im) / 257).round().astype(np.uint8))
    want = np.asarray(images.fit_image(grey.convert(mode), (12, 10), resize))
    np.testing.assert_array_equal(x[4], want.reshape(12, 10, channels))


def test_mixed_folder_needs_size_and_color(tmp_path):
    root = mixed_folder(tmp_path / "imgs")
    with pytest.raises(UserError, match=r"share one size unless data.image_size"):
        images.decode_folders([str(root)], cache_dir=tmp_path / "c", progress=False)
    with pytest.raises(UserError, match=r"share one colour mode unless data.color"):
        images.decode_folders([str(root)], image_size=[8, 8], cache_dir=tmp_path / "c",
                              progress=False)


def test_cache_reused_refused_and_rebuilt(tmp_path, monkeypatch, caplog):
    root = mixed_folder(tmp_path / "imgs")
    calls = []
    real = images._decode
    monkeypatch.setattr(images, "_decode", lambda *a: calls.append(a[0]) or real(*a))

    def load(**kw):
        opts = dict(image_size=[8, 8], color="rgb", cache_dir=tmp_path / "c", progress=False)
        [(x, _, _)] = images.decode_folders([str(root)], **{**opts, **kw})
        return x

    first = np.array(load())
    assert len(calls) == 6
    again = load()
    assert len(calls) == 6, "the second run decoded again instead of using the cache"
    assert isinstance(again, np.memmap)
    np.testing.assert_array_equal(again, first)
    load(image_size=[9, 8])  # another size: another cache, decoded again
    assert len(calls) == 12
    load(resize="pad")
    assert len(calls) == 18
    # A cache whose record does not match is refused and rebuilt.
    entry = images.FolderCache(str(root), *images.list_class_folders(str(root)),
                               {"image_size": [8, 8], "resize": "stretch", "color": "rgb"},
                               tmp_path / "c")
    meta = json.loads(open(entry.meta_path).read())
    meta["shape"] = [6, 8, 8, 1]
    open(entry.meta_path, "w").write(json.dumps(meta))
    with caplog.at_level("WARNING"):
        np.testing.assert_array_equal(load(), first)
    assert len(calls) == 24 and "Refusing the image cache" in caplog.text
    # A changed file changes the key.
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "cat" / "0.png")
    x = load()
    assert len(calls) == 30 and x[0].max() == 0


def test_corrupt_files_named(tmp_path):
    root = mixed_folder(tmp_path / "imgs")
    opts = dict(image_size=[8, 8], color="rgb", cache_dir=tmp_path / "c", progress=False,
                workers=2)
    data = (root / "cat" / "1.png").read_bytes()
    (root / "cat" / "1.png").write_bytes(data[: len(data) // 2])  # header intact
    with pytest.raises(UserError, match=r"cat/1.png cannot be read as an image"):
        images.decode_folders([str(root)], **opts)
    for bad in ("dog/2.png", "cat/2.png"):
        (root / bad).write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    with pytest.raises(UserError) as e:
        images.decode_folders([str(root)], **opts)
    msg = str(e.value)
    # The first in file order is named, the others counted; one line.
    assert "\n" not in msg and "cannot be read as an image" in msg
    assert msg.startswith(str(root / "cat" / "2.png")) and "(1 more unreadable files)" in msg
    assert not os.path.exists(tmp_path / "c" / "images") or not any(
        f.endswith("meta.json") for _, _, fs in os.walk(tmp_path / "c") for f in fs)


def test_array_sources_resized_and_coloured(tmp_path):
    path = write_npz(str(tmp_path / "toy.npz"), n_train=40, n_test=20)
    base = load_splits(DataConfig(source="numpy", path=path))
    assert base.input_shape == (12, 12, 1)
    sd = load_splits(DataConfig(source="numpy", path=path, image_size=[16, 20], color="rgb",
                                resize="pad"))
    assert sd.input_shape == (16, 20, 3) and sd.test.x.shape[1:] == (16, 20, 3)
    np.testing.assert_array_equal(sd.train.index, base.train.index)
    np.testing.assert_array_equal(sd.train.x[..., 0], sd.train.x[..., 2])  # grey copied
    # pad: 12x12 -> 16x16 centred, 2 black columns each side.
    assert sd.train.x[:, :, :2].max() == 0 and sd.train.x[:, :, -2:].max() == 0
    assert sd.fingerprint != base.fingerprint


def test_crop_and_pad_any_aspect_ratio():
    # Float rounding once pushed the crop box outside the image (found by the benchmark).
    for w in range(64, 200, 3):
        for h in range(64, 200, 11):
            im = Image.new("RGB", (w, h))
            for size in ((64, 64), (160, 160), (17, 29)):
                for policy in ("crop", "pad"):
                    assert images.fit_image(im, size, policy).size == (size[1], size[0])
