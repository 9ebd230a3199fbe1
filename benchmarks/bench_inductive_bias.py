"""Benchmark the ``inductive_bias`` probe's ``trained`` sampler as a user runs it, against the plain
PyTorch loop a researcher would write instead.

For each case it starts fresh Python processes (``--threads`` torch threads each) and times:

- ``ours``: ``workers.runner.execute_run`` on a run spec with one ``inductive_bias`` probe
  (``sampler: trained``), the call ``priorprobe run``, the Celery task and the embedded worker make.
  **cold** = the first call in a fresh process (after the imports a CLI run also pays, which are
  reported beside it); **warm** = the best of ``--repeats`` further calls in that process. The
  report's own phases (``sampling_s``, ``estimation_s``) say where the time went.
- ``loop``: the plain loop, one model after another: ``torch.manual_seed``, an ``nn.Sequential`` of
  the same layers, ``torch.optim.Adam``, ``randperm`` minibatches, ``F.mse_loss`` against one-hot
  targets, one test forward. It trains ``loop_hypotheses`` models; **cold** = the first such run in
  its own fresh process, **warm** = the best of ``--repeats`` further runs. Its rate is linear in the
  count, so the cold figure is scaled to the case's full count as ``S / (fixed + S * per_model)``
  (the one-off cost ``fixed`` = cold minus warm time is paid once, as it would be for S models).

Printed per case: hypotheses/s cold and warm for both and their ratios; the sampler's achieved
FLOP/s (FLOPs counted with ``torch.utils.flop_counter`` on one forward: training = 3x forward per
training sample per epoch, plus one forward per test point) against the float32 matmul peak
measured here before and after the cases; the phases, and estimation as a share of sampling. A
correctness check compares the first hypotheses' losses with ``workers.training.train_model`` run
one model at a time on the same seeds and data orders (``max rel diff``).

Targets (issue 15): ours >= 10x the loop **cold** in every case, 2 threads; estimation <= 10% of
sampling.

    python benchmarks/bench_inductive_bias.py [--threads 2] [--repeats 2] [--cases issue small wide cnn]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


@dataclass
class Case:
    name: str
    arch: dict
    hypotheses: int
    loop_hypotheses: int
    epochs: int
    batch_size: int
    dataset: dict = field(default_factory=lambda: {"builtin": "digits"})
    target_error: float = 0.05


def default_cases(args) -> list[Case]:
    digits = {"name": "mlp", "in_dim": 64, "out_dim": 10}
    return [
        # The workload: a user-uploaded .npz of 512 training and 512 test points.
        Case("issue", {**digits, "hidden": [32, 32]}, args.hypotheses, args.loop_hypotheses, 3, 64, {"npz": 512}),
        Case("small", {**digits, "hidden": [64]}, args.hypotheses, args.loop_hypotheses, 2, 64),
        Case("wide", {**digits, "hidden": [args.wide_width] * 2}, args.wide_hypotheses, min(4, args.wide_hypotheses), 2, 256),
        Case("cnn", {"name": "cnn", "in_channels": 1, "image_size": 8, "channels": args.cnn_channels, "out_dim": 10},
             args.cnn_hypotheses, min(args.loop_hypotheses, args.cnn_hypotheses), 2, 64),
    ]


# --- helpers shared by parent and child -------------------------------------------------------


def probe_timing(report, probe: str = "inductive_bias") -> tuple[float, dict[str, float]]:
    """``(total_s, phases)`` of one probe from a report: a typed ``Report`` (``model_dump``) or its
    dict, with timing either ``{"total_s", "phases": {...}}`` or the older flat
    ``{"sampling_s", "estimation_s", "total_s"}``."""
    data = report.model_dump(mode="json") if hasattr(report, "model_dump") else report
    timing = data["timing"][probe]
    if isinstance(timing, (int, float)):
        return float(timing), {}
    phases = timing.get("phases", {k: v for k, v in timing.items() if k != "total_s"})
    return float(timing["total_s"]), {k: float(v) for k, v in phases.items()}


def write_npz(path: Path, n: int) -> None:
    """``n`` training and ``n`` test points of the built-in digits task (train + test pooled)."""
    import numpy as np

    from workers.data.builtin import load_builtin

    digits = load_builtin("digits", {}, 0)
    X = np.concatenate([digits.X_train.numpy(), digits.X_test.numpy()])
    y = np.concatenate([digits.y_train.numpy(), digits.y_test.numpy()])
    np.savez(path, X_train=X[:n], y_train=y[:n], X_test=X[n : 2 * n], y_test=y[n : 2 * n])


def run_spec(case: dict, dataset_path: str | None) -> dict:
    dataset = {"path": dataset_path} if dataset_path else case["dataset"]
    return {
        "model": {"arch": case["arch"]},
        "task": {"dataset": dataset, "loss": "mse", "target_error": case["target_error"],
                 "train": {"optimizer": "adam", "lr": 1e-3, "epochs": case["epochs"], "batch_size": case["batch_size"]}},
        "probes": {"inductive_bias": {"sampler": "trained", "n_hypotheses": case["hypotheses"]}},
        "seed": 0,
    }


# --- child processes ----------------------------------------------------------------------------


def child_ours(case: dict, dataset_path: str | None, repeats: int, check: int) -> dict:
    started = time.perf_counter()
    import torch

    from workers.runner import execute_run, load_task_dataset
    from workers.runspec import RunSpec

    imported = time.perf_counter() - started
    spec = RunSpec.model_validate(run_spec(case, dataset_path))
    runs, losses = [], {}

    def keep(key, array) -> dict:
        losses[key] = array
        return {"stored": False}

    for _ in range(1 + repeats):
        t0 = time.perf_counter()
        dataset = load_task_dataset(spec)
        report = execute_run(spec, weights_path=None, dataset=dataset, device=torch.device("cpu"), artifact_sink=keep)
        wall = time.perf_counter() - t0
        total, phases = probe_timing(report)
        runs.append({"wall_s": wall, "total_s": total, "phases": phases})
    result = {"import_s": imported, "cold": runs[0], "warm": min(runs[1:], key=lambda r: r["wall_s"]) if repeats else None}
    if check:
        result["max_rel_diff"] = _check_against_train_model(spec, dataset, next(iter(losses.values())), check)
    return result


def _check_against_train_model(spec, dataset, losses, count: int) -> float:
    """Largest relative difference between the run's first ``count`` losses and the per-model path."""
    import numpy as np
    import torch

    from models.registry import build_model
    from workers.probes.functional.ensemble import data_order_seed, hypothesis_seed
    from workers.probes.functional.hypothesis_loss import test_losses
    from workers.probes.inductive_bias import _reshaped_for
    from workers.training import train_model

    arch, task = spec.model.arch, spec.task
    data = _reshaped_for(arch, dataset)
    worst = 0.0
    for i in range(count):
        h = hypothesis_seed(spec.seed, i)
        model = train_model(build_model(arch, h), data, task.train, task.loss, seed=data_order_seed(h))
        with torch.no_grad():
            out = model(data.X_test).unsqueeze(0)
        ref = test_losses(out, data.y_test, task.loss, data.task_type).item()
        worst = max(worst, abs(float(losses[i]) - ref) / abs(ref))
    return float(np.float64(worst))


