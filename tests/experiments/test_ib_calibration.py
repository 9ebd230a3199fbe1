"""The calibration experiment at toy size: its exact answers are right and its table is written."""

import csv
import math

import numpy as np
import pytest
from scipy import stats

from experiments.ib_calibration import CASES, CalibrationConfig, FittedTail, main, summarise
from workers.probes.functional.bits_estimate import estimate_bits
from workers.probes.functional.generalized_chi2 import log_cdf

pytestmark = pytest.mark.slow  # the calibration at toy size and its cases: about 20 s together with one thread


@pytest.mark.parametrize("name", sorted(CASES))
def test_case_epsilon_hits_the_depth_and_the_law_matches_the_sampler(name):
    case = CASES[name]()
    for depth in (1.0, 40.0):
        assert case.exact_bits(case.epsilon(depth)) == pytest.approx(depth, rel=1e-9)
    # The exact law is the sampler's: the fraction of 4000 plain samples below the 1-bit epsilon
    # is 0.5 up to binomial noise (standard error 0.008).
    losses = case.sample(4000, 0)
    assert np.mean(losses <= case.epsilon(1.0)) == pytest.approx(0.5, abs=0.04)
    # And the latent map has the same law (two-sample KS on independent draws).
    latent = case.latent.loss_fn(np.random.default_rng(1).standard_normal((4000, case.latent.dim)))
    assert stats.ks_2samp(losses, latent).pvalue > 1e-3


def test_fitted_tail_shortcut_equals_estimate_bits():
    losses = CASES["kernel"]().sample(60, 0)
    epsilon = float(np.quantile(losses, 0.2))
    bits, ci95, n_below = FittedTail(losses, 200, 5)(epsilon)
    reference = estimate_bits(losses, epsilon, n_boot=200, seed=5)
    assert bits == pytest.approx(reference.bits, rel=1e-12)
    assert ci95 == pytest.approx(reference.ci95, rel=1e-12)
    assert n_below == reference.n_below


def test_quick_run_writes_the_coverage_table(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--quick", "--seeds", "2", "--depths", "1", "10", "--cases", "kernel"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "ib_calibration.csv")))
    assert len(rows) == 2 * 2 * 2  # seeds x depths x methods
    for row in rows:
        assert math.isclose(float(row["exact_bits"]), float(row["depth"]), rel_tol=1e-9)
        low, high = float(row["ci_low"]), float(row["ci_high"])
        assert low <= high and (row["covers"] == "True") == (low <= float(row["exact_bits"]) <= high)
    table = (tmp_path / "ib_calibration.md").read_text()
    assert "| kernel | rare_event | 10 |" in table and "| kernel | fitted_tail | 1 |" in table
    assert "ci95 covers exact" in capsys.readouterr().out


def test_summary_counts_coverage():
    rows = [{"case": "c", "method": "rare_event", "depth": 5, "covers": c, "rel_error": e, "evaluations": 10, "seconds": 1}
            for c, e in ((True, 0.1), (False, -0.3), (True, 0.0))]
    (summary,) = summarise(rows)
    assert (summary["covers"], summary["n"], summary["median_rel_error"]) == (2, 3, 0.0)
