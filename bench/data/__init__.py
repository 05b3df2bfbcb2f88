"""The one MNIST loader and preprocessing path shared by every implementation."""

from bench.data.catalog import DATASETS, NUM_CLASSES, DataError, dataset_info
from bench.data.loader import Dataset, cache_root, load, locate, verify_dir
from bench.data.prepare import Splits, flatten_scale, one_hot, prepare

__all__ = [
    "DATASETS",
    "NUM_CLASSES",
    "DataError",
    "Dataset",
    "Splits",
    "cache_root",
    "dataset_info",
    "flatten_scale",
    "load",
    "locate",
    "one_hot",
    "prepare",
    "verify_dir",
]
