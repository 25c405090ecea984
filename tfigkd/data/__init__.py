"""Data sources, deterministic splits, fingerprints and tf.data pipelines."""

from tfigkd.data.cifar import load_cifar10_archive, load_cifar10_tfds
from tfigkd.data.folder import load_image_folder, load_numpy
from tfigkd.data.idx import read_idx, write_idx
from tfigkd.data.pipeline import apply_geometry, make_dataset, normalize, sample_geometry
from tfigkd.data.sources import SplitData, load_fashion_mnist, load_splits, split_arrays
from tfigkd.data.split import Subset, fingerprint, stratified_split, stratified_subset

__all__ = [
    "SplitData", "Subset", "apply_geometry", "fingerprint", "load_cifar10_archive",
    "load_cifar10_tfds", "load_fashion_mnist", "load_image_folder", "load_numpy",
    "load_splits", "make_dataset", "normalize", "read_idx", "sample_geometry",
    "split_arrays", "stratified_split", "stratified_subset", "write_idx",
]
