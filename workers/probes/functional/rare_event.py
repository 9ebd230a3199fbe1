"""Rare-event estimate of ``P(loss(z) <= epsilon)`` for standard-normal ``z``: subset simulation.

Idea (docs/methods.md §1, "Measuring the tail"; Au & Beck, "Estimation of small failure
probabilities in high dimensions by subset simulation", Probabilistic Engineering Mechanics 2001;
Cotter et al., "MCMC methods for functions", Statistical Science 2013): when a hypothesis is a
deterministic function of a standard-normal vector ``z`` (a GP posterior draw ``mean + L z``;
initial weights, uniform ones through ``u = Phi(z)``), ``P(L(h(z)) <= epsilon)`` is a rare event
under the Gaussian measure, and a product of conditional probabilities that are not rare:

    P(L <= eps) = P(L <= t_1) * P(L <= t_2 | L <= t_1) * ... * P(L <= eps | L <= t_m).

One run (``subset_simulation``): draw ``n_chains`` z from the prior. At each level the threshold
``t_k`` is the ``p0`` quantile of the current losses (the ``n_seeds = p0 * n_chains`` smallest;
ties at the quantile are all kept and the level's probability is their actual fraction), so each
factor is about ``p0``. The seeds are (approximately) distributed as the prior conditioned on
``L <= t_k``; the level is repopulated by running a Markov chain from each seed that leaves that
conditional law invariant: preconditioned Crank-Nicolson, ``z' = sqrt(1 - beta^2) z + beta xi``
with ``xi ~ N(0, I)`` (prior-reversible in any dimension), accepted iff ``L(z') <= t_k``. Every
state of every chain is kept (``n_chains`` per level), so a level costs ``n_chains - n_seeds``
loss evaluations, all chains stepping together as one batch of ``n_seeds`` latent vectors.
``beta`` adapts after each batched step, ``log beta += ADAPT_GAIN * (acceptance - target)``, and
carries over to the next level (adapting from the chains' own history perturbs invariance slightly;
the replicate interval measures what that costs). The run stops at the first level where at least
``n_seeds`` losses are ``<= eps``: ``P = prod_k p_k * (that fraction)``. Depth ``b`` bits needs
about ``b / log2(1 / p0)`` levels.

Mixing (``moves_per_state``, default 3): a chain records its state every 3 pCN moves, so a level
costs ``3 (n_chains - n_seeds)`` evaluations. With one move per state the chains mix too slowly
where the loss is much more sensitive to some directions than others, and the estimate is biased
high (too many bits). Measured (24 or 12 runs of 300 chains each, mean bits +- standard error):
``sum_j w_j (z_j + m_j)^2`` with ``w`` from 1 to 1e-4 in 20 dimensions, exact 40 bits: 41.79 +- 0.31
with 1 move, 39.73 +- 0.31 with 3; the GP posterior of ``experiments/ib_calibration.py``, exact 40
and 100 bits: 39.89 +- 0.43 and 103.8 +- 1.1 with 3 moves, 39.58 +- 0.28 and 101.44 +- 0.81 with 6
(with 1 move the calibration measured +5% at 40 and +25% at 100 bits). Per-coordinate steps scaled
by the seeds' spread (Papaioannou et al. 2015's adaptive conditional sampling) were tried and
dropped: they were biased low (38.56 +- 0.29 on the 40-bit case above, -4% to -10% at 100 bits).

Interval (``combine_replicates``): R independent runs (own seeds; in the probe, one shard each).
Each run's ``log P_r`` is a sum of many per-level terms, so it is close to normal; its spread
includes the chains' correlation, the adaptation and the level randomness that a single-run
variance formula would have to model. The estimate is the mean of ``log P_r`` with the Student-t
interval ``+- t_{R-1} s / sqrt(R)``. Why the mean of the logs and not the log of the mean: the
runs are closer to unbiased in log P than in P. Measured on the chi-squared case (d = 10, exact 40
bits; ``tests/.../test_rare_event.py`` has the case): with one move per state and 200 runs of 500
chains, ``mean(log P_r) - log P`` was -0.005 nats while ``log mean(P_r) - log P`` was +0.43; with 2
and 5 moves and 64 runs of 300 chains, +0.25 +- 0.10 and +0.23 +- 0.07 nats against +0.54 and +0.39.
That remaining excess (P a little too high: the thresholds are quantiles of the same correlated
samples whose fractions they define) is the bias of subset simulation that its theory puts at
O(levels / n_chains); the calibration (``experiments/ib_calibration.py``, exact chi-squared and
generalised chi-squared laws) shows what it costs in coverage.

Losses that are not finite (diverged hypotheses) count as above every threshold.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

# LossFn maps a (B, dim) float64 array of standard normals to (B,) losses.
LossFn = Callable[[np.ndarray], np.ndarray]

DEFAULT_P0 = 0.1
DEFAULT_TARGET_ACCEPTANCE = 0.3
# Step-size adaptation gain per batched step on log beta, and beta's range.
ADAPT_GAIN = 1.0
_BETA_MIN, _BETA_MAX = 1e-12, 1.0
_INITIAL_BETA = 0.5
DEFAULT_MOVES_PER_STATE = 3
MAX_LEVELS_DEFAULT = 400


class SplittingStalled(ValueError):
    """No level can lower the threshold (every remaining loss is tied), or ``max_levels`` ran out."""


@dataclass(frozen=True)
class SplittingRun:
    """One subset-simulation run.

    ``log_probability``: natural log of the estimate of ``P(L <= epsilon)``; ``thresholds``: ``t_k``
    of the intermediate levels (decreasing); ``level_fractions``: each level's conditional fraction
    (``p_k``, then the final fraction below epsilon); ``acceptance``: mean pCN acceptance per level;
    ``betas``: the step size at the end of each level; ``evaluations``: loss evaluations made;
    ``n_below``: losses ``<= epsilon`` at the last level; ``min_loss``: the smallest loss seen.
    """

    log_probability: float
    thresholds: list[float]
    level_fractions: list[float]
    acceptance: list[float]
    betas: list[float]
    evaluations: int
    n_below: int
    n_chains: int
    min_loss: float

    @property
    def bits(self) -> float:
        return 0.0 + max(-self.log_probability / math.log(2.0), 0.0)

    @property
    def levels(self) -> int:
        return len(self.thresholds)

    @classmethod
    def from_dict(cls, data: dict) -> "SplittingRun":
        """Inverse of ``to_dict`` (a shard's JSON result back into a run)."""
        return cls(**{k: v for k, v in data.items() if k not in ("bits", "levels")})

    def to_dict(self) -> dict:
        return {"bits": self.bits, "log_probability": self.log_probability, "levels": self.levels,
                "thresholds": list(self.thresholds), "level_fractions": list(self.level_fractions),
                "acceptance": list(self.acceptance), "betas": list(self.betas), "evaluations": self.evaluations,
                "n_below": self.n_below, "n_chains": self.n_chains, "min_loss": self.min_loss}


def _evaluate(loss_fn: LossFn, z: np.ndarray, batch_size: int) -> np.ndarray:
    out = np.empty(len(z), dtype=np.float64)
    for start in range(0, len(z), batch_size):
        out[start : start + batch_size] = np.asarray(loss_fn(z[start : start + batch_size]), dtype=np.float64)
    # Diverged hypotheses never satisfy a threshold.
    out[~np.isfinite(out)] = np.inf
    return out


def _threshold(losses: np.ndarray, n_seeds: int) -> float:
    """The level's threshold: the ``n_seeds``-th smallest loss, lowered to the next distinct value
    when it is tied with the largest finite loss (no progress possible otherwise)."""
    ordered = np.sort(losses)
    t = ordered[n_seeds - 1]
    if np.count_nonzero(losses <= t) < len(losses):
        return float(t)
    lower = ordered[ordered < t]
    if lower.size == 0:
        raise SplittingStalled(f"every loss equals {t:.6g}: the threshold cannot move towards epsilon")
    return float(lower[-1])


def subset_simulation(
    loss_fn: LossFn,
    dim: int,
    epsilon: float,
    *,
    n_chains: int = 1000,
    p0: float = DEFAULT_P0,
    seed: int | Sequence[int] = 0,
    target_acceptance: float = DEFAULT_TARGET_ACCEPTANCE,
    max_levels: int = MAX_LEVELS_DEFAULT,
    batch_size: int | None = None,
    moves_per_state: int = DEFAULT_MOVES_PER_STATE,
) -> SplittingRun:
    """One subset-simulation estimate of ``P(loss_fn(z) <= epsilon)``, ``z ~ N(0, I_dim)``.

    Args:
        loss_fn: ``(B, dim)`` float64 standard normals -> ``(B,)`` losses (batched; non-finite
            losses count as diverged, above every threshold). Must be deterministic in ``z``.
        dim: latent dimension.
        epsilon: target loss.
        n_chains: samples per level (default 1000); ``p0 * n_chains`` must be an integer >= 2.
        p0: conditional probability per level (default 0.1).
        seed: seed or seed sequence of the run's ``numpy.random.Generator`` (replicate r: ``[seed, r]``).
        target_acceptance: pCN acceptance rate the step size is adapted to (default 0.3).
        max_levels: raise ``SplittingStalled`` beyond this many levels (default 400, ~1300 bits at p0 0.1).
        batch_size: most latent vectors per ``loss_fn`` call (memory only); default all at once.
        moves_per_state: pCN moves between two recorded states of a chain (default 3; module
            docstring, "Mixing").

    Returns:
        ``SplittingRun``.
    """
    if not (0 < p0 < 1):
        raise ValueError(f"p0 must lie in (0, 1), got {p0}")
    n_seeds = int(round(p0 * n_chains))
    if n_seeds < 2 or abs(n_seeds - p0 * n_chains) > 1e-9 or n_seeds >= n_chains:
        raise ValueError(f"p0 * n_chains must be an integer in [2, n_chains), got {p0} * {n_chains}")
    if not 0 < target_acceptance < 1:
        raise ValueError(f"target_acceptance must lie in (0, 1), got {target_acceptance}")
    if moves_per_state < 1:
        raise ValueError(f"moves_per_state must be at least 1, got {moves_per_state}")
    if dim < 1 or not np.isfinite(epsilon):
        raise ValueError(f"need dim >= 1 and a finite epsilon, got dim={dim}, epsilon={epsilon}")
    batch = batch_size or n_chains
    rng = np.random.default_rng(seed)

    z = rng.standard_normal((n_chains, dim))
    losses = _evaluate(loss_fn, z, batch)
    evaluations = n_chains
    beta = _INITIAL_BETA
    log_p, thresholds, fractions, acceptance, betas = 0.0, [], [], [], []
    min_loss = float(np.min(losses))
    while True:
        n_below = int(np.count_nonzero(losses <= epsilon))
        if n_below >= n_seeds:
            fractions.append(n_below / n_chains)
            log_p += math.log(n_below / n_chains)
            break
        if len(thresholds) >= max_levels:
            raise SplittingStalled(f"epsilon not reached after {max_levels} levels (threshold {thresholds[-1]:.6g})")
        t = _threshold(losses, n_seeds)
        keep = np.flatnonzero(losses <= t)
        fraction = keep.size / n_chains
        thresholds.append(t)
        fractions.append(fraction)
        log_p += math.log(fraction)
        z, losses, beta, accepted, spent = _repopulate(loss_fn, z[keep], losses[keep], t, n_chains, beta,
                                                       target_acceptance, rng, batch, moves_per_state)
        evaluations += spent
        acceptance.append(accepted)
        betas.append(beta)
        min_loss = min(min_loss, float(np.min(losses)))
    return SplittingRun(log_probability=log_p, thresholds=thresholds, level_fractions=fractions,
                        acceptance=acceptance, betas=betas, evaluations=evaluations, n_below=n_below,
                        n_chains=n_chains, min_loss=min_loss)


def _repopulate(
    loss_fn: LossFn, seeds: np.ndarray, seed_losses: np.ndarray, threshold: float, n_chains: int,
    beta: float, target_acceptance: float, rng: np.random.Generator, batch: int, moves: int = 1,
) -> tuple[np.ndarray, np.ndarray, float, float, int]:
    """``n_chains`` states of pCN chains started at ``seeds`` (each seed is its chain's first state,
    then one state every ``moves`` moves), invariant for the prior restricted to ``loss <= threshold``.
    Chain ``i`` has
    ``n_chains // n + (i < n_chains % n)`` states. Returns the states, their losses, the adapted
    ``beta``, the level's acceptance rate and the evaluations spent."""
    n = len(seeds)
    lengths = np.full(n, n_chains // n) + (np.arange(n) < n_chains % n)
    states = np.empty((n_chains, seeds.shape[1]))
    state_losses = np.empty(n_chains)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    states[offsets], state_losses[offsets] = seeds, seed_losses
    current, current_losses = seeds.copy(), seed_losses.copy()
    accepted_total = proposed_total = 0
    for step in range(1, int(lengths.max())):
        active = np.flatnonzero(lengths > step)
        for _ in range(moves):
            proposal = math.sqrt(1.0 - beta * beta) * current[active] + beta * rng.standard_normal((active.size, seeds.shape[1]))
            proposal_losses = _evaluate(loss_fn, proposal, batch)
            accept = proposal_losses <= threshold
            moved = active[accept]
            current[moved], current_losses[moved] = proposal[accept], proposal_losses[accept]
            rate = float(np.mean(accept))
            accepted_total += int(np.count_nonzero(accept))
            proposed_total += active.size
            beta = float(np.clip(beta * math.exp(ADAPT_GAIN * (rate - target_acceptance)), _BETA_MIN, _BETA_MAX))
        states[offsets[active] + step], state_losses[offsets[active] + step] = current[active], current_losses[active]
    return states, state_losses, beta, accepted_total / max(proposed_total, 1), proposed_total


@dataclass(frozen=True)
class RareEventEstimate:
    """The combined estimate of R replicate runs (module docstring, "Interval").

    ``bits`` and ``ci95`` (base 2; the lower end clamped at 0); ``log_probability`` (natural log,
    the mean of the runs'); ``replicate_bits``: each run's own bits; ``log_sd``: standard deviation
    of the runs' natural-log estimates; ``evaluations``: loss evaluations over all runs;
    ``levels``: intermediate levels per run; ``min_loss``: the smallest loss any run saw (the
    depth actually measured); ``runs``: the runs themselves.
    """

    bits: float
    ci95: tuple[float, float]
    log_probability: float
    replicate_bits: list[float]
    log_sd: float
    evaluations: int
    levels: list[int]
    min_loss: float
    runs: list[SplittingRun] = field(repr=False, compare=False, default_factory=list)

    def to_dict(self) -> dict:
        return {"bits": self.bits, "ci95": list(self.ci95), "log_probability": self.log_probability,
                "replicate_bits": list(self.replicate_bits), "log_sd": self.log_sd,
                "evaluations": self.evaluations, "levels": list(self.levels), "min_loss": self.min_loss,
                "acceptance": [float(np.mean(r.acceptance)) if r.acceptance else None for r in self.runs]}


def _to_bits(log_p: float) -> float:
    return 0.0 + max(-log_p / math.log(2.0), 0.0)


def combine_replicates(runs: Sequence[SplittingRun], level: float = 0.95) -> RareEventEstimate:
    """Mean of the runs' ``log P`` with its Student-t interval (module docstring); at least 2 runs."""
    if len(runs) < 2:
        raise ValueError(f"an interval needs at least 2 replicate runs, got {len(runs)}")
    logs = np.array([r.log_probability for r in runs])
    sd = float(np.std(logs, ddof=1))
    centre = float(np.mean(logs))
    half = float(stats.t.ppf(0.5 + level / 2, logs.size - 1)) * sd / math.sqrt(logs.size)
    # A probability cannot exceed 1: the upper end of log P is capped at 0 (bits >= 0).
    low_log, high_log = centre - half, min(centre + half, 0.0)
    return RareEventEstimate(
        bits=_to_bits(centre), ci95=(_to_bits(high_log), _to_bits(low_log)),
        log_probability=min(centre, 0.0), replicate_bits=[run.bits for run in runs], log_sd=sd,
        evaluations=int(sum(run.evaluations for run in runs)), levels=[run.levels for run in runs],
        min_loss=float(min(run.min_loss for run in runs)), runs=list(runs),
    )


def replicate_seed(seed: int, replicate: int) -> list[int]:
    """Seed sequence of replicate ``replicate``: independent of every other replicate's."""
    return [int(seed), int(replicate), 0x5E55]


def rare_event_bits(
    loss_fn: LossFn,
    dim: int,
    epsilon: float,
    *,
    replicates: int = 8,
    seed: int = 0,
    **kwargs,
) -> RareEventEstimate:
    """``replicates`` runs of ``subset_simulation`` in this process, combined. The probe runs the
    same replicates as shards (``replicate_seed(seed, r)``), so both give the same numbers.

    ``kwargs`` go to ``subset_simulation`` (``n_chains``, ``p0``, ``target_acceptance``, ...).
    """
    runs = [subset_simulation(loss_fn, dim, epsilon, seed=replicate_seed(seed, r), **kwargs) for r in range(replicates)]
    return combine_replicates(runs)
