"""Reproduce the main findings of "Neural Redshift" (Teney et al., CVPR 2024) with the simplicity probe.

Sweeps MLPs on 2-D inputs over activation (relu, gelu, tanh, gaussian, sin), weight scale (every
Linear weight and bias drawn from U(-scale, scale), scales log-spaced), depth (hidden layers of equal
width) and three variants: ``plain``, ``layernorm`` (LayerNorm before each hidden activation) and
``residual`` (``h <- h + act(linear(h))`` after the first hidden layer). Each configuration is scored
by ``workers.probes.simplicity.Simplicity``'s ``init`` block: the mean (and interval) of
mean_frequency, poly_order and lz_complexity over random members, on the probe's box grid
([-2, 2]^2 without a dataset). Writes ``redshift.csv``, ``redshift.md`` and one heat-map PNG per
metric (rows: variants, columns: activations; depth against scale) into ``--out``.

LayerNorm gains and shifts keep PyTorch's defaults (1 and 0) rather than the uniform draw: the claim
under test is about the scale of the *weights*; a gain drawn from U(-scale, scale) would put the
scale straight back in front of the activation.

Expected (the paper's Figs. 2-4): ReLU roughly flat in scale and depth; tanh, gaussian and sin
rising with scale and depth; LayerNorm removing the scale dependence; residual connections lowering
complexity at large scales. ``python -m experiments.redshift --out results/redshift`` runs the default
sweep in a few minutes on 2 CPU cores; ``--help`` lists the sizes.
"""

from __future__ import annotations

import argparse
import csv
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from models.registry import build_model
from models.specs import Activation, MLPSpec, parse_arch
from workers.probes.base import ProbeContext
from workers.probes.simplicity import METRICS, Simplicity

ACTIVATIONS: tuple[str, ...] = ("relu", "gelu", "tanh", "gaussian", "sin")
VARIANTS: dict[str, dict[str, bool]] = {
    "plain": {"layernorm": False, "residual": False},
    "layernorm": {"layernorm": True, "residual": False},
    "residual": {"layernorm": False, "residual": True},
}
_ALLOWED_ACTIVATIONS = Activation.__args__  # the names the MLP spec accepts


