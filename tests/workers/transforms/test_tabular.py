import torch

from workers.transforms import build_transform


def test_feature_permutation_reorders_each_row_by_its_own_permutation():
    permute = build_transform("feature_permutation", "tabular", (5,))
    params = permute.sample(4, torch.Generator().manual_seed(0))
    x = torch.randn(4, 5)
    out = permute.apply(x, params)
    for i in range(4):
        assert torch.equal(out[i], x[i, params[i]])


def test_sign_flip_flips_each_feature_with_its_probability_and_never_nothing():
    flip = build_transform("sign_flip", "tabular", (8,), 0.25)
    params = flip.sample(20_000, torch.Generator().manual_seed(1))
    assert set(params.unique().tolist()) == {-1.0, 1.0}
    assert (params == -1).any(dim=1).all()
    # P(flip) = p, plus the forced flip of the (1 - p)^8 draws that flipped nothing, spread over 8 features.
    expected = 0.25 + (0.75**8) / 8
    assert abs((params == -1).double().mean().item() - expected) < 0.01
    x = torch.randn(3, 8)
    assert torch.equal(flip.apply(x, params[:3]), x * params[:3].float())
    everything = build_transform("sign_flip", "tabular", (8,), 1.0)
    assert torch.equal(everything.apply(x, everything.sample(3, torch.Generator())), -x)
