import numpy as np
import pytest
import torch

from workers.transforms.base import Magnitude, gather_along, nonzero_offsets, random_permutations


def test_magnitude_problem_names_the_range_and_the_meaning():
    spec = Magnitude("largest shift, in pixels", 2, 1, 10, integer=True)
    assert spec.problem(3) is None
    assert spec.problem(10) is None
    assert "whole number" in spec.problem(2.5)
    message = spec.problem(11)
    assert "[1, 10]" in message and "largest shift" in message and "11" in message
    open_low = Magnitude("probability", 0.5, 0, 1, low_exclusive=True)
    assert open_low.problem(0) is not None and "(0, 1]" in open_low.problem(0)
    assert open_low.problem(1) is None


def test_gather_along_matches_numpy_take_along_axis():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 5, 2, generator=generator)
    index = random_permutations(4, 5, generator)
    expected = np.take_along_axis(x.numpy(), index.numpy()[:, None, :, None], axis=2)
    assert np.array_equal(gather_along(x, index, axis=2).numpy(), expected)
    assert np.array_equal(gather_along(x, index, axis=-2).numpy(), expected)


def test_random_permutations_are_permutations_and_differ_per_row():
    perms = random_permutations(50, 7, torch.Generator().manual_seed(1))
    assert all(sorted(row.tolist()) == list(range(7)) for row in perms)
    assert len({tuple(row.tolist()) for row in perms}) > 40


@pytest.mark.parametrize("radius, dims", [(1, 1), (2, 2), (1, 2)])
def test_nonzero_offsets_cover_every_nonzero_offset_uniformly(radius, dims):
    draws = nonzero_offsets(20_000, radius, dims, torch.Generator().manual_seed(2))
    assert draws.shape == (20_000, dims)
    assert not (draws == 0).all(dim=1).any()
    assert draws.abs().max() == radius
    _, counts = np.unique(draws.numpy(), axis=0, return_counts=True)
    assert len(counts) == (2 * radius + 1) ** dims - 1
    expected = 20_000 / len(counts)
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))
