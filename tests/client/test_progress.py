"""Progress: a redrawn bar on a terminal, one line per step (not per poll) in a CI log."""

from __future__ import annotations

import io
from datetime import datetime, timezone

from priorprobe_client.progress import ProgressDisplay
from priorprobe_client.schemas.runs import RunRead


def run(status: str, progress: float, message: str | None) -> RunRead:
    return RunRead(id="r", status=status, progress=progress, progress_message=message, error=None, timing=None, queue="cpu",
                   attempts=0, model_id=None, dataset_id=None, spec={}, created_at=datetime.now(timezone.utc),
                   started_at=None, finished_at=None)  # fmt: skip


POLLS = [run("queued", 0.0, None), run("queued", 0.0, None), run("running", 0.1, "starting"),
         run("running", 0.5, "random member 3/8"), run("running", 0.5, "random member 3/8"), run("succeeded", 1.0, "done")]  # fmt: skip


def test_log_gets_one_line_per_step():
    stream = io.StringIO()
    display = ProgressDisplay(stream, tty=False)
    for poll in POLLS:
        display.update(poll)
    display.close()
    assert stream.getvalue().splitlines() == [
        "[  0.0%] queued: queued", "[ 10.0%] running: starting", "[ 50.0%] running: random member 3/8", "[100.0%] succeeded: done"]


def test_terminal_gets_a_bar_redrawn_in_place():
    stream = io.StringIO()
    display = ProgressDisplay(stream, tty=True)
    for poll in POLLS:
        display.update(poll)
    display.close()
    frames = stream.getvalue().split("\r")[1:]
    assert len(frames) == len(POLLS) and stream.getvalue().endswith("\n") and stream.getvalue().count("\n") == 1
    assert frames[3].startswith("[" + "#" * 15 + "-" * 15 + "]  50.0% random member 3/8")
