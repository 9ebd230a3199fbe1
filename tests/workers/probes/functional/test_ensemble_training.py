"""Batched hypothesis samplers against plain per-hypothesis loops, and their chunk/shard invariance."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from models.registry import build_model
from models.specs import parse_arch
from workers.data.builtin import load_builtin
from models.errors import InputError
from workers.probes.functional import hypothesis_loss
from workers.probes.functional.ensemble import data_order_seed, hypothesis_seed
from workers.probes.functional.ensemble_training import (
    MAX_CHUNK,
    default_chunk_size,
    sample_losses,
    train_ensemble,
)
from workers.runspec import TrainSpec
from workers.training import train_model

MLP = parse_arch({"name": "mlp", "in_dim": 4, "hidden": [8], "out_dim": 3})
MLP_LN = parse_arch(
    {"name": "mlp", "in_dim": 4, "hidden": [6, 6], "out_dim": 3, "activation": "gelu", "layernorm": True, "residual": True}
)
CNN = parse_arch({"name": "cnn", "in_channels": 1, "image_size": 2, "channels": [3], "out_dim": 3})
# 43 training rows with batch size 16: the last minibatch of each epoch is short, as in train_model.
ADAM = TrainSpec(optimizer="adam", lr=0.02, epochs=3, batch_size=16)
SGD = TrainSpec(optimizer="sgd", lr=0.1, epochs=2, batch_size=10)
SHORT = TrainSpec(optimizer="adam", lr=0.02, epochs=1, batch_size=16)


@pytest.fixture(scope="module")
def clusters():
    return load_builtin("gaussian_clusters", {"n_train": 43, "n_test": 31, "in_dim": 4, "n_classes": 3}, 0)


@pytest.fixture(scope="module")
def images(clusters):
    # The same task with each 4-vector seen as a 1x2x2 image.
    return dataclasses.replace(
        clusters, X_train=clusters.X_train.reshape(-1, 1, 2, 2), X_test=clusters.X_test.reshape(-1, 1, 2, 2)
    )


@pytest.fixture(scope="module")
def teacher():
    return load_builtin("teacher", {"n_train": 30, "n_test": 20, "in_dim": 4, "out_dim": 3, "teacher_hidden": [4]}, 0)


def _plain_losses(arch, dataset, train, loss, n, seed):
    """The per-hypothesis loop: build_model + train_model + one test forward each."""
    params, losses = [], []
    for i in range(n):
        h = hypothesis_seed(seed, i)
        model = build_model(arch, h)
        if train is not None:
            train_model(model, dataset, train, loss, seed=data_order_seed(h))
        with torch.no_grad():
            outputs = model(dataset.X_test).unsqueeze(0)
        losses.append(hypothesis_loss.test_losses(outputs, dataset.y_test, loss, dataset.task_type).item())
        params.append(model.state_dict())
    return params, np.array(losses)


@pytest.mark.parametrize(
    "arch_name, data_name, train, loss",
    [
        # Plain ReLU MLPs take the hand-derived gradients (mlp_gradients), the others autograd.
        ("mlp", "clusters", ADAM, "mse"),
        ("mlp", "clusters", ADAM, "cross_entropy"),
        ("mlp_ln", "clusters", ADAM, "cross_entropy"),
        ("mlp", "teacher", SGD, "mse"),
        ("cnn", "images", ADAM, "cross_entropy"),
    ],
)
def test_trained_sampler_equals_plain_loop(arch_name, data_name, train, loss, request):
    arch = {"mlp": MLP, "mlp_ln": MLP_LN, "cnn": CNN}[arch_name]
    dataset = request.getfixturevalue(data_name)
    if data_name == "teacher":
        arch = arch.model_copy(update={"out_dim": 3})
    n, seed = 3, 5
    ref_params, ref_losses = _plain_losses(arch, dataset, train, loss, n, seed)
    ensemble = train_ensemble(arch, dataset, train, loss, [hypothesis_seed(seed, i) for i in range(n)])
    # 9 Adam steps of float32 sums taken in another order (batched kernels, hand-derived backward):
    # rounding differences of ~1e-7 per step, amplified by Adam's normalisation where a gradient
    # entry is near zero; 1e-5 relative bounds them with margin and is far below any real error.
    for j in range(n):
        for key, value in ensemble.params.items():
            torch.testing.assert_close(value[j], ref_params[j][key], rtol=1e-5, atol=1e-6)
    losses = sample_losses(arch, dataset, loss, "trained", n, seed, train)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)


@pytest.mark.parametrize("loss", ["mse", "cross_entropy", "zero_one"])
@pytest.mark.parametrize("arch_name", ["mlp", "cnn"])
def test_init_sampler_equals_per_member_forward(arch_name, loss, clusters, images):
    arch, dataset = (MLP, clusters) if arch_name == "mlp" else (CNN, images)
    _, ref_losses = _plain_losses(arch, dataset, None, loss, 6, 2)
    np.testing.assert_allclose(sample_losses(arch, dataset, loss, "init", 6, 2), ref_losses, rtol=1e-6)


def test_zero_one_task_trains_with_cross_entropy(clusters):
    seeds = [hypothesis_seed(0, i) for i in range(2)]
    a = train_ensemble(MLP, clusters, ADAM, "zero_one", seeds)
    b = train_ensemble(MLP, clusters, ADAM, "cross_entropy", seeds)
    assert all(torch.equal(a.params[k], b.params[k]) for k in a.params)
    rates = sample_losses(MLP, clusters, "zero_one", "trained", 2, 0, ADAM)
    # An error rate on 31 test points is a multiple of 1/31.
    np.testing.assert_allclose(rates * 31, np.round(rates * 31), atol=1e-9)


@pytest.mark.parametrize("sampler", ["init", "trained"])
@pytest.mark.parametrize("arch_name", ["mlp", "mlp_ln", "cnn"])
def test_shards_with_one_chunk_size_equal_the_unsharded_run_exactly(sampler, arch_name, clusters, images):
    arch, dataset = {"mlp": (MLP, clusters), "mlp_ln": (MLP_LN, clusters), "cnn": (CNN, images)}[arch_name]
    n, seed, chunk = 7, 3, 3
    whole = sample_losses(arch, dataset, "mse", sampler, n, seed, SHORT, chunk_size=chunk)
    # Shards that start and end inside chunks: each computes its whole aligned chunks, the last one
    # cut at the run's end (run_size) as the unsharded run cuts it.
    shards = [(0, 2), (2, 3), (5, 2)]
    merged = np.concatenate([
        sample_losses(arch, dataset, "mse", sampler, c, seed, SHORT, chunk_size=chunk, start_index=s, run_size=n)
        for s, c in shards
    ])
    assert np.array_equal(merged, whole)
    # Other chunk sizes agree to float rounding (kernels round tensor tails differently).
    for other in (1, n):
        np.testing.assert_allclose(
            sample_losses(arch, dataset, "mse", sampler, n, seed, SHORT, chunk_size=other), whole, rtol=1e-6, atol=0
        )


def test_trained_sampler_needs_a_training_split(clusters):
    test_only = dataclasses.replace(clusters, X_train=clusters.X_train[:0], y_train=clusters.y_train[:0])
    with pytest.raises(InputError) as info:
        sample_losses(MLP, test_only, "mse", "trained", 2, 0, ADAM)
    assert info.value.errors[0]["loc"] == ["task", "dataset"]
    # The init sampler does not train, so a test-only dataset is fine.
    assert np.isfinite(sample_losses(MLP, test_only, "mse", "init", 2, 0)).all()


def test_divergence_shows_as_non_finite_losses(teacher):
    # A huge SGD step on unit-scale regression blows the weights up to inf/NaN within an epoch.
    arch = MLP.model_copy(update={"out_dim": 3})
    losses = sample_losses(arch, teacher, "mse", "trained", 3, 0, TrainSpec(optimizer="sgd", lr=10.0, epochs=3, batch_size=5))
    assert not np.isfinite(losses).any()


def test_progress_is_monotone_and_ends_at_one(clusters):
    seen = []
    sample_losses(MLP, clusters, "mse", "trained", 5, 0, ADAM, chunk_size=2, progress=lambda f, _m: seen.append(f))
    assert seen == sorted(seen) and seen[-1] == 1.0 and 0 < seen[0]


def test_default_chunk_size_follows_the_memory_estimate(clusters):
    small = default_chunk_size(MLP, clusters, ADAM)
    assert 1 <= small <= MAX_CHUNK
    wide = parse_arch({"name": "mlp", "in_dim": 4, "hidden": [4096, 4096], "out_dim": 3})
    big_batch = ADAM.model_copy(update={"batch_size": 4096})
    # 16 bytes x ~16.8M parameters per hypothesis leaves room for far fewer than MAX_CHUNK.
    assert default_chunk_size(wide, clusters, big_batch) < min(small, 64)
