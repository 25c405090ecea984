"""Image folders (one sub-folder per class) and plain NumPy arrays."""

from __future__ import annotations

import os

import numpy as np

from tfigkd.data.reading import reading
from tfigkd.errors import UserError

_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def _read_class_folders(root):
    from PIL import Image

    classes = sorted(d for d in os.listdir(root)
                     if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    if not classes:
        raise UserError(f"{root}: no class sub-folders found; expected "
                        f"{root}/<class_name>/<image files>.")
    images, labels, shape = [], [], None
    for label, name in enumerate(classes):
        folder = os.path.join(root, name)
        files = sorted(fn for fn in os.listdir(folder) if fn.lower().endswith(_EXTS))
        if not files:
            raise UserError(f"{folder}: class folder {name!r} holds no images "
                            f"({', '.join(_EXTS)}); add images or remove the folder.")
        for fn in files:
            path = os.path.join(folder, fn)
            with reading(path, "an image", "delete or replace the file"):
                with Image.open(path) as im:
                    arr = np.asarray(im.convert("L" if im.mode in ("L", "1", "I;16") else "RGB"))
            if arr.ndim == 2:
                arr = arr[..., None]
            if shape is None:
                shape = arr.shape
            elif arr.shape != shape:
                raise UserError(
                    f"{path} is {arr.shape} but earlier images are {shape}; all "
                    "images must share one size and colour mode. Resize them first.")
            images.append(arr)
            labels.append(label)
    if not images:
        raise UserError(f"{root}: the class folders contain no images ({', '.join(_EXTS)}).")
    return np.stack(images).astype(np.uint8), np.asarray(labels, np.int64), classes


def load_image_folder(path):
    """Loads ``path/<class>/*.png`` (or ``path/train/<class>`` + ``path/test/<class>``).

    Args:
        path: Root folder.

    Returns:
        ``(x_train, y_train, x_test, y_test, class_names)``; ``x_test`` is None
        when there is no ``test/`` folder (the caller carves a test split).
    """
    path = os.path.expanduser(path)
    train, test = os.path.join(path, "train"), os.path.join(path, "test")
    if os.path.isdir(train) and os.path.isdir(test):
        x, y, classes = _read_class_folders(train)
        xt, yt, test_classes = _read_class_folders(test)
        if test_classes != classes:
            raise UserError(f"{path}: train/ classes {classes} differ from test/ "
                            f"classes {test_classes}.")
        return x, y, xt, yt, classes
    x, y, classes = _read_class_folders(path)
    return x, y, None, None, classes


def load_numpy(path):
    """Loads an ``.npz`` holding ``x_train, y_train, x_test, y_test`` [``class_names``].

    Images must be uint8 NHWC (NHW is accepted as one channel).
    """
    with reading(path, "an .npz archive of arrays", "write it with np.savez(path, "
                 "x_train=..., y_train=..., x_test=..., y_test=...)"):
        return _load_npz(os.path.expanduser(path))


def _load_npz(path):
    z = np.load(path, allow_pickle=False)
    if not hasattr(z, "files"):
        raise UserError(f"{path} is a single .npy array, not an .npz archive; save with "
                        "np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...).")
    with z:
        missing = {"x_train", "y_train", "x_test", "y_test"} - set(z.files)
        if missing:
            raise UserError(f"{path}: missing arrays {sorted(missing)}; save with "
                            "np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...).")
        arrays = [z[k] for k in ("x_train", "y_train", "x_test", "y_test")]
        classes = [str(c) for c in z["class_names"]] if "class_names" in z.files else None
    return (*arrays, classes)
