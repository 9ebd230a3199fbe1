"""Dataset files: round trips, conventions, every refusal located, and hostile files refused safely."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file
from safetensors.torch import save_file as save_torch_file

from workers.data.builtin import load_builtin
from workers.data.files import DATASET_ARRAYS, load_dataset_file, save_dataset_npz
from models.errors import InputError

RNG = np.random.default_rng(0)


def _arrays(n_train=6, n_test=4, dim=3, classes=3):
    return {
        "X_train": RNG.standard_normal((n_train, dim)),
        "y_train": np.arange(n_train) % classes,
        "X_test": RNG.standard_normal((n_test, dim)),
        "y_test": np.arange(n_test) % classes,
    }


def _npz(tmp_path: Path, name="data.npz", **arrays) -> Path:
    path = tmp_path / name
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    return path


def _refusal(path, **kwargs) -> list[dict]:
    with pytest.raises(InputError) as exc:
        load_dataset_file(path, **kwargs)
    return exc.value.errors


# ------------------------------------------------------------------------------------ happy paths


@pytest.mark.parametrize("builtin", ["gaussian_clusters", "teacher", "digits"])
def test_npz_round_trip_reproduces_the_tensors(tmp_path, builtin):
    original = load_builtin(builtin, {"n_train": 20} if builtin != "digits" else {"flatten": False}, seed=1)
    path = save_dataset_npz(original, tmp_path / "ds.npz")
    loaded = load_dataset_file(path)
    for key in DATASET_ARRAYS:
        assert torch.equal(getattr(loaded, key), getattr(original, key)), key
    assert loaded.name == "ds" and loaded.task_type == original.task_type and loaded.n_classes == original.n_classes
    assert loaded.params == {"source": "file", "format": "npz"}


def test_safetensors_file_with_float_targets_is_regression(tmp_path):
    arrays = _arrays()
    arrays["y_train"], arrays["y_test"] = RNG.standard_normal(6), RNG.standard_normal(4)
    path = tmp_path / "reg.safetensors"
    save_file(arrays, str(path))
    ds = load_dataset_file(path, name="mine", format="safetensors")
    assert ds.name == "mine" and ds.task_type == "regression" and ds.n_classes is None
    assert ds.y_train.shape == (6, 1) and ds.y_test.dtype == torch.float32 and ds.target_dim == 1
    np.testing.assert_array_equal(ds.y_test.numpy()[:, 0], arrays["y_test"].astype(np.float32))
    assert ds.X_train.dtype == torch.float32 and ds.params["format"] == "safetensors"


def test_integer_labels_give_classification_with_max_plus_one_classes(tmp_path):
    arrays = _arrays()
    arrays["y_train"] = np.array([0, 4, 1, 1, 0, 2], dtype=np.uint8)
    arrays["y_test"] = np.array([6, 0, 1, 2], dtype=np.int32)
    ds = load_dataset_file(_npz(tmp_path, **arrays))
    assert ds.task_type == "classification" and ds.n_classes == 7
    assert ds.y_train.dtype == ds.y_test.dtype == torch.int64
    assert ds.y_train.tolist() == [0, 4, 1, 1, 0, 2]


def test_integer_inputs_are_token_ids_kept_as_int64(tmp_path):
    arrays = _arrays()
    arrays["X_train"] = RNG.integers(0, 50, (6, 5)).astype(np.int16)
    arrays["X_test"] = np.array([[1, 2, 3, 4, 77]] * 4, dtype=np.uint8)
    ds = load_dataset_file(_npz(tmp_path, **arrays))
    assert ds.X_train.dtype == ds.X_test.dtype == torch.int64 and ds.sample_shape == (5,)
    assert ds.params["max_token_id"] == max(77, int(arrays["X_train"].max()))


def test_half_and_double_inputs_become_float32(tmp_path):
    arrays = _arrays()
    arrays["X_train"] = arrays["X_train"].astype(np.float16)
    ds = load_dataset_file(_npz(tmp_path, **arrays))
    assert ds.X_train.dtype == ds.X_test.dtype == torch.float32
    np.testing.assert_array_equal(ds.X_train.numpy(), arrays["X_train"].astype(np.float32))


@pytest.mark.parametrize("empty_x, empty_y", [(np.zeros((0, 3)), np.zeros(0, np.int64)), (np.zeros(0), np.zeros(0))])
def test_train_split_may_be_empty(tmp_path, empty_x, empty_y):
    arrays = {**_arrays(), "X_train": empty_x, "y_train": empty_y}
    ds = load_dataset_file(_npz(tmp_path, **arrays))
    assert not ds.has_train_split
    assert ds.X_train.shape == (0, 3) and ds.X_train.dtype == torch.float32
    assert ds.y_train.shape == (0,) and ds.y_train.dtype == torch.int64 and ds.n_classes == 3


# ---------------------------------------------------------------------------------- bad contents


def test_missing_and_extra_arrays_are_named(tmp_path):
    arrays = _arrays()
    del arrays["y_test"]
    (error,) = _refusal(_npz(tmp_path, **arrays, labels=np.zeros(3)))
    assert error["loc"] == ["file"]
    assert "missing ['y_test']" in error["msg"] and "unexpected ['labels']" in error["msg"]


def test_missing_arrays_in_safetensors_are_named(tmp_path):
    path = tmp_path / "d.safetensors"
    save_file({"X_train": np.zeros((2, 2)), "X_test": np.zeros((2, 2))}, str(path))
    (error,) = _refusal(path)
    assert "missing ['y_train', 'y_test']" in error["msg"]


def test_row_shape_and_dtype_disagreements_are_all_reported(tmp_path):
    arrays = _arrays()
    arrays["y_train"] = arrays["y_train"][:5]
    arrays["X_test"] = RNG.standard_normal((4, 2))
    arrays["y_test"] = RNG.standard_normal(4)
    errors = _refusal(_npz(tmp_path, **arrays))
    by_message = {e["msg"].split(";")[0]: e["loc"] for e in errors}
    assert by_message["has 5 rows but X_train has 6"] == ["file", "y_train"]
    assert by_message["samples have shape (3,) but X_test samples have shape (2,)"] == ["file", "X_train"]
    assert by_message["has dtype int64 but y_test has float64"] == ["file", "y_train"]


def test_non_finite_values_are_counted_per_array(tmp_path):
    arrays = _arrays()
    arrays["X_train"][0, 0], arrays["X_train"][2, 1] = np.nan, np.inf
    arrays["X_test"][1, 2] = 1e300  # finite in float64, inf once cast to float32
    errors = _refusal(_npz(tmp_path, **arrays))
    assert {e["loc"][1]: e["msg"].split(" (")[0] for e in errors} == {
        "X_train": "has 2 non-finite values",
        "X_test": "has 1 non-finite values",
    }
    arrays = {**_arrays(), "y_train": np.array([0.5, np.nan, 1, 2, 3, 4]), "y_test": np.ones(4)}
    assert _refusal(_npz(tmp_path, **arrays))[0]["loc"] == ["file", "y_train"]


@pytest.mark.parametrize(
    "key, value, fragment",
    [
        ("y_test", np.array([0, -1, 2, -3]), "has 2 negative labels"),
        ("y_train", np.zeros((6, 2), dtype=np.int64), "integer y is read as class labels and must be 1-D"),
        ("y_train", np.zeros((6, 2, 1)), "y must be (n,) class labels"),
        ("X_train", np.ones(6), "reshape a 1-D X to (n, 1)"),
        ("X_train", np.ones((6, 3), dtype=bool), "has dtype bool"),
        ("X_test", np.ones((4, 3), dtype=np.complex64), "has dtype complex64"),
        ("X_test", np.zeros((0, 3)), "has 0 rows"),
        ("y_test", np.full(4, 10**6), "more than the 100,000 allowed"),
        ("y_test", np.full(4, np.iinfo(np.uint64).max, dtype=np.uint64), "classes, more than"),
    ],
)
def test_bad_array_is_refused_at_its_name(tmp_path, key, value, fragment):
    arrays = {**_arrays(), key: value}
    if key == "X_test" and value.shape[0] == 0:
        arrays["y_test"] = np.zeros(0, np.int64)
    errors = _refusal(_npz(tmp_path, **arrays))
    assert any(e["loc"] == ["file", key] and fragment in e["msg"] for e in errors), errors


def test_negative_token_ids_are_refused(tmp_path):
    arrays = {**_arrays(), "X_train": np.array([[1, -2, 3]] * 6), "X_test": np.array([[1, 2, 3]] * 4)}
    (error,) = _refusal(_npz(tmp_path, **arrays))
    assert error["loc"] == ["file", "X_train"] and "6 negative values" in error["msg"]


# --------------------------------------------------------------------------------- hostile files


def _touch(path: str) -> None:
    Path(path).write_text("payload ran")


class _Payload:
    """Unpickling this calls ``_touch``: proof of code execution if anything unpickles it."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (_touch, (self.marker,))


