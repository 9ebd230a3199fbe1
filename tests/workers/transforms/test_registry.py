import pytest

from models.errors import InputError
from workers.transforms import TRANSFORMS, TRANSFORMS_BY_KIND, build_transform, check_transform, default_transform_names

LOC = ["probes", "invariance", "transforms", 0]


def test_each_input_kind_lists_the_transforms_of_the_methods_page():
    assert TRANSFORMS_BY_KIND["image"] == (
        "circular_shift", "translate", "rotate", "horizontal_flip", "vertical_flip", "scale", "brightness",
        "contrast", "gaussian_noise", "custom",
    )
    assert TRANSFORMS_BY_KIND["sequence"] == ("cyclic_shift", "reversal", "position_permutation", "custom")
    assert TRANSFORMS_BY_KIND["tokens"] == TRANSFORMS_BY_KIND["sequence"]
    assert TRANSFORMS_BY_KIND["tabular"] == ("feature_permutation", "sign_flip", "custom")
    assert default_transform_names("tabular") == ("feature_permutation", "sign_flip")
    # Nothing continuous acts on token ids.
    assert not any(TRANSFORMS[name].generators for name in TRANSFORMS_BY_KIND["tokens"])


def test_continuous_transforms_name_their_generators_and_units():
    continuous = {name: (cls.generators, cls.t_unit) for name, cls in TRANSFORMS.items() if cls.generators}
    assert set(continuous) == {"translate", "rotate", "scale", "brightness", "contrast", "gaussian_noise"}
    assert continuous["translate"] == (("x", "y"), "pixel")
    assert continuous["rotate"] == (("angle",), "radian")


def test_unknown_name_is_an_input_error_listing_the_valid_choices():
    with pytest.raises(InputError) as info:
        check_transform("shear", "image", None, LOC)
    (error,) = info.value.errors
    assert error["loc"] == LOC
    assert "'shear'" in error["msg"] and "'rotate'" in error["msg"] and "'custom'" in error["msg"]


def test_transform_for_another_input_kind_is_refused_with_the_valid_choices():
    with pytest.raises(InputError) as info:
        check_transform("rotate", "tokens", None, LOC)
    message = info.value.errors[0]["msg"]
    assert "acts on image inputs, not tokens" in message and "'cyclic_shift'" in message


def test_magnitude_errors_point_at_the_magnitude():
    with pytest.raises(InputError) as info:
        check_transform("rotate", "image", 400, LOC)
    assert info.value.errors[0]["loc"] == [*LOC, "magnitude"] and "degrees" in info.value.errors[0]["msg"]
    with pytest.raises(InputError, match="has no magnitude"):
        check_transform("reversal", "sequence", 2, LOC)
    with pytest.raises(InputError, match="whole number"):
        check_transform("circular_shift", "image", 1.5, LOC)
    assert check_transform("rotate", "image", 30, LOC).name == "rotate"


def test_build_transform_applies_magnitudes_and_needs_a_permutation_for_custom():
    assert build_transform("rotate", "image", (1, 4, 4), 30).magnitude == 30.0
    assert build_transform("rotate", "image", (1, 4, 4)).magnitude == 15.0
    with pytest.raises(InputError) as info:
        build_transform("custom", "tabular", (3,), loc=LOC)
    assert info.value.errors[0]["loc"] == LOC and "input_permutation" in info.value.errors[0]["msg"]
    with pytest.raises(InputError) as info:
        build_transform("custom", "tabular", (3,), permutation=[1, 0], loc=LOC)
    assert info.value.errors[0]["loc"] == ["task", "input_permutation"]
    assert build_transform("custom", "tabular", (3,), permutation=[2, 0, 1]).permutation.tolist() == [2, 0, 1]
