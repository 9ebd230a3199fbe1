"""Datasets: the in-memory ``Dataset``, built-in generators, dataset files, and the arch/loss fit check."""

from workers.data.builtin import BUILTIN_DATASETS, BuiltinDataset, describe_builtin, load_builtin, validate_builtin_params
from workers.data.compat import check_dataset_fits
from workers.data.dataset import Dataset
from workers.data.files import DATASET_ARRAYS, dataset_from_arrays, load_dataset_file, save_dataset_npz

__all__ = [
    "BUILTIN_DATASETS",
    "DATASET_ARRAYS",
    "BuiltinDataset",
    "Dataset",
    "check_dataset_fits",
    "dataset_from_arrays",
    "describe_builtin",
    "load_builtin",
    "load_dataset_file",
    "save_dataset_npz",
    "validate_builtin_params",
]