def test_pickled_object_array_is_refused_without_running_its_payload(tmp_path):
    marker = tmp_path / "marker"
    arrays = {**_arrays(), "X_train": np.array([_Payload(marker)] * 6, dtype=object).reshape(6, 1)}
    path = _npz(tmp_path, **arrays)
    # the payload is live: unpickling it (which we must never do) writes the marker
    with np.load(path, allow_pickle=True) as npz:
        npz["X_train"]
    assert marker.exists()
    marker.unlink()

    (error,) = _refusal(path)
    assert error["loc"] == ["file", "X_train"] and "dtype object" in error["msg"]
    assert not marker.exists()


def test_raw_pickle_and_garbage_are_refused(tmp_path):
    for content in (b"", b"garbage bytes, not a dataset", pickle.dumps({"X_train": np.zeros(3)}), b"\x93NUMPY\x01\x00"):
        path = tmp_path / "upload.npz"
        path.write_bytes(content)
        (error,) = _refusal(path)
        assert error["loc"] == ["file"] and "not a .npz or .safetensors file" in error["msg"]


def test_truncated_and_bit_flipped_archives_give_input_errors(tmp_path):
    good = _npz(tmp_path, **_arrays()).read_bytes()
    path = tmp_path / "broken.npz"
    path.write_bytes(good[: len(good) // 2])
    assert _refusal(path)[0]["loc"][0] == "file"
    rng = np.random.default_rng(1)
    outcomes = {"loaded": 0, "refused": 0}
    for _ in range(60):
        damaged = bytearray(good)
        for position in rng.integers(0, len(good), 3):
            damaged[position] ^= int(rng.integers(1, 256))
        path.write_bytes(bytes(damaged))
        try:
            load_dataset_file(path)
            outcomes["loaded"] += 1
        except InputError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0 and sum(outcomes.values()) == 60


def test_zip_member_that_is_not_an_array_is_refused(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for key, value in _arrays().items():
            if key != "y_test":
                member = io.BytesIO()
                np.save(member, value)
                archive.writestr(key + ".npy", member.getvalue())
        archive.writestr("y_test.npy", b"these are not numpy bytes")
    path = tmp_path / "odd.npz"
    path.write_bytes(buffer.getvalue())
    (error,) = _refusal(path)
    assert error["loc"] == ["file", "y_test"] and "not a readable .npz" in error["msg"]


def test_declared_size_over_budget_is_refused_before_reading(tmp_path):
    path = _npz(tmp_path, **_arrays(n_train=100, dim=10))
    (error,) = _refusal(path, max_bytes=1000)
    assert error["loc"] == ["file"] and "more than the limit of 1,000" in error["msg"]


def test_corrupt_safetensors_header_and_unsupported_dtype(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes((10**6).to_bytes(8, "little") + b'{"X_train": 5}')
    assert _refusal(path)[0]["loc"] == ["file"]
    tensors = {k: torch.from_numpy(v).float() for k, v in _arrays().items()}
    tensors["X_train"] = tensors["X_train"].to(torch.bfloat16)
    save_torch_file(tensors, str(path))
    (error,) = _refusal(path)
    assert error["loc"] == ["file", "X_train"] and "BF16" in error["msg"]


def test_content_must_match_the_declared_format(tmp_path):
    (error,) = _refusal(_npz(tmp_path, **_arrays()), format="safetensors")
    assert error["loc"] == ["file"] and "rename it to .npz" in error["msg"]


def test_unreadable_path_is_an_input_error(tmp_path):
    (error,) = _refusal(tmp_path / "absent.npz")
    assert error["loc"] == ["file"] and "cannot read" in error["msg"]


def test_a_zip_bomb_is_refused_from_the_zip_directory_before_inflating(tmp_path):
    # 64 MiB of zeros deflate to about 64 kB: over 100x, and past the 16 MiB floor.
    arrays = _arrays()
    arrays["X_train"] = np.zeros((2**21, 8), dtype=np.float32)
    arrays["y_train"] = np.zeros(2**21, dtype=np.int64)
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, **arrays)
    assert path.stat().st_size < 2**20
    errors = _refusal(path)
    assert errors[0]["loc"] == ["file", "X_train"] and "zip bomb" in errors[0]["msg"]
    # The declared sizes also count against the budget, before anything is inflated.
    assert "more than the limit" in _refusal(path, max_bytes=2**20)[0]["msg"]


def test_a_regular_compressed_dataset_passes(tmp_path):
    path = tmp_path / "ok.npz"
    np.savez_compressed(path, **_arrays())
    assert load_dataset_file(path).describe()["n_train"] == 6


def test_a_header_promising_more_than_its_member_holds_is_refused(tmp_path):
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": (10**6, 3)})
    buffer.write(np.zeros((6, 3), dtype=np.float32).tobytes())
    arrays = _arrays()
    path = tmp_path / "lying.npz"
    np.savez(path, **{k: v for k, v in arrays.items() if k != "X_train"})
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("X_train.npy", buffer.getvalue())
    errors = _refusal(path)
    assert errors[0]["loc"] == ["file", "X_train"] and "declares 12,000,000 bytes" in errors[0]["msg"]
