"""The .pt2 weight reader: genuine torch.export archives load; hostile or inconsistent ones are
refused, and payloads that torch.export.load would run never run.

Hostile archives start from a genuine ``torch.export.save`` output and swap in records whose
unpickling creates a marker directory. Each hostile test first shows that ``torch.export.load``
runs the payload (the reason ``models/pt2_weights.py`` exists), then that our reader does not.
"""

from __future__ import annotations

import json
import pickle
import zipfile

import numpy as np
import pytest
import torch

from models.loading import load_checkpoint, load_state_dict_file
from models.pt2_weights import ARCHIVE_VERSION, FLOAT_SCALAR_TYPES, STRIDED_LAYOUT
from models.registry import build_model
from tests.models.hostile import Payload, corrupted_variants
from tests.models.tiny_specs import sample_input, tiny_spec
from models.errors import InputError

CONFIG = "data/weights/model_weights_config.json"


def _mlp(seed: int = 0):
    return build_model(tiny_spec("mlp"), seed=seed)


def _state_equal(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A genuine torch.export.save archive of the tiny MLP, and the model it came from."""
    model = _mlp(seed=3)
    path = tmp_path_factory.mktemp("pt2") / "mlp.pt2"
    torch.export.save(torch.export.export(model, (sample_input(tiny_spec("mlp"), 2),)), path)
    return path, model


def _rewrite(src, dst, replace=None, compress=()) -> None:
    """Copy a pt2 zip, replacing/adding records (names relative to the archive root)."""
    replace = dict(replace or {})
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        root = zin.namelist()[0].split("/", 1)[0]
        for info in zin.infolist():
            rel = info.filename.split("/", 1)[1]
            data = replace.pop(rel, None) or zin.read(info)
            method = zipfile.ZIP_DEFLATED if rel in compress else zipfile.ZIP_STORED
            zout.writestr(info.filename, data, compress_type=method)
        for rel, data in replace.items():
            zout.writestr(f"{root}/{rel}", data)


def _weights_config(path) -> dict:
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith(CONFIG))
        return json.loads(z.read(name))


def _sizes(values):
    return [{"as_int": v} for v in values]


@pytest.mark.parametrize("key", ["mlp", "transformer_tokens_cls"])
def test_pt2_round_trip_gives_identical_outputs(key, tmp_path):
    spec = tiny_spec(key)
    source, target = build_model(spec, seed=0), build_model(spec, seed=1)
    x = sample_input(spec, 2)
    torch.export.save(torch.export.export(source, (x,)), tmp_path / "m.pt2")
    load_checkpoint(tmp_path / "m.pt2", target)
    with torch.no_grad():
        assert torch.equal(source(x), target(x))


def test_pt2_weights_are_read_by_raw_offsets_and_strides(exported, tmp_path):
    # Two weights viewing one record: a transposed (5, 3) view and a (5,) slice further on,
    # checked against numpy's as_strided on the same bytes.
    path, _ = exported
    record = np.random.default_rng(0).standard_normal(20).astype(np.float32)
    config = _weights_config(path)
    meta = config["config"]
    meta["layers.0.weight"]["path_name"] = meta["layers.0.bias"]["path_name"] = "shared"
    transposed = {"sizes": _sizes([5, 3]), "strides": _sizes([1, 5]), "storage_offset": {"as_int": 0}}
    meta["layers.0.weight"]["tensor_meta"].update(transposed)
    meta["layers.0.bias"]["tensor_meta"].update(storage_offset={"as_int": 15})
    records = {CONFIG: json.dumps(config).encode(), "data/weights/shared": record.tobytes()}
    _rewrite(path, tmp_path / "views.pt2", records)
    state = load_state_dict_file(tmp_path / "views.pt2")
    expected_weight = np.lib.stride_tricks.as_strided(record, shape=(5, 3), strides=(4, 20))
    np.testing.assert_array_equal(state["layers.0.weight"].numpy(), expected_weight)
    np.testing.assert_array_equal(state["layers.0.bias"].numpy(), record[15:20])
    assert state["layers.0.weight"].is_contiguous()


@pytest.mark.parametrize("where", ["sample_inputs", "pickled_weight"])
def test_hostile_pt2_payload_never_runs(where, exported, tmp_path):
    path, source = exported

    def hostile(marker, dst):
        if where == "sample_inputs":  # present in every archive, read with a weights_only=False fallback
            _rewrite(path, dst, {"data/sample_inputs/model.pt": pickle.dumps(Payload(marker))})
        else:  # a weight flagged use_pickle, which torch.export.load unpickles with weights_only=False
            config = _weights_config(path)
            config["config"]["layers.0.weight"]["use_pickle"] = True
            payload = pickle.dumps(Payload(marker))
            _rewrite(path, dst, {CONFIG: json.dumps(config).encode(), "data/weights/weight_0": payload})

    live = tmp_path / "live"
    hostile(live, tmp_path / "live.pt2")
    try:
        torch.export.load(tmp_path / "live.pt2")
    except Exception:
        pass  # it fails after the payload ran; only the marker matters
    assert live.is_dir(), "torch.export.load no longer runs this payload: revisit models/pt2_weights.py"

    marker = tmp_path / "marker"
    hostile(marker, tmp_path / "evil.pt2")
    target = _mlp(seed=0)
    if where == "sample_inputs":
        load_checkpoint(tmp_path / "evil.pt2", target)  # the weights are intact and safe to read
        assert _state_equal(source, target)
    else:
        with pytest.raises(InputError, match="stored as a pickle"):
            load_checkpoint(tmp_path / "evil.pt2", target)
    assert not marker.exists()


def _edit_weight(path, dst, name, **tensor_meta):
    config = _weights_config(path)
    config["config"][name]["tensor_meta"].update(tensor_meta)
    _rewrite(path, dst, {CONFIG: json.dumps(config).encode()})


@pytest.mark.parametrize(
    "edit,fragment",
    [
        ({"storage_offset": {"as_int": 1}}, "reach element"),  # runs past the end of its record
        ({"sizes": _sizes([5, 4]), "strides": _sizes([4, 1])}, "reach element"),
        ({"sizes": _sizes([50, 3]), "strides": _sizes([0, 1])}, "more elements than its record"),
        ({"strides": [{"as_int": -3}, {"as_int": 1}]}, "non-negative integer"),
        ({"sizes": [{"as_expr": {"expr_str": "__import__('os').getcwd()"}}, {"as_int": 3}]}, "non-negative integer"),
        ({"dtype": 5}, "dtype code 5"),  # int64
        ({"layout": 1}, "not a dense"),  # sparse COO
    ],
)
def test_pt2_tensor_metadata_is_checked_against_the_record(edit, fragment, exported, tmp_path):
    path, _ = exported
    _edit_weight(path, tmp_path / "bad.pt2", "layers.0.weight", **edit)
    with pytest.raises(InputError, match=fragment) as info:
        load_state_dict_file(tmp_path / "bad.pt2")
    assert "safetensors" in str(info.value) and info.value.errors[0]["loc"] == ["weights"]


def test_pt2_archive_structure_is_checked(exported, tmp_path):
    path, _ = exported
    _rewrite(path, tmp_path / "deflated.pt2", compress={"data/weights/weight_0"})
    with pytest.raises(InputError, match="compressed"):
        load_state_dict_file(tmp_path / "deflated.pt2")
    _rewrite(path, tmp_path / "version.pt2", {"archive_version": b"7"})
    with pytest.raises(InputError, match="version '7'"):
        load_state_dict_file(tmp_path / "version.pt2")
    _rewrite(path, tmp_path / "big_endian.pt2", {"byteorder": b"big"})
    with pytest.raises(InputError, match="big-endian"):
        load_state_dict_file(tmp_path / "big_endian.pt2")
    _rewrite(path, tmp_path / "legacy_weights.pt2", {"data/weights/model.pt": pickle.dumps(Payload(tmp_path / "m1"))})
    with pytest.raises(InputError, match="legacy pickled format"):
        load_state_dict_file(tmp_path / "legacy_weights.pt2")
    with zipfile.ZipFile(tmp_path / "legacy.pt2", "w") as z:
        z.writestr("version", "8.0")
        z.writestr("serialized_exported_program.json", "{}")
        z.writestr("serialized_state_dict.pt", pickle.dumps(Payload(tmp_path / "m2")))
    with pytest.raises(InputError, match="legacy torch.export layout"):
        load_state_dict_file(tmp_path / "legacy.pt2")
    assert not (tmp_path / "m1").exists() and not (tmp_path / "m2").exists()


def test_pinned_pt2_constants_match_the_installed_torch():
    from torch._export.serde.schema import Layout, ScalarType
    from torch.export.pt2_archive.constants import ARCHIVE_VERSION_VALUE

    names = {6: "HALF", 7: "FLOAT", 8: "DOUBLE", 13: "BFLOAT16"}
    assert {code: ScalarType(code).name for code in FLOAT_SCALAR_TYPES} == names
    assert Layout(STRIDED_LAYOUT).name == "Strided"
    assert ARCHIVE_VERSION == ARCHIVE_VERSION_VALUE


def test_corrupted_archives_load_or_raise_input_error_never_anything_else(exported, tmp_path):
    outcomes = set()
    for data in corrupted_variants(exported[0].read_bytes()):
        path = tmp_path / "corrupt.pt2"
        path.write_bytes(data)
        try:
            load_checkpoint(path, _mlp(1))
            outcomes.add("loaded")
        except InputError:
            outcomes.add("refused")
    assert "refused" in outcomes
