"""``priorprobe-client``: the light client's command line (also ``priorprobe submit`` on the server).

``priorprobe-client submit CHECKPOINT --spec spec.json [--arch arch.json] --model-name NAME
--gate 'EXPR' --baseline latest:NAME --max-regression KEY=TOL --timeout S --server URL``; the API key
comes from ``PRIORPROBE_API_KEY``. Exit codes: see ``priorprobe_client.submit``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from priorprobe_client.baseline import ToleranceError, parse_tolerances
from priorprobe_client.client import PriorProbeClient, RetryPolicy
from priorprobe_client.errors import ApiError, ServerUnreachable
from priorprobe_client.gates import GateSyntaxError, parse_gate
from priorprobe_client.render import FORMATS
from priorprobe_client.submit import ERROR, SubmitError, SubmitOptions, submit

_GATE_HELP = """a condition on the run's metrics, e.g. 'invariance.circular_shift.invariance_ratio < 0.05' or
'inductive_bias.bits.ci95.high <= 40 and inductive_bias.bits.value > 5'. Grammar: comparisons
(< <= > >= == !=) between a metric key (optionally .value, .ci95.low, .ci95.high) and a number,
joined by 'and'. Repeatable: every gate must pass."""


def _ci_defaults() -> dict[str, str | None]:
    """Provenance from the CI's own variables (GitHub Actions, GitLab CI), when not given."""
    env = os.environ
    github_url = None
    if env.get("GITHUB_RUN_ID") and env.get("GITHUB_REPOSITORY"):
        github_url = f"{env.get('GITHUB_SERVER_URL', 'https://github.com')}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
    return {
        "commit": env.get("GITHUB_SHA") or env.get("CI_COMMIT_SHA"),
        "branch": env.get("GITHUB_HEAD_REF") or env.get("GITHUB_REF_NAME") or env.get("CI_COMMIT_REF_NAME"),
        "ci_url": github_url or env.get("CI_JOB_URL"),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="priorprobe-client", description="PriorProbe light client.")
    commands = parser.add_subparsers(dest="command", required=True)
    sub = commands.add_parser("submit", help="upload a checkpoint, run probes, gate on the metrics",
                              description="Upload CHECKPOINT, queue the spec's probes on it, follow the run, print its metrics, "
                                          "check gates and compare with a baseline. Exit: 0 passed, 1 gate/regression failed, "
                                          "2 usage/input/server error or run failed, 3 timed out.")  # fmt: skip
    sub.add_argument("checkpoint", type=Path, help=".safetensors (or weights-only .pt) checkpoint")
    sub.add_argument("--spec", type=Path, required=True, help="run spec JSON (probes, task, seed); model.weights is filled in")
    sub.add_argument("--arch", type=Path, help="architecture JSON; default: that of the newest model named --model-name")
    sub.add_argument("--model-name", help="the lineage this checkpoint belongs to (default: the file name)")
    sub.add_argument("--version", help="model version label")
    sub.add_argument("--commit", help="git commit (default: $GITHUB_SHA / $CI_COMMIT_SHA)")
    sub.add_argument("--branch", help="git branch (default: from GitHub or GitLab variables)")
    sub.add_argument("--ci-url", help="link to this CI job (default: from GitHub or GitLab variables)")
    sub.add_argument("--tag", action="append", default=[], help="model tag (repeatable)")
    sub.add_argument("--dataset", type=Path, help=".npz/.safetensors dataset file for the spec's task")
    sub.add_argument("--gate", action="append", default=[], help=_GATE_HELP)
    sub.add_argument("--baseline", help="run id, or latest:NAME (the lineage's newest succeeded run before this one)")
    sub.add_argument("--max-regression", action="append", default=[], metavar="KEY=TOL",
                     help="how far KEY may move in its worse direction: an amount (+2) or a percentage (5%%); *=TOL for all")
    sub.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the run (default 3600); exit 3 after")
    sub.add_argument("--poll", type=float, default=2.0, help="seconds between status polls (default 2)")
    sub.add_argument("--server", default=os.environ.get("PRIORPROBE_SERVER", "http://127.0.0.1:8000"),
                     help="server URL (default: $PRIORPROBE_SERVER or http://127.0.0.1:8000)")
    sub.add_argument("--retries", type=int, default=4, help="retries on connection errors and 503 (default 4)")
    sub.add_argument("--format", choices=FORMATS, default="text", help="output format (default text)")
    return parser


def _read_json(path: Path, what: str) -> dict:
    try:
        value = json.loads(path.read_text())
    except OSError as exc:
        raise SubmitError(f"cannot read {what} {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise SubmitError(f"{what} {path} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise SubmitError(f"{what} {path} must be a JSON object")
    return value


def _options(args: argparse.Namespace) -> SubmitOptions:
    gates = []
    for text in args.gate:
        try:
            gates.append(parse_gate(text))
        except GateSyntaxError as exc:
            raise SubmitError(f"bad --gate: {exc}") from None
    try:
        tolerances = parse_tolerances(args.max_regression)
    except ToleranceError as exc:
        raise SubmitError(str(exc)) from None
    if not args.checkpoint.is_file():
        raise SubmitError(f"no such checkpoint file: {args.checkpoint}")
    if args.dataset is not None and not args.dataset.is_file():
        raise SubmitError(f"no such dataset file: {args.dataset}")
    ci = _ci_defaults()
    return SubmitOptions(
        checkpoint=args.checkpoint, spec=_read_json(args.spec, "spec"),
        arch=_read_json(args.arch, "arch") if args.arch else None, model_name=args.model_name, version=args.version,
        commit=args.commit or ci["commit"], branch=args.branch or ci["branch"], ci_url=args.ci_url or ci["ci_url"],
        tags=args.tag, dataset=args.dataset, gates=gates, baseline=args.baseline, tolerances=tolerances,
        timeout_s=args.timeout, poll_s=args.poll, format=args.format,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)  # usage errors exit 2 here
    try:
        options = _options(args)
        with PriorProbeClient(args.server, api_key=os.environ.get("PRIORPROBE_API_KEY") or None,
                              retry=RetryPolicy(retries=args.retries)) as client:  # fmt: skip
            return submit(client, options, sys.stdout, sys.stderr)
    except SubmitError as exc:
        print(f"error: {exc}", file=sys.stderr)
    except ApiError as exc:
        print(f"error: the server refused: {exc}", file=sys.stderr)
    except ServerUnreachable as exc:
        print(f"error: server unreachable after {args.retries} retries: {exc}", file=sys.stderr)
    return ERROR


if __name__ == "__main__":
    sys.exit(main())
