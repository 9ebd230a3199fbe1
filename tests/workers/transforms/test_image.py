import math

import numpy as np
import pytest
import torch

from models.errors import InputError
from workers.transforms import Transform, build_transform, check_transform

SHAPE = (2, 7, 6)
CONTINUOUS = ("translate", "rotate", "scale", "brightness", "contrast", "gaussian_noise")


def image(n=3, seed=0, shape=SHAPE):
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def make(name, magnitude=None, shape=SHAPE, padding=None):
    return build_transform(name, "image", shape, magnitude, padding=padding)


def draws(transform, n=3, seed=0):
    return transform.sample(n, torch.Generator().manual_seed(seed))


def test_circular_shift_is_torch_roll_per_image():
    x, shift = image(5), make("circular_shift", 3)
    params = draws(shift, 5)
    assert params.dtype == torch.long and params.abs().max() <= 3 and (params != 0).any(dim=1).all()
    out = shift.apply(x, params)
    for i in range(5):
        assert torch.equal(out[i], torch.roll(x[i], (int(params[i, 0]), int(params[i, 1])), dims=(-2, -1)))


def test_integer_translation_moves_pixels_and_pads_with_zeros():
    x = image(2)
    out = make("translate").apply(x, torch.tensor([[2.0, 0.0], [-1.0, 3.0]], dtype=torch.float64))
    expected = np.zeros_like(x.numpy())
    expected[0, :, :, 2:] = x[0, :, :, :-2].numpy()  # x = +2: content moves right
    expected[1, :, 3:, :-1] = x[1, :, :-3, 1:].numpy()  # x = -1, y = +3: left and down
    np.testing.assert_array_equal(out.numpy(), expected)


def test_rotation_by_a_right_angle_is_rot90_clockwise():
    x = image(2, shape=(1, 6, 6))
    out = make("rotate", shape=(1, 6, 6)).apply(x, torch.full((2, 1), math.pi / 2, dtype=torch.float64))
    torch.testing.assert_close(out, torch.rot90(x, -1, dims=(-2, -1)), atol=1e-12, rtol=0)


def test_scale_zooms_about_the_centre():
    # Zoom by 2 about the centre of a 5x5 image: output pixel p reads the input at c + (p - c) / 2.
    x = image(1, shape=(1, 5, 5))
    out = make("scale", 1.5, shape=(1, 5, 5)).apply(x, torch.tensor([[math.log(2.0)]], dtype=torch.float64))
    assert out[0, 0, 2, 2] == pytest.approx(x[0, 0, 2, 2].item(), abs=1e-12)
    assert out[0, 0, 0, 0] == pytest.approx(x[0, 0, 1, 1].item(), abs=1e-12)
    assert out[0, 0, 4, 2] == pytest.approx(x[0, 0, 3, 2].item(), abs=1e-12)


def test_flips_photometric_transforms_and_noise_have_their_closed_forms():
    x = image(4)
    assert torch.equal(make("horizontal_flip").apply(x, draws(make("horizontal_flip"), 4)), x.flip(-1))
    assert torch.equal(make("vertical_flip").apply(x, draws(make("vertical_flip"), 4)), x.flip(-2))
    t = torch.tensor([[0.1], [-0.2], [0.0], [0.05]], dtype=torch.float64)
    torch.testing.assert_close(make("brightness").apply(x, t), x + t.view(4, 1, 1, 1))
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(make("contrast").apply(x, t), mean + torch.exp(t).view(4, 1, 1, 1) * (x - mean))
    noise = make("gaussian_noise", 0.5)
    params = draws(noise, 4000)
    assert params.shape == (4000, *SHAPE)
    assert params.std().item() == pytest.approx(0.5, rel=0.01) and abs(params.mean().item()) < 0.01
    torch.testing.assert_close(noise.apply(x, params[:4]), x + params[:4])


@pytest.mark.parametrize(
    "name, magnitude, bound",
    [("translate", 1.5, 1.5), ("rotate", 30, math.radians(30)), ("scale", 0.25, math.log(1.25)),
     ("brightness", 0.3, 0.3), ("contrast", 0.5, math.log(1.5))],
)
def test_sampled_parameters_fill_the_range(name, magnitude, bound):
    params = draws(make(name, magnitude), 5000)
    assert params.abs().max().item() <= bound
    assert params.abs().max().item() > 0.99 * bound
    assert abs(params.mean().item()) < 0.05 * bound


@pytest.mark.parametrize("name", CONTINUOUS)
def test_flow_is_the_identity_at_zero_and_tangents_match_central_differences(name):
    transform, x = make(name), image(3)
    k = len(transform.generators)
    zero = torch.zeros(3, k, dtype=torch.float64)
    assert torch.equal(transform.flow(x, zero, seed=5), x)
    tangents = transform.tangents(x, seed=5)
    assert tangents.shape == (k, *x.shape)
    h = 1e-7
    for j in range(k):
        step = zero.clone()
        step[:, j] = h
        fd = (transform.flow(x, step, seed=5) - transform.flow(x, -step, seed=5)) / (2 * h)
        torch.testing.assert_close(tangents[j], fd, atol=1e-6, rtol=0)


@pytest.mark.parametrize("padding", ["zeros", "border", "reflection", "circular"])
@pytest.mark.parametrize("name", ["translate", "rotate", "scale"])
def test_closed_form_generators_equal_forward_mode_ad_through_the_warp(name, padding):
    transform, x = make(name, padding=padding), image(2)
    assert transform.padding == padding
    torch.testing.assert_close(transform.tangents(x), Transform.tangents(transform, x), atol=1e-12, rtol=0)


