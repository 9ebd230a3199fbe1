"""The run spec: one JSON document that says what to probe, shared by the API and the CLI.

``{"model": {"arch": {...}, "weights": ...}, "task": {...}, "probes": {name: params}, "seed": 0}``

Probe params are validated against each probe's own ``Params`` model before anything is queued
(API, 422) or run (CLI), by ``workers.probes.registry.instantiate_probes``.
"""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from models.specs import ArchSpec, DataInput, data_input_for, data_signature


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class BuiltinDatasetRef(BaseModel):
    """``{"builtin": "teacher", "n_train": 256, ...}``: extra keys are the generator's parameters,
    validated by that generator's own params model."""

    model_config = ConfigDict(extra="allow")
    builtin: str


class UploadedDatasetRef(_Strict):
    id: str = Field(min_length=1, max_length=64)


class PathDatasetRef(_Strict):
    path: str = Field(min_length=1, max_length=4096)


DatasetRef = Union[BuiltinDatasetRef, UploadedDatasetRef, PathDatasetRef]


class TrainSpec(_Strict):
    """The training budget: part of the hypothesis space for trained samplers."""

    optimizer: Literal["sgd", "adam"] = "adam"
    lr: float = Field(default=1e-3, gt=0, le=10)
    epochs: int = Field(default=10, ge=0, le=10_000)
    batch_size: int = Field(default=64, ge=1, le=1_000_000)


class TaskSpec(_Strict):
    dataset: DatasetRef
    loss: Literal["mse", "cross_entropy", "zero_one"] = "mse"
    target_error: float = Field(gt=0)
    train: TrainSpec = TrainSpec()
    # How one input sample is shaped ({"kind": "image", "shape": [C, H, W]}); default: inferred
    # from the dataset's sample shape. Flat-vector models (mlp) take flattened samples, so image
    # transforms act on an MLP's inputs as on a CNN's (models.specs.data_signature).
    input: DataInput | None = None
    # A permutation of the flattened per-sample input indices: the invariance probe's `custom`
    # transform (e.g. a known symmetry of the data that no built-in transform expresses).
    input_permutation: list[int] | None = Field(default=None, min_length=1, max_length=10_000_000)

    @field_validator("input_permutation")
    @classmethod
    def _is_permutation(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and sorted(value) != list(range(len(value))):
            raise ValueError(f"must be a permutation of 0..{len(value) - 1} (each index exactly once)")
        return value

    @field_validator("dataset", mode="before")
    @classmethod
    def _pick_dataset_kind(cls, value: Any) -> Any:
        # Dispatch on the one key that names the source so errors talk about that source only.
        if isinstance(value, dict):
            kinds = [k for k in ("builtin", "id", "path") if k in value]
            if len(kinds) != 1:
                raise ValueError('give exactly one of "builtin", "id" or "path"')
            model = {"builtin": BuiltinDatasetRef, "id": UploadedDatasetRef, "path": PathDatasetRef}[kinds[0]]
            return model.model_validate(value)
        return value


class ModelRef(_Strict):
    # Optional through the API when ``weights`` names an uploaded model (its stored arch is used).
    arch: ArchSpec | None = None
    # An uploaded model id (API) or a checkpoint path relative to the spec file (CLI). Without
    # weights, probes that report on "the uploaded model" use a seeded random member instead.
    weights: str | None = Field(default=None, min_length=1, max_length=4096)

    @model_validator(mode="after")
    def _arch_or_weights(self) -> "ModelRef":
        if self.arch is None and self.weights is None:
            raise ValueError('give "arch" (an architecture spec), "weights" (an uploaded model id), or both')
        return self


class RunSpec(_Strict):
    model: ModelRef
    task: TaskSpec | None = None
    probes: dict[str, dict[str, Any]] = Field(min_length=1)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    # Probe params stay raw here: ``workers.probes.registry.instantiate_probes`` validates them
    # against each probe's ``Params`` and names the failing field as ``probes.<name>.<field>``.


def with_data_input(spec: RunSpec, description: dict | None) -> RunSpec:
    """``spec`` with ``task.input`` inferred from the dataset (``Dataset.describe()``) when unset.

    The data's sample shape says how inputs are shaped (``models.specs.data_input_for``): rank-3
    float samples are images, so an MLP on 1x8x8 digits is probed with image transforms. Kept
    unset when the data says nothing (integer ids) or does not fit the architecture (the dataset
    check reports that). Returns a copy; the report's spec shows what was used.
    """
    if spec.task is None or spec.task.input is not None or description is None or spec.model.arch is None:
        return spec
    dtype = str(description.get("x_dtype", "float32")).removeprefix("torch.")
    inferred = data_input_for(tuple(description["sample_shape"]), dtype.startswith(("int", "uint")))
    if inferred is None:
        return spec
    try:
        data_signature(spec.model.arch, inferred)
    except ValueError:
        return spec
    task = spec.task.model_copy(update={"input": inferred})
    return spec.model_copy(update={"task": task})
