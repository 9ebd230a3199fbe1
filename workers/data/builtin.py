"""Built-in datasets: small, seeded tasks whose answer is known by construction.

Each entry of ``BUILTIN_DATASETS`` pairs a pydantic ``Params`` model (defaults and bounds, served as
JSON schema) with a generator ``(params, seed) -> Dataset``. Generators are deterministic per seed
and draw from independent named random streams (``_rng``), so changing ``n_test`` changes neither
the hidden function (teacher weights, parity bits, sinusoids, cluster means) nor the training set.
No generator touches global RNG state.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from workers.data.dataset import Dataset, TaskType
from models.errors import InputError

MAX_ROWS = 200_000
# Caps one generated dataset at ~200 MB of float32, whatever the mix of rows and dimensions.
MAX_ELEMENTS = 50_000_000


class _Params(BaseModel):
    # Unknown keys are almost always typos ("n_trian"); refusing them beats silently ignoring them.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class _SizedParams(_Params):
    n_train: int = Field(256, ge=0, le=MAX_ROWS, description="Training rows (default 256; 0 = test-only).")
    n_test: int = Field(256, ge=1, le=MAX_ROWS, description="Test rows (default 256).")

    def _elements_per_row(self) -> int:
        raise NotImplementedError

    @model_validator(mode="after")
    def _fits_in_memory(self) -> "_SizedParams":
        total = (self.n_train + self.n_test) * self._elements_per_row()
        if total > MAX_ELEMENTS:
            raise ValueError(
                f"(n_train + n_test) x input size = {total:,} values exceeds the limit of {MAX_ELEMENTS:,}; "
                "use fewer rows or a smaller input dimension"
            )
        return self


def _rng(seed: int, dataset: str, stream: str) -> np.random.Generator:
    """An independent generator per (seed, dataset, purpose)."""
    return np.random.default_rng([seed, zlib.crc32(dataset.encode()), zlib.crc32(stream.encode())])


def _provenance(name: str, params: _Params, seed: int, **extra: Any) -> dict:
    return {"builtin": name, "seed": seed, **params.model_dump(mode="json"), **extra}


# ----------------------------------------------------------------------------------------- digits


class DigitsParams(_Params):
    test_fraction: float = Field(0.25, ge=0.01, le=0.99, description="Share of each class held out for test (default 0.25).")
    flatten: bool = Field(True, description="true (default): X is (n, 64) for MLPs; false: (n, 1, 8, 8) for CNN/ViT.")
    normalize: bool = Field(True, description="true (default): pixel values divided by 16, into [0, 1]; false: raw 0..16.")
    n_classes: int = Field(10, ge=2, le=10, description="Keep only digits < n_classes (default 10; 2 gives a binary task).")
    n_train: int | None = Field(None, ge=1, le=2000, description="At most this many training rows, class-balanced (default: all).")
    split_seed: int | None = Field(
        0, ge=0, le=2**31 - 1,
        description="Seed of the train/test split (default 0: the same split for every run, so runs with "
        "different seeds probe the same task); null draws the split from the run seed.",
    )


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # bundled with scikit-learn; imported lazily (slow import)

    bunch = load_digits()
    images, labels = bunch.images.astype(np.float32), bunch.target.astype(np.int64)
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


def _balanced_order(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random order of ``labels``' indices in which every prefix is near class-proportional.

    Each class is shuffled and its members spread evenly over [0, 1) (the k-th of m at (k+0.5)/m);
    sorting by that position interleaves the classes in proportion to their sizes.
    """
    position = np.empty(len(labels))
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        position[members] = (np.arange(len(members)) + 0.5) / len(members)
    return np.lexsort((labels, position))


