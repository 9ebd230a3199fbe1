"""Benchmark: the invariance probe's forward-mode Lie derivative against double-backward JVPs.

All methods compute the same Jacobian-vector products ``J_s(x) v_k`` for S random members
(``workers.probes.functional.invariance.StackedEnsemble``), the K generator tangents of a transform
(``Transform.tangents``) and N inputs, in the same process:

- ``jvp``: ``StackedEnsemble.lie_derivative`` (``torch.func.jvp`` vmapped over the tangents, members
  vmapped around it, under ``torch.no_grad``), what the probe runs, on all N inputs at once;
- ``jvp (memory-matched)``: the same in input chunks (the probe's ``batch_size``), the largest chunk
  whose peak memory is at most the smaller of the two baselines' peaks;
- ``autograd.functional.jvp``: PyTorch's own double-backward JVP
  (``torch.autograd.functional.jvp``), one call per generator on the stacked ensemble;
- ``batched double backward``: ``functional.invariance.lie_derivative_double_backward``, one forward
  and one ``create_graph`` backward shared by all generators, the second backward batched over K.

Reported per configuration: the fastest of ``--repeats`` interleaved runs after one warm-up (the
median is in the JSON), peak memory
allocated during one call beyond what existed before it (CUDA: ``max_memory_allocated``; CPU: the
running sum of the allocations and frees that ``torch.profiler`` records, op by op), speed-ups, and
the largest difference between the methods' results.

    python benchmarks/bench_invariance.py                    # all configurations, table on stdout
    python benchmarks/bench_invariance.py --out bench.json   # also write the figures as JSON
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from models.registry import build_model
from models.specs import parse_arch
from workers.probes.functional.invariance import StackedEnsemble, lie_derivative_double_backward
from workers.transforms import build_transform

CONFIGS = {
    "cnn": {"name": "cnn", "in_channels": 3, "image_size": 16, "channels": [32, 32], "out_dim": 10},
    "vit": {"name": "vit", "in_channels": 3, "image_size": 16, "patch_size": 4, "dim": 64, "depth": 2, "heads": 4,
            "out_dim": 10},
    "mlp": {"name": "mlp", "in_dim": 3 * 16 * 16, "hidden": [256, 256], "out_dim": 10},
    # Deep and narrow: the graph a double backward keeps grows with depth, forward mode's does not.
    "mlp_deep": {"name": "mlp", "in_dim": 3 * 16 * 16, "hidden": [128] * 12, "out_dim": 10, "residual": True},
}


class _Flatten(torch.nn.Module):
    """Feeds images to an MLP, so every configuration takes the same image inputs and tangents."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.flatten(start_dim=-3))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_methods(methods: dict[str, Callable[[], torch.Tensor]], device: torch.device, repeats: int) -> dict[str, dict]:
    """Wall time of each method: one warm-up each, then ``repeats`` rounds running every method once
    per round (interleaved, so a busy machine slows them alike); min and median over the rounds."""
    for call in methods.values():
        call()  # one-time dispatch and decomposition set-up belong to no method
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, call in methods.items():
            _sync(device)
            start = time.perf_counter()
            call()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: {"min": min(t), "median": statistics.median(t)} for name, t in times.items()}


def peak_bytes(call: Callable[[], torch.Tensor], device: torch.device) -> int:
    """Peak memory allocated during ``call`` beyond what was allocated before it."""
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        result = call()
        _sync(device)
        peak = torch.cuda.max_memory_allocated(device) - before
        del result
        return int(peak)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = call()
    del result
    running = peak = 0
    # Self memory per op (frees appear as negative '[memory]' events) in start order: the live total.
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        running += event.self_cpu_memory_usage
        peak = max(peak, running)
    return int(peak)


