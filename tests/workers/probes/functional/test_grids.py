"""Grid placement: lines, boxes and random planes, checked against direct numpy constructions."""

import numpy as np
import pytest
import torch

from workers.probes.functional.grids import grid_kind, make_grid


def test_layout_follows_the_input_size():
    assert [grid_kind(d) for d in (1, 2, 3, 784)] == ["line", "box", "planes", "planes"]
    with pytest.raises(ValueError):
        grid_kind(0)


def test_box_without_data_spans_two_standard_normal_deviations():
    grid = make_grid(2, size=5, n_planes=7, seed=0)
    assert (grid.kind, grid.n_planes, grid.dims, grid.through) == ("box", 1, 2, "origin")
    points = grid.points().reshape(5, 5, 2).numpy()
    axis = np.linspace(-2, 2, 5)
    np.testing.assert_allclose(points[..., 0], np.broadcast_to(axis[:, None], (5, 5)))  # s: first grid axis
    np.testing.assert_allclose(points[..., 1], np.broadcast_to(axis[None, :], (5, 5)))


def test_box_and_line_with_data_span_mean_plus_minus_two_std():
    rng = np.random.default_rng(0)
    data = rng.normal([3.0, -1.0], [0.5, 2.0], size=(200, 2))
    grid = make_grid(2, size=4, n_planes=1, seed=0, data=torch.tensor(data, dtype=torch.float32))
    points = grid.points().reshape(4, 4, 2).numpy()
    low, high = data.mean(0) - 2 * data.std(0), data.mean(0) + 2 * data.std(0)
    np.testing.assert_allclose(points[0, 0], low, rtol=1e-6)
    np.testing.assert_allclose(points[-1, -1], high, rtol=1e-6)
    assert grid.through == "data_mean"

    line = make_grid(1, size=9, n_planes=3, seed=0, data=torch.tensor(data[:, :1]))
    assert (line.kind, line.dims, line.n_points) == ("line", 1, 9)
    np.testing.assert_allclose(line.points()[:, 0].numpy(), np.linspace(low[0], high[0], 9), rtol=1e-12)


def test_constant_coordinate_gets_unit_spread():
    data = torch.tensor([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0]])
    grid = make_grid(2, size=3, n_planes=1, seed=0, data=data)
    np.testing.assert_allclose(grid.half_widths.numpy(), [[2 * np.std([1, 2, 3]), 2.0]])


def test_planes_pass_through_test_points_with_orthonormal_directions_and_data_spread():
    rng = np.random.default_rng(1)
    data = rng.standard_normal((50, 2, 3, 3)) * np.linspace(0.5, 3, 18).reshape(1, 2, 3, 3)
    grid = make_grid(18, size=6, n_planes=4, seed=3, data=torch.tensor(data))
    assert (grid.kind, grid.n_planes, grid.through, grid.n_points) == ("planes", 4, "test_points", 4 * 36)
    flat = data.reshape(50, -1)
    origins = grid.origins.numpy()
    # Each origin is a distinct test point.
    matches = [np.flatnonzero(np.all(flat == o, axis=1)) for o in origins]
    assert all(len(m) == 1 for m in matches) and len({int(m[0]) for m in matches}) == 4
    u, v = grid.directions[:, 0].numpy(), grid.directions[:, 1].numpy()
    np.testing.assert_allclose(np.einsum("pd,pd->p", u, u), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.einsum("pd,pd->p", v, v), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.einsum("pd,pd->p", u, v), 0.0, atol=1e-12)
    np.testing.assert_allclose(grid.half_widths[:, 0].numpy(), 2 * (flat @ u.T).std(axis=0), rtol=1e-12)
    np.testing.assert_allclose(grid.half_widths[:, 1].numpy(), 2 * (flat @ v.T).std(axis=0), rtol=1e-12)
    # Every point is origin + s u + t v, s along the first grid axis.
    points = grid.points().reshape(4, 6, 6, 18).numpy()
    s = grid.half_widths[:, 0, None].numpy() * np.linspace(-1, 1, 6)
    t = grid.half_widths[:, 1, None].numpy() * np.linspace(-1, 1, 6)
    expected = origins[:, None, None] + s[:, :, None, None] * u[:, None, None] + t[:, None, :, None] * v[:, None, None]
    np.testing.assert_allclose(points, expected, atol=1e-12)


def test_planes_without_data_use_standard_normal_reference():
    grid = make_grid(10, size=4, n_planes=3, seed=0)
    assert grid.through == "standard_normal_points"
    np.testing.assert_allclose(grid.half_widths.numpy(), 2.0)


def test_more_planes_than_test_points_reuse_points_with_new_directions():
    data = torch.randn(2, 5, generator=torch.Generator().manual_seed(0))
    grid = make_grid(5, size=4, n_planes=5, seed=0, data=data)
    assert {tuple(o.tolist()) for o in grid.origins} == {tuple(d.double().tolist()) for d in data}
    assert len({tuple(d.flatten().tolist()) for d in grid.directions}) == 5


def test_deterministic_per_seed_and_chunks_assemble_the_whole():
    a = make_grid(12, size=8, n_planes=3, seed=5)
    b = make_grid(12, size=8, n_planes=3, seed=5)
    c = make_grid(12, size=8, n_planes=3, seed=6)
    assert torch.equal(a.points(), b.points()) and not torch.equal(a.points(), c.points())
    whole = a.points()
    pieces = torch.cat([a.points(i, min(i + 50, a.n_points)) for i in range(0, a.n_points, 50)])
    assert torch.equal(whole, pieces)
    with pytest.raises(ValueError):
        a.points(0, a.n_points + 1)


def test_rejects_mismatched_data_and_bad_sizes():
    with pytest.raises(ValueError, match="values"):
        make_grid(3, size=4, n_planes=1, seed=0, data=torch.zeros(5, 4))
    with pytest.raises(ValueError):
        make_grid(3, size=1, n_planes=1, seed=0)
    with pytest.raises(ValueError):
        make_grid(3, size=4, n_planes=0, seed=0)
