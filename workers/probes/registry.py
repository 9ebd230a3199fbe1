"""The public catalogue of probes: one explicit mapping from name to class."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import ValidationError

from models.errors import InputError
from workers.probes.base import Probe
from workers.probes.inductive_bias import InductiveBias
from workers.probes.invariance import Invariance
from workers.probes.sharpness import Sharpness
from workers.probes.simplicity import Simplicity
from workers.probes.weight_spectrum import WeightSpectrum

if TYPE_CHECKING:
    from workers.runspec import RunSpec

PROBES: dict[str, type[Probe]] = {probe.name: probe for probe in (InductiveBias, Invariance, Sharpness, Simplicity, WeightSpectrum)}


def get_probe_class(name: str) -> type[Probe]:
    try:
        return PROBES[name]
    except KeyError:
        raise InputError.at(["probes", name], f"unknown probe '{name}'; choose from {sorted(PROBES)}") from None


def instantiate_probes(spec: "RunSpec") -> dict[str, Probe]:
    """Validate every requested probe's params and its fit with the run's arch and task.

    All problems are collected into one ``InputError`` so the user fixes them in one round trip.
    """
    probes: dict[str, Probe] = {}
    errors: list[dict] = []
    for name, raw_params in spec.probes.items():
        try:
            cls = get_probe_class(name)
            try:
                params = cls.Params.model_validate(raw_params)
            except ValidationError as exc:
                raise InputError.from_validation(exc, prefix=["probes", name]) from None
            probe = cls(params)
            probe.check_inputs(spec.model.arch, spec.task)
            probes[name] = probe
        except InputError as exc:
            errors.extend(exc.errors)
    if errors:
        raise InputError(errors)
    return probes
