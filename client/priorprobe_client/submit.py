"""``submit``: upload a checkpoint, queue a run, follow it, and gate on its metrics.

Exit codes: 0 passed; 1 a gate failed or a metric regressed against the baseline; 2 a usage, input
or server error, or the run failed or was cancelled; 3 timed out waiting (the run keeps going on
the server).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from priorprobe_client.baseline import Tolerance, compare_runs
from priorprobe_client.client import PriorProbeClient
from priorprobe_client.gates import Gate, UnknownMetric, evaluate
from priorprobe_client.progress import ProgressDisplay
from priorprobe_client.render import as_markdown, render
from priorprobe_client.schemas.gates import SubmitSummary, Verdict
from priorprobe_client.schemas.models import LATEST_PREFIX, ModelRead
from priorprobe_client.schemas.runs import RunRead, RunStatus

PASSED, FAILED, ERROR, TIMED_OUT = 0, 1, 2, 3


class SubmitError(Exception):
    """A usage, input or server problem: exit code 2 with this message."""


@dataclass
class SubmitOptions:
    checkpoint: Path
    spec: dict
    arch: dict | None = None  # None: the arch of the lineage's newest model
    model_name: str | None = None
    version: str | None = None
    commit: str | None = None
    branch: str | None = None
    ci_url: str | None = None
    tags: list[str] = field(default_factory=list)
    dataset: Path | None = None
    gates: list[Gate] = field(default_factory=list)
    baseline: str | None = None  # a run id or latest:<model name>
    tolerances: dict[str, Tolerance] = field(default_factory=dict)
    timeout_s: float = 3600.0
    poll_s: float = 2.0
    format: str = "text"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _upload_model(client: PriorProbeClient, options: SubmitOptions, log: TextIO) -> ModelRead:
    """The model record for this checkpoint: reused when these bytes were uploaded under this name
    with the same version and commit before (a re-run CI job), uploaded otherwise."""
    name = options.model_name or options.checkpoint.stem
    arch = options.arch
    if arch is None:
        try:
            arch = client.get_model(LATEST_PREFIX + name).arch
        except Exception as exc:
            raise SubmitError(f"no --arch given and no model named '{name}' to take it from ({exc})") from None
    digest = sha256_of(options.checkpoint)
    for existing in client.list_models(name=name, sha256=digest, limit=500).data:
        same = (existing.version, existing.commit) == (options.version, options.commit) and existing.arch.get("name") == arch.get("name")
        if same:
            log.write(f"model {existing.id} already uploaded (sha256 {digest[:12]}); reusing it\n")
            return existing
    model = client.create_model(options.checkpoint, arch, name=name, tags=options.tags or None, version=options.version,
                                commit=options.commit, branch=options.branch, ci_url=options.ci_url)  # fmt: skip
    log.write(f"uploaded model {model.id} ({name}, sha256 {digest[:12]})\n")
    return model


def _upload_dataset(client: PriorProbeClient, path: Path, log: TextIO) -> str:
    digest = sha256_of(path)
    existing = client.list_datasets(sha256=digest, limit=1).data
    if existing:
        log.write(f"dataset {existing[0].id} already uploaded (sha256 {digest[:12]}); reusing it\n")
        return existing[0].id
    dataset = client.create_dataset(path, name=path.stem)
    log.write(f"uploaded dataset {dataset.id} ({path.name})\n")
    return dataset.id


def _resolve_baseline(client: PriorProbeClient, ref: str) -> tuple[str | None, str | None]:
    """(baseline run id, note when there is none yet). Resolved before the new run exists, so
    ``latest:<name>`` is the lineage's newest succeeded run *before* this submission."""
    if ref.startswith(LATEST_PREFIX):
        name = ref[len(LATEST_PREFIX):]
        runs = client.list_runs(model_name=name, status=RunStatus.succeeded, limit=1).data
        if not runs:
            return None, f"No succeeded run of '{name}' yet: nothing to compare against (this run becomes the baseline)."
        return runs[0].id, None
    run = client.get_run(ref)
    if run.status != RunStatus.succeeded:
        raise SubmitError(f"baseline run {ref} is {run.status}, not succeeded")
    return run.id, None


def _follow(client: PriorProbeClient, run: RunRead, options: SubmitOptions, log: TextIO) -> RunRead | None:
    """Poll until the run finishes; None when ``timeout_s`` passed first."""
    display = ProgressDisplay(log)
    deadline = time.monotonic() + options.timeout_s
    try:
        while not run.status.finished:
            display.update(run)
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(options.poll_s, max(0.0, deadline - time.monotonic())))
            run = client.get_run(run.id)
        display.update(run)
    finally:
        display.close()
    return run


def submit(client: PriorProbeClient, options: SubmitOptions, out: TextIO, log: TextIO) -> int:
    """Run the whole submission; returns the exit code. Raises ``SubmitError`` (exit 2)."""
    baseline_id, baseline_note = _resolve_baseline(client, options.baseline) if options.baseline else (None, None)
    model = _upload_model(client, options, log)
    spec = json.loads(json.dumps(options.spec))  # a copy: the caller's spec stays as given
    spec.setdefault("model", {})["weights"] = model.id
    if options.dataset is not None:
        if "task" not in spec:
            raise SubmitError("--dataset needs a 'task' in the spec (loss, target_error) to attach the dataset to")
        spec["task"]["dataset"] = {"id": _upload_dataset(client, options.dataset, log)}
    run = client.create_run(spec)
    run_url = f"{client.base_url}/api/v1/runs/{run.id}"
    log.write(f"queued run {run.id}: {run_url}\n")
    finished = _follow(client, run, options, log)
    if finished is None:
        log.write(f"timed out after {options.timeout_s:g} s; run {run.id} keeps going on the server. Follow it with "
                  f"GET {run_url} (its metrics: {run_url}/metrics).\n")  # fmt: skip
        return TIMED_OUT
    if finished.status != RunStatus.succeeded:
        raise SubmitError(f"run {run.id} {finished.status}: {finished.error or finished.progress_message}")

    metrics = client.get_run_metrics(run.id).data
    by_key = {metric.key: metric for metric in metrics}
    try:
        outcomes = [evaluate(gate, by_key) for gate in options.gates]
    except UnknownMetric as exc:
        raise SubmitError(f"a gate names the metric '{exc}', which run {run.id} does not have; its metrics: "
                          f"{', '.join(sorted(by_key))}") from None  # fmt: skip
    comparisons = []
    if baseline_id is not None:
        comparisons = compare_runs(client.get_run_metrics(baseline_id).data, metrics, options.tolerances)
        if not comparisons:
            baseline_note = f"Baseline run {baseline_id} has no metric in common with this run."
    passed = all(o.passed for o in outcomes) and not any(c.verdict == Verdict.regressed for c in comparisons)
    summary = SubmitSummary(server=client.base_url, run=finished, run_url=run_url, model=model, metrics=metrics,
                            gates=outcomes, baseline_run_id=baseline_id, baseline_note=baseline_note,
                            comparisons=comparisons, passed=passed, exit_code=PASSED if passed else FAILED)  # fmt: skip
    out.write(render(summary, options.format) + "\n")
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a", encoding="utf-8") as handle:
            handle.write(as_markdown(summary) + "\n")
    return summary.exit_code
