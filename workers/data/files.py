"""Datasets from files: ``.npz`` or ``.safetensors`` holding ``X_train``, ``y_train``, ``X_test``, ``y_test``.

The file is untrusted. Nothing is ever unpickled (``np.load(..., allow_pickle=False)``, and object
arrays are refused from their header before any payload is read); declared array sizes are checked
against a byte budget before anything is allocated; every problem becomes an ``InputError`` located
at ``["file"]`` or ``["file", <array name>]`` whose message says what to change.

Conventions (``Dataset`` holds the result):
- ``y`` integer and 1-D: classification, labels ``>= 0``, ``n_classes = max label + 1`` over both splits.
- ``y`` float: regression, float32; 1-D becomes ``(n, 1)``.
- ``X`` integer: token ids, kept as int64 (must be ``>= 0``); ``X`` float: cast to float32, must be finite.
- The test split needs rows; the train split may have 0 rows (test-only upload). An empty train
  split may be saved with any shape (e.g. ``np.zeros(0)``): it is rebuilt with the test split's.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from workers.data.dataset import Dataset
from models.errors import InputError

DATASET_ARRAYS = ("X_train", "y_train", "X_test", "y_test")
MAX_DATASET_BYTES = 4 * 2**30
# A zip member may inflate to at most this many times its compressed size, once past a floor that
# covers small, highly regular arrays (labels, all-zero padding). Real data compresses far less
# (digits: 4x; random floats: 1.1x); a zip bomb (1 MB -> 1 GiB of zeros) compresses 1000x.
MAX_COMPRESSION_RATIO = 100
COMPRESSION_CHECK_FLOOR_BYTES = 16 * 2**20
MAX_CLASSES = 100_000  # the largest out_dim an architecture spec allows
FileFormat = Literal["npz", "safetensors"]

# What a damaged or hostile archive can make zipfile / numpy / safetensors raise while parsing.
# Caught only around parsing, where any of them means "this file is not what it claims to be".
_CORRUPT_FILE_ERRORS = (
    ValueError, TypeError, OSError, EOFError, KeyError, RuntimeError, NotImplementedError, OverflowError,
    zipfile.BadZipFile, zlib.error, SafetensorError,
)
_HOW_TO_SAVE = (
    "save it with numpy.savez(path, X_train=..., y_train=..., X_test=..., y_test=...) "
    "or safetensors.numpy.save_file({...}, path)"
)

# safetensors dtype names that numpy can hold (bfloat16 and the float8 kinds it cannot).
_NUMPY_SAFETENSORS_DTYPES = {"BOOL", "U8", "I8", "U16", "I16", "U32", "I32", "U64", "I64", "F16", "F32", "F64"}

ProblemFn = Callable[[str, str], None]


def load_dataset_file(
    path: str | Path,
    name: str | None = None,
    *,
    format: FileFormat | None = None,
    max_bytes: int = MAX_DATASET_BYTES,
) -> Dataset:
    """Read and validate a dataset file.

    Args:
        path: the ``.npz`` / ``.safetensors`` file; its format is recognised from its first bytes.
        name: ``Dataset.name`` (default: the file name without suffix).
        format: the format the caller expects (e.g. from the upload's extension); a file whose
            content is the other format is refused rather than silently accepted. Default: any.
        max_bytes: refuse files whose arrays would take more memory than this (default 4 GiB).

    Returns:
        A ``Dataset`` with ``params = {"source": "file", "format": ...}`` (plus ``max_token_id``
        for integer X).

    Raises:
        InputError: located at ``["file"]`` or ``["file", <array name>]``.
    """
    path = Path(path)
    detected = _detect_format(path)
    if format is not None and detected != format:
        raise InputError.at(["file"], f"the file is named as .{format} but its content is {detected}; rename it to .{detected}")
    reader = _read_npz if detected == "npz" else _read_safetensors
    arrays = reader(path, max_bytes)
    return dataset_from_arrays(arrays, name if name is not None else path.stem, {"source": "file", "format": detected})


def save_dataset_npz(dataset: Dataset, path: str | Path) -> Path:
    """Write ``dataset``'s four arrays to ``path`` (exactly that name) as an uncompressed ``.npz``.

    Reading it back with ``load_dataset_file`` gives the same tensors; ``n_classes`` comes back as
    max label + 1, which is smaller when the top classes have no samples.
    """
    path = Path(path)
    arrays = {key: getattr(dataset, key).detach().cpu().numpy() for key in DATASET_ARRAYS}
    with open(path, "wb") as handle:  # a handle, so numpy does not append ".npz" to the name
        np.savez(handle, **arrays)
    return path


def dataset_from_arrays(arrays: Mapping[str, np.ndarray], name: str, params: dict | None = None) -> Dataset:
    """Validate the four named arrays and convert them to a ``Dataset`` (see the module conventions).

    All problems found at one stage are reported together.
    """
    problems: list[dict] = []

    def problem(key: str, msg: str) -> None:
        problems.append({"loc": ["file", key] if key else ["file"], "msg": msg})

    def raise_if_any() -> None:
        if problems:
            raise InputError(problems)

    _check_keys(arrays.keys())
    a = {key: np.asarray(arrays[key]) for key in DATASET_ARRAYS}
    train_empty = all(a[k].ndim >= 1 and a[k].shape[0] == 0 for k in ("X_train", "y_train"))
    checked = ("X_test", "y_test") if train_empty else DATASET_ARRAYS

    for key in checked:
        arr = a[key]
        if arr.dtype.kind not in "iuf":
            problem(key, f"has dtype {arr.dtype}; store X as float32 (features) or integers (token ids), "
                         "and y as int64 (class labels) or float32 (regression targets)")
        elif key.startswith("X") and arr.ndim < 2:
            problem(key, f"has shape {arr.shape}; X must be (n_samples, *sample_shape): reshape a 1-D X to (n, 1)")
        elif key.startswith("y") and arr.ndim not in (1, 2):
            problem(key, f"has shape {arr.shape}; y must be (n,) class labels or (n,) / (n, out_dim) regression targets")
        elif key.startswith("y") and arr.dtype.kind in "iu" and arr.ndim != 1:
            problem(key, f"has integer dtype and shape {arr.shape}; integer y is read as class labels and must be 1-D "
                         "(store float32 y for multi-output regression)")
    raise_if_any()

    for split in ("test",) if train_empty else ("train", "test"):
        x, y = a[f"X_{split}"], a[f"y_{split}"]
        if x.shape[0] != y.shape[0]:
            problem(f"y_{split}", f"has {y.shape[0]} rows but X_{split} has {x.shape[0]}; every sample needs exactly one target")
    if a["X_test"].shape[0] == 0:
        problem("X_test", "has 0 rows; the test split needs at least one sample (only the train split may be empty)")
    if not train_empty:
        _check_splits_agree(a, problem)
    raise_if_any()

    x_test = _convert_x("X_test", a["X_test"], problem)
    x_train = x_test[:0].clone() if train_empty else _convert_x("X_train", a["X_train"], problem)
    classification = a["y_test"].dtype.kind in "iu"
    if classification:
        y_test, y_train, n_classes = _convert_labels(a["y_test"], None if train_empty else a["y_train"], problem)
    else:
        y_test = _convert_regression("y_test", a["y_test"], problem)
        y_train = y_test[:0].clone() if train_empty else _convert_regression("y_train", a["y_train"], problem)
        n_classes = None
    raise_if_any()

    # Recorded so the architecture check can compare token ids with vocab_size without the arrays.
    extra = {} if x_test.is_floating_point() else {"max_token_id": max(int(x.max()) for x in (x_train, x_test) if x.numel())}
    return Dataset(
        name=name,
        X_train=x_train,
        y_train=y_train,
        X_test=x_test,
        y_test=y_test,
        task_type="classification" if classification else "regression",
        n_classes=n_classes,
        params={**(params or {}), **extra},
    )


# ---------------------------------------------------------------------------------------- reading


def _detect_format(path: Path) -> FileFormat:
    try:
        with open(path, "rb") as handle:
            head = handle.read(9)
    except OSError as exc:
        raise InputError.at(["file"], f"cannot read the dataset file: {exc.strerror or exc}") from None
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):  # a zip archive (possibly empty): what numpy.savez writes
        return "npz"
    if len(head) == 9 and head[8:9] == b"{":  # safetensors: 8-byte header length, then a JSON header
        return "safetensors"
    raise InputError.at(["file"], f"not a .npz or .safetensors file; {_HOW_TO_SAVE}")


def _check_keys(keys) -> None:
    keys = list(keys)
    missing = [k for k in DATASET_ARRAYS if k not in keys]
    extra = sorted(set(keys) - set(DATASET_ARRAYS))
    duplicated = sorted({k for k in keys if keys.count(k) > 1})
    if missing or extra or duplicated:
        parts = [f"missing {missing}" if missing else "", f"unexpected {extra}" if extra else "",
                 f"stored twice {duplicated}" if duplicated else ""]
        raise InputError.at(
            ["file"], f"the file must hold exactly the arrays {list(DATASET_ARRAYS)}: {', '.join(p for p in parts if p)}"
        )


def _check_budget(total_bytes: int, max_bytes: int) -> None:
    if total_bytes > max_bytes:
        raise InputError.at(["file"], f"the arrays take {total_bytes:,} bytes, more than the limit of {max_bytes:,}; use a smaller dataset")


def _check_inflation(key: str, member: zipfile.ZipInfo) -> None:
    if member.file_size > COMPRESSION_CHECK_FLOOR_BYTES and member.file_size > MAX_COMPRESSION_RATIO * max(member.compress_size, 1):
        raise InputError.at(["file", key], f"inflates from {member.compress_size:,} to {member.file_size:,} bytes "
                                           f"(over {MAX_COMPRESSION_RATIO}x); refused as a likely zip bomb")


def _read_npz(path: Path, max_bytes: int) -> dict[str, np.ndarray]:
    # First pass reads only the .npy headers: object dtypes and oversized shapes are refused before
    # any array payload is read or any memory allocated for it.
    key = None
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            _check_keys([m.filename.removesuffix(".npy") for m in members])
            # The zip directory's declared sizes, before anything is inflated: their sum against
            # the budget, and each member's inflation against its compressed size.
            _check_budget(sum(m.file_size for m in members), max_bytes)
            for member in members:
                key = member.filename.removesuffix(".npy")
                _check_inflation(key, member)
            total = 0
            for member in members:
                key = member.filename.removesuffix(".npy")
                with archive.open(member) as handle:
                    version = np.lib.format.read_magic(handle)
                    if version not in ((1, 0), (2, 0)):
                        raise InputError.at(["file", key], f".npy format version {version} is not supported; save with numpy.savez")
                    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                    shape, _, dtype = read_header(handle)
                if dtype.hasobject:
                    raise InputError.at(["file", key], "holds Python objects (dtype object), which would need unpickling "
                                                       "and are refused; store numeric arrays")
                array_bytes = math.prod(shape) * dtype.itemsize
                if array_bytes > member.file_size:
                    # The header promises more than the member holds: numpy would allocate the
                    # promised size and then fail reading.
                    raise InputError.at(["file", key], f"its header declares {array_bytes:,} bytes of data but the "
                                                       f"archive member holds {member.file_size:,}; the file is damaged")
                total += array_bytes
            _check_budget(total, max_bytes)
        key = None
        with np.load(path, allow_pickle=False) as npz:  # never unpickle user files
            arrays = {}
            for key in DATASET_ARRAYS:
                arrays[key] = npz[key]
            return arrays
    except InputError:
        raise  # already located and explained (InputError is a ValueError, so let it pass first)
    except _CORRUPT_FILE_ERRORS as exc:
        loc = ["file", key] if key else ["file"]
        raise InputError.at(loc, f"not a readable .npz archive of numpy arrays ({exc}); {_HOW_TO_SAVE}") from None


def _read_safetensors(path: Path, max_bytes: int) -> dict[str, np.ndarray]:
    # safetensors validates that the declared tensors lie inside the file, so the file size bounds
    # the memory needed.
    _check_budget(path.stat().st_size, max_bytes)
    key = None
    try:
        with safe_open(path, framework="np") as handle:
            _check_keys(handle.keys())
            arrays = {}
            for key in DATASET_ARRAYS:
                dtype = handle.get_slice(key).get_dtype()
                if dtype not in _NUMPY_SAFETENSORS_DTYPES:
                    raise InputError.at(["file", key], f"has dtype {dtype}, which numpy cannot represent; store float32 or int64")
                arrays[key] = handle.get_tensor(key)
            return arrays
    except InputError:
        raise
    except _CORRUPT_FILE_ERRORS as exc:
        loc = ["file", key] if key else ["file"]
        raise InputError.at(loc, f"not a readable .safetensors file with numpy-compatible dtypes ({exc}); {_HOW_TO_SAVE}") from None


# ------------------------------------------------------------------------------------- validation


def _check_splits_agree(a: dict[str, np.ndarray], problem: ProblemFn) -> None:
    x_train, x_test, y_train, y_test = a["X_train"], a["X_test"], a["y_train"], a["y_test"]
    if x_train.shape[1:] != x_test.shape[1:]:
        problem("X_train", f"samples have shape {x_train.shape[1:]} but X_test samples have shape {x_test.shape[1:]}; "
                           "both splits must share one per-sample shape")
    if (x_train.dtype.kind == "f") != (x_test.dtype.kind == "f"):
        problem("X_train", f"has dtype {x_train.dtype} but X_test has {x_test.dtype}; use integer token ids in both or floats in both")
    if (y_train.dtype.kind == "f") != (y_test.dtype.kind == "f"):
        problem("y_train", f"has dtype {y_train.dtype} but y_test has {y_test.dtype}; use integer class labels in both "
                           "(classification) or floats in both (regression)")
    elif y_train.dtype.kind == "f" and _target_width(y_train) != _target_width(y_test):
        problem("y_train", f"has {_target_width(y_train)} targets per sample but y_test has {_target_width(y_test)}; they must agree")


def _target_width(y: np.ndarray) -> int:
    return 1 if y.ndim == 1 else int(y.shape[1])


def _convert_x(key: str, x: np.ndarray, problem: ProblemFn) -> torch.Tensor:
    if x.dtype.kind in "iu":
        if x.size and x.min() < 0:
            problem(key, f"has {int((x < 0).sum())} negative values; integer X is read as token ids, which must be >= 0 "
                         "(store float32 X for real-valued features)")
        if x.size and int(x.max()) > np.iinfo(np.int64).max:
            problem(key, "has token ids beyond the int64 range; token ids must be < vocab_size")
        return torch.from_numpy(x.astype(np.int64))
    with np.errstate(over="ignore"):  # cast first: a float64 value beyond float32's range becomes inf
        x32 = x.astype(np.float32)
    _check_finite(key, x32, problem)
    return torch.from_numpy(x32)


def _convert_regression(key: str, y: np.ndarray, problem: ProblemFn) -> torch.Tensor:
    with np.errstate(over="ignore"):
        y32 = y.astype(np.float32).reshape(len(y), -1) if y.ndim == 1 else y.astype(np.float32)
    _check_finite(key, y32, problem)
    return torch.from_numpy(y32)


def _convert_labels(
    y_test: np.ndarray, y_train: np.ndarray | None, problem: ProblemFn
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(y_test, y_train, n_classes) as int64; ``y_train`` None means an empty train split."""
    n_classes, ok = 0, True
    for key, y in (("y_test", y_test), ("y_train", y_train)):
        if y is None or y.size == 0:
            continue
        if y.min() < 0:
            problem(key, f"has {int((y < 0).sum())} negative labels; class labels must be 0, 1, ..., n_classes - 1")
            ok = False
        top = int(y.max())
        if top + 1 > MAX_CLASSES:
            problem(key, f"has labels up to {top}, i.e. {top + 1:,} classes, more than the {MAX_CLASSES:,} allowed; "
                         "labels must be class indices 0, 1, ..., n_classes - 1")
            ok = False
        n_classes = max(n_classes, top + 1)
    if not ok:  # refused: do not cast values that may overflow int64
        empty = torch.zeros(0, dtype=torch.int64)
        return empty, empty, 0
    test = torch.from_numpy(y_test.astype(np.int64))
    train = test[:0].clone() if y_train is None else torch.from_numpy(y_train.astype(np.int64))
    return test, train, n_classes


def _check_finite(key: str, values: np.ndarray, problem: ProblemFn) -> None:
    bad = int(values.size - np.count_nonzero(np.isfinite(values)))
    if bad:
        problem(key, f"has {bad} non-finite values (NaN, inf, or beyond the float32 range) out of {values.size}; "
                     "replace them or drop those rows")
