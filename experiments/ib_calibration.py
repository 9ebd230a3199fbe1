"""Calibration of the inductive-bias estimators against exact answers (issue 13, docs/methods.md §1).

For cases whose law of the test loss is known exactly, pick epsilon so that the exact answer is
``b`` bits for each target depth ``b``, run every estimator over seeds, and count how often its
ci95 covers the exact bits and how far its point estimate lies from them:

- ``linear``: the ``init`` sampler of a linear model (an MLP without hidden layers, ``normal(0.3)``
  init) on a synthetic 3-class task with 8 inputs and 40 test points; its MSE is a generalised
  chi-squared (``functional.linear_gaussian``), here with 27 terms of distinct weights. The
  estimators run the real machinery: ``ensemble_training.sample_losses`` and
  ``latent_spaces.init_latent`` (batched torch forwards).
- ``kernel``: the ``kernel`` sampler (GP posterior, RBF kernel, median lengthscale) on a
  synthetic 2-output regression task with 4 inputs, 40 training and 40 test points; exact bits
  from ``generalized_chi2.log_cdf`` of ``gp_kernel.kernel_mse_distribution`` (the probe's ``exact``).

Methods: ``rare_event`` (8 replicate runs of subset simulation, ``--chains`` chains, p0 = 0.1) and
``fitted_tail`` (the probe's estimator on ``samples`` plain samples: the non-central chi-squared
fit and bootstrap refits of ``bits_estimate.estimate_bits``, computed once per seed and read at
every depth by ``FittedTail`` (a test checks it equals ``estimate_bits``), the interval spanning it
and the log-normal family (``tail_families``), and the Clopper-Pearson lower bound as the headline
where no sample reaches epsilon). Its rows are ``flagged`` where the report flags the number as an
extrapolation (fewer than 10 samples at or below epsilon); a lower bound "covers" when the exact
bits are at or above it.

    python -m experiments.ib_calibration --out results/ib_calibration     # --quick: toy size, seconds

Writes ``ib_calibration.csv`` (one row per case, method, depth, seed) and ``ib_calibration.md``
(coverage table). The table in docs/inductive_bias.md comes from the default run.
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from models.specs import parse_arch
from workers.data.dataset import Dataset
from workers.probes.functional import gp_kernel
from workers.probes.functional.ensemble_training import sample_losses
from workers.probes.functional.generalized_chi2 import epsilon_for_bits, log_cdf
from workers.probes.functional.latent_spaces import LatentSpace, init_latent, kernel_latent
from workers.probes.functional.linear_gaussian import linear_gaussian_mse_law
from workers.probes.functional.bits_estimate import EXTRAPOLATION_THRESHOLD
from workers.probes.functional.intervals import bootstrap_mle_refits, clopper_pearson
from workers.probes.functional.noncentral_chi2 import bits_below, bits_below_fits, mle_fit
from workers.probes.functional.tail_families import FamilyEstimate, lognormal_estimate, span_interval
from workers.probes.functional.rare_event import DEFAULT_MOVES_PER_STATE, rare_event_bits

METHODS = ("rare_event", "fitted_tail")


@dataclass(frozen=True)
class CalibrationConfig:
    depths: tuple[float, ...] = (1, 5, 15, 40, 100)
    seeds: int = 20
    chains: int = 500
    replicates: int = 8
    samples: int = 300
    bootstrap: int = 200
    cases: tuple[str, ...] = ("linear", "kernel")
    moves: int = DEFAULT_MOVES_PER_STATE

    @classmethod
    def quick(cls) -> "CalibrationConfig":
        return cls(depths=(1, 15), seeds=3, chains=100, replicates=4, samples=60, bootstrap=200)


@dataclass
class Case:
    name: str
    law: tuple[np.ndarray, np.ndarray, float]
    latent: LatentSpace
    sample: callable  # (n, seed) -> losses from the plain sampler
    epsilons: dict[float, float] = field(default_factory=dict)

    def epsilon(self, bits: float) -> float:
        """Epsilon whose exact answer is ``bits`` (``generalized_chi2.epsilon_for_bits``), cached."""
        if bits not in self.epsilons:
            self.epsilons[bits] = epsilon_for_bits(bits, *self.law)
        return self.epsilons[bits]

    def exact_bits(self, epsilon: float) -> float:
        return float(log_cdf(epsilon, *self.law).bits)


def linear_case() -> Case:
    g = torch.Generator().manual_seed(2026)
    x = torch.randn(40, 8, generator=g)
    y = torch.randint(0, 3, (40,), generator=g)
    dataset = Dataset(name="linear", X_train=x[:0], y_train=y[:0], X_test=x, y_test=y,
                      task_type="classification", n_classes=3)
    arch = parse_arch({"name": "mlp", "in_dim": 8, "out_dim": 3, "hidden": [], "init": {"dist": "normal", "scale": 0.3}})
    return Case(
        "linear", linear_gaussian_mse_law(x.numpy(), np.eye(3)[y.numpy()], 0.3), init_latent(arch, dataset, "mse"),
        lambda n, seed: sample_losses(arch, dataset, "mse", "init", n, seed),
    )


def kernel_case() -> Case:
    rng = np.random.default_rng(2026)
    x_train, x_test = rng.standard_normal((40, 4)), rng.standard_normal((40, 4))
    w = rng.standard_normal((4, 2))
    y_train, y_test = np.sin(x_train @ w), np.sin(x_test @ w)
    posterior = gp_kernel.gp_posterior(x_train, y_train, x_test)
    return Case(
        "kernel", gp_kernel.kernel_mse_distribution(posterior, y_test), kernel_latent(posterior, y_test),
        lambda n, seed: gp_kernel.sample_kernel_losses(posterior, y_test, n, seed),
    )


CASES = {"linear": linear_case, "kernel": kernel_case}


class FittedTail:
    """``estimate_bits``'s ``bits`` and ``ci95`` at any epsilon from one fit and one set of bootstrap
    refits (the resamples of ``intervals.bootstrap_bits`` with the same seed), so that every depth
    does not repeat the B refits."""

    def __init__(self, losses: np.ndarray, n_boot: int, seed: int):
        self.fit = mle_fit(losses)
        self.boot_fits = bootstrap_mle_refits(losses, n_boot, seed, self.fit)
        self.losses = losses

    def __call__(self, epsilon: float) -> tuple[float, tuple[float, float], int]:
        """The non-central chi-squared fit's ``(bits, ci95, n_below)`` at ``epsilon``."""
        boot = bits_below_fits(epsilon, self.boot_fits)
        low, high = np.percentile(boot, [2.5, 97.5])
        return bits_below(epsilon, self.fit), (float(low), float(high)), int(np.count_nonzero(self.losses <= epsilon))

    def headline(self, epsilon: float, n_boot: int, seed: int) -> tuple[float, tuple[float, float], int, bool]:
        """What the probe reports: ``(bits, ci95, n_below, is_lower_bound)`` (``InductiveBias._space_estimate``)."""
        bits, ci95, n_below = self(epsilon)
        families = [FamilyEstimate("noncentral_chi2", bits, ci95, 1.0),
                    lognormal_estimate(self.losses, epsilon, n_boot=n_boot, seed=seed)]
        low, high = span_interval(families)
        if n_below == 0:
            bound = -math.log2(clopper_pearson(0, self.losses.size)[1])
            return bound, (bound, max(bound, high)), 0, True
        return bits, (low, high), n_below, False


