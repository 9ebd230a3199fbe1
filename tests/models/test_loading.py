"""Checkpoint loading: round trips, precise mismatch reports, format sniffing, and hostile pickles
that must be refused without their payload ever running (the .pt2 reader has its own tests in
test_pt2_weights.py).

Every hostile file carries a payload that creates a marker directory when unpickled. Each test
first shows the payload is live (an unsafe loader does run it), then that our loader refuses the
file and the marker never appears.
"""

from __future__ import annotations

import pickle

import pytest
import safetensors.torch
import torch

from models.loading import CheckpointMismatch, apply_checkpoint, load_checkpoint, load_state_dict_file, save_safetensors
from models.registry import build_model
from tests.models.hostile import Payload, corrupted_variants
from tests.models.tiny_specs import TINY_SPECS, sample_input, tiny_spec
from models.errors import InputError


def _mlp(seed: int = 0):
    return build_model(tiny_spec("mlp"), seed=seed)


def _state_equal(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _unchanged(model, snapshot) -> bool:
    return all(torch.equal(v, snapshot[k]) for k, v in model.state_dict().items())


# --- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(TINY_SPECS))
def test_safetensors_round_trip_gives_identical_outputs(key, tmp_path):
    spec = tiny_spec(key, init={"dist": "normal", "scale": 0.5})
    source, target = build_model(spec, seed=0), build_model(spec, seed=1)
    path = tmp_path / "weights.safetensors"
    save_safetensors(source, path)
    load_checkpoint(path, target)
    x = sample_input(spec, 3)
    with torch.no_grad():
        assert torch.equal(source(x), target(x))
    assert _state_equal(source, target)


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".PT"])
def test_torch_state_dict_round_trip(suffix, tmp_path):
    source, target = _mlp(0), _mlp(1)
    path = tmp_path / f"weights{suffix}"
    torch.save(source.state_dict(), path)
    load_checkpoint(path, target)
    assert _state_equal(source, target)


def test_float64_checkpoint_is_cast_to_the_model_dtype(tmp_path):
    source, target = _mlp(0), _mlp(1)
    path = tmp_path / "w.safetensors"
    safetensors.torch.save_file({k: v.double() for k, v in source.state_dict().items()}, path)
    load_checkpoint(path, target)
    assert _state_equal(source, target) and target.layers[0].weight.dtype == torch.float32


# --- mismatches and bad values -----------------------------------------------------------------


def test_mismatch_lists_every_missing_unexpected_and_misshaped_name():
    model = _mlp(0)
    before = _snapshot(model)
    state = dict(_mlp(1).state_dict())
    del state["layers.2.bias"]
    state["layers.3.weight"] = torch.zeros(2, 2)
    state["layers.0.weight"] = torch.zeros(3, 5)  # expected (5, 3)
    with pytest.raises(CheckpointMismatch) as info:
        apply_checkpoint(model, state)
    err = info.value
    assert isinstance(err, InputError)
    assert err.details == {
        "missing": ["layers.2.bias"],
        "unexpected": ["layers.3.weight"],
        "mismatched": [{"name": "layers.0.weight", "expected": [5, 3], "got": [3, 5]}],
    }
    assert err.errors[0]["loc"] == ["weights"] and err.errors[0]["type"] == "checkpoint_mismatch"
    for text in ("layers.2.bias", "layers.3.weight", "layers.0.weight: expected [5, 3], got [3, 5]"):
        assert text in str(err)
    assert _unchanged(model, before)
    clone = pickle.loads(pickle.dumps(err))  # survives a process boundary with its details
    assert clone.details == err.details and str(clone) == str(err)


def test_checkpoint_of_another_architecture_reports_all_names(tmp_path):
    path = tmp_path / "cnn.safetensors"
    save_safetensors(build_model(tiny_spec("cnn_flatten"), seed=0), path)
    with pytest.raises(CheckpointMismatch) as info:
        load_checkpoint(path, _mlp())
    assert info.value.details["missing"] == list(_mlp().state_dict())
    cnn_names = ["convs.0.weight", "convs.0.bias", "head.weight", "head.bias"]
    assert sorted(info.value.details["unexpected"]) == sorted(cnn_names)


@pytest.mark.parametrize(
    "bad,fragment",
    [
        (torch.zeros(5, 3, dtype=torch.int64), "torch.int64"),
        (torch.zeros(5, 3, dtype=torch.bool), "torch.bool"),
        (torch.full((5, 3), float("nan")), "NaN or infinite"),
        (torch.full((5, 3), float("-inf")), "NaN or infinite"),
        (torch.full((5, 3), 1e300, dtype=torch.float64), "NaN or infinite"),  # overflows float32
    ],
)
def test_non_floating_or_non_finite_values_are_refused(bad, fragment):
    model = _mlp(0)
    before = _snapshot(model)
    state = {**_mlp(1).state_dict(), "layers.0.weight": bad}
    with pytest.raises(InputError) as info:
        apply_checkpoint(model, state)
    assert fragment in str(info.value) and "layers.0.weight" in str(info.value)
    assert info.value.errors[0]["loc"] == ["weights"]
    assert not isinstance(info.value, CheckpointMismatch)
    assert _unchanged(model, before)


# --- .pt / .pth --------------------------------------------------------------------------------