def plain_model(arch: dict):
    """The model a researcher writes by hand: an ``nn.Sequential`` of the same layers."""
    from torch import nn

    if arch["name"] == "mlp":
        widths = [arch["in_dim"], *arch["hidden"], arch["out_dim"]]
        layers = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        return nn.Sequential(*layers[:-1])
    channels = [arch["in_channels"], *arch["channels"]]
    layers = []
    for a, b in zip(channels[:-1], channels[1:]):
        layers += [nn.Conv2d(a, b, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels[-1], arch["out_dim"]))


def child_loop(case: dict, dataset_path: str | None, repeats: int) -> dict:
    started = time.perf_counter()
    import numpy as np
    import torch
    import torch.nn.functional as F

    imported = time.perf_counter() - started
    if dataset_path:
        arrays = np.load(dataset_path)
        X_train, y_train, X_test, y_test = (torch.from_numpy(arrays[k]) for k in ("X_train", "y_train", "X_test", "y_test"))
    else:
        from workers.data.builtin import load_builtin

        digits = load_builtin("digits", {}, 0)
        X_train, y_train, X_test, y_test = digits.X_train, digits.y_train, digits.X_test, digits.y_test
    if case["arch"]["name"] == "cnn":
        X_train, X_test = X_train.reshape(-1, 1, 8, 8), X_test.reshape(-1, 1, 8, 8)
    X_train, X_test = X_train.float(), X_test.float()
    onehot_train, onehot_test = F.one_hot(y_train.long(), 10).float(), F.one_hot(y_test.long(), 10).float()

    def loop() -> list[float]:
        losses = []
        for i in range(case["loop_hypotheses"]):
            torch.manual_seed(i)
            model = plain_model(case["arch"])
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            n = X_train.shape[0]
            for _ in range(case["epochs"]):
                order = torch.randperm(n)
                for s in range(0, n, case["batch_size"]):
                    idx = order[s : s + case["batch_size"]]
                    opt.zero_grad()
                    F.mse_loss(model(X_train[idx]), onehot_train[idx]).backward()
                    opt.step()
            with torch.no_grad():
                losses.append(F.mse_loss(model(X_test), onehot_test).item())
        return losses

    times = []
    for _ in range(1 + repeats):
        t0 = time.perf_counter()
        loop()
        times.append(time.perf_counter() - t0)
    return {"import_s": imported, "cold_s": times[0], "warm_s": min(times[1:]) if repeats else times[0]}


