"""Does a dataset fit an architecture and a loss? Checked from metadata, before a run is queued.

The check reads ``Dataset.describe()`` output, so the API can check a stored upload against a run
spec without loading its arrays; a mismatch becomes a 422 naming every problem, not a failed run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from models.specs import CNNSpec, MLPSpec, OnnxSpec, TransformerSpec, ViTSpec, input_signature, token_vocab_size
from models.errors import InputError

CLASSIFICATION_LOSSES = ("cross_entropy", "zero_one")
KNOWN_LOSSES = ("mse", *CLASSIFICATION_LOSSES)


def check_dataset_fits(
    description: dict,
    arch: MLPSpec | CNNSpec | ViTSpec | TransformerSpec | OnnxSpec,
    loss: str,
    loc: Sequence[str | int] = ("task", "dataset"),
) -> None:
    """Raise ``InputError`` (every problem at ``loc``) unless the dataset can feed ``arch`` under ``loss``.

    Checks:
    - per-sample input shape equals ``models.specs.input_signature(arch)``, or the architecture takes
      flat vectors and the samples have as many values (they are flattened, ``data_signature``);
    - token inputs need integer X (with ids below ``vocab_size`` when the dataset recorded
      ``params["max_token_id"]``), every other input kind needs float X;
    - classification: ``n_classes <= out_dim`` so every label indexes an output;
    - regression: ``target_dim == out_dim``; ``cross_entropy`` / ``zero_one`` need classification;
    - a transformer with ``pool='none'`` (one output per position) is refused: sequence-to-sequence
      targets are not supported for tasks yet.

    Args:
        description: ``Dataset.describe()`` output (``task_type``, ``n_classes``, ``sample_shape``,
            ``target_dim``, ``x_dtype``, ``params``).
        arch: a validated architecture spec.
        loss: the task's loss, one of ``mse``, ``cross_entropy``, ``zero_one``.
        loc: where the errors point (default ``("task", "dataset")``).
    """
    kind, expected_shape = input_signature(arch)
    sample_shape = tuple(description["sample_shape"])
    x_dtype = str(description["x_dtype"])
    x_is_integer = x_dtype.startswith(("int", "uint"))
    task_type = description["task_type"]
    out_dim = arch.out_dim
    problems: list[str] = []

    flat_fit = kind == "tabular" and len(sample_shape) > 1 and math.prod(sample_shape) == math.prod(expected_shape)
    if sample_shape != expected_shape and not flat_fit:
        problems.append(
            f"dataset samples have shape {list(sample_shape)} but the {arch.name} expects {list(expected_shape)}; "
            "change the architecture's input size or reshape the data"
        )
    if kind == "tokens":
        if not x_is_integer:
            problems.append(f"the transformer takes token ids, so X must hold integers, not {x_dtype}")
        else:
            max_token = (description.get("params") or {}).get("max_token_id")
            vocab_size = token_vocab_size(arch)
            if max_token is not None and max_token >= vocab_size:
                problems.append(f"X holds token id {max_token} but vocab_size is {vocab_size}; ids must be < vocab_size")
    elif x_is_integer:
        problems.append(
            f"X holds integers ({x_dtype}), which only a token transformer accepts; the {arch.name} takes "
            f"{kind} inputs, so store X as float32"
        )

    if isinstance(arch, TransformerSpec) and arch.pool == "none":
        problems.append(
            "pool='none' gives one output per position, and sequence-to-sequence targets are not supported "
            "for tasks yet; use pool='mean' or pool='cls'"
        )
    elif task_type == "classification":
        n_classes = description["n_classes"]
        if n_classes > out_dim:
            problems.append(
                f"the dataset has {n_classes} classes (labels 0..{n_classes - 1}) but the model has out_dim={out_dim}; "
                f"labels must be in range of the outputs: set out_dim >= {n_classes}"
            )
    elif description["target_dim"] != out_dim:
        problems.append(
            f"the dataset has {description['target_dim']} regression targets per sample but the model has "
            f"out_dim={out_dim}; they must be equal"
        )

    if loss not in KNOWN_LOSSES:
        problems.append(f"unknown loss {loss!r}; choose one of {list(KNOWN_LOSSES)}")
    elif loss in CLASSIFICATION_LOSSES and task_type != "classification":
        problems.append(f"loss '{loss}' needs class labels but this dataset is {task_type}; use loss 'mse'")

    if problems:
        raise InputError([{"loc": list(loc), "msg": msg} for msg in problems])
