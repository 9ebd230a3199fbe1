"""models.specs.data_signature / data_input_for: which data a model can be probed with."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from models.specs import DataInput, data_input_for, data_signature, parse_arch

MLP = parse_arch({"name": "mlp", "in_dim": 64, "hidden": [8], "out_dim": 2})
CNN = parse_arch({"name": "cnn", "in_channels": 1, "image_size": 8, "channels": [4], "out_dim": 2})
IMAGES = DataInput(kind="image", shape=[1, 8, 8])


def test_flat_models_take_any_data_of_as_many_values():
    assert data_signature(MLP, IMAGES) == ("image", (1, 8, 8))
    assert data_signature(MLP, DataInput(kind="sequence", shape=[8, 8])) == ("sequence", (8, 8))
    assert data_signature(MLP, None) == ("tabular", (64,))


def test_structured_models_need_their_own_shape():
    assert data_signature(CNN, IMAGES) == ("image", (1, 8, 8))
    with pytest.raises(ValueError, match=r"shape \[1, 4, 16\] do not fit the cnn"):
        data_signature(CNN, DataInput(kind="image", shape=[1, 4, 16]))
    with pytest.raises(ValueError, match="flat models take any data of as many values"):
        data_signature(MLP, DataInput(kind="image", shape=[1, 8, 9]))


def test_inferred_from_the_sample_shape():
    assert data_input_for((1, 8, 8), integer=False) == IMAGES
    assert data_input_for((6, 3), integer=False) == DataInput(kind="sequence", shape=[6, 3])
    assert data_input_for((6,), integer=True) is None  # token ids: vocabulary unknown
    assert data_input_for((2, 2, 2, 2), integer=False) is None


def test_rank_must_fit_the_kind():
    with pytest.raises(ValidationError, match="image samples have 3 axes"):
        DataInput(kind="image", shape=[64])
    with pytest.raises(ValidationError, match="vocab_size"):
        DataInput(kind="tokens", shape=[6])
