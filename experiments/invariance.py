"""Experiment: which invariances do a CNN, an MLP and a small ViT build in, and which do they learn?

Trains one member of each architecture on the built-in 8x8 ``digits`` images, then runs the
invariance probe on the test set for every image transform, for the trained weights and for
random members of the same hypothesis space (the probe's ``init`` block). The MLP sees the same
images through a flatten, so all three are probed with the same image transforms and inputs.

Writes into ``--out``: ``invariance_table.md`` and ``invariance_table.csv`` (one row per model and
transform), ``invariance.png`` (invariance ratio at init vs trained, per transform and model),
and ``invariance_results.json`` (the probe results and test accuracies).

    python experiments/invariance.py --out runs/invariance            # a few minutes on 2 CPU cores
    python experiments/invariance.py --out /tmp/inv --epochs 5 --members 4 --n-inputs 128   # quicker
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import torch

from models.registry import build_model
from models.specs import parse_arch
from workers.data.builtin import load_builtin
from workers.probes.invariance import Invariance, InvarianceResult
from workers.runspec import TrainSpec
from workers.training import train_model
from workers.transforms import build_transform, default_transform_names

ARCHS = {
    # Circular padding + global average pooling: exactly invariant to circular shifts by construction.
    "cnn": {"name": "cnn", "in_channels": 1, "image_size": 8, "channels": [32, 32, 32], "out_dim": 10,
            "padding": "circular"},
    "mlp": {"name": "mlp", "in_dim": 64, "hidden": [128, 128], "out_dim": 10},
    "vit": {"name": "vit", "in_channels": 1, "image_size": 8, "patch_size": 2, "dim": 32, "depth": 2, "heads": 4,
            "out_dim": 10},
}
IMAGE_SHAPE = (1, 8, 8)


class FlattenImages(torch.nn.Module):
    """Lets the MLP take ``(N, 1, 8, 8)`` images, so it is probed with the image transforms."""

    def __init__(self, mlp: torch.nn.Module):
        super().__init__()
        self.mlp = mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x.flatten(start_dim=-3))


def member_builder(family: str):
    arch = parse_arch(ARCHS[family])

    def build(seed: int) -> torch.nn.Module:
        model = build_model(arch, seed=seed)
        return FlattenImages(model).eval() if family == "mlp" else model

    return build


def accuracy(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(X).argmax(dim=-1) == y).double().mean())


def run_experiment(args: argparse.Namespace) -> dict:
    dataset = load_builtin("digits", {"flatten": False}, seed=args.seed)
    train = TrainSpec(optimizer="adam", lr=args.lr, epochs=args.epochs, batch_size=64)
    transforms = [build_transform(name, "image", IMAGE_SHAPE) for name in default_transform_names("image")]
    probe = Invariance(Invariance.Params(n_inputs=args.n_inputs, n_init_samples=args.members, bootstrap=args.bootstrap))
    generator = torch.Generator().manual_seed(args.seed)
    chosen = torch.randperm(dataset.X_test.shape[0], generator=generator)[: args.n_inputs].sort().values
    inputs = dataset.X_test[chosen]

    results: dict[str, dict] = {}
    for family in ARCHS:
        build = member_builder(family)
        start = time.perf_counter()
        model = build(args.seed)
        init_accuracy = accuracy(model, dataset.X_test, dataset.y_test)
        train_model(model, dataset, train, "cross_entropy", seed=args.seed)
        trained_at = time.perf_counter()
        result = probe.measure(model, build, transforms, inputs, seed=args.seed, input_kind="image",
                               inputs="task_test_set", classifier=True)
        results[family] = {
            "test_accuracy": accuracy(model, dataset.X_test, dataset.y_test),
            "test_accuracy_at_init": init_accuracy,
            "train_seconds": trained_at - start,
            "probe_seconds": time.perf_counter() - trained_at,
            "probe": result.model_dump(mode="json"),
        }
        print(f"{family}: test accuracy {results[family]['test_accuracy']:.3f}, trained in "
              f"{results[family]['train_seconds']:.1f} s, probed in {results[family]['probe_seconds']:.1f} s")
    return results


def table_rows(results: dict[str, dict]) -> list[dict]:
    rows = []
    for family, entry in results.items():
        probe = InvarianceResult.model_validate(entry["probe"])
        for name, report in probe.transforms.items():
            init = report.init.invariance_ratio
            lie = report.lie_derivative
            rows.append({
                "model": family,
                "transform": name,
                "init_ratio_mean": init.mean,
                "init_ratio_low": init.low,
                "init_ratio_high": init.high,
                "trained_ratio": report.invariance_ratio.value,
                "trained_ratio_low": report.invariance_ratio.ci95[0] if report.invariance_ratio.ci95 else None,
                "trained_ratio_high": report.invariance_ratio.ci95[1] if report.invariance_ratio.ci95 else None,
                "versus_init": next(r.versus_init for r in probe.summary.ranking if r.name == name),
                "trained_consistency": report.consistency.value,
                "init_lie_mean": report.init.lie_derivative.mean if lie else None,
                "trained_lie": lie.value if lie else None,
                "lie_unit": lie.unit if lie else None,
            })
    return rows


def _fmt(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.2g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.1e}"


def write_tables(rows: list[dict], results: dict[str, dict], out: Path) -> str:
    with open(out / "invariance_table.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| model (test acc.) | transform | ratio at init: mean [95% member interval] | ratio trained [ci95] | "
             "trained vs init | consistency trained | Lie derivative init → trained |", "|" + "---|" * 7]
    for r in rows:
        acc = results[r["model"]]["test_accuracy"]
        lie = f"{_fmt(r['init_lie_mean'])} → {_fmt(r['trained_lie'])}" if r["trained_lie"] is not None else "–"
        lines.append(
            f"| {r['model']} ({acc:.2f}) | {r['transform']} | {_fmt(r['init_ratio_mean'])} "
            f"[{_fmt(r['init_ratio_low'])}, {_fmt(r['init_ratio_high'])}] | {_fmt(r['trained_ratio'])} "
            f"[{_fmt(r['trained_ratio_low'])}, {_fmt(r['trained_ratio_high'])}] | {r['versus_init'] or '–'} | "
            f"{_fmt(r['trained_consistency'])} | {lie} |"
        )
    markdown = "\n".join(lines)
    (out / "invariance_table.md").write_text(markdown + "\n")
    return markdown


def plot(rows: list[dict], results: dict[str, dict], out: Path, floor: float = 1e-8) -> None:
    """Invariance ratio per transform: every random member (grey dots) and their mean (grey bar) vs the
    trained weights with their ci95 (blue), one panel per model, log scale (values below ``floor``, i.e.
    exact invariance up to round-off, are drawn at the floor)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, len(families), figsize=(5 * len(families), 4.2), sharey=True)
    for ax, family in zip(axes, families):
        transforms = results[family]["probe"]["transforms"]
        subset = [r for r in rows if r["model"] == family]
        for x, r in enumerate(subset):
            values = transforms[r["transform"]]["init"]["invariance_ratio"]["values"]
            members = [max(v, floor) for v in values if v is not None]
            ax.scatter([x - 0.15] * len(members), members, s=10, color="tab:gray", alpha=0.6,
                       label="random members" if x == 0 else None)
            ax.hlines(max(r["init_ratio_mean"], floor), x - 0.3, x, color="tab:gray",
                      label="member mean" if x == 0 else None)
            centre = max(r["trained_ratio"], floor)
            low, high = max(r["trained_ratio_low"], floor), max(r["trained_ratio_high"], floor)
            ax.errorbar([x + 0.15], [centre], yerr=[[centre - low], [high - centre]], fmt="o", color="tab:blue",
                        capsize=3, label="trained (ci95)" if x == 0 else None)
        ax.set_yscale("log")
        ax.set_xticks(range(len(subset)))
        ax.set_xticklabels([r["transform"] for r in subset], rotation=60, ha="right")
        ax.set_title(f"{family} (test accuracy {results[family]['test_accuracy']:.2f})")
        ax.axhline(1.0, color="k", lw=0.5, ls=":")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel(f"invariance ratio (log; < {floor:g} drawn at {floor:g})")
    axes[0].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "invariance.png", dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for the table, plot and JSON")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--members", type=int, default=8, help="random members per architecture")
    parser.add_argument("--n-inputs", type=int, default=256)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results = run_experiment(args)
    (args.out / "invariance_results.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                                   "results": results}, indent=1))
    rows = table_rows(results)
    print(write_tables(rows, results, args.out))
    plot(rows, results, args.out)


if __name__ == "__main__":
    main()
