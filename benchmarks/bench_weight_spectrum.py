"""Benchmark: the ``weight_spectrum`` probe against WeightWatcher's ``analyze()``, same models, same numbers.

Usage (from the repository root; needs the ``test`` extra, which installs ``weightwatcher``)::

    python benchmarks/bench_weight_spectrum.py [--repeats 5] [--threads 1] [--min-speedup 2]

For each model (dense and conv, small and wide, float32 weights from PyTorch's default init with a
fixed seed) it times ``WeightWatcher(model=...).analyze(randomize=False, plot=False, min_evals=10)`` and
``WeightSpectrum(convention="weightwatcher", n_init_samples=0).run(...)``, interleaved after a warm-up,
in at least ``--repeats`` rounds (more for fast models, up to about a second of runs). It reports the
best time of each and, as the speedup, the median over rounds of WeightWatcher's time over ours in
the same round (robust to load that changes during the run). Both decompose in float64 on the CPU
(CUDA is hidden, otherwise WeightWatcher would switch to fp16 on the GPU), with ``--threads``
BLAS/LAPACK and torch threads each (default 1: the comparison is then about the algorithms, not about
who grabs more cores).

It then checks that the numbers did not change:

- against WeightWatcher, per layer: alpha, D, sigma, xmin, the tail size, log_norm,
  log_spectral_norm, stable_rank, alpha_weighted, log_alpha_norm, within ``RTOL`` (relative);
- against PriorProbe's own SVD route (``spectra(method="svd")``), the reference of its Gram-eigenvalue
  route: every metric of every layer, within ``RTOL``.

It prints one row per model (best times, speedup, largest relative differences, how many matrices
took the SVD route), then the decomposition alone (Gram route with and without the convention's
floors, SVD route, and SciPy's SVD as WeightWatcher calls it), and exits with status 1 if a metric disagrees or a speedup is below
``--min-speedup`` (0, the default, only reports).
"""

from __future__ import annotations

import os

# Before torch is imported: a CPU comparison, whatever the machine has.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy.linalg  # noqa: E402
import torch  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.specs import MLPSpec  # noqa: E402
from workers.probes.base import ProbeContext  # noqa: E402
from workers.probes.functional.spectrum import (  # noqa: E402
    WW_FIT_THRESHOLD,
    spectra,
    spectral_metrics,
    weight_matrices,
    weightwatcher_eigenvalue_scale,
)
from workers.probes.weight_spectrum import WeightSpectrum  # noqa: E402

# Both sides compute the same float64 metrics up to summation order and the Gram route's rounding
# (the eigenvalues the fit uses are resolved to a relative 1e-6 at worst; the metrics agree to ~1e-13).
RTOL = 1e-9
# WeightWatcher's column -> our LayerSpectrum field.
WW_COLUMNS = {
    "alpha": "alpha",
    "D": "ks_distance",
    "sigma": "alpha_se",
    "xmin": "xmin",
    "num_pl_spikes": "n_tail",
    "log_norm": "log_norm",
    "log_spectral_norm": "log_spectral_norm",
    "stable_rank": "stable_rank",
    "alpha_weighted": "alpha_weighted",
    "log_alpha_norm": "log_alpha_norm",
}
METRICS = ("alpha", "alpha_se", "xmin", "n_tail", "ks_distance", "alpha_weighted", "log_norm",
           "log_spectral_norm", "stable_rank", "entropy_rank", "log_alpha_norm")  # fmt: skip


def build_models() -> dict[str, nn.Module]:
    """The benchmark's models, each from its own fixed seed (float32, PyTorch's default init)."""
    builders = {
        "dense_small": lambda: nn.Sequential(nn.Linear(300, 200), nn.ReLU(), nn.Linear(200, 100)),
        "dense_wide": lambda: nn.Sequential(nn.Linear(2048, 1024), nn.ReLU(), nn.Linear(1024, 1024)),
        "conv_small": lambda: nn.Sequential(nn.Conv2d(32, 64, 3), nn.ReLU(), nn.Conv2d(64, 64, 3)),
        "conv_wide": lambda: nn.Sequential(nn.Conv2d(256, 512, 3), nn.ReLU(), nn.Conv2d(512, 512, 3)),
    }
    models = {}
    for seed, (name, build) in enumerate(builders.items()):
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            models[name] = build()
    return models


