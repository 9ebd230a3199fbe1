"""The robust orderings of Boopathy et al. (IJCAI 2024) at the experiment's ``--quick`` size, and its plumbing.

Only orderings that held for seeds 0-3 with wide margins are asserted: the highest input dimension
needs more bits than the lowest (disjoint intervals), and the kernel space needs more bits than every
network on digits (interval of the difference above 0). CNN vs MLP is not asserted: its sign depends on
the MLP's width and the training budget (docs/inductive_bias.md).
"""

import csv

import numpy as np
import pytest
import torch

from experiments.inductive_bias import (
    ExperimentConfig,
    baseline_loss,
    checks,
    digits_experiments,
    main,
    plot,
    run_experiment,
    torch_threads,
    write_tables,
)
from workers.data.builtin import load_builtin
from workers.data.files import dataset_from_arrays

pytestmark = pytest.mark.slow  # the experiment runs once per module: 16 s with one thread

CONFIG = ExperimentConfig.quick()
STUDENT = "mlp-32"
DIGITS = digits_experiments(CONFIG)[0]


@pytest.fixture(scope="module")
def result():
    return run_experiment(CONFIG)


def test_higher_input_dimension_needs_more_bits(result):
    low, high = (result.space("dimension", STUDENT, d) for d in (min(CONFIG.dims), max(CONFIG.dims)))
    assert high.ci_low > low.ci_high + 10, (low, high)
    assert low.median_loss_ratio < high.median_loss_ratio
    # The kernel space's exact law (no sampling at all) orders the same way.
    kernel_low, kernel_high = (result.space("dimension", "kernel", d) for d in (min(CONFIG.dims), max(CONFIG.dims)))
    assert kernel_high.exact_bits > kernel_low.exact_bits + 10


def test_networks_need_far_fewer_bits_than_the_kernel_space_on_digits(result):
    kernel = result.space(DIGITS, "kernel")
    for net in ("cnn-16", "mlp-64"):
        pair = result.pair(DIGITS, "kernel", net)
        assert pair.bits_difference == pytest.approx(kernel.bits - result.space(DIGITS, net).bits)
        assert pair.ci_low > 0, pair
        assert kernel.exact_bits > result.space(DIGITS, net).ci_high
    # pair() flips a stored (a, b) row into (b, a) with the interval negated.
    flipped, stored = result.pair(DIGITS, "cnn-16", "kernel"), result.pair(DIGITS, "kernel", "cnn-16")
    assert flipped.bits_difference == -stored.bits_difference
    assert (flipped.ci_low, flipped.ci_high) == (-stored.ci_high, -stored.ci_low)


def test_epsilon_is_a_fixed_fraction_of_an_independently_computed_baseline(result):
    dataset = load_builtin("teacher", {**CONFIG.teacher, "in_dim": max(CONFIG.dims)}, seed=CONFIG.seed)
    expected = float(((dataset.y_test.double() - dataset.y_train.double().mean(0)) ** 2).mean())
    row = result.space("dimension", STUDENT, max(CONFIG.dims))
    assert row.baseline == pytest.approx(expected, rel=1e-12)
    for row in result.spaces:
        assert row.epsilon == pytest.approx(row.epsilon_fraction * row.baseline, rel=1e-12)
    digits = load_builtin("digits", {**CONFIG.digits, "flatten": False}, seed=CONFIG.seed)
    one_hot = torch.nn.functional.one_hot(digits.y_test, 10).double()
    frequencies = torch.nn.functional.one_hot(digits.y_train, 10).double().mean(0)
    expected = float(((one_hot - frequencies) ** 2).mean())
    assert result.space(DIGITS, "kernel").baseline == pytest.approx(expected, rel=1e-12)


def test_baseline_loss_known_answers():
    # Classes [0, 0, 1, 1] in training: the constant is (1/2, 1/2, 0); a class-0 test point then
    # scores ((1/2)^2 + (1/2)^2 + 0) / 3 = 1/6.
    classification = dataset_from_arrays({
        "X_train": np.zeros((4, 2), np.float32), "y_train": np.array([0, 0, 1, 1]),
        "X_test": np.zeros((2, 2), np.float32), "y_test": np.array([0, 0]),
    }, name="c")  # fmt: skip
    assert baseline_loss(classification, 3) == pytest.approx(1 / 6)
    # Targets with training means (1, 3); test errors (1, -1) and (-1, 3): mean of squares = 3.
    regression = dataset_from_arrays({
        "X_train": np.zeros((2, 1), np.float32), "y_train": np.array([[0.0, 2.0], [2.0, 4.0]], np.float32),
        "X_test": np.zeros((2, 1), np.float32), "y_test": np.array([[2.0, 2.0], [0.0, 6.0]], np.float32),
    }, name="r")  # fmt: skip
    assert baseline_loss(regression, 2) == pytest.approx(3.0)


def test_checks_report_the_robust_findings(result):
    found = checks(result)
    assert found["1. bits grow with input dimension"][0]
    assert all(holds for claim, (holds, _) in found.items() if claim.startswith("3."))
    assert any(claim.startswith("2.") for claim in found)


def test_tables_and_plot_are_written(result, tmp_path):
    command = "python -m experiments.inductive_bias --quick"
    spaces_csv, relative_csv, markdown = write_tables(result, tmp_path, command=command)
    with spaces_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * len(CONFIG.dims) + 2 + len(CONFIG.mlp_widths)
    first = result.spaces[0]
    assert float(rows[0]["bits"]) == first.bits and rows[0]["label"] == first.label
    assert all(float(row["ci_low"]) <= float(row["ci_high"]) for row in rows)
    with relative_csv.open() as handle:
        assert len(list(csv.DictReader(handle))) == len(CONFIG.dims) + 3  # one pair per dimension, 3 on digits
    text = markdown.read_text()
    assert f"Command: `{command}`" in text
    assert "| kernel | kernel | n/a |" in text and "## Checks" in text
    png = plot(result, tmp_path)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_sizes_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--quick", "--n-hypotheses", "10"])
    assert "n_hypotheses must be at least 30" in capsys.readouterr().err
    with pytest.raises(ValueError, match="teacher_epsilon_fraction"):
        ExperimentConfig(teacher_epsilon_fraction=1.0)


def test_torch_threads_restores_the_setting():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