@dataclass(frozen=True)
class SweepConfig:
    """What to sweep, and how big each measurement is (defaults: a few minutes on 2 CPU cores)."""

    activations: tuple[str, ...] = ACTIVATIONS
    scales: tuple[float, ...] = tuple(float(s) for s in np.geomspace(0.125, 8.0, 5).round(4))
    depths: tuple[int, ...] = (1, 2, 4, 8)
    variants: tuple[str, ...] = tuple(VARIANTS)
    width: int = 64
    grid_size: int = 32
    n_members: int = 8
    seed: int = 0

    def __post_init__(self):
        unknown = [a for a in self.activations if a not in _ALLOWED_ACTIVATIONS]
        if unknown:
            raise ValueError(f"unknown activation(s) {unknown}; choose from {list(_ALLOWED_ACTIVATIONS)}")
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise ValueError(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")


@dataclass
class Measurement:
    """One configuration's init-distribution metrics: ``{metric: (mean, low, high)}``."""

    variant: str
    activation: str
    depth: int
    scale: float
    metrics: dict[str, tuple[float | None, float | None, float | None]] = field(default_factory=dict)
    calibration: list[dict] = field(default_factory=list)  # the probe's calibration block (same every cell)

    def row(self) -> dict:
        out = {"variant": self.variant, "activation": self.activation, "depth": self.depth, "scale": self.scale}
        for metric, (mean, low, high) in self.metrics.items():
            out.update({metric: mean, f"{metric}_low": low, f"{metric}_high": high})
        return out


def mlp_spec(activation: str, depth: int, scale: float, variant: str, width: int) -> MLPSpec:
    """The 2-D-input, 1-output MLP of one configuration (validated like a user's spec)."""
    return parse_arch({
        "name": "mlp", "in_dim": 2, "hidden": [width] * depth, "out_dim": 1, "activation": activation,
        **VARIANTS[variant], "init": {"dist": "uniform", "scale": scale},
    })  # fmt: skip


def build_member(spec: MLPSpec, seed: int) -> torch.nn.Module:
    """A seeded member with uniform weights and biases and identity LayerNorm affine parameters."""
    model = build_model(spec, seed=seed)
    with torch.no_grad():
        for norm in getattr(model, "norms", []):
            norm.weight.fill_(1.0)
            norm.bias.zero_()
    return model


def measure(activation: str, depth: int, scale: float, variant: str, config: SweepConfig) -> Measurement:
    """Run the simplicity probe on one configuration and keep its ``init`` block."""
    spec = mlp_spec(activation, depth, scale, variant, config.width)
    context = ProbeContext(
        arch=spec,
        model=build_member(spec, config.seed),
        has_uploaded_weights=False,
        make_member=lambda s: build_member(spec, s),
        seed=config.seed,
        device=torch.device("cpu"),
    )
    params = Simplicity.Params(grid_size=config.grid_size, n_init_samples=config.n_members)
    result = Simplicity(params).run(context)
    metrics = {}
    for metric in METRICS:
        spread = getattr(result.init, metric)
        metrics[metric] = (spread.mean, spread.low, spread.high)
    calibration = [row.model_dump() for row in result.calibration]
    return Measurement(variant, activation, depth, scale, metrics, calibration)


def run_sweep(config: SweepConfig, log: Callable[[str], None] | None = None) -> list[Measurement]:
    """Every (variant, activation, depth, scale) of ``config``, in that nesting order."""
    results = []
    total = len(config.variants) * len(config.activations) * len(config.depths) * len(config.scales)
    started = time.perf_counter()
    for variant in config.variants:
        for activation in config.activations:
            for depth in config.depths:
                for scale in config.scales:
                    results.append(measure(activation, depth, scale, variant, config))
                    if log is not None:
                        means = ", ".join(f"{k}={v[0]:.3f}" for k, v in results[-1].metrics.items())
                        elapsed = time.perf_counter() - started
                        log(f"[{len(results)}/{total} {elapsed:.0f}s] {variant} {activation} depth={depth} "
                            f"scale={scale:g}: {means}")  # fmt: skip
    return results


def lookup(results: Sequence[Measurement], metric: str, **where) -> float:
    """The mean of ``metric`` for the one measurement matching ``where`` (e.g. activation="tanh")."""
    found = [r for r in results if all(getattr(r, k) == v for k, v in where.items())]
    if len(found) != 1:
        raise KeyError(f"{len(found)} measurements match {where}")
    return found[0].metrics[metric][0]


def write_table(results: Sequence[Measurement], out: Path, config: SweepConfig) -> list[Path]:
    """``redshift.csv`` (every number) and ``redshift.md`` (means, one table per variant and metric)."""
    out.mkdir(parents=True, exist_ok=True)
    rows = [r.row() for r in results]
    csv_path = out / "redshift.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        "# Neural Redshift sweep",
        "",
        f"MLPs on 2-D inputs, width {config.width}, weights and biases ~ U(-scale, scale); "
        f"grid {config.grid_size} x {config.grid_size} on [-2, 2]^2, mean over {config.n_members} random members "
        f"per cell (seed {config.seed}). Rows: activation and depth; columns: scale.",
        "",
        "## Calibration (the probe's reference functions on the same grid)",
        "",
        "| signal | mean_frequency (Hann) | mean_frequency (no window) | poly_order | lz_complexity |",
        "|---|---|---|---|---|",
    ]
    for row in results[0].calibration:
        lines.append(f"| {row['signal']} | {row['mean_frequency']:.3f} | {row['mean_frequency_no_window']:.3f} | "
                     f"{row['poly_order']:.3f} | {row['lz_complexity']:.3f} |")  # fmt: skip
    for metric in METRICS:
        for variant in config.variants:
            lines += ["", f"## {metric}, {variant}", "",
                      "| activation | depth | " + " | ".join(_scale_label(s) for s in config.scales) + " |",
                      "|---|---|" + "---|" * len(config.scales)]  # fmt: skip
            for activation in config.activations:
                for depth in config.depths:
                    cells = [lookup(results, metric, variant=variant, activation=activation, depth=depth, scale=s)
                             for s in config.scales]  # fmt: skip
                    lines.append(f"| {activation} | {depth} | " + " | ".join(_fmt(c) for c in cells) + " |")
    md_path = out / "redshift.md"
    md_path.write_text("\n".join(lines) + "\n")
    return [csv_path, md_path]