def import_weightwatcher():
    """``weightwatcher`` with its import-time warnings and INFO logging silenced."""
    logging.disable(logging.WARNING)
    try:
        import weightwatcher
    finally:
        logging.disable(logging.NOTSET)
    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    return weightwatcher


def run_weightwatcher(ww, model: nn.Module):
    # min_evals=10: our convention's layer limit (WeightWatcher 0.7.7's default is 8). Its small-sample
    # fit prints to stdout; swallow it.
    with contextlib.redirect_stdout(io.StringIO()):
        return ww.WeightWatcher(model=model).analyze(randomize=False, plot=False, min_evals=10)


def run_ours(model: nn.Module):
    context = ProbeContext(
        arch=MLPSpec(name="mlp", in_dim=1, hidden=[], out_dim=1),  # not read by this probe
        model=model,
        has_uploaded_weights=True,
        make_member=lambda seed: model,
        seed=0,
        device=torch.device("cpu"),
    )
    probe = WeightSpectrum(WeightSpectrum.Params(convention="weightwatcher", n_init_samples=0))
    return probe.run(context)


def timed_rounds(repeats: int, *functions, min_seconds: float = 1.0, max_rounds: int = 50):
    """Interleaved timings: one untimed warm-up round, then rounds calling each function once, at
    least ``repeats`` of them and more for fast functions (until about ``min_seconds`` per function,
    at most ``max_rounds``). Returns the per-round seconds of each function and the last results."""
    results = [function() for function in functions]
    times: list[list[float]] = [[] for _ in functions]
    rounds = repeats
    done = 0
    while done < rounds:
        for k, function in enumerate(functions):
            start = time.perf_counter()
            results[k] = function()
            times[k].append(time.perf_counter() - start)
        done += 1
        if done == 1:
            slowest = max(t[0] for t in times)
            rounds = max(repeats, min(max_rounds, int(min_seconds / max(slowest, 1e-9))))
    return times, results


def best_of(repeats: int, *functions):
    """Best time of each function over ``timed_rounds``, and the last results."""
    times, results = timed_rounds(repeats, *functions)
    return [min(t) for t in times], results


