"""check_dataset_fits: datasets that fit pass silently; each mismatch is named, all at once."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models.specs import parse_arch
from workers.data.builtin import load_builtin
from workers.data.compat import check_dataset_fits
from workers.data.dataset import Dataset
from models.errors import InputError


def _mlp(in_dim, out_dim):
    return parse_arch({"name": "mlp", "in_dim": in_dim, "hidden": [8], "out_dim": out_dim})


def _token_transformer(seq_len=6, vocab_size=20, out_dim=2, pool="mean"):
    return parse_arch({
        "name": "transformer", "input": {"type": "tokens", "vocab_size": vocab_size},
        "seq_len": seq_len, "dim": 8, "depth": 1, "heads": 2, "pool": pool, "out_dim": out_dim,
    })


def _token_dataset(seq_len=6, max_id=19) -> dict:
    x = torch.from_numpy(np.random.default_rng(0).integers(0, max_id + 1, (10, seq_len)))
    x[0, 0] = max_id
    y = torch.arange(10) % 2
    ds = Dataset("tokens", x, y, x, y, "classification", 2, {"max_token_id": max_id})
    return ds.describe()


def _messages(description, arch, loss, **kwargs) -> list[str]:
    with pytest.raises(InputError) as exc:
        check_dataset_fits(description, arch, loss, **kwargs)
    assert all(e["loc"] == list(kwargs.get("loc", ("task", "dataset"))) for e in exc.value.errors)
    return [e["msg"] for e in exc.value.errors]


DIGITS = load_builtin("digits", {}, seed=0).describe()
DIGITS_IMAGES = load_builtin("digits", {"flatten": False}, seed=0).describe()
TEACHER = load_builtin("teacher", {"in_dim": 4, "out_dim": 2, "n_train": 8, "n_test": 8}, seed=0).describe()


@pytest.mark.parametrize(
    "description, arch, loss",
    [
        (DIGITS, _mlp(64, 10), "cross_entropy"),
        (DIGITS, _mlp(64, 12), "zero_one"),  # more outputs than classes is fine
        (DIGITS, _mlp(64, 10), "mse"),  # mse against one-hot targets
        (DIGITS_IMAGES, parse_arch({"name": "cnn", "in_channels": 1, "image_size": 8, "channels": [4], "out_dim": 10}), "mse"),
        (DIGITS_IMAGES, parse_arch({"name": "vit", "image_size": 8, "patch_size": 4, "dim": 8, "depth": 1, "heads": 2, "out_dim": 10}), "cross_entropy"),
        (TEACHER, _mlp(4, 2), "mse"),
        (_token_dataset(), _token_transformer(), "cross_entropy"),
    ],
)
def test_fitting_datasets_pass(description, arch, loss):
    check_dataset_fits(description, arch, loss)
    check_dataset_fits(json.loads(json.dumps(description)), arch, loss)  # as stored in the database


def test_sample_shape_mismatch_shows_both_shapes():
    (msg,) = _messages(DIGITS_IMAGES, _mlp(63, 10), "cross_entropy")
    assert "[1, 8, 8]" in msg and "[63]" in msg and "mlp" in msg


def test_flat_models_take_images_of_as_many_values():
    # An MLP of in_dim 64 consumes 1x8x8 images flattened (models.specs.data_signature).
    check_dataset_fits(DIGITS_IMAGES, _mlp(64, 10), "cross_entropy")


def test_too_few_outputs_for_the_labels():
    (msg,) = _messages(DIGITS, _mlp(64, 9), "cross_entropy")
    assert "10 classes (labels 0..9)" in msg and "out_dim=9" in msg and "set out_dim >= 10" in msg


def test_regression_width_must_equal_out_dim_and_classification_losses_need_labels():
    messages = _messages(TEACHER, _mlp(4, 3), "cross_entropy")
    assert len(messages) == 2
    assert "2 regression targets per sample but the model has out_dim=3" in messages[0]
    assert "loss 'cross_entropy' needs class labels" in messages[1]
    (msg,) = _messages(TEACHER, _mlp(4, 2), "zero_one")
    assert "needs class labels but this dataset is regression" in msg


def test_token_inputs_need_integer_ids_below_vocab_size():
    float_x = load_builtin("parity", {"n_bits": 6}, seed=0).describe()
    (msg,) = _messages(float_x, _token_transformer(seq_len=6), "cross_entropy")
    assert "X must hold integers, not float32" in msg
    (msg,) = _messages(_token_dataset(max_id=25), _token_transformer(vocab_size=20), "cross_entropy")
    assert "token id 25 but vocab_size is 20" in msg


def test_integer_inputs_only_feed_a_token_transformer():
    (msg,) = _messages(_token_dataset(seq_len=6), _mlp(6, 2), "cross_entropy")
    assert "X holds integers (int64)" in msg and "store X as float32" in msg


def test_feature_sequences_fit_a_feature_transformer():
    arch = parse_arch({
        "name": "transformer", "input": {"type": "features", "dim": 3},
        "seq_len": 5, "dim": 8, "depth": 1, "heads": 2, "out_dim": 1,
    })
    x = torch.zeros(4, 5, 3)
    ds = Dataset("seq", x, torch.zeros(4, 1), x, torch.zeros(4, 1), "regression")
    check_dataset_fits(ds.describe(), arch, "mse")
    (msg,) = _messages(Dataset("seq", x[:, :4], torch.zeros(4, 1), x[:, :4], torch.zeros(4, 1), "regression").describe(), arch, "mse")
    assert "[4, 3]" in msg and "[5, 3]" in msg


def test_per_position_outputs_are_refused_as_sequence_to_sequence():
    (msg,) = _messages(_token_dataset(), _token_transformer(pool="none"), "cross_entropy")
    assert "sequence-to-sequence targets are not supported" in msg


def test_all_problems_are_collected_at_the_given_location():
    messages = _messages(TEACHER, _token_transformer(seq_len=5, out_dim=3), "zero_one", loc=("dataset",))
    assert len(messages) == 4  # shape, dtype, target width, loss