def plot_heatmaps(results: Sequence[Measurement], out: Path, config: SweepConfig) -> list[Path]:
    """One PNG per metric: a grid of depth x scale heat maps, variants down, activations across."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on workers or CI
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for metric in METRICS:
        values = np.array([[[[_nan(lookup(results, metric, variant=v, activation=a, depth=d, scale=s))
                              for s in config.scales] for d in config.depths]
                            for a in config.activations] for v in config.variants])  # fmt: skip
        low, high = np.nanmin(values), np.nanmax(values)
        n_rows, n_cols = len(config.variants), len(config.activations)
        figure, axes = plt.subplots(n_rows, n_cols, figsize=(2.4 * n_cols + 1, 2.2 * n_rows + 0.6), squeeze=False)
        for i, variant in enumerate(config.variants):
            for j, activation in enumerate(config.activations):
                ax = axes[i, j]
                image = ax.imshow(values[i, j], origin="lower", aspect="auto", vmin=low, vmax=high, cmap="viridis")
                ax.set_xticks(range(len(config.scales)), [_scale_label(s) for s in config.scales], fontsize=7)
                ax.set_yticks(range(len(config.depths)), [str(d) for d in config.depths], fontsize=7)
                if i == 0:
                    ax.set_title(activation)
                if j == 0:
                    ax.set_ylabel(f"{variant}\ndepth")
                if i == n_rows - 1:
                    ax.set_xlabel("weight scale")
        figure.colorbar(image, ax=axes, shrink=0.8, label=metric)
        figure.suptitle(f"{metric} of random MLPs (mean over {config.n_members} members)")
        path = out / f"heatmap_{metric}.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        paths.append(path)
    return paths


def _scale_label(scale: float) -> str:
    return f"{scale:.2g}"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _nan(value: float | None) -> float:
    return np.nan if value is None else value


def main(argv: Sequence[str] | None = None) -> int:
    defaults = SweepConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for the table and the plots")
    parser.add_argument("--activations", nargs="+", default=list(defaults.activations), choices=_ALLOWED_ACTIVATIONS)
    parser.add_argument("--scales", nargs="+", type=float, default=list(defaults.scales))
    parser.add_argument("--depths", nargs="+", type=int, default=list(defaults.depths))
    parser.add_argument("--variants", nargs="+", default=list(defaults.variants), choices=list(VARIANTS))
    parser.add_argument("--width", type=int, default=defaults.width)
    parser.add_argument("--grid-size", type=int, default=defaults.grid_size)
    parser.add_argument("--members", type=int, default=defaults.n_members, help="random members per configuration")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--no-plots", action="store_true", help="skip the heat maps (no matplotlib needed)")
    args = parser.parse_args(argv)
    config = SweepConfig(
        activations=tuple(args.activations), scales=tuple(args.scales), depths=tuple(args.depths),
        variants=tuple(args.variants), width=args.width, grid_size=args.grid_size, n_members=args.members,
        seed=args.seed,
    )  # fmt: skip
    print(f"sweep: {asdict(config)}")
    results = run_sweep(config, log=print)
    written = write_table(results, args.out, config)
    if not args.no_plots:
        written += plot_heatmaps(results, args.out, config)
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
