"""Benchmark the rare-event estimator against plain sampling on the digits kernel space (issue 13).

Case: the ``kernel`` sampler on scikit-learn's 8x8 digits (100 training images, 10 per class; the
450 test images; one-hot mse), as in ``experiments/inductive_bias.py``. Epsilon is chosen so that
the exact answer (generalised chi-squared law of the GP's test mse) is 40 and 100 bits. For each:

- ``rare_event``: ``--replicates`` runs of subset simulation with ``--chains`` chains (p0 0.1):
  bits, ci95, relative error against the exact bits, and E, the loss evaluations it spent;
- ``plain``: the batched plain sampler (``gp_kernel.sample_kernel_losses``) with the same E
  evaluations: how many samples reach epsilon, the Clopper-Pearson lower bound on the bits, and the
  fitted tail's bits (``noncentral_chi2.mle_fit``, no bootstrap: only its error is compared) with
  their relative error;
- throughput: hypotheses (loss evaluations) per second of both, timed in the same process, and
  their ratio (target: the chains within 2x of the plain sampler per evaluation).

With ``--trained``, instead: the cost of ``rare_event`` on the ``trained`` sampler (each
evaluation is a training run, batched over the chains) on a small case (teacher task, 4 inputs, 32
training and 64 test points; MLP 4-16-1, normal(0.5) init; Adam lr 0.01, 5 epochs, batch 16):
seconds per evaluation in the chains and in one batch of 2000, the plain trained sampler's seconds
per hypothesis, and one rare_event estimate below the smallest of 2000 plain samples.

    python benchmarks/bench_rare_event.py [--chains 500] [--replicates 8] [--depths 40 100] [--threads 1] [--trained]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workers.data.builtin import load_builtin  # noqa: E402
from workers.probes.functional import gp_kernel  # noqa: E402
from workers.probes.functional.generalized_chi2 import epsilon_for_bits, log_cdf  # noqa: E402
from workers.probes.functional.intervals import clopper_pearson  # noqa: E402
from workers.probes.functional.latent_spaces import kernel_latent  # noqa: E402
from workers.probes.functional.noncentral_chi2 import bits_below, mle_fit  # noqa: E402
from workers.probes.functional.rare_event import rare_event_bits  # noqa: E402


def digits_posterior(n_train: int, n_classes: int) -> tuple[gp_kernel.GPPosterior, np.ndarray]:
    dataset = load_builtin("digits", {"n_train": n_train, "n_classes": n_classes}, seed=0)
    posterior = gp_kernel.gp_posterior(dataset.X_train.double().numpy(),
                                       gp_kernel.one_hot(dataset.y_train.numpy(), n_classes),
                                       dataset.X_test.double().numpy())
    return posterior, dataset.y_test.numpy().astype(np.int64)


def run_depth(posterior, labels, depth: float, args) -> dict:
    law = gp_kernel.kernel_mse_distribution(posterior, labels)
    epsilon = epsilon_for_bits(depth, *law)
    exact = float(log_cdf(epsilon, *law).bits)
    space = kernel_latent(posterior, labels)

    started = time.perf_counter()
    estimate = rare_event_bits(space.loss_fn, space.dim, epsilon, replicates=args.replicates, seed=args.seed,
                               n_chains=args.chains)
    chain_seconds = time.perf_counter() - started
    evaluations = estimate.evaluations

    started = time.perf_counter()
    losses = gp_kernel.sample_kernel_losses(posterior, labels, evaluations, args.seed)
    plain_seconds = time.perf_counter() - started
    n_below = int(np.count_nonzero(losses <= epsilon))
    _, high = clopper_pearson(n_below, losses.size)
    fitted = bits_below(epsilon, mle_fit(losses))
    return {
        "depth": depth, "exact_bits": exact, "evaluations": evaluations,
        "rare_event_bits": estimate.bits, "rare_event_ci95": estimate.ci95,
        "rare_event_rel_error": estimate.bits / exact - 1,
        "rare_event_covers": estimate.ci95[0] <= exact <= estimate.ci95[1],
        "acceptance": float(np.mean([np.mean(r.acceptance) for r in estimate.runs])),
        "plain_n_below": n_below, "plain_bits_lower_bound": float(-np.log2(high)),
        "fitted_tail_bits": fitted, "fitted_tail_rel_error": fitted / exact - 1,
        "chain_hps": evaluations / chain_seconds, "plain_hps": evaluations / plain_seconds,
    }


def trained_cost(args) -> dict:
    from models.specs import parse_arch
    from workers.probes.functional.ensemble_training import sample_losses
    from workers.probes.functional.latent_spaces import trained_latent
    from workers.runspec import TrainSpec

    dataset = load_builtin("teacher", {"in_dim": 4, "n_train": 32, "n_test": 64}, seed=0)
    arch = parse_arch({"name": "mlp", "in_dim": 4, "hidden": [16], "out_dim": dataset.y_test.shape[1],
                       "init": {"dist": "normal", "scale": 0.5}})
    spec = TrainSpec.model_validate({"optimizer": "adam", "lr": 0.01, "epochs": 5, "batch_size": 16})
    started = time.perf_counter()
    plain = sample_losses(arch, dataset, "mse", "trained", 2000, args.seed, train_spec=spec)
    plain_seconds = (time.perf_counter() - started) / 2000
    space = trained_latent(arch, dataset, "mse", spec)
    started = time.perf_counter()
    space.loss_fn(np.random.default_rng(args.seed).standard_normal((2000, space.dim)))
    batch_seconds = (time.perf_counter() - started) / 2000
    epsilon = 0.9 * float(np.min(plain))
    started = time.perf_counter()
    estimate = rare_event_bits(space.loss_fn, space.dim, epsilon, replicates=args.replicates, seed=args.seed,
                               n_chains=args.chains)
    seconds = time.perf_counter() - started
    row = {"plain_s_per_hypothesis": plain_seconds, "latent_batch_s_per_evaluation": batch_seconds,
           "chain_s_per_evaluation": seconds / estimate.evaluations, "bits": estimate.bits, "ci95": estimate.ci95,
           "evaluations": estimate.evaluations, "seconds": seconds, "latent_dim": space.dim}
    print(f"trained sampler, latent dimension {space.dim}: plain sampler {1e3 * plain_seconds:.2f} ms/hypothesis; "
          f"latent map {1e3 * batch_seconds:.2f} ms/evaluation in a batch of 2000, "
          f"{1e3 * row['chain_s_per_evaluation']:.2f} ms in the chains\n"
          f"  epsilon = 0.9 x the smallest of 2000 plain losses: rare_event {estimate.bits:.2f} "
          f"[{estimate.ci95[0]:.2f}, {estimate.ci95[1]:.2f}] bits from {estimate.evaluations} training runs in {seconds:.0f} s")
    return row


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--depths", type=float, nargs="+", default=[40.0, 100.0])
    parser.add_argument("--chains", type=int, default=500)
    parser.add_argument("--replicates", type=int, default=8)
    parser.add_argument("--n-train", type=int, default=100)
    parser.add_argument("--n-classes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--trained", action="store_true", help="measure the trained sampler's cost instead")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.trained:
        return [trained_cost(args)]
    posterior, labels = digits_posterior(args.n_train, args.n_classes)
    print(f"digits kernel space: {posterior.n_test} test points x {posterior.out_dim} outputs "
          f"(latent dimension {posterior.n_test * posterior.out_dim}); {args.replicates} replicates x "
          f"{args.chains} chains; numpy/BLAS threads as the environment sets them")
    rows = []
    for depth in args.depths:
        row = run_depth(posterior, labels, depth, args)
        rows.append(row)
        low, high = row["rare_event_ci95"]
        print(f"exact {row['exact_bits']:.2f} bits, {row['evaluations']} evaluations each:\n"
              f"  rare_event  {row['rare_event_bits']:.2f} [{low:.2f}, {high:.2f}] "
              f"(error {100 * row['rare_event_rel_error']:+.1f}%, covers: {row['rare_event_covers']}, "
              f"acceptance {row['acceptance']:.2f})\n"
              f"  plain       {row['plain_n_below']} below epsilon: bits >= {row['plain_bits_lower_bound']:.2f}; "
              f"fitted tail {row['fitted_tail_bits']:.2f} (error {100 * row['fitted_tail_rel_error']:+.1f}%)\n"
              f"  throughput  chains {row['chain_hps']:.0f} /s, plain sampler {row['plain_hps']:.0f} /s "
              f"(chains / plain = {row['chain_hps'] / row['plain_hps']:.2f})")
    return rows


if __name__ == "__main__":
    main()
