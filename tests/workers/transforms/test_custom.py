import pytest
import torch

from workers.transforms.custom import CustomPermutation


def test_custom_permutes_flattened_indices_for_any_shape():
    shape = (2, 2, 3)
    permutation = torch.randperm(12, generator=torch.Generator().manual_seed(0)).tolist()
    transform = CustomPermutation(shape, permutation=permutation)
    x = torch.randn(4, *shape)
    out = transform.apply(x, transform.sample(4, torch.Generator()))
    assert out.shape == x.shape
    for i in range(4):
        assert torch.equal(out[i].flatten(), x[i].flatten()[permutation])
    tokens = torch.arange(12).reshape(2, 6)
    ids = CustomPermutation((6,), permutation=[5, 4, 3, 2, 1, 0])
    assert torch.equal(ids.apply(tokens, ids.sample(2, torch.Generator())), tokens.flip(1))


@pytest.mark.parametrize("permutation", [[0, 1, 2], [0, 1, 2, 2], [1, 2, 3, 4]])
def test_custom_refuses_what_is_not_a_permutation_of_the_input(permutation):
    with pytest.raises(ValueError, match="permutation of 0..3"):
        CustomPermutation((2, 2), permutation=permutation)
