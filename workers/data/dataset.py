"""The in-memory dataset every probe receives, whatever its source (built-in, uploaded, file)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

TaskType = Literal["classification", "regression"]


@dataclass(frozen=True)
class Dataset:
    """Train and test arrays plus what kind of targets they hold.

    ``X_*`` are float32 (or int64 token ids) with the per-sample shape the architecture expects.
    Classification targets are int64 class indices in ``[0, n_classes)``; regression targets are
    float32 of shape ``(n, out_dim)``. ``X_train`` may be empty (0 rows) for test-only uploads:
    probes that train check ``has_train_split``.
    """

    name: str
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    task_type: TaskType
    n_classes: int | None = None
    params: dict = field(default_factory=dict)

    @property
    def has_train_split(self) -> bool:
        return self.X_train.shape[0] > 0

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.X_test.shape[1:])

    @property
    def target_dim(self) -> int:
        """Width of the model output this dataset needs."""
        if self.task_type == "classification":
            assert self.n_classes is not None
            return self.n_classes
        return 1 if self.y_test.ndim == 1 else int(self.y_test.shape[1])

    def describe(self) -> dict:
        """JSON summary stored with runs and datasets (no arrays)."""
        return {
            "name": self.name,
            "task_type": self.task_type,
            "n_classes": self.n_classes,
            "n_train": int(self.X_train.shape[0]),
            "n_test": int(self.X_test.shape[0]),
            "sample_shape": list(self.sample_shape),
            "target_dim": self.target_dim,
            "x_dtype": str(self.X_test.dtype).removeprefix("torch."),
            "params": self.params,
        }