def relative_difference(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def compare_with_weightwatcher(details, result) -> float:
    """Largest relative difference over WW_COLUMNS and layers; the layer lists must match."""
    analysed = [layer for layer in result.layers if layer.skipped_reason is None]
    if len(analysed) != len(details):
        raise AssertionError(f"{len(details)} layers from WeightWatcher, {len(analysed)} analysed here")
    worst = 0.0
    for (_, row), layer in zip(details.iterrows(), analysed):
        for column, field in WW_COLUMNS.items():
            worst = max(worst, relative_difference(float(row[column]), float(getattr(layer, field))))
    return worst


def compare_with_svd_route(model: nn.Module, result) -> float:
    """Largest relative difference between the probe's metrics and the same metrics from SVDs."""
    worst = 0.0
    modules = dict(model.named_modules())
    for layer in result.layers:
        if layer.skipped_reason is not None:
            continue
        module = modules[layer.name]
        kind = "conv2d" if isinstance(module, nn.Conv2d) else "linear"
        spectrum = spectra([weight_matrices(module.weight.detach())], method="svd")[0]
        scale = weightwatcher_eigenvalue_scale(kind)
        reference = spectral_metrics(spectrum.eigenvalues * scale, convention="weightwatcher")
        for metric in METRICS:
            worst = max(worst, relative_difference(getattr(reference, metric), getattr(layer, metric)))
    return worst


def decomposition_times(model: nn.Module, repeats: int) -> tuple[list[float], int, int]:
    """Seconds for the model's eigenvalues by four routes, and how many matrices took the SVD route in
    the first two: Gram route with the probe's floors under convention "weightwatcher" (eigenvalues
    below 1e-5 only enter sums), Gram route with floor 0 (convention "priorprobe": every non-zero
    eigenvalue resolved), SVD route, and SciPy's SVD matrix by matrix as WeightWatcher calls it."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    stacks = [weight_matrices(m.weight.detach()) for m in layers]
    floors = [WW_FIT_THRESHOLD / weightwatcher_eigenvalue_scale("conv2d" if isinstance(m, nn.Conv2d) else "linear") for m in layers]

    def scipy_svd():
        for stack in stacks:
            for matrix in stack.double().numpy():
                scipy.linalg.svd(matrix, compute_uv=False)

    times, (with_floors, floor_zero, _, _) = best_of(
        repeats,
        lambda: spectra(stacks, floors=floors),
        lambda: spectra(stacks),
        lambda: spectra(stacks, method="svd"),
        scipy_svd,
    )
    return times, sum(s.n_svd for s in with_floors), sum(s.n_svd for s in floor_zero)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per model, at least")
    parser.add_argument("--threads", type=int, default=1, help="BLAS/LAPACK and torch threads")
    parser.add_argument("--min-speedup", type=float, default=0.0, help="exit 1 below this speedup")
    parser.add_argument("--models", nargs="*", help="subset of models to run")
    args = parser.parse_args(argv)

    ww = import_weightwatcher()
    torch.set_num_threads(args.threads)
    models = build_models()
    names = args.models or list(models)
    print(f"weightwatcher {ww.__version__}, torch {torch.__version__}, numpy {np.__version__}, "
          f"{args.threads} thread(s), at least {args.repeats} rounds, CPU float64")  # fmt: skip
    header = f"{'model':<12} {'layers':>6} {'WW s':>8} {'ours s':>8} {'speedup':>8} {'vs WW':>9} {'vs SVD':>9} {'SVD mats':>8}"
    print(header)
    failed = False
    with threadpool_limits(args.threads):
        for name in names:
            model = models[name]
            (ww_times, our_times), (details, result) = timed_rounds(
                args.repeats, lambda: run_weightwatcher(ww, model), lambda: run_ours(model)
            )
            ww_time, our_time = min(ww_times), min(our_times)
            # Per-round ratios cancel load that changes between rounds; their median is the speedup.
            speedup = float(np.median(np.array(ww_times) / np.array(our_times)))
            vs_ww = compare_with_weightwatcher(details, result)
            vs_svd = compare_with_svd_route(model, result)
            n_matrices = sum(len(weight_matrices(m.weight)) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
            _, n_svd, _ = decomposition_times(model, 1)
            print(f"{name:<12} {len(details):>6} {ww_time:>8.3f} {our_time:>8.3f} {speedup:>7.2f}x "
                  f"{vs_ww:>9.1e} {vs_svd:>9.1e} {n_svd:>3}/{n_matrices:<4}")  # fmt: skip
            if vs_ww > RTOL or vs_svd > RTOL:
                print(f"  metrics differ beyond rtol {RTOL:g}")
                failed = True
            if speedup < args.min_speedup:
                print(f"  speedup below {args.min_speedup:g}x")
                failed = True

        print("\ndecomposition only, seconds (matrices that took the SVD route)")
        print(f"{'model':<12} {'Gram, WW floors':>18} {'Gram, floor 0':>16} {'SVD route':>10} {'SciPy SVD':>10}")
        for name in names:
            (floors, floor_zero, svd, scipy_time), n_floors, n_zero = decomposition_times(models[name], 3)
            print(f"{name:<12} {floors:>8.3f} ({n_floors:>3})     {floor_zero:>8.3f} ({n_zero:>3}) {svd:>10.3f} {scipy_time:>10.3f}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
