"""The rare-event benchmark runs at toy size and compares like with like (no timing asserted)."""

import math

from tests.benchmarks.test_benchmarks import load

import pytest

pytestmark = pytest.mark.slow  # the rare-event benchmark at toy size: about 10-30 s with one thread


def test_rare_event_benchmark_spends_equal_evaluations(capsys):
    bench = load("bench_rare_event")
    rows = bench.main(["--depths", "12", "--n-train", "20", "--n-classes", "2", "--chains", "100",
                       "--replicates", "3", "--threads", "1"])
    (row,) = rows
    assert math.isclose(row["exact_bits"], 12, rel_tol=1e-9)
    assert row["evaluations"] > 100 and row["chain_hps"] > 0 and row["plain_hps"] > 0
    # The plain sample's Clopper-Pearson bound is a 97.5% lower confidence bound on the bits.
    assert row["plain_bits_lower_bound"] <= row["exact_bits"]
    assert row["rare_event_ci95"][0] <= row["rare_event_bits"] <= row["rare_event_ci95"][1]
    assert "chains / plain" in capsys.readouterr().out


def test_rare_event_benchmark_trained_cost(capsys):
    bench = load("bench_rare_event")
    (row,) = bench.main(["--trained", "--chains", "40", "--replicates", "2", "--threads", "1"])
    assert row["evaluations"] > 40 and row["chain_s_per_evaluation"] > 0 and row["plain_s_per_hypothesis"] > 0
    assert row["ci95"][0] <= row["bits"] <= row["ci95"][1]
    assert "training runs" in capsys.readouterr().out
