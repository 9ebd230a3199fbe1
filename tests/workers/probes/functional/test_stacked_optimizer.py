"""The stacked optimizer against ``torch.optim``, and the per-member independence it relies on."""

from __future__ import annotations

import pytest
import torch

from workers.probes.functional.stacked_optimizer import StackedOptimizer, make_optimizer
from workers.runspec import TrainSpec


def _member_loss(w, target):
    return ((w - target) ** 2 * (w.abs() + 1)).sum(dim=(-2, -1))


@pytest.mark.parametrize("make_opt", ["plain", "trainer"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_one_optimizer_over_stacked_params_equals_separate_runs(optimizer, make_opt):
    # Adam and SGD are elementwise: a summed loss over disjoint stacked members gives each member
    # exactly its own run (the claim docs/methods.md §1 "Speed" relies on).
    S, steps = 4, 25
    generator = torch.Generator().manual_seed(0)
    init = torch.randn(S, 5, 3, generator=generator)
    targets = torch.randn(steps, S, 5, 3, generator=generator) * torch.arange(1, S + 1).view(1, S, 1, 1)
    spec = TrainSpec(optimizer=optimizer, lr=0.05)

    stacked = init.clone().requires_grad_()
    if make_opt == "trainer":
        opt = make_optimizer(spec, [stacked])
    else:
        opt = (torch.optim.Adam if optimizer == "adam" else torch.optim.SGD)([stacked], lr=spec.lr)
    for t in range(steps):
        opt.zero_grad()
        _member_loss(stacked, targets[t]).sum().backward()
        opt.step()
    for j in range(S):
        w = init[j].clone().requires_grad_()
        single = (torch.optim.Adam if optimizer == "adam" else torch.optim.SGD)([w], lr=spec.lr)
        for t in range(steps):
            single.zero_grad()
            _member_loss(w, targets[t, j]).backward()
            single.step()
        # Equal to float rounding: 25 steps of float32 elementwise updates, relative 1e-6.
        torch.testing.assert_close(stacked[j].detach(), w.detach(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_explicit_gradients_on_a_flat_buffer_equal_torch_optim_on_separate_tensors(optimizer):
    # The trainer keeps every parameter in one flat buffer and passes gradients it computed itself.
    generator = torch.Generator().manual_seed(1)
    shapes = [(3, 4), (3,), (2, 3)]
    tensors = [torch.randn(*s, generator=generator) for s in shapes]
    flat = torch.cat([t.reshape(-1) for t in tensors])
    opt = StackedOptimizer(optimizer, 0.01, [flat])
    reference = [t.clone().requires_grad_() for t in tensors]
    ref_opt = (torch.optim.Adam if optimizer == "adam" else torch.optim.SGD)(reference, lr=0.01)
    for _ in range(10):
        grads = [torch.randn(*s, generator=generator) for s in shapes]
        opt.step([torch.cat([g.reshape(-1) for g in grads])])
        for r, g in zip(reference, grads):
            r.grad = g
        ref_opt.step()
    torch.testing.assert_close(flat, torch.cat([r.detach().reshape(-1) for r in reference]), rtol=1e-6, atol=1e-7)


def test_a_missing_gradient_and_an_unknown_optimizer_are_refused():
    with pytest.raises(ValueError, match="optimizer"):
        StackedOptimizer("rmsprop", 0.1, [torch.zeros(2)])
    opt = StackedOptimizer("adam", 0.1, [torch.zeros(2, requires_grad=True)])
    with pytest.raises(ValueError, match="gradient"):
        opt.step()