def test_translation_padding_by_hand_on_a_four_pixel_row():
    # Content moves right by one pixel: output column q reads input column q - 1, so column 0 reads
    # column -1, which each padding fills in its own way; the other columns are plain pixel moves.
    x = torch.tensor([[[[1.0, 2.0, 4.0, 8.0]]]], dtype=torch.float64)
    one_right = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    expected = {"zeros": [0, 1, 2, 4], "border": [1, 1, 2, 4], "reflection": [2, 1, 2, 4], "circular": [8, 1, 2, 4]}
    for padding, row in expected.items():
        out = make("translate", shape=(1, 1, 4), padding=padding).flow(x, one_right)
        torch.testing.assert_close(out[0, 0, 0], torch.tensor(row, dtype=torch.float64), atol=1e-15, rtol=0)
    # Half a pixel: Catmull-Rom weights (-1/16, 9/16, 9/16, -1/16) over columns q-2 .. q+1. At
    # column 0 (reads -2, -1, 0, 1) reflection gives x[2], x[1], x[0], x[1]:
    half = make("translate", shape=(1, 1, 4), padding="reflection").flow(x, torch.tensor([[0.5, 0.0]], dtype=torch.float64))
    assert half[0, 0, 0, 0].item() == pytest.approx((-4 + 9 * 2 + 9 * 1 - 2) / 16, abs=1e-14)
    # The generator at the border pixel is minus the central difference (x[1] - x[-1]) / 2: 0 under
    # reflection (x[-1] = x[1]), -1 under zero padding. The Lie derivative differs there.
    assert make("translate", shape=(1, 1, 4), padding="reflection").tangents(x)[0, 0, 0, 0, 0].item() == 0.0
    assert make("translate", shape=(1, 1, 4)).tangents(x)[0, 0, 0, 0, 0].item() == pytest.approx(-1.0)


def test_circular_padding_makes_integer_translations_circular_shifts():
    x = image(2)
    shifts = torch.tensor([[2.0, -1.0], [-3.0, 4.0]], dtype=torch.float64)
    out = make("translate", padding="circular").flow(x, shifts)
    for i in range(2):
        expected = torch.roll(x[i], (int(shifts[i, 1]), int(shifts[i, 0])), dims=(-2, -1))
        torch.testing.assert_close(out[i], expected, atol=1e-14, rtol=0)


def test_padding_changes_only_the_pixels_that_read_beyond_the_border():
    x = image(1)
    t = torch.tensor([[0.3, -0.4]], dtype=torch.float64)
    zeros, reflected = make("translate").flow(x, t), make("translate", padding="reflection").flow(x, t)
    # A shift below one pixel reads 2 pixels either side of the source point: rows and columns
    # within 2 of the border may differ, the interior may not.
    torch.testing.assert_close(zeros[..., 2:-2, 2:-2], reflected[..., 2:-2, 2:-2], atol=1e-15, rtol=0)
    assert (zeros - reflected).abs().amax().item() > 1e-3


def test_padding_is_offered_by_the_warps_only():
    assert make("rotate").padding == "zeros" and make("horizontal_flip").padding is None
    with pytest.raises(InputError) as caught:
        check_transform("horizontal_flip", "image", None, ["transforms", 0], "reflection")
    assert caught.value.errors[0]["loc"] == ["transforms", 0, "padding"]
    with pytest.raises(InputError, match="choose from"):
        check_transform("translate", "image", None, ["transforms", 0], "mirror")


def test_translation_generator_is_minus_the_central_difference_gradient():
    x = image(2)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    d_col = (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]) / 2
    d_row = (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]) / 2
    tangents = make("translate").tangents(x)
    torch.testing.assert_close(tangents[0], -d_col)
    torch.testing.assert_close(tangents[1], -d_row)


def test_noise_tangent_is_the_seeded_direction_of_its_flow():
    noise, x = make("gaussian_noise"), image(2)
    first, again, other = noise.tangents(x, seed=1), noise.tangents(x, seed=1), noise.tangents(x, seed=2)
    assert torch.equal(first, again) and not torch.equal(first, other)
    torch.testing.assert_close(first[0], noise.flow(x, torch.ones(2, 1, dtype=torch.float64), seed=1) - x)


def test_spatial_transforms_act_on_image_outputs_only():
    for name in ("circular_shift", "translate", "rotate", "horizontal_flip", "vertical_flip", "scale"):
        transform = make(name)
        assert transform.acts_on((5, 7, 6))
        assert not transform.acts_on((10,)) and not transform.acts_on((5, 6, 7))
        assert "image-to-image" in transform.equivariance_note((10,))
    for name in ("brightness", "contrast", "gaussian_noise"):
        assert not make(name).acts_on((2, 7, 6))
        assert "only invariance" in make(name).equivariance_note((2, 7, 6))


def test_spatial_transforms_apply_the_same_draws_to_outputs_with_other_channel_counts():
    x, shift = image(2), make("translate")
    params = torch.tensor([[0.4, -1.3], [2.0, 0.5]], dtype=torch.float64)
    wide = torch.cat([x, 2 * x], dim=1)  # 4 channels instead of 2
    out = shift.apply(wide, params)
    torch.testing.assert_close(out[:, :2], shift.apply(x, params))
    torch.testing.assert_close(out[:, 2:], 2 * shift.apply(x, params))
