"""Built-in datasets: shapes, determinism, and each task's defining property against a direct recomputation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from workers.data.builtin import (
    BUILTIN_DATASETS,
    GaussianClustersParams,
    ParityParams,
    SineParams,
    TeacherParams,
    cluster_means,
    describe_builtin,
    load_builtin,
    parity_bits,
    sine_components,
    teacher_function,
    validate_builtin_params,
)
from models.errors import InputError

SYNTHETIC = ["teacher", "parity", "sine", "gaussian_clusters"]
ARRAYS = ("X_train", "y_train", "X_test", "y_test")


def _arrays(dataset):
    return [getattr(dataset, key) for key in ARRAYS]


def _same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(_arrays(a), _arrays(b)))


# ------------------------------------------------------------------------------- whole catalogue


@pytest.mark.parametrize("name", sorted(BUILTIN_DATASETS))
def test_defaults_give_consistent_dataset(name):
    ds = load_builtin(name, {}, seed=0)
    entry = BUILTIN_DATASETS[name]
    assert ds.name == name and ds.task_type == entry.task_type
    assert ds.X_train.shape[0] == ds.y_train.shape[0] > 0 and ds.X_test.shape[0] == ds.y_test.shape[0] > 0
    assert ds.X_train.shape[1:] == ds.X_test.shape[1:]
    assert ds.X_train.dtype == ds.X_test.dtype == torch.float32
    if ds.task_type == "classification":
        assert ds.y_test.dtype == torch.int64 and ds.y_test.ndim == 1
        labels = torch.cat([ds.y_train, ds.y_test])
        assert labels.min() >= 0 and labels.max() < ds.n_classes
    else:
        assert ds.n_classes is None and ds.y_test.dtype == torch.float32 and ds.y_test.ndim == 2
    assert all(torch.isfinite(t.float()).all() for t in _arrays(ds))
    assert ds.params["builtin"] == name and ds.params["seed"] == 0


@pytest.mark.parametrize("name", sorted(BUILTIN_DATASETS))
def test_same_seed_gives_identical_tensors_and_leaves_global_rng_alone(name):
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    a = load_builtin(name, {}, seed=3)
    b = load_builtin(name, {}, seed=3)
    assert _same(a, b)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert all(np.array_equal(x, y) for x, y in zip(np.random.get_state()[1:3], numpy_state[1:3]))


@pytest.mark.parametrize("name", SYNTHETIC)
def test_different_seeds_give_different_data(name):
    a, b = load_builtin(name, {}, seed=0), load_builtin(name, {}, seed=1)
    assert not torch.equal(a.X_train, b.X_train) and not torch.equal(a.X_test, b.X_test)


@pytest.mark.parametrize("name", SYNTHETIC)
def test_changing_n_test_keeps_the_training_set_and_the_hidden_function(name):
    small = load_builtin(name, {"n_test": 10}, seed=4)
    large = load_builtin(name, {"n_test": 30}, seed=4)
    assert torch.equal(small.X_train, large.X_train) and torch.equal(small.y_train, large.y_train)
    assert small.X_test.shape[0] == 10 and large.X_test.shape[0] == 30


@pytest.mark.parametrize("name", sorted(BUILTIN_DATASETS))
def test_describe_builtin_serves_a_strict_documented_schema(name):
    info = describe_builtin(name)
    schema = info["params_schema"]
    assert info["name"] == name and info["summary"] and info["task_type"] == BUILTIN_DATASETS[name].task_type
    assert schema["additionalProperties"] is False
    assert all("default" in field["description"] for field in schema["properties"].values())


@pytest.mark.parametrize("name", sorted(BUILTIN_DATASETS))
def test_unknown_param_is_refused_at_its_location(name):
    with pytest.raises(InputError) as exc:
        load_builtin(name, {"n_trian": 5}, seed=0)
    assert exc.value.errors[0]["loc"] == ["task", "dataset", "n_trian"]


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(InputError) as exc:
        load_builtin("mnist", {}, seed=0)
    (error,) = exc.value.errors
    assert error["loc"] == ["task", "dataset", "builtin"]
    assert all(name in error["msg"] for name in BUILTIN_DATASETS)
    with pytest.raises(InputError) as exc:
        describe_builtin("mnist")
    assert exc.value.errors[0]["loc"] == ["builtin"]


def test_bad_params_are_located_under_the_given_prefix():
    with pytest.raises(InputError) as exc:
        load_builtin("parity", {"n_bits": 0, "n_train": -1}, seed=0, loc_prefix=("dataset",))
    assert sorted(e["loc"] for e in exc.value.errors) == [["dataset", "n_bits"], ["dataset", "n_train"]]
    with pytest.raises(InputError) as exc:
        load_builtin("parity", {"n_bits": 4, "k": 5}, seed=0)
    assert exc.value.errors[0]["loc"] == ["task", "dataset", "k"]
    assert "k=5 must be at most n_bits=4" in exc.value.errors[0]["msg"]


def test_oversized_request_is_refused_before_allocating():
    with pytest.raises(InputError) as exc:
        load_builtin("teacher", {"in_dim": 4096, "n_train": 100_000}, seed=0)
    assert exc.value.errors[0]["loc"] == ["task", "dataset"]
    assert "exceeds the limit" in exc.value.errors[0]["msg"]


def test_builtin_key_of_the_reference_is_ignored():
    params = validate_builtin_params("parity", {"builtin": "parity", "k": 2})
    assert isinstance(params, ParityParams) and params.k == 2


# ----------------------------------------------------------------------------------------- digits


def test_digits_split_is_stratified_and_partitions_the_data():
    images, labels = load_digits(return_X_y=True)
    ds = load_builtin("digits", {"normalize": False}, seed=0)
    counts = np.bincount(labels, minlength=10)
    test_counts = np.bincount(ds.y_test.numpy(), minlength=10)
    np.testing.assert_array_equal(test_counts, np.round(0.25 * counts))
    np.testing.assert_array_equal(np.bincount(ds.y_train.numpy(), minlength=10) + test_counts, counts)
    # train + test is exactly the bundled set, row for row (compare as sorted multisets of rows)
    ours = np.column_stack([torch.cat([ds.X_train, ds.X_test]).numpy(), torch.cat([ds.y_train, ds.y_test]).numpy()])
    ref = np.column_stack([images, labels]).astype(np.float32)
    np.testing.assert_array_equal(ours[np.lexsort(ours.T)], ref[np.lexsort(ref.T)])


def test_digits_split_is_fixed_across_run_seeds_unless_asked_otherwise():
    assert _same(load_builtin("digits", {}, seed=0), load_builtin("digits", {}, seed=7))
    assert not torch.equal(load_builtin("digits", {"split_seed": 1}, 0).y_test, load_builtin("digits", {}, 0).y_test)
    follow_a = load_builtin("digits", {"split_seed": None}, seed=0)
    follow_b = load_builtin("digits", {"split_seed": None}, seed=7)
    assert not torch.equal(follow_a.X_test, follow_b.X_test)
    assert _same(follow_a, load_builtin("digits", {"split_seed": 0}, seed=123))


def test_digits_layout_normalisation_and_class_subset():
    flat = load_builtin("digits", {}, seed=0)
    image = load_builtin("digits", {"flatten": False}, seed=0)
    raw = load_builtin("digits", {"normalize": False}, seed=0)
    assert flat.X_train.shape[1:] == (64,) and image.X_train.shape[1:] == (1, 8, 8)
    assert torch.equal(image.X_train.reshape(-1, 64), flat.X_train)
    assert flat.X_train.min() == 0 and flat.X_train.max() == 1 and raw.X_train.max() == 16
    torch.testing.assert_close(raw.X_test / 16, flat.X_test, rtol=0, atol=0)
    binary = load_builtin("digits", {"n_classes": 2}, seed=0)
    assert binary.n_classes == 2 and set(torch.cat([binary.y_train, binary.y_test]).tolist()) == {0, 1}
    assert binary.X_test.shape[0] == sum(round(0.25 * c) for c in np.bincount(load_digits().target)[:2])


def test_digits_train_cap_keeps_classes_balanced():
    full = load_builtin("digits", {}, seed=0)
    capped = load_builtin("digits", {"n_train": 95}, seed=0)
    assert capped.X_train.shape[0] == 95 and torch.equal(capped.X_test, full.X_test)
    per_class = np.bincount(capped.y_train.numpy(), minlength=10)
    assert per_class.min() >= 9 and per_class.max() <= 10
    assert load_builtin("digits", {"n_train": 2000}, seed=0).X_train.shape[0] == full.X_train.shape[0]


# ---------------------------------------------------------------------------------------- teacher


def test_teacher_without_noise_is_an_exact_function_of_x():
    params = {"in_dim": 5, "teacher_hidden": [16, 8], "out_dim": 3, "n_train": 64, "n_test": 32}
    ds = load_builtin("teacher", params, seed=2)
    teacher = teacher_function(TeacherParams(**params), seed=2)
    assert ds.y_train.shape == (64, 3) and ds.y_test.shape == (32, 3)
    assert torch.equal(ds.y_test, teacher(ds.X_test).float())
    # The same input gives the same output wherever it sits in the batch (no coupling between rows).
    # A float64 GEMM may round a row differently by its position or the batch size (last bit), and
    # the float32 cast can carry that to one float32 ulp: 2^-23 relative.
    x = torch.cat([ds.X_test[:4], ds.X_train, ds.X_test[:4]])
    y = teacher(x).float()
    torch.testing.assert_close(y[:4], y[-4:], rtol=2**-23, atol=0)
    torch.testing.assert_close(y[:4], ds.y_test[:4], rtol=2**-23, atol=0)


def test_teacher_inputs_are_standard_normal_and_noise_has_the_requested_std():
    base = {"in_dim": 4, "n_train": 4000, "n_test": 1, "out_dim": 2}
    clean = load_builtin("teacher", base, seed=5)
    noisy = load_builtin("teacher", {**base, "noise_std": 0.5}, seed=5)
    x = clean.X_train.double()
    assert abs(x.mean()) < 0.05 and abs(x.var() - 1) < 0.05
    assert torch.equal(clean.X_train, noisy.X_train)
    residual = (noisy.y_train - clean.y_train).double()
    assert abs(residual.std() - 0.5) < 0.02 and abs(residual.mean()) < 0.03


def test_relu_teacher_on_a_line_is_piecewise_linear_with_at_most_width_kinks():
    teacher = teacher_function(TeacherParams(in_dim=1, teacher_hidden=[12]), seed=0)
    grid = torch.linspace(-3, 3, 2001, dtype=torch.float64).reshape(-1, 1)
    second_difference = torch.diff(teacher(grid).squeeze(1), n=2)
    kinks = int((second_difference.abs() > 1e-9).sum())
    # each hidden unit bends the line at most once, and a bend touches at most 2 second differences
    assert 0 < kinks <= 2 * 12
    tanh_teacher = teacher_function(TeacherParams(in_dim=1, activation="tanh"), seed=0)
    assert int((torch.diff(tanh_teacher(grid).squeeze(1), n=2).abs() > 1e-9).sum()) > 1000  # smooth, curved


# ----------------------------------------------------------------------------------------- parity


def test_parity_labels_match_a_direct_recount():
    ds = load_builtin("parity", {"n_bits": 12, "k": 4, "n_train": 300, "n_test": 200}, seed=9)
    bits = ds.params["relevant_bits"]
    assert bits == parity_bits(ParityParams(n_bits=12, k=4), 9) and bits == sorted(set(bits)) and len(bits) == 4
    assert 0 <= min(bits) and max(bits) < 12
    for x, y in ((ds.X_train, ds.y_train), (ds.X_test, ds.y_test)):
        assert set(x.unique().tolist()) == {-1.0, 1.0}
        odd_minus_ones = ((x[:, bits] == -1).sum(dim=1) % 2).numpy()
        np.testing.assert_array_equal(y.numpy(), odd_minus_ones)
    assert 0.35 < ds.y_train.float().mean() < 0.65


def test_parity_with_one_bit_is_that_bit_and_the_subset_depends_on_the_seed():
    ds = load_builtin("parity", {"n_bits": 6, "k": 1}, seed=0)
    (bit,) = ds.params["relevant_bits"]
    assert torch.equal(ds.y_test, (ds.X_test[:, bit] < 0).long())
    subsets = {tuple(load_builtin("parity", {}, seed=s).params["relevant_bits"]) for s in range(6)}
    assert len(subsets) > 1
    full = load_builtin("parity", {"n_bits": 5, "k": 5}, seed=0)
    assert full.params["relevant_bits"] == [0, 1, 2, 3, 4]
    assert torch.equal(full.y_test, (full.X_test.prod(dim=1) < 0).long())


# ------------------------------------------------------------------------------------------- sine


def test_sine_targets_match_a_direct_sum_of_sinusoids():
    params = {"in_dim": 3, "n_components": 4, "max_frequency": 2.0, "n_train": 50, "n_test": 40}
    ds = load_builtin("sine", params, seed=1)
    c = sine_components(SineParams(**params), seed=1)
    np.testing.assert_allclose(np.linalg.norm(c["directions"], axis=1), 1.0, rtol=1e-12)
    assert (c["frequencies"] <= 2.0).all() and (c["frequencies"] >= 0).all()
    assert ds.params["components"]["phases"] == c["phases"].tolist()
    x = ds.X_test.double().numpy()
    expected = np.zeros(len(x))
    for j in range(4):
        for i in range(len(x)):
            projection = sum(c["directions"][j, m] * x[i, m] for m in range(3))
            expected[i] += c["amplitudes"][j] * math.sin(2 * math.pi * c["frequencies"][j] * projection + c["phases"][j])
    assert ds.y_test.shape == (40, 1)
    np.testing.assert_allclose(ds.y_test.numpy()[:, 0], expected, rtol=1e-6, atol=1e-6)
    assert ds.X_train.min() >= -1 and ds.X_train.max() <= 1


def test_sine_noise_is_added_with_the_requested_std():
    clean = load_builtin("sine", {"n_train": 5000, "n_test": 1}, seed=0)
    noisy = load_builtin("sine", {"n_train": 5000, "n_test": 1, "noise_std": 0.2}, seed=0)
    residual = (noisy.y_train - clean.y_train).double()
    assert abs(residual.std() - 0.2) < 0.01


# ------------------------------------------------------------------------------ gaussian_clusters


def test_clusters_are_balanced_unit_gaussians_around_the_seeded_means():
    params = {"n_classes": 4, "in_dim": 3, "separation": 3.0, "n_train": 4001, "n_test": 10}
    ds = load_builtin("gaussian_clusters", params, seed=3)
    counts = np.bincount(ds.y_train.numpy(), minlength=4)
    assert counts.max() - counts.min() <= 1
    means = cluster_means(GaussianClustersParams(**params), seed=3)
    residual = ds.X_train.double().numpy() - means[ds.y_train.numpy()]
    np.testing.assert_allclose(residual.mean(axis=0), 0, atol=0.06)
    np.testing.assert_allclose(np.cov(residual.T), np.eye(3), atol=0.08)


def test_well_separated_clusters_are_solved_by_nearest_train_mean():
    ds = load_builtin("gaussian_clusters", {"separation": 30.0, "n_classes": 5, "in_dim": 4}, seed=0)
    centres = torch.stack([ds.X_train[ds.y_train == c].mean(0) for c in range(5)])
    predicted = torch.cdist(ds.X_test, centres).argmin(dim=1)
    assert (predicted == ds.y_test).float().mean() > 0.98
    same_place = load_builtin("gaussian_clusters", {"separation": 0.0, "n_train": 3000}, seed=0)
    assert abs(same_place.X_train.double().var() - 1) < 0.06