def generate_digits(params: DigitsParams, seed: int) -> Dataset:
    """scikit-learn's bundled 8x8 handwritten digits (1797 images), stratified train/test split.

    Per class, ``round(test_fraction * count)`` images (at least one, and leaving at least one) go to
    test; the rest to train, optionally capped at ``n_train`` in a class-balanced way.
    """
    images, labels = _digits_arrays()
    keep = labels < params.n_classes
    images, labels = images[keep], labels[keep]
    rng = _rng(params.split_seed if params.split_seed is not None else seed, "digits", "split")
    test_idx, train_idx = [], []
    for cls in range(params.n_classes):
        members = rng.permutation(np.flatnonzero(labels == cls))
        n_test = min(max(1, round(params.test_fraction * len(members))), len(members) - 1)
        test_idx.append(members[:n_test])
        train_idx.append(members[n_test:])
    test_idx, train_idx = np.sort(np.concatenate(test_idx)), np.concatenate(train_idx)
    train_idx = train_idx[_balanced_order(labels[train_idx], rng)]
    if params.n_train is not None:
        train_idx = train_idx[: params.n_train]

    x = images / 16.0 if params.normalize else images
    x = x.reshape(len(x), 64) if params.flatten else x.reshape(len(x), 1, 8, 8)
    return Dataset(
        name="digits",
        X_train=torch.from_numpy(np.ascontiguousarray(x[train_idx], dtype=np.float32)),
        y_train=torch.from_numpy(labels[train_idx].copy()),
        X_test=torch.from_numpy(np.ascontiguousarray(x[test_idx], dtype=np.float32)),
        y_test=torch.from_numpy(labels[test_idx].copy()),
        task_type="classification",
        n_classes=params.n_classes,
        params=_provenance("digits", params, seed),
    )


# ---------------------------------------------------------------------------------------- teacher


class TeacherParams(_SizedParams):
    in_dim: int = Field(8, ge=1, le=4096, description="Input dimension d; X ~ N(0, I_d) (default 8).")
    teacher_hidden: list[Annotated[int, Field(ge=1, le=4096)]] = Field(
        default_factory=lambda: [32], max_length=8, description="Hidden widths of the teacher MLP (default [32])."
    )
    activation: Literal["relu", "tanh"] = Field("relu", description="Teacher activation (default relu).")
    out_dim: int = Field(1, ge=1, le=1024, description="Teacher outputs = regression target width (default 1).")
    noise_std: float = Field(0.0, ge=0, le=1e3, description="Std of Gaussian label noise added to y (default 0).")

    def _elements_per_row(self) -> int:
        return self.in_dim + self.out_dim