def run_calibration(config: CalibrationConfig) -> list[dict]:
    rows = []
    for name in config.cases:
        case = CASES[name]()
        for seed in range(config.seeds):
            started = time.perf_counter()
            fitted_tail = FittedTail(case.sample(config.samples, seed), config.bootstrap, seed)
            fit_seconds = time.perf_counter() - started
            for depth in config.depths:
                epsilon = case.epsilon(depth)
                exact = case.exact_bits(epsilon)
                started = time.perf_counter()
                estimate = rare_event_bits(case.latent.loss_fn, case.latent.dim, epsilon, replicates=config.replicates,
                                           seed=seed, n_chains=config.chains, moves_per_state=config.moves)
                rows.append(_row(name, "rare_event", depth, exact, seed, estimate.bits, estimate.ci95,
                                 estimate.evaluations, time.perf_counter() - started))
                bits, ci95, n_below, lower_bound = fitted_tail.headline(epsilon, config.bootstrap, seed)
                rows.append(_row(name, "fitted_tail", depth, exact, seed, bits, ci95, config.samples, fit_seconds,
                                 n_below=n_below, flagged=n_below < EXTRAPOLATION_THRESHOLD, lower_bound=lower_bound))
    return rows


def _row(case, method, depth, exact, seed, bits, ci95, evaluations, seconds, n_below=None, flagged=False,
         lower_bound=False) -> dict:
    covers = exact >= bits if lower_bound else ci95[0] <= exact <= ci95[1]
    return {"case": case, "method": method, "depth": depth, "exact_bits": exact, "seed": seed, "bits": bits,
            "ci_low": ci95[0], "ci_high": ci95[1], "covers": bool(covers), "flagged": bool(flagged),
            "lower_bound": bool(lower_bound),
            "rel_error": bits / exact - 1 if exact > 0 else bits - exact, "evaluations": evaluations,
            "seconds": seconds, "n_below": n_below}


