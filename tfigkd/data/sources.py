"""Loading a configured data source into train / validation / test splits."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import numpy as np

from tfigkd.data import cifar, folder, idx
from tfigkd.data.images import convert_arrays
from tfigkd.data.lazy import LazyRows, memory_budget_bytes
from tfigkd.data.split import Subset, fingerprint, stratified_split, stratified_subset
from tfigkd.errors import UserError

log = logging.getLogger(__name__)

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",
                      "~/.keras/datasets/fashion-mnist")
_FMNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# Per-dataset normalisation constants (docs/method.md section 1 for CIFAR-10).
KNOWN_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
}


@dataclass
class SplitData:
    """A dataset split three ways, with its normalisation and fingerprint."""
    name: str
    train: Subset
    val: Subset
    test: Subset
    class_names: list
    mean: tuple
    std: tuple
    fingerprint: str = field(default="")

    @property
    def input_shape(self):
        return tuple(int(d) for d in self.train.x.shape[1:])

    @property
    def num_classes(self):
        return len(self.class_names)

    def sizes(self):
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def _find_fmnist(path, download):
    def complete(d):
        d = os.path.expanduser(d)
        found = []
        for base in _FMNIST_FILES:
            for cand in (base + ".gz", base):
                if os.path.isfile(os.path.join(d, cand)):
                    found.append(os.path.join(d, cand))
                    break
        return found if len(found) == 4 else None

    candidates = [path] if path else list(FASHION_MNIST_DIRS)
    for d in candidates:
        files = complete(d)
        if files:
            return files
    if download and not path:
        import keras

        keras.datasets.fashion_mnist.load_data()  # caches to ~/.keras/datasets
        files = complete(FASHION_MNIST_DIRS[1])
        if files:
            return files
    raise FileNotFoundError(
        f"Fashion-MNIST IDX files not found in {', '.join(candidates)}. Install "
        "Debian's package (apt-get install dataset-fashion-mnist), set data.path "
        "to a folder holding train-images-idx3-ubyte.gz etc., or set "
        "data.download: true to let Keras download them.")


def load_fashion_mnist(path=None, download=False):
    """Loads Fashion-MNIST from its IDX files.

    Returns:
        ``(x_train, y_train, x_test, y_test, class_names)``, images (N, 28, 28, 1) uint8.
    """
    xtr, ytr, xte, yte = (idx.read_idx(f) for f in _find_fmnist(path, download))
    return (xtr[..., None], ytr.astype(np.int64), xte[..., None],
            yte.astype(np.int64), list(FASHION_MNIST_CLASSES))


def _load_raw(cfg):
    if cfg.source == "fashion_mnist":
        return "fashion_mnist", load_fashion_mnist(cfg.path, cfg.download)
    if cfg.source == "cifar10_archive":
        return "cifar10", cifar.load_cifar10_archive(cfg.path)
    if cfg.source == "cifar10_tfds":
        return "cifar10", cifar.load_cifar10_tfds(cfg.data_dir, cfg.download)
    if cfg.source == "tfds":
        from tfigkd.data.tfds_source import load_tfds

        return cfg.name.replace("/", "_"), load_tfds(
            cfg.name, cfg.data_dir, cfg.download, image_size=cfg.image_size, resize=cfg.resize,
            color=cfg.color, budget_bytes=memory_budget_bytes(cfg.memory_budget_mb),
            cache_dir=cfg.cache_dir)
    if cfg.source == "image_folder":
        return os.path.basename(os.path.normpath(cfg.path)), folder.load_image_folder(
            cfg.path, image_size=cfg.image_size, resize=cfg.resize, color=cfg.color,
            cache_dir=cfg.cache_dir, workers=cfg.workers)
    if cfg.source == "numpy":
        return os.path.splitext(os.path.basename(cfg.path))[0], folder.load_numpy(cfg.path)
    raise UserError(f"Unknown data source {cfg.source!r}.")


def _check_arrays(x, y, what):
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise UserError(f"{what} images must be (N, H, W[, C]); got shape {x.shape}.")
    if x.dtype != np.uint8:
        raise UserError(f"{what} images must be uint8 in [0, 255]; got {x.dtype}. "
                        "Convert with (x * 255).round().astype('uint8') if they are in [0, 1].")
    if len(x) == 0:
        raise UserError(f"{what} split holds no images; check the data source.")
    y = y.reshape(-1)
    if y.dtype.kind == "f" and np.all(y == np.round(y)):
        y = y.astype(np.int64)  # labels stored as floats, e.g. by pandas
    if y.dtype.kind not in "iu":
        raise UserError(f"{what} labels must be integer class numbers 0..K-1; got dtype {y.dtype}.")
    y = y.astype(np.int64)
    if len(x) != len(y):
        raise UserError(f"{what}: {len(x)} images but {len(y)} labels.")
    if y.min() < 0:
        raise UserError(f"{what} labels must be class numbers 0..K-1, but {int((y < 0).sum())} "
                        f"are negative (e.g. {int(y[y < 0][0])}); relabel them.")
    return x, y


def split_arrays(x_train, y_train, x_test, y_test, cfg, name="arrays", class_names=None,
                 stream=False):
    """Splits in-memory arrays as ``load_splits`` does (for notebooks and tests).

    Args:
        x_train, y_train: Training images (uint8 NHWC) and integer labels.
        x_test, y_test: Test arrays, or None to carve a stratified test split
            (``cfg.test_fraction``) from the training arrays.
        cfg: A ``DataConfig`` (fractions, subsets, seed, mean/std).
        name: Dataset name (selects known normalisation constants).
        class_names: Optional class names.
        stream: The images are ``np.load(..., mmap_mode="r")`` arrays to be
            read on demand (``tfigkd.data.lazy.LazyRows``), not copied.

    Returns:
        A ``SplitData``. Train/val indices refer to positions in ``x_train``;
        test indices to positions in ``x_test`` (or ``x_train`` when carved).
    """
    raw_train, raw_test = x_train, x_test
    x_train, y_train = _check_arrays(x_train, y_train, "training")
    if stream:
        x_train = LazyRows.from_memmap(raw_train)
    full = Subset(x_train, y_train, np.arange(len(y_train), dtype=np.int64))
    if x_test is None:
        keep, held = stratified_split(y_train, cfg.test_fraction, cfg.seed + 7919)
        test, full = full.take(held), full.take(keep)
    else:
        x_test, y_test = _check_arrays(x_test, y_test, "test")
        if stream:
            x_test = LazyRows.from_memmap(raw_test)
        test = Subset(x_test, y_test, np.arange(len(y_test), dtype=np.int64))
    if cfg.train_subset:
        # The subset is drawn before the validation carve, so the validation
        # split is a fraction of the data actually used.
        full = full.take(stratified_subset(full.y, cfg.train_subset, cfg.seed))
    keep, held = stratified_split(full.y, cfg.val_fraction, cfg.seed)
    train, val = full.take(keep), full.take(held)
    if cfg.test_subset:
        test = test.take(stratified_subset(test.y, cfg.test_subset, cfg.seed))
    if test.x.shape[1:] != full.x.shape[1:]:
        raise UserError(f"{name}: test images are {test.x.shape[1:]} but training images are "
                        f"{full.x.shape[1:]} (H, W, C); give both splits one size and colour mode.")
    n_classes = int(max(y_train.max(), test.y.max())) + 1
    if class_names is not None and n_classes > len(class_names):
        raise UserError(f"{name}: labels go up to {n_classes - 1} but there are only "
                        f"{len(class_names)} class names; labels must be 0..{len(class_names) - 1}.")
    class_names = list(class_names or [str(i) for i in range(n_classes)])
    if cfg.mean is not None:
        mean, std = tuple(cfg.mean), tuple(cfg.std)
    elif name in KNOWN_STATS and len(KNOWN_STATS[name][0]) == train.x.shape[-1]:
        mean, std = KNOWN_STATS[name]
    else:
        mean, std = _pixel_stats(train.x)
    if len(mean) != train.x.shape[-1]:
        raise UserError(f"data.mean has {len(mean)} values but the images have "
                        f"{train.x.shape[-1]} channels.")
    return SplitData(name, train, val, test, class_names, tuple(mean), tuple(std),
                     fingerprint(train))


def _pixel_stats(x):
    """Per-channel mean and std of uint8 images in [0, 1], rounded to 4 places.

    From per-channel histograms of the 256 pixel values (exact sums, no
    float copy of the images), in blocks of ~16 MB, so it also works on
    images streamed from the disk cache.
    """
    c = x.shape[-1]
    counts = np.zeros((c, 256), np.int64)
    step = max(1, (16 << 20) // max(1, int(np.prod(x.shape[1:]))))
    for s in range(0, len(x), step):
        block = np.asarray(x[s:s + step]).reshape(-1, c)
        for ch in range(c):
            counts[ch] += np.bincount(block[:, ch], minlength=256)
    v = np.arange(256, dtype=np.float64) / 255.0
    n = counts.sum(1)
    mean = counts @ v / n
    var = counts @ (v ** 2) / n - mean ** 2
    return tuple(mean.round(4)), tuple(np.sqrt(np.maximum(var, 0.0)).round(4))


def load_splits(cfg):
    """Loads the data source named in a ``DataConfig`` and splits it.

    The validation split is carved (stratified, seeded) from the training
    set, never from the test set. Every example keeps a stable index.

    Returns:
        A ``SplitData`` with its training-split fingerprint.
    """
    name, (xtr, ytr, xte, yte, classes) = _load_raw(cfg)
    stream = False
    if cfg.source in ("image_folder", "tfds"):
        size = xtr.nbytes + (0 if xte is None else xte.nbytes)
        budget = memory_budget_bytes(cfg.memory_budget_mb)
        # Folder images are always memory-mapped; tfds ones only when over the budget.
        stream = size > budget and isinstance(xtr, np.memmap)
        if stream:
            log.info("%s: %.0f MB of images exceed the %.0f MB memory budget; streaming them "
                     "from the disk cache.", cfg.path or cfg.name, size / 1e6, budget / 1e6)
    if cfg.source not in ("image_folder", "tfds") and (cfg.image_size or cfg.color):
        # Folders are brought to size while decoding; other sources here.
        xtr, xte = (None if x is None else convert_arrays(
            x, cfg.image_size, cfg.resize, cfg.color, cfg.workers) for x in (xtr, xte))
    try:
        splits = split_arrays(xtr, ytr, xte, yte, cfg, name=name, class_names=classes,
                              stream=stream)
    except UserError as e:
        # Name the data the user configured, not just the array.
        where = os.path.expanduser(cfg.path) if cfg.path else f"data.source {cfg.source}"
        raise UserError(f"{where}: {e}") from None
    from tfigkd.data.unlabeled import with_unlabeled

    return with_unlabeled(splits, cfg)