def teacher_function(params: TeacherParams, seed: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The noise-free teacher of ``generate_teacher(params, seed)``, computed in float64.

    Every weight and bias is drawn from N(0, gain^2 / fan_in) (gain sqrt(2) before a relu, else 1),
    which keeps hidden pre-activations at unit-order scale for any width.
    """
    rng = _rng(seed, "teacher", "weights")
    gain = math.sqrt(2.0) if params.activation == "relu" else 1.0
    widths = [params.in_dim, *params.teacher_hidden, params.out_dim]
    layers = []
    for i, (fan_in, fan_out) in enumerate(pairwise(widths)):
        std = (gain if i < len(widths) - 2 else 1.0) / math.sqrt(fan_in)
        layers.append((torch.from_numpy(rng.normal(0, std, (fan_out, fan_in))), torch.from_numpy(rng.normal(0, std, fan_out))))
    act = torch.relu if params.activation == "relu" else torch.tanh

    def teacher(x: torch.Tensor) -> torch.Tensor:
        h = x.to(torch.float64)
        for i, (w, b) in enumerate(layers):
            h = torch.nn.functional.linear(h, w, b)
            if i < len(layers) - 1:
                h = act(h)
        return h

    return teacher


def generate_teacher(params: TeacherParams, seed: int) -> Dataset:
    """Regression on a random teacher MLP: y = teacher(X) + noise_std * N(0, 1), y of shape (n, out_dim)."""
    teacher = teacher_function(params, seed)

    def split(n: int, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        x = _rng(seed, "teacher", which).standard_normal((n, params.in_dim)).astype(np.float32)
        noise = _rng(seed, "teacher", which + "_noise").standard_normal((n, params.out_dim))
        x_t = torch.from_numpy(x)
        y = teacher(x_t) + params.noise_std * torch.from_numpy(noise)
        return x_t, y.to(torch.float32)

    (x_train, y_train), (x_test, y_test) = split(params.n_train, "train"), split(params.n_test, "test")
    return Dataset("teacher", x_train, y_train, x_test, y_test, "regression", None, _provenance("teacher", params, seed))


# ----------------------------------------------------------------------------------------- parity


class ParityParams(_SizedParams):
    n_bits: int = Field(10, ge=1, le=4096, description="Input bits n; X uniform in {-1, +1}^n (default 10).")
    k: int = Field(3, ge=1, le=4096, description="Number of bits the label depends on, 1 <= k <= n_bits (default 3).")

    def _elements_per_row(self) -> int:
        return self.n_bits

    @field_validator("k")
    @classmethod
    def _k_at_most_n_bits(cls, k: int, info: ValidationInfo) -> int:
        # A field validator (not a model one) so the error is located at "k".
        n_bits = info.data.get("n_bits")
        if n_bits is not None and k > n_bits:
            raise ValueError(f"k={k} must be at most n_bits={n_bits}")
        return k


def parity_bits(params: ParityParams, seed: int) -> list[int]:
    """The sorted indices of the k relevant bits (also recorded as ``params["relevant_bits"]``)."""
    return sorted(int(i) for i in _rng(seed, "parity", "bits").choice(params.n_bits, params.k, replace=False))


def generate_parity(params: ParityParams, seed: int) -> Dataset:
    """k-sparse parity: class 1 iff the product of the relevant bits is -1 (an odd number of -1s)."""
    relevant = parity_bits(params, seed)

    def split(n: int, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        x = 1.0 - 2.0 * _rng(seed, "parity", which).integers(0, 2, (n, params.n_bits)).astype(np.float32)
        y = (np.prod(x[:, relevant], axis=1) < 0).astype(np.int64)
        return torch.from_numpy(x), torch.from_numpy(y)

    (x_train, y_train), (x_test, y_test) = split(params.n_train, "train"), split(params.n_test, "test")
    return Dataset(
        "parity", x_train, y_train, x_test, y_test, "classification", 2,
        _provenance("parity", params, seed, relevant_bits=relevant),
    )


# ------------------------------------------------------------------------------------------- sine


class SineParams(_SizedParams):
    in_dim: int = Field(1, ge=1, le=1024, description="Input dimension d; X uniform in [-1, 1]^d (default 1).")
    n_components: int = Field(3, ge=1, le=256, description="Number of sinusoids J summed (default 3).")
    max_frequency: float = Field(3.0, gt=0, le=1000, description="Frequencies f_j ~ U[0, max_frequency], in cycles per unit (default 3).")
    noise_std: float = Field(0.0, ge=0, le=1e3, description="Std of Gaussian label noise added to y (default 0).")

    def _elements_per_row(self) -> int:
        return self.in_dim + 1


def sine_components(params: SineParams, seed: int) -> dict[str, np.ndarray]:
    """The sinusoids of ``generate_sine(params, seed)``: float64 arrays ``amplitudes`` (J,),
    ``frequencies`` (J,), ``phases`` (J,) and unit ``directions`` (J, d).

    a_j ~ N(0, 1/J) keeps Var(y) near 1/2 whatever J; w_j is uniform on the unit sphere; phi_j ~ U[0, 2pi).
    """
    rng = _rng(seed, "sine", "components")
    j, d = params.n_components, params.in_dim
    directions = rng.standard_normal((j, d))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return {
        "amplitudes": rng.standard_normal(j) / math.sqrt(j),
        "frequencies": rng.uniform(0.0, params.max_frequency, j),
        "phases": rng.uniform(0.0, 2 * math.pi, j),
        "directions": directions,
    }


def generate_sine(params: SineParams, seed: int) -> Dataset:
    """Sum of sinusoids: y = sum_j a_j sin(2 pi f_j <w_j, x> + phi_j) + noise_std * N(0, 1), y (n, 1)."""
    c = sine_components(params, seed)

    def split(n: int, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        x = _rng(seed, "sine", which).uniform(-1.0, 1.0, (n, params.in_dim)).astype(np.float32)
        y = np.sin(2 * np.pi * c["frequencies"] * (x.astype(np.float64) @ c["directions"].T) + c["phases"]) @ c["amplitudes"]
        y = y + params.noise_std * _rng(seed, "sine", which + "_noise").standard_normal(n)
        return torch.from_numpy(x), torch.from_numpy(y.astype(np.float32).reshape(n, 1))

    (x_train, y_train), (x_test, y_test) = split(params.n_train, "train"), split(params.n_test, "test")
    record = {k: c[k].tolist() for k in ("amplitudes", "frequencies", "phases")}
    return Dataset("sine", x_train, y_train, x_test, y_test, "regression", None, _provenance("sine", params, seed, components=record))


# ------------------------------------------------------------------------------ gaussian_clusters


class GaussianClustersParams(_SizedParams):
    n_classes: int = Field(3, ge=2, le=1000, description="Number of clusters = classes (default 3).")
    in_dim: int = Field(2, ge=1, le=4096, description="Input dimension (default 2).")
    separation: float = Field(3.0, ge=0, le=1e3, description="Cluster means ~ N(0, separation^2 I); points ~ N(mean, I) (default 3).")

    def _elements_per_row(self) -> int:
        return self.in_dim


def cluster_means(params: GaussianClustersParams, seed: int) -> np.ndarray:
    """The (n_classes, in_dim) float64 cluster means of ``generate_gaussian_clusters(params, seed)``."""
    return _rng(seed, "gaussian_clusters", "means").normal(0.0, params.separation, (params.n_classes, params.in_dim))


def generate_gaussian_clusters(params: GaussianClustersParams, seed: int) -> Dataset:
    """Gaussian clusters with balanced classes (counts differ by at most one) in random order."""
    means = cluster_means(params, seed)

    def split(n: int, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        rng = _rng(seed, "gaussian_clusters", which)
        y = rng.permutation(np.arange(n) % params.n_classes)
        x = (means[y] + rng.standard_normal((n, params.in_dim))).astype(np.float32)
        return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))

    (x_train, y_train), (x_test, y_test) = split(params.n_train, "train"), split(params.n_test, "test")
    return Dataset(
        "gaussian_clusters", x_train, y_train, x_test, y_test, "classification", params.n_classes,
        _provenance("gaussian_clusters", params, seed),
    )


# --------------------------------------------------------------------------------------- catalogue


@dataclass(frozen=True)
class BuiltinDataset:
    """One catalogue entry: ``generate(Params(...), seed)`` builds the dataset."""

    name: str
    summary: str
    task_type: TaskType
    Params: type[_Params]
    generate: Callable[[Any, int], Dataset]


BUILTIN_DATASETS: dict[str, BuiltinDataset] = {
    entry.name: entry
    for entry in (
        BuiltinDataset(
            "digits", "scikit-learn's 8x8 handwritten digits, 10 classes, stratified split.",
            "classification", DigitsParams, generate_digits,
        ),
        BuiltinDataset(
            "teacher", "Regression on a random teacher MLP with Gaussian inputs.",
            "regression", TeacherParams, generate_teacher,
        ),
        BuiltinDataset(
            "parity", "k-sparse parity of +-1 bits, 2 classes.",
            "classification", ParityParams, generate_parity,
        ),
        BuiltinDataset(
            "sine", "Regression on a seeded sum of sinusoids over [-1, 1]^d.",
            "regression", SineParams, generate_sine,
        ),
        BuiltinDataset(
            "gaussian_clusters", "Classification of isotropic Gaussian clusters.",
            "classification", GaussianClustersParams, generate_gaussian_clusters,
        ),
    )
}


def _entry(name: str, loc: Sequence[str | int]) -> BuiltinDataset:
    try:
        return BUILTIN_DATASETS[name]
    except (KeyError, TypeError):
        raise InputError.at(
            list(loc), f"unknown built-in dataset {name!r}; choose one of {sorted(BUILTIN_DATASETS)}"
        ) from None


def validate_builtin_params(
    name: str, params: Mapping[str, Any] | None, loc_prefix: Sequence[str | int] = ("task", "dataset")
) -> _Params:
    """Validate ``params`` against dataset ``name``'s ``Params`` without generating anything.

    A ``builtin`` key (the reference's own discriminator) is ignored. Raises ``InputError`` located
    at ``[*loc_prefix, "builtin"]`` for an unknown name and ``[*loc_prefix, <field>]`` for bad params.
    """
    entry = _entry(name, [*loc_prefix, "builtin"])
    raw = {k: v for k, v in (params or {}).items() if k != "builtin"}
    try:
        return entry.Params.model_validate(raw)
    except ValidationError as exc:
        raise InputError.from_validation(exc, prefix=list(loc_prefix)) from None


def load_builtin(
    name: str, params: Mapping[str, Any] | None, seed: int, loc_prefix: Sequence[str | int] = ("task", "dataset")
) -> Dataset:
    """Generate built-in dataset ``name`` with ``params`` (defaults fill the rest) for ``seed`` >= 0.

    Same (name, params, seed) gives bit-identical tensors. Raises ``InputError`` as
    ``validate_builtin_params`` does.
    """
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    validated = validate_builtin_params(name, params, loc_prefix)
    return BUILTIN_DATASETS[name].generate(validated, seed)


def describe_builtin(name: str) -> dict:
    """``{"name", "summary", "task_type", "params_schema"}`` for listing; ``InputError`` at ``["builtin"]`` if unknown."""
    entry = _entry(name, ["builtin"])
    return {
        "name": entry.name,
        "summary": entry.summary,
        "task_type": entry.task_type,
        "params_schema": entry.Params.model_json_schema(),
    }