def summarise(rows: list[dict]) -> list[dict]:
    """Per case, method and depth: coverage k/n, median relative error, median evaluations."""
    out = []
    keys = sorted({(r["case"], r["method"], r["depth"]) for r in rows}, key=lambda k: (k[0], METHODS.index(k[1]), k[2]))
    for case, method, depth in keys:
        group = [r for r in rows if (r["case"], r["method"], r["depth"]) == (case, method, depth)]
        out.append({"case": case, "method": method, "depth": depth, "covers": sum(r["covers"] for r in group),
                    "n": len(group), "flagged": sum(bool(r.get("flagged")) for r in group),
                    "lower_bounds": sum(bool(r.get("lower_bound")) for r in group),
                    "median_rel_error": float(np.median([r["rel_error"] for r in group])),
                    "median_evaluations": float(np.median([r["evaluations"] for r in group])),
                    "median_seconds": float(np.median([r["seconds"] for r in group]))})
    return out


def write_outputs(rows: list[dict], config: CalibrationConfig, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "ib_calibration.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        "| case | method | exact bits | ci95 covers exact | flagged extrapolated | headline is a lower bound | median error "
        "| evaluations (median) | s per estimate |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summarise(rows):
        lines.append(f"| {s['case']} | {s['method']} | {s['depth']:g} | {s['covers']}/{s['n']} | {s['flagged']}/{s['n']} | "
                     f"{s['lower_bounds']}/{s['n']} | {100 * s['median_rel_error']:+.1f}% | {s['median_evaluations']:.0f} "
                     f"| {s['median_seconds']:.2f} |")
    header = (f"Seeds: {config.seeds}; rare_event: {config.replicates} replicates x {config.chains} chains, p0 0.1, "
              f"{config.moves} pCN moves per recorded state; "
              f"fitted_tail: {config.samples} samples, {config.bootstrap} bootstrap refits.\n\n")
    path = out / "ib_calibration.md"
    path.write_text(header + "\n".join(lines) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Coverage of the inductive-bias estimators against exact answers.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="toy size (seconds), as the smoke test uses")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--depths", type=float, nargs="+", default=None)
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=None)
    parser.add_argument("--moves", type=int, default=None, help="rare_event: pCN moves per recorded state")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1; 0 keeps torch's)")
    args = parser.parse_args(argv)
    config = CalibrationConfig.quick() if args.quick else CalibrationConfig()
    updates = {k: v for k, v in (("seeds", args.seeds), ("depths", tuple(args.depths) if args.depths else None),
                                 ("moves", args.moves),
                                 ("cases", tuple(args.cases) if args.cases else None)) if v is not None}
    config = CalibrationConfig(**{**config.__dict__, **updates})
    before = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        rows = run_calibration(config)
    finally:
        torch.set_num_threads(before)
    path = write_outputs(rows, config, args.out)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
