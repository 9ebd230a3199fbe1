"""Pre-flight validation of a run spec: what a run is refused for before any probe starts.

The API (``app/services/runs.py``, answering 422) and the CLI (``priorprobe run``, exiting with
status 2) both call ``preflight``, so a spec that one refuses the other refuses too, at the same
field locations. It checks from metadata only (``Dataset.describe()``), so the API can check a
stored upload without loading its arrays.
"""

from __future__ import annotations

from models.errors import InputError
from workers.data.compat import check_dataset_fits
from workers.probes.base import Probe
from workers.probes.registry import instantiate_probes
from workers.runspec import RunSpec

DATASET_LOC = ("task", "dataset")


def preflight(spec: RunSpec, description: dict | None) -> dict[str, Probe]:
    """Validate ``spec`` against its task's dataset and return its probes, ready to run.

    Checks, every problem collected into one ``InputError`` (the user fixes them in one round trip):
    - ``model.arch`` is set (the API fills it from an uploaded model first);
    - every probe's params, and their fit with the architecture and task (``instantiate_probes``);
    - with a dataset: its samples fit the architecture's input and its labels or targets fit the
      outputs and the loss (``workers.data.compat.check_dataset_fits``, located at ``task.dataset``),
      and each probe accepts it (``Probe.check_dataset``).

    Args:
        spec: a run spec that passed pydantic validation.
        description: ``Dataset.describe()`` of the task's dataset, or None without a task.

    Returns:
        ``{name: probe}`` from ``instantiate_probes``.

    Raises:
        InputError: locations relative to the run spec.
    """
    if spec.model.arch is None:
        raise InputError.at(["model", "arch"], "an architecture spec is required (or, through the API, an uploaded model id)")
    errors: list[dict] = []
    try:
        probes = instantiate_probes(spec)
    except InputError as exc:
        # The dataset is still checked against the architecture; only valid probes check it too.
        errors.extend(exc.errors)
        probes = {}
    if description is not None and spec.task is not None:
        try:
            check_dataset_fits(description, spec.model.arch, spec.task.loss, loc=DATASET_LOC)
        except InputError as exc:
            errors.extend(exc.errors)
        for probe in probes.values():
            try:
                probe.check_dataset(description)
            except InputError as exc:
                errors.extend(exc.errors)
    if errors:
        raise InputError(errors)
    return probes
