"""Benchmark the batched ``trained`` hypothesis sampler of ``inductive_bias``.

For each case (a small MLP and a wide MLP on the built-in ``digits`` task, Adam, a few epochs) it
times, in the same process and on the same device (each side: one untimed warm-up run at full size,
then the best of ``--repeats`` runs, as ``timeit`` does; the matmul reference is a best-of too):

- ``batched``: ``sample_losses(..., sampler="trained")``: all hypotheses trained as one ensemble;
- ``loop``: the plain per-hypothesis loop, ``build_model`` + ``workers.training.train_model`` +
  one test forward per hypothesis, with the same seeds and data orders;

and prints hypotheses/second of both, their ratio, the largest relative difference between the two
sets of losses (they compute the same thing), and the batched sampler's achieved FLOP/s as a
fraction of the machine's float32 matmul throughput measured here. FLOPs are counted
analytically: ``6 * (weights in matmuls) * (samples processed)`` for training (forward 2, backward
4) plus ``2 * (weights in matmuls) * (test points)`` for the final evaluation.

Targets (issue 3): batched >= 10x the loop for the small MLP (width <= 64, 128 hypotheses) on a
2-core CPU; >= 0.5 of measured matmul throughput for the wide MLP.

    python benchmarks/bench_inductive_bias.py [--device cuda] [--epochs 3] [--threads N] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.registry import build_model  # noqa: E402
from models.specs import MLPSpec, parse_arch  # noqa: E402
from workers.data.builtin import load_builtin  # noqa: E402
from workers.data.dataset import Dataset  # noqa: E402
from workers.probes.functional.ensemble import data_order_seed, hypothesis_seed  # noqa: E402
from workers.probes.functional.ensemble_training import sample_losses  # noqa: E402
from workers.probes.functional.hypothesis_loss import test_losses  # noqa: E402
from workers.runspec import TrainSpec  # noqa: E402
from workers.training import train_model  # noqa: E402


@dataclass
class Case:
    name: str
    hidden: list[int]
    hypotheses: int
    loop_hypotheses: int  # the loop's rate is measured on this many (it is linear in the count)
    batch_size: int


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_flops_per_second(device: torch.device, size: int, repeats: int = 10) -> float:
    """Best observed float32 ``size x size`` matmul throughput."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device)
    b = torch.randn(size, size, generator=generator).to(device)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def weights_in_matmuls(arch: MLPSpec) -> int:
    widths = [arch.in_dim, *arch.hidden, arch.out_dim]
    return sum(a * b for a, b in zip(widths, widths[1:]))


def loop_losses(arch, dataset: Dataset, train: TrainSpec, loss: str, n: int, seed: int, device) -> np.ndarray:
    out = []
    for i in range(n):
        h = hypothesis_seed(seed, i)
        model = train_model(build_model(arch, h, device), dataset, train, loss, seed=data_order_seed(h))
        with torch.no_grad():
            outputs = model(dataset.X_test.to(device)).unsqueeze(0)
        out.append(test_losses(outputs, dataset.y_test.to(device), loss, dataset.task_type).item())
    return np.array(out)


def best_time(function, repeats: int, device: torch.device) -> tuple[float, object]:
    """Best wall time of ``repeats`` calls (after one untimed call) and the last result."""
    result = function()  # warm-up at full size: first-touch memory, allocator, dispatch caches
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        result = function()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best, result


def run_case(case: Case, dataset: Dataset, epochs: int, device: torch.device, seed: int, repeats: int) -> dict:
    arch = parse_arch(
        {"name": "mlp", "in_dim": dataset.sample_shape[0], "hidden": case.hidden, "out_dim": dataset.target_dim}
    )
    train = TrainSpec(optimizer="adam", lr=1e-3, epochs=epochs, batch_size=case.batch_size)
    batched_s, batched = best_time(
        lambda: sample_losses(arch, dataset, "mse", "trained", case.hypotheses, seed, train, device), repeats, device
    )
    loop_s, looped = best_time(
        lambda: loop_losses(arch, dataset, train, "mse", case.loop_hypotheses, seed, device), repeats, device
    )

    n_train, n_test = dataset.X_train.shape[0], dataset.X_test.shape[0]
    flops = weights_in_matmuls(arch) * case.hypotheses * (6 * epochs * n_train + 2 * n_test)
    diff = np.max(np.abs(batched[: case.loop_hypotheses] - looped) / np.abs(looped))
    return {
        "case": case.name,
        "arch": f"64-{'-'.join(map(str, case.hidden))}-10",
        "S": case.hypotheses,
        "batched_hps": case.hypotheses / batched_s,
        "loop_hps": case.loop_hypotheses / loop_s,
        "speedup": (case.hypotheses / batched_s) / (case.loop_hypotheses / loop_s),
        "gflops": flops / batched_s / 1e9,
        "gflop": flops / 1e9,
        "max_rel_diff": diff,
        "batched_s": batched_s,
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each side; the best counts")
    parser.add_argument("--small-hypotheses", type=int, default=128)
    parser.add_argument("--wide-width", type=int, default=1024)
    parser.add_argument("--wide-hypotheses", type=int, default=8)
    parser.add_argument("--wide-batch-size", type=int, default=256)
    parser.add_argument("--matmul-size", type=int, default=None, help="reference matmul size (default 2048, 4096 on CUDA)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    device = torch.device(args.device)
    dataset = load_builtin("digits", {}, 0)
    matmul_size = args.matmul_size or (4096 if device.type == "cuda" else 2048)
    # The matmul reference is measured before and after the cases and the higher figure kept: a
    # slow moment of a shared machine must not shrink the denominator and flatter the fraction.
    peak_before = matmul_flops_per_second(device, matmul_size)
    print(f"device={device} threads={torch.get_num_threads()} torch={torch.__version__} digits n_train="
          f"{dataset.X_train.shape[0]} n_test={dataset.X_test.shape[0]} epochs={args.epochs} optimizer=adam "
          f"best of {args.repeats} runs each (after one warm-up run)")
    cases = [
        Case("small", [64], args.small_hypotheses, min(32, args.small_hypotheses), 64),
        Case("wide", [args.wide_width, args.wide_width], args.wide_hypotheses, min(4, args.wide_hypotheses),
             args.wide_batch_size),
    ]
    rows = [run_case(c, dataset, args.epochs, device, args.seed, args.repeats) for c in cases]
    peak_after = matmul_flops_per_second(device, matmul_size)
    peak = max(peak_before, peak_after)
    print(f"measured float32 matmul ({matmul_size}^2), best of 10 before and after the cases: "
          f"{peak_before / 1e9:.1f} and {peak_after / 1e9:.1f} GFLOP/s; the fraction uses {peak / 1e9:.1f}")
    for r in rows:
        r["peak_fraction"] = r["gflops"] / (peak / 1e9)
    header = f"{'case':<6} {'arch':<16} {'S':>4} {'batched h/s':>12} {'loop h/s':>9} {'speedup':>8} " \
             f"{'GFLOP/s':>8} {'of matmul':>9} {'max rel diff':>12} {'batched s':>9}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['case']:<6} {r['arch']:<16} {r['S']:>4} {r['batched_hps']:>12.1f} {r['loop_hps']:>9.2f} "
              f"{r['speedup']:>7.1f}x {r['gflops']:>8.1f} {r['peak_fraction']:>9.2f} {r['max_rel_diff']:>12.1e} "
              f"{r['batched_s']:>9.2f}")
    return rows


if __name__ == "__main__":
    main()
