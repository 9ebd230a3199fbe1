"""Latent maps reproduce their samplers' laws, and rare_event on them hits exact answers."""

import math

import numpy as np
import pytest
import torch
from scipy import optimize, stats

from models.registry import build_model
from models.specs import parse_arch
from workers.data.dataset import Dataset
from workers.probes.functional import gp_kernel
from workers.probes.functional.ensemble_training import sample_losses
from workers.probes.functional.generalized_chi2 import log_cdf
from workers.probes.functional.latent_spaces import init_latent, kernel_latent, parameter_laws
from workers.probes.functional.linear_gaussian import linear_gaussian_mse_law
from workers.probes.functional.rare_event import rare_event_bits


def small_task(n_test=40, d=6, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_test, d, generator=g)
    y = torch.randint(0, classes, (n_test,), generator=g)
    return Dataset(name="t", X_train=torch.randn(30, d, generator=g), y_train=torch.randint(0, classes, (30,), generator=g),
                   X_test=x, y_test=y, task_type="classification", n_classes=classes)


def test_kernel_latent_is_the_samplers_map():
    ds = small_task()
    posterior = gp_kernel.gp_posterior(ds.X_train.numpy(), gp_kernel.one_hot(ds.y_train.numpy(), 3), ds.X_test.numpy())
    space = kernel_latent(posterior, ds.y_test.numpy(), "cross_entropy")
    assert space.dim == 40 * 3
    # The sampler's own normals for hypotheses 0..4, fed through the latent map, give its losses.
    normals = gp_kernel._HypothesisNormals(7)
    z = np.stack([normals(i, (40, 3)) for i in range(5)]).reshape(5, -1)
    expected = gp_kernel.sample_kernel_losses(posterior, ds.y_test.numpy(), 5, 7, loss="cross_entropy")
    np.testing.assert_allclose(space.loss_fn(z), expected, rtol=1e-12)


@pytest.mark.slow  # measured 14.3 s under load average ~14 (--durations)
def test_kernel_latent_rare_event_matches_the_exact_law():
    ds = small_task(n_test=30)
    posterior = gp_kernel.gp_posterior(ds.X_train.numpy(), gp_kernel.one_hot(ds.y_train.numpy(), 3), ds.X_test.numpy())
    law = gp_kernel.kernel_mse_distribution(posterior, ds.y_test.numpy())
    epsilon = optimize.brentq(lambda e: log_cdf(e, *law).bits - 25, law[2] * (1 + 1e-9) + 1e-12, 10)
    space = kernel_latent(posterior, ds.y_test.numpy())
    hits = 0
    for seed in range(10):
        estimate = rare_event_bits(space.loss_fn, space.dim, epsilon, replicates=8, seed=seed, n_chains=300)
        hits += estimate.ci95[0] <= 25 <= estimate.ci95[1]
    # 95% nominal: 8 or fewer of 10 happens with probability 8.6%; seeds are fixed.
    assert hits >= 8


@pytest.mark.parametrize("dist", ["normal", "uniform"])
@pytest.mark.slow  # measured 9.6-11.7 s under load average ~14 (--durations)
def test_init_latent_has_the_init_samplers_law(dist):
    ds = small_task()
    arch = parse_arch({"name": "mlp", "in_dim": 6, "out_dim": 3, "hidden": [8], "init": {"dist": dist, "scale": 0.5}})
    space = init_latent(arch, ds, "mse")
    assert space.dim == sum(p.numel() for p in build_model(arch, 0).parameters())
    latent = space.loss_fn(np.random.default_rng(0).standard_normal((3000, space.dim)))
    sampled = sample_losses(arch, ds, "mse", "init", 3000, 0)
    # Two independent samples of one law: the two-sample KS test at a strict level.
    assert stats.ks_2samp(latent, sampled).pvalue > 1e-3


def test_default_init_laws_are_pytorchs():
    arch = parse_arch({"name": "mlp", "in_dim": 64, "out_dim": 3, "hidden": [256], "layernorm": True})
    laws = {law.name: law for law in parameter_laws(arch)}
    model = build_model(arch, 0)
    for name, param in model.named_parameters():
        law = laws[name]
        if law.kind == "constant":
            assert torch.all(param == law.scale)
        else:
            assert law.kind == "uniform" and param.abs().max() <= law.scale
            if param.numel() >= 256:
                # U(-b, b): the largest of n >= 256 draws of |w| falls below 0.97 b with probability
                # 0.97^n < 4e-4.
                assert param.abs().max() > 0.97 * law.scale
    assert laws["layers.0.weight"].scale == pytest.approx(1 / 8)


def test_default_init_without_a_known_law_is_refused():
    arch = parse_arch({"name": "vit", "image_size": 8, "patch_size": 4, "in_channels": 1, "dim": 8, "depth": 1,
                       "heads": 2, "out_dim": 3})
    with pytest.raises(ValueError, match="explicit init"):
        parameter_laws(arch)


@pytest.mark.slow  # measured 6.9 s under load average ~14 (--durations)
def test_init_latent_rare_event_on_a_linear_model_matches_the_exact_law():
    ds = small_task()
    arch = parse_arch({"name": "mlp", "in_dim": 6, "out_dim": 3, "hidden": [], "init": {"dist": "normal", "scale": 0.3}})
    law = linear_gaussian_mse_law(ds.X_test.numpy(), np.eye(3)[ds.y_test.numpy()], 0.3)
    space = init_latent(arch, ds, "mse")
    epsilon = optimize.brentq(lambda e: log_cdf(e, *law).bits - 20, law[2] * (1 + 1e-9), 10)
    estimate = rare_event_bits(space.loss_fn, space.dim, epsilon, replicates=8, seed=0, n_chains=300)
    assert estimate.ci95[0] <= 20 <= estimate.ci95[1]
    assert math.isclose(estimate.bits, 20, rel_tol=0.05)


@pytest.mark.slow  # measured 15.5 s under load average ~14 (--durations)
def test_trained_latent_has_the_trained_samplers_law():
    from workers.probes.functional.latent_spaces import trained_latent
    from workers.runspec import TrainSpec

    ds = small_task()
    arch = parse_arch({"name": "mlp", "in_dim": 6, "out_dim": 3, "hidden": [8], "init": {"dist": "uniform", "scale": 0.5}})
    spec = TrainSpec.model_validate({"optimizer": "adam", "lr": 0.01, "epochs": 2, "batch_size": 8})
    space = trained_latent(arch, ds, "cross_entropy", spec)
    assert space.dim == sum(p.numel() for p in build_model(arch, 0).parameters()) + 2 * 30
    latent = space.loss_fn(np.random.default_rng(0).standard_normal((1500, space.dim)))
    sampled = sample_losses(arch, ds, "cross_entropy", "trained", 1500, 0, train_spec=spec)
    assert stats.ks_2samp(latent, sampled).pvalue > 1e-3
