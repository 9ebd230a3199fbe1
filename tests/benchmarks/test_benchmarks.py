"""The benchmark scripts still run and still compare like with like, at toy sizes.

No timing is asserted (speed is measured by running the scripts, see the README's Performance
section); what is checked is what each script checks about correctness: the batched sampler
returns the loop's losses, the forward-mode Lie derivative equals the double-backward ones, and
``weight_spectrum`` equals WeightWatcher and its own SVD route.
"""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow  # the benchmark scripts at toy sizes: 9 s together with one thread

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # eight fresh Python processes, each importing torch
def test_inductive_bias_benchmark_runs_the_product_path_and_matches_train_model(capsys):
    bench = load("bench_inductive_bias")
    threads = torch.get_num_threads()
    try:
        rows = bench.main(["--repeats", "1", "--hypotheses", "30", "--loop-hypotheses", "2", "--wide-width", "16",
                           "--wide-hypotheses", "30", "--cnn-channels", "4", "--cnn-hypotheses", "30",
                           "--matmul-size", "256", "--check", "2", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)  # the script sets the thread count for the whole process
    assert [r["case"] for r in rows] == ["issue", "small", "wide", "cnn"]
    for row in rows:
        # The product path's losses are train_model's, one model at a time (float rounding only).
        assert row["max_rel_diff"] < 1e-4
        assert set(row["cold"]["phases"]) == {"sampling_s", "estimation_s"}
        assert row["ours_cold_hps"] > 0 and row["loop_cold_hps"] > 0 and 0 < row["peak_fraction_warm"]
    assert "loop cold" in capsys.readouterr().out


def test_probe_timing_reads_both_report_shapes():
    bench = load("bench_inductive_bias")
    flat = {"timing": {"inductive_bias": {"sampling_s": 2.0, "estimation_s": 0.5, "total_s": 2.6}}}
    nested = {"timing": {"inductive_bias": {"total_s": 2.6, "phases": {"sampling_s": 2.0, "estimation_s": 0.5}}}}
    for report in (flat, nested):
        assert bench.probe_timing(report) == (2.6, {"sampling_s": 2.0, "estimation_s": 0.5})


def test_invariance_benchmark_methods_agree(capsys):
    bench = load("bench_invariance")
    rows = bench.main(["--families", "mlp", "cnn", "--members", "2", "--inputs", "8", "--repeats", "1", "--device", "cpu"])
    for row in rows:
        assert row["max_abs_difference"] <= 1e-4 * max(row["max_abs_value"], 1.0)
        # The memory-matched chunk never uses more memory than the smaller double-backward peak.
        budget = min(row["peak_mib"]["autograd_functional"], row["peak_mib"]["batched_double_backward"])
        assert row["matched_chunk"] == 1 or row["peak_mib"]["jvp_matched"] <= budget
    assert "memory-matched" in capsys.readouterr().out


# WeightWatcher's own pandas call, deprecated in pandas 3; not ours to fix.
@pytest.mark.filterwarnings("ignore:Passing a dict to DataFrame.from_records")
def test_weight_spectrum_benchmark_metrics_agree(capsys):
    pytest.importorskip("weightwatcher")
    bench = load("bench_weight_spectrum")
    assert bench.main(["--models", "dense_small", "conv_small", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "dense_small" in out and "conv_small" in out and "metrics differ" not in out


@pytest.mark.integration
@pytest.mark.slow
def test_load_benchmark_runs_at_toy_scale(postgres_url):
    """The load script end to end (database, stored reports, uvicorn, clients) at toy scale: every
    request answered, health checked during the load. No timing is asserted."""
    bench = load("bench_load")
    rows = bench.main(["--clients", "2,8", "--duration", "1", "--runs", "3", "--probes", "weight_spectrum",
                       "--max-requests", "400"])
    assert [r["clients"] for r in rows] == [2, 8]
    for row in rows:
        assert row["errors"] == 0, row["error_kinds"]
        assert 0 < row["ok"] <= 400 and row["health_errors"] == 0 and row["health_max_ms"] is not None


@pytest.mark.integration
def test_dashboard_benchmark_seeds_and_serves_every_page(monkeypatch, capsys):
    """At toy size on the real PostgreSQL: every page of the benchmark answers 200 (the script asserts it)."""
    bench = load("bench_dashboard")
    monkeypatch.setattr(sys, "argv", ["bench_dashboard.py", "--runs", "300", "--models", "10", "--repeats", "1", "--max-ms", "0"])
    assert bench.main() == 0
    out = capsys.readouterr().out
    assert "seeded 300 runs of 10 models" in out and "probe=sharpness" in out
