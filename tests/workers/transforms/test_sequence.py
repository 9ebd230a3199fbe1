import numpy as np
import pytest
import torch

from workers.transforms import build_transform


def make(name, magnitude=None, shape=(6, 3), kind="sequence"):
    return build_transform(name, kind, shape, magnitude)


def test_cyclic_shift_rolls_positions_and_never_draws_the_identity():
    shift = make("cyclic_shift")
    assert shift.magnitude == 5  # default L - 1
    params = shift.sample(2000, torch.Generator().manual_seed(0))
    assert set(params[:, 0].tolist()) == {-5, -4, -3, -2, -1, 1, 2, 3, 4, 5}
    x = torch.randn(4, 6, 3)
    out = shift.apply(x, params[:4])
    for i in range(4):
        assert torch.equal(out[i], torch.roll(x[i], int(params[i, 0]), dims=0))
    assert set(make("cyclic_shift", 2).sample(500, torch.Generator().manual_seed(1))[:, 0].tolist()) == {-2, -1, 1, 2}


def test_sequence_transforms_work_on_token_ids():
    tokens = torch.arange(12).reshape(2, 6)
    reverse = make("reversal", shape=(6,), kind="tokens")
    assert torch.equal(reverse.apply(tokens, reverse.sample(2, torch.Generator())), tokens.flip(1))
    permute = make("position_permutation", shape=(6,), kind="tokens")
    params = permute.sample(2, torch.Generator().manual_seed(3))
    out = permute.apply(tokens, params)
    assert out.dtype == torch.long
    assert np.array_equal(out.numpy(), np.take_along_axis(tokens.numpy(), params.numpy(), axis=1))


def test_position_permutation_moves_whole_feature_vectors():
    permute = make("position_permutation")
    x = torch.randn(3, 6, 3)
    params = permute.sample(3, torch.Generator().manual_seed(4))
    out = permute.apply(x, params)
    for i in range(3):
        assert torch.equal(out[i], x[i, params[i]])


@pytest.mark.parametrize("name", ["cyclic_shift", "reversal", "position_permutation"])
def test_sequence_transforms_act_on_per_position_outputs_only(name):
    transform = make(name)
    assert transform.acts_on((6, 4))
    assert not transform.acts_on((6,))  # a pooled output whose width happens to be L
    assert not transform.acts_on((5, 4))
    assert "pools over positions" in transform.equivariance_note((4,))
    assert not transform.continuous