def child_main(argv: list[str]) -> None:
    payload = json.loads(argv[0])
    import torch

    torch.set_num_threads(payload["threads"])
    if payload["side"] == "ours":
        result = child_ours(payload["case"], payload["dataset_path"], payload["repeats"], payload["check"])
    else:
        result = child_loop(payload["case"], payload["dataset_path"], payload["repeats"])
    print("RESULT " + json.dumps(result))


# --- parent ---------------------------------------------------------------------------------------


def in_fresh_process(side: str, case: Case, dataset_path: str | None, threads: int, repeats: int, check: int = 0) -> dict:
    payload = {"side": side, "case": asdict(case), "dataset_path": dataset_path, "threads": threads,
               "repeats": repeats, "check": check}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(payload)], capture_output=True, text=True,
                         env=env, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"{side} child failed for {case.name}:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def matmul_flops_per_second(size: int, repeats: int = 10) -> float:
    """Best observed float32 ``size x size`` matmul throughput in this process."""
    import torch

    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(size, size, generator=generator), torch.randn(size, size, generator=generator)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def sampler_flops(case: Case, n_train: int, n_test: int) -> float:
    """FLOPs of the trained sampler for the whole case: per hypothesis, 3 forwards' worth per
    training sample per epoch (forward + backward) and one forward per test point."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = plain_model(case.arch)
    x = torch.zeros(1, 1, 8, 8) if case.arch["name"] == "cnn" else torch.zeros(1, 64)
    with FlopCounterMode(display=False) as counter:
        model(x)
    per_sample = counter.get_total_flops()
    return case.hypotheses * per_sample * (3 * case.epochs * n_train + n_test)


def run_case(case: Case, args, tmp: Path) -> dict:
    dataset_path = None
    if "npz" in case.dataset:
        dataset_path = str(tmp / f"{case.name}.npz")
        write_npz(Path(dataset_path), case.dataset["npz"])
        n_train = n_test = case.dataset["npz"]
    else:
        from workers.data.builtin import load_builtin

        digits = load_builtin("digits", {}, 0)
        n_train, n_test = digits.X_train.shape[0], digits.X_test.shape[0]
    ours = in_fresh_process("ours", case, dataset_path, args.threads, args.repeats, check=args.check)
    loop = in_fresh_process("loop", case, dataset_path, args.threads, args.repeats)
    S, n = case.hypotheses, case.loop_hypotheses
    per_model = loop["warm_s"] / n
    fixed = max(loop["cold_s"] - loop["warm_s"], 0.0)
    loop_cold_hps = S / (fixed + S * per_model)
    loop_warm_hps = 1.0 / per_model
    cold, warm = ours["cold"], ours["warm"] or ours["cold"]
    flops = sampler_flops(case, n_train, n_test)
    return {
        "case": case.name, "arch": case.arch, "S": S, "epochs": case.epochs, "batch_size": case.batch_size,
        "n_train": n_train, "n_test": n_test,
        "ours_cold_hps": S / cold["wall_s"], "ours_warm_hps": S / warm["wall_s"],
        "loop_cold_hps": loop_cold_hps, "loop_warm_hps": loop_warm_hps,
        "cold_ratio": (S / cold["wall_s"]) / loop_cold_hps, "warm_ratio": (S / warm["wall_s"]) / loop_warm_hps,
        "ours_import_s": ours["import_s"], "loop_import_s": loop["import_s"],
        "cold": cold, "warm": warm, "loop": loop,
        "gflop": flops / 1e9,
        "gflops_cold": flops / cold["phases"].get("sampling_s", cold["total_s"]) / 1e9,
        "gflops_warm": flops / warm["phases"].get("sampling_s", warm["total_s"]) / 1e9,
        "estimation_share_cold": cold["phases"].get("estimation_s", 0.0) / cold["phases"].get("sampling_s", 1.0),
        "estimation_share_warm": warm["phases"].get("estimation_s", 0.0) / warm["phases"].get("sampling_s", 1.0),
        "max_rel_diff": ours.get("max_rel_diff"),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        child_main(argv[1:])
        return []
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads in every process (default 2)")
    parser.add_argument("--repeats", type=int, default=2, help="warm runs after the cold one; the best counts")
    parser.add_argument("--cases", nargs="+", default=["issue", "small", "wide", "cnn"])
    parser.add_argument("--hypotheses", type=int, default=128)
    parser.add_argument("--loop-hypotheses", type=int, default=16, help="models the plain loop trains (rate is linear)")
    parser.add_argument("--wide-width", type=int, default=1024)
    parser.add_argument("--wide-hypotheses", type=int, default=32)
    parser.add_argument("--cnn-channels", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--cnn-hypotheses", type=int, default=128)
    parser.add_argument("--check", type=int, default=2, help="hypotheses compared with train_model (0: none)")
    parser.add_argument("--matmul-size", type=int, default=2048)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    cases = [c for c in default_cases(args) if c.name in args.cases]
    peak_before = matmul_flops_per_second(args.matmul_size)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_case(c, args, Path(tmp)) for c in cases]
    peak_after = matmul_flops_per_second(args.matmul_size)
    load_after = os.getloadavg()
    peak = max(peak_before, peak_after)
    for r in rows:
        r["peak_gflops"] = peak / 1e9
        r["peak_fraction_warm"] = r["gflops_warm"] / (peak / 1e9)
        r["peak_fraction_cold"] = r["gflops_cold"] / (peak / 1e9)
    print(f"threads={args.threads} torch={torch.__version__} cpu_count={os.cpu_count()} cold = first execute_run in a "
          f"fresh process; warm = best of {args.repeats} more; loop = nn.Sequential + torch.optim.Adam, one model after another")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}; float32 matmul {args.matmul_size}^2 "
          f"best of 10 before/after: {peak_before / 1e9:.1f}/{peak_after / 1e9:.1f} GFLOP/s (using {peak / 1e9:.1f})")
    header = (f"{'case':<6} {'S':>4} {'ours cold':>9} {'loop cold':>9} {'ratio':>6} {'ours warm':>9} {'loop warm':>9} "
              f"{'ratio':>6} {'GFLOP/s':>11} {'of peak':>11} {'sampling s':>11} {'estim. s':>11} {'est/samp':>11} "
              f"{'import s':>8} {'max rel diff':>12}")
    print(header)
    print("-" * len(header))
    for r in rows:
        c, w = r["cold"]["phases"], r["warm"]["phases"]
        print(f"{r['case']:<6} {r['S']:>4} {r['ours_cold_hps']:>9.1f} {r['loop_cold_hps']:>9.1f} {r['cold_ratio']:>5.1f}x "
              f"{r['ours_warm_hps']:>9.1f} {r['loop_warm_hps']:>9.1f} {r['warm_ratio']:>5.1f}x "
              f"{r['gflops_cold']:>5.1f}/{r['gflops_warm']:<5.1f} {r['peak_fraction_cold']:>5.2f}/{r['peak_fraction_warm']:<5.2f} "
              f"{c.get('sampling_s', 0):>5.2f}/{w.get('sampling_s', 0):<5.2f} {c.get('estimation_s', 0):>5.2f}/{w.get('estimation_s', 0):<5.2f} "
              f"{r['estimation_share_cold']:>5.2f}/{r['estimation_share_warm']:<5.2f} {r['ours_import_s']:>8.2f} "
              f"{(r['max_rel_diff'] if r['max_rel_diff'] is not None else float('nan')):>12.1e}")
    print("pairs are cold/warm; h/s = hypotheses per second; ratio = ours / loop; est/samp = estimation_s / sampling_s")
    return rows


if __name__ == "__main__":
    main()
