"""Image folders (one sub-folder per class) and plain NumPy arrays."""

from __future__ import annotations

import os

import numpy as np

from tfigkd.data.images import decode_folders, list_class_folders
from tfigkd.data.reading import reading
from tfigkd.errors import UserError


def load_image_folder(path, image_size=None, resize="stretch", color=None, cache_dir=None,
                      workers=0, progress=True):
    """Loads ``path/<class>/*.png`` (or ``path/train/<class>`` + ``path/test/<class>``).

    Images of any size and colour mode are brought to one (``image_size``,
    ``resize``, ``color``), decoded in parallel into an on-disk uint8 cache
    that later runs map instead of decoding (``tfigkd.data.images``).

    Args:
        path: Root folder.
        image_size: Target (H, W); None when all images share one size.
        resize: "stretch", "crop" or "pad".
        color: "rgb", "grayscale", or None when all images share one mode.
        cache_dir: Where the decoded cache lives (None: ``images.cache_root``).
        workers: Decoder threads (0: the cores, at most 8).
        progress: Show progress bars.

    Returns:
        ``(x_train, y_train, x_test, y_test, class_names)``; ``x_test`` is None
        when there is no ``test/`` folder (the caller carves a test split).
        Images are read-only memory-mapped uint8 arrays.
    """
    path = os.path.expanduser(path)
    train, test = os.path.join(path, "train"), os.path.join(path, "test")
    opts = dict(image_size=image_size, resize=resize, color=color, cache_dir=cache_dir,
                workers=workers, progress=progress)
    if os.path.isdir(train) and os.path.isdir(test):
        classes = list_class_folders(train)[2]
        test_classes = list_class_folders(test)[2]
        if test_classes != classes:
            raise UserError(f"{path}: train/ classes {classes} differ from test/ "
                            f"classes {test_classes}.")
        (x, y, _), (xt, yt, _) = decode_folders([train, test], **opts)
        return x, y, xt, yt, classes
    [(x, y, classes)] = decode_folders([path], **opts)
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