@pytest.mark.parametrize("writer", ["torch_save", "raw_pickle"])
def test_hostile_pickle_is_refused_and_never_runs(writer, tmp_path):
    path = tmp_path / "evil.pt"
    live = tmp_path / "live"
    if writer == "torch_save":
        torch.save({"layers.0.weight": Payload(live)}, path)
        torch.load(path, weights_only=False)  # the unsafe loader runs the payload ...
    else:
        path.write_bytes(pickle.dumps({"layers.0.weight": Payload(live)}))
        pickle.loads(path.read_bytes())
    assert live.is_dir()

    # ... rewrite it to point at a fresh marker, which ours must never create.
    marker = tmp_path / "marker"
    if writer == "torch_save":
        torch.save({"layers.0.weight": Payload(marker)}, path)
    else:
        path.write_bytes(pickle.dumps({"layers.0.weight": Payload(marker)}))
    with pytest.raises(InputError) as info:
        load_checkpoint(path, _mlp())
    assert info.value.errors[0]["type"] == "unsafe_checkpoint"
    assert "weights_only=True" in str(info.value) and "safetensors" in str(info.value)
    assert "if you trust" not in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    "content,fragment",
    [
        (torch.zeros(3), "must hold a state dict"),
        ({"layers.0.weight": 3}, "not dense tensors"),
        ({"state_dict": {"layers.0.weight": torch.zeros(5, 3)}, "epoch": 3}, "'state_dict' entry"),
    ],
)
def test_pt_must_hold_a_flat_state_dict(content, fragment, tmp_path):
    path = tmp_path / "w.pt"
    torch.save(content, path)
    with pytest.raises(InputError, match=fragment):
        load_checkpoint(path, _mlp())


# --- suffixes and sniffing ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["w.onnx", "w.bin", "w.npz", "weights"])
def test_unsupported_suffix_names_the_supported_formats(name, tmp_path):
    path = tmp_path / name
    path.write_bytes(b"\x00" * 16)
    with pytest.raises(InputError) as info:
        load_checkpoint(path, _mlp())
    assert info.value.errors[0]["type"] == "unsupported_format"
    for fmt in (".safetensors", ".pt", ".pth", ".pt2"):
        assert fmt in str(info.value)


@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_explicit_format_overrides_the_suffix(fmt, tmp_path):
    # Stored blobs have no telling suffix; the caller passes the format recorded at upload time.
    source, target = _mlp(0), _mlp(1)
    blob = tmp_path / "blob-1234"
    if fmt == "safetensors":
        save_safetensors(source, blob)
    else:
        torch.save(source.state_dict(), blob)
    load_checkpoint(blob, target, format=fmt)
    assert _state_equal(source, target)
    wrong = "pt" if fmt == "safetensors" else "safetensors"
    with pytest.raises(InputError, match="does not match its format"):
        load_checkpoint(blob, target, format=wrong)
    with pytest.raises(ValueError, match="unknown checkpoint format"):
        load_checkpoint(blob, target, format="onnx")


def test_missing_file_is_not_blamed_on_the_user(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_state_dict_file(tmp_path / "nothing.safetensors")


def _valid_safetensors_bytes(tmp_path) -> bytes:
    save_safetensors(_mlp(), tmp_path / "ok.safetensors")
    return (tmp_path / "ok.safetensors").read_bytes()


@pytest.mark.parametrize(
    "make,fragment",
    [
        (lambda tmp: b"", "not a valid .safetensors"),
        (lambda tmp: b"not safetensors at all, just text", "not a valid .safetensors"),
        (lambda tmp: _valid_safetensors_bytes(tmp)[:-7], "not a valid .safetensors"),  # truncated data
        (lambda tmp: (2**40).to_bytes(8, "little") + b"{}", "not a valid .safetensors"),  # absurd header
        (lambda tmp: pickle.dumps({"a": 1}), "rename it to .pt"),
    ],
)
def test_invalid_safetensors_is_an_input_error(make, fragment, tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(make(tmp_path))
    with pytest.raises(InputError, match=fragment) as info:
        load_checkpoint(path, _mlp())
    assert info.value.errors[0]["loc"] == ["weights"]


def test_formats_in_the_wrong_file_are_recognised(tmp_path):
    torch.save(_mlp().state_dict(), tmp_path / "real.pt")
    (tmp_path / "zip.safetensors").write_bytes((tmp_path / "real.pt").read_bytes())
    with pytest.raises(InputError, match=r"zip archive.*rename it to \.pt or \.pt2"):
        load_checkpoint(tmp_path / "zip.safetensors", _mlp())
    (tmp_path / "st.pt").write_bytes(_valid_safetensors_bytes(tmp_path))
    with pytest.raises(InputError, match=r"looks like safetensors, rename it to \.safetensors"):
        load_checkpoint(tmp_path / "st.pt", _mlp())
    (tmp_path / "zip.pt2").write_bytes((tmp_path / "real.pt").read_bytes())
    with pytest.raises(InputError, match="not a torch.export .pt2"):
        load_checkpoint(tmp_path / "zip.pt2", _mlp())
    (tmp_path / "text.pt2").write_bytes(b"hello")
    with pytest.raises(InputError, match="not a readable zip archive"):
        load_checkpoint(tmp_path / "text.pt2", _mlp())


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_corrupted_files_load_or_raise_input_error_never_anything_else(suffix, tmp_path):
    # Truncations and byte flips of a valid file: either still a valid checkpoint (e.g. a flipped
    # weight byte) or an InputError; never another exception escaping to the worker.
    good_path = tmp_path / f"good{suffix}"
    if suffix == ".safetensors":
        save_safetensors(_mlp(0), good_path)
    else:
        torch.save(_mlp(0).state_dict(), good_path)
    outcomes = set()
    for data in corrupted_variants(good_path.read_bytes()):
        path = tmp_path / f"corrupt{suffix}"
        path.write_bytes(data)
        try:
            load_checkpoint(path, _mlp(1))
            outcomes.add("loaded")
        except InputError:
            outcomes.add("refused")
    assert "refused" in outcomes