def bench_one(family: str, members: int, inputs: int, transform_name: str, repeats: int, device: torch.device) -> dict:
    arch = parse_arch(CONFIGS[family])
    models = [build_model(arch, seed=s, device=device) for s in range(members)]
    if family.startswith("mlp"):
        models = [_Flatten(m) for m in models]
    ensemble = StackedEnsemble(models)
    shape = (3, 16, 16)
    x = torch.rand(inputs, *shape, generator=torch.Generator().manual_seed(0)).to(device)
    transform = build_transform(transform_name, "image", shape)
    tangents = transform.tangents(x)

    def forward_mode(chunk: int = inputs) -> torch.Tensor:
        with torch.no_grad():
            parts = [ensemble.lie_derivative(x[lo : lo + chunk], tangents[:, lo : lo + chunk])
                     for lo in range(0, inputs, chunk)]
        return torch.cat(parts, dim=2)

    def autograd_functional() -> torch.Tensor:
        return torch.stack([torch.autograd.functional.jvp(ensemble, x, v)[1] for v in tangents])

    def batched_double_backward() -> torch.Tensor:
        return lie_derivative_double_backward(ensemble, x, tangents)

    reference = forward_mode()
    difference = max((reference - method()).abs().max().item() for method in (autograd_functional, batched_double_backward))
    peaks = {"autograd_functional": peak_bytes(autograd_functional, device),
             "batched_double_backward": peak_bytes(batched_double_backward, device),
             "jvp": peak_bytes(forward_mode, device)}
    budget = min(peaks["autograd_functional"], peaks["batched_double_backward"])
    chunk = inputs
    while chunk > 1 and peak_bytes(lambda: forward_mode(chunk), device) > budget:
        chunk = (chunk + 1) // 2
    peaks["jvp_matched"] = peak_bytes(lambda: forward_mode(chunk), device)
    timing = time_methods(
        {"jvp": forward_mode, "jvp_matched": lambda: forward_mode(chunk), "autograd_functional": autograd_functional,
         "batched_double_backward": batched_double_backward},
        device, repeats,
    )
    seconds = {name: t["min"] for name, t in timing.items()}
    return {
        "family": family, "members": members, "inputs": inputs, "transform": transform_name,
        "generators": len(transform.generators), "matched_chunk": chunk, "seconds": seconds, "timing": timing,
        "peak_mib": {k: v / 2**20 for k, v in peaks.items()},
        "speedup_matched_vs_autograd_functional": seconds["autograd_functional"] / seconds["jvp_matched"],
        "speedup_matched_vs_batched_double_backward": seconds["batched_double_backward"] / seconds["jvp_matched"],
        "max_abs_difference": difference, "max_abs_value": reference.abs().max().item(),
    }


def format_rows(rows: list[dict]) -> str:
    methods = (("jvp", "jvp, one batch"), ("jvp_matched", "jvp, memory-matched"),
               ("autograd_functional", "autograd.functional.jvp"), ("batched_double_backward", "batched double backward"))
    lines = ["| model | S x N x K | method | best time (s) | peak (MiB) | matched jvp is faster by |", "|" + "---|" * 6]
    for r in rows:
        for key, label in methods:
            ratio = ""
            if key == "autograd_functional":
                ratio = f"{r['speedup_matched_vs_autograd_functional']:.2f}x"
            elif key == "batched_double_backward":
                ratio = f"{r['speedup_matched_vs_batched_double_backward']:.2f}x"
            elif key == "jvp_matched":
                label = f"{label} (chunk {r['matched_chunk']})"
            lines.append(f"| {r['family']} | {r['members']} x {r['inputs']} x {r['generators']} | {label} | "
                         f"{r['seconds'][key]:.4f} | {r['peak_mib'][key]:.1f} | {ratio} |")
        lines.append(f"| {r['family']} | | largest difference between methods | {r['max_abs_difference']:.1e} "
                     f"(values up to {r['max_abs_value']:.2g}) | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--inputs", type=int, default=128)
    parser.add_argument("--transform", default="translate", help="a continuous image transform")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    rows = [bench_one(f, args.members, args.inputs, args.transform, args.repeats, device) for f in args.families]
    print(format_rows(rows))
    if args.out is not None:
        meta = {"torch": torch.__version__, "device": str(device), "threads": torch.get_num_threads(),
                "platform": platform.platform()}
        args.out.write_text(json.dumps({"environment": meta, "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
