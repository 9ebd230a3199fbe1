import numpy as np
import pytest

from tests.workers.probes.functional._reference import fit_loop, fit_wwfit
from workers.probes.functional.powerlaw import fit_power_law, fit_power_law_weightwatcher


def pareto(rng: np.random.Generator, alpha: float, n: int, xmin: float = 1.0) -> np.ndarray:
    """Samples of the continuous power law p(x) ∝ x^-alpha on [xmin, inf), by inverse CDF."""
    return xmin * rng.random(n) ** (-1.0 / (alpha - 1.0))


def datasets() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        "lognormal": rng.lognormal(0.0, 1.0, 300),
        "bulk_plus_tail": np.concatenate([rng.uniform(0.05, 1.0, 250), pareto(rng, 2.5, 120)]),
        # Rounding creates ties: candidates must be distinct values and ECDF steps must stack.
        "with_ties": np.round(rng.lognormal(0.0, 0.7, 250), 1) + 0.1,
        "chi_square": rng.chisquare(20, 200),
    }


def assert_fit_equal(fit, reference: dict, rtol: float = 1e-10) -> None:
    assert fit is not None and reference is not None
    assert fit.n_tail == reference["n_tail"]
    for key in ("alpha", "alpha_se", "xmin", "ks_distance"):
        assert getattr(fit, key) == pytest.approx(reference[key], rel=rtol, abs=1e-13), key


@pytest.mark.parametrize("name", list(datasets()))
@pytest.mark.parametrize("min_tail", [5, 10, 40])
def test_fit_matches_explicit_loop_over_candidates(name, min_tail):
    values = datasets()[name]
    assert_fit_equal(fit_power_law(values, min_tail=min_tail), fit_loop(values, min_tail))


@pytest.mark.parametrize("name", list(datasets()))
def test_weightwatcher_fit_matches_wwfit_transcription(name):
    values = datasets()[name]
    assert_fit_equal(fit_power_law_weightwatcher(values), fit_wwfit(values))


@pytest.mark.parametrize("block_elements", [1, 37, 5000])
def test_block_size_only_bounds_memory(block_elements):
    values = datasets()["bulk_plus_tail"]
    assert fit_power_law(values, 10, block_elements=block_elements) == fit_power_law(values, 10)
    assert fit_power_law_weightwatcher(values, block_elements=block_elements) == fit_power_law_weightwatcher(values)


def test_two_point_known_answer():
    # Tail {1, e}: alpha = 1 + 2 / ln(e) = 3, se = 2 / sqrt(2); F(e) = 1 - e^-2.
    # Two-sided KS: the ECDF jumps to 1/2 at xmin where F = 0, so D = 1/2.
    fit = fit_power_law(np.array([np.e, 1.0]), min_tail=2)
    assert (fit.alpha, fit.xmin, fit.n_tail) == (pytest.approx(3.0), 1.0, 2)
    assert fit.alpha_se == pytest.approx(np.sqrt(2.0))
    assert fit.ks_distance == pytest.approx(0.5)
    # WeightWatcher compares F with the lower ECDF k/n only: max(|0 - 0|, |1 - e^-2 - 1/2|).
    ww = fit_power_law_weightwatcher(np.array([np.e, 1.0]))
    assert ww.alpha == pytest.approx(3.0)
    assert ww.ks_distance == pytest.approx(0.5 - np.exp(-2.0))


@pytest.mark.parametrize("alpha", [2.5, 3.0, 4.0])
def test_recovers_pareto_exponent(alpha):
    values = pareto(np.random.default_rng(int(alpha * 10)), alpha, 2000)
    fit = fit_power_law(values, min_tail=10)
    assert abs(fit.alpha - alpha) < 3 * fit.alpha_se
    # The standard error is honest about the tail it used, and that tail is not a handful of points.
    assert fit.n_tail >= 100
    assert fit.alpha_se == pytest.approx((fit.alpha - 1) / np.sqrt(fit.n_tail))


def test_finds_the_tail_above_a_bulk():
    # Uniform bulk on [0.05, 0.6) and a Pareto tail (alpha 2.5) from 1: the KS search must start the
    # tail at the power law (xmin >= 1, no bulk value in it) without throwing most of it away.
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.uniform(0.05, 0.6, 2000), pareto(rng, 2.5, 1000)])
    fit = fit_power_law(values, min_tail=10)
    assert 1.0 <= fit.xmin <= 2.0
    assert abs(fit.alpha - 2.5) < 3 * fit.alpha_se


def test_no_fit_when_too_few_values_or_a_constant_tail():
    assert fit_power_law(np.arange(1.0, 10.0), min_tail=10) is None
    assert fit_power_law(np.full(50, 2.0), min_tail=10) is None
    assert fit_power_law_weightwatcher(np.array([1.0])) is None
    assert fit_power_law_weightwatcher(np.full(5, 2.0)) is None


@pytest.mark.parametrize("bad", [[1.0, 0.0, 2.0], [1.0, -1.0], [1.0, np.nan], [1.0, np.inf]])
def test_rejects_non_positive_or_non_finite_values(bad):
    with pytest.raises(ValueError, match="positive"):
        fit_power_law(np.array(bad + [3.0] * 20), min_tail=5)
    with pytest.raises(ValueError, match="positive"):
        fit_power_law_weightwatcher(np.array(bad))


def test_rejects_min_tail_below_two():
    with pytest.raises(ValueError, match="min_tail"):
        fit_power_law(np.arange(1.0, 30.0), min_tail=1)
