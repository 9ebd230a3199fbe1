"""Safe checkpoint loading: uploaded weights go into a model built from the user's spec.

The architecture always comes from the spec (``models.registry.build_model``); a checkpoint only
supplies tensors, matched by name against ``model.state_dict()``. Nothing in an uploaded file is
ever executed:

- ``.safetensors`` (preferred): a JSON header plus raw tensor bytes, read by
  ``safetensors.torch.load_file``.
- ``.pt`` / ``.pth``: a ``torch.save``-d state dict, read only with
  ``torch.load(weights_only=True)``, whose restricted unpickler refuses every class and function
  other than tensors and plain containers; anything else in the file is an ``InputError``.
- ``.pt2`` (``torch.export.save``): never given to ``torch.export.load``, which unpickles and
  evaluates parts of the archive; only the raw weight records are read, see
  ``models.pt2_weights`` for the reasons and the exact procedure.

The format comes from the file suffix, or from an explicit ``format`` (``"safetensors"``, ``"pt"``,
``"pt2"``) for stored blobs whose names say nothing; the first bytes must agree with it. Every
problem with an upload is an ``InputError`` located at ``["weights"]``.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import safetensors.torch
import torch
from torch import nn

from models.pt2_weights import read_pt2_weights
from models.errors import InputError

# File suffix -> format name; the format names are what callers store and pass as ``format``.
SUFFIX_FORMATS = {".safetensors": "safetensors", ".pt": "pt", ".pth": "pt", ".pt2": "pt2"}
SUPPORTED_SUFFIXES = tuple(SUFFIX_FORMATS)
FORMATS = ("safetensors", "pt", "pt2")
_FORMATS_HINT = (
    "upload .safetensors (preferred), a torch.save-d state dict (.pt/.pth), or a torch.export program (.pt2)"
)
_LOC = ["weights"]


class CheckpointMismatch(InputError):
    """The checkpoint's tensors do not match the model's parameters by name and shape.

    ``details`` = ``{"missing": [names], "unexpected": [names], "mismatched": [{"name",
    "expected", "got"}]}``, with shapes as lists; the message lists every problem too.
    """

    def __init__(self, missing: list[str], unexpected: list[str], mismatched: list[dict]):
        self.details = {"missing": list(missing), "unexpected": list(unexpected), "mismatched": list(mismatched)}
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing ({', '.join(missing)})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected ({', '.join(unexpected)})")
        if mismatched:
            shapes = ", ".join(f"{m['name']}: expected {m['expected']}, got {m['got']}" for m in mismatched)
            problems.append(f"{len(mismatched)} with the wrong shape ({shapes})")
        msg = (
            "checkpoint does not match the architecture: "
            + "; ".join(problems)
            + ". Save model.state_dict() of a model built from this same spec (same parameter names and shapes)."
        )
        super().__init__([{"loc": _LOC, "msg": msg, "type": "checkpoint_mismatch"}])

    def __reduce__(self):
        # Exceptions are re-created from their args when they cross a process boundary.
        d = self.details
        return (type(self), (d["missing"], d["unexpected"], d["mismatched"]))


def load_checkpoint(path: str | os.PathLike[str], model: nn.Module, format: str | None = None) -> None:
    """Load the weights in ``path`` into ``model`` in place.

    ``format`` (default: from the suffix) as in ``load_state_dict_file``. Raises ``InputError``
    (loc ``["weights"]``) for an unsupported suffix, an unreadable or hostile file, and
    ``CheckpointMismatch`` when names or shapes do not match the model.
    """
    apply_checkpoint(model, load_state_dict_file(path, format=format))


def load_state_dict_file(path: str | os.PathLike[str], format: str | None = None) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into ``{name: CPU tensor}`` without executing anything in it.

    Args:
        path: ``.safetensors``, ``.pt``/``.pth`` (a state dict) or ``.pt2``; the suffix (any case)
            picks the reader, and the content must agree with it.
        format: ``"safetensors"``, ``"pt"`` or ``"pt2"`` to name the format explicitly (the suffix
            is then ignored); default None. An unknown name is a ``ValueError`` (a caller's bug).

    Returns:
        The state dict, not yet checked against any model (see ``apply_checkpoint``).

    Raises:
        InputError: unsupported suffix, content that is not a valid file of that format, or a
            ``.pt`` that holds anything but a mapping of names to tensors.
        FileNotFoundError: ``path`` does not exist (a server-side problem, not the user's).
    """
    path = Path(path)
    if format is not None:
        if format not in FORMATS:
            raise ValueError(f"unknown checkpoint format {format!r}; expected one of {FORMATS}")
        claimed = format
    else:
        suffix = path.suffix.lower()
        if suffix not in SUFFIX_FORMATS:
            shown = suffix or "(no suffix)"
            raise _error(f"unsupported checkpoint format {shown!r}: {_FORMATS_HINT}", "unsupported_format")
        claimed = SUFFIX_FORMATS[suffix]
    if not path.is_file():
        raise FileNotFoundError(path)
    wrong_format = _looks_like(path, claimed)
    if wrong_format:
        raise _error(f"the file's content does not match its format ({claimed}): {wrong_format}")
    if claimed == "safetensors":
        return _load_safetensors(path)
    if claimed == "pt":
        return _load_torch_state_dict(path)
    return read_pt2_weights(path)


def apply_checkpoint(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Copy ``state`` into ``model``'s parameters and buffers, after checking all of it.

    Every entry of ``model.state_dict()`` must be present with the same shape, and nothing else
    may be; values must be finite floating-point tensors (other float dtypes are cast to the
    model's, and must stay finite after the cast). Nothing is copied unless everything passes.

    Raises:
        CheckpointMismatch: missing, unexpected or mis-shaped entries, all listed.
        InputError: non-tensor, non-floating or non-finite values, all listed.
    """
    expected = model.state_dict()
    not_tensors = [k for k, v in state.items() if not isinstance(v, torch.Tensor) or v.layout != torch.strided]
    if not_tensors:
        raise _error(f"these entries are not dense tensors: {', '.join(not_tensors)}", "invalid_tensor")

    missing = [name for name in expected if name not in state]
    unexpected = [name for name in state if name not in expected]
    mismatched = [
        {"name": name, "expected": list(expected[name].shape), "got": list(state[name].shape)}
        for name in expected
        if name in state and state[name].shape != expected[name].shape
    ]
    if missing or unexpected or mismatched:
        raise CheckpointMismatch(missing, unexpected, mismatched)

    not_floating = [f"{name} ({state[name].dtype})" for name in expected if not state[name].is_floating_point()]
    if not_floating:
        raise _error(f"weights must be floating-point tensors; got {', '.join(not_floating)}", "invalid_tensor")
    # Checked after the cast: a float64 value beyond float32's range would load as inf.
    non_finite = [name for name in expected if not torch.isfinite(state[name].to(expected[name].dtype)).all()]
    if non_finite:
        raise _error(
            f"weights contain NaN or infinite values (after casting to the model's dtype) in: {', '.join(non_finite)}",
            "invalid_tensor",
        )
    with torch.no_grad():
        model.load_state_dict(dict(state), strict=True)


def save_safetensors(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Write ``model.state_dict()`` to ``path`` as safetensors (the format we ask users to upload)."""
    state = {name: tensor.detach().to("cpu").contiguous() for name, tensor in model.state_dict().items()}
    safetensors.torch.save_file(state, os.fspath(path))


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return safetensors.torch.load_file(os.fspath(path), device="cpu")
    except Exception as exc:  # the Rust reader raises SafetensorError, OSError or others on bad bytes
        raise _error(f"not a valid .safetensors file ({_first_line(exc)}); {_FORMATS_HINT}") from exc


def _load_torch_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refused a global or an opcode: the file holds classes or functions, maybe code.
        raise _error(
            f"the .pt file holds Python objects other than tensors ({_refused_global(exc)}); .pt files "
            "are only read with torch.load(weights_only=True), which refuses them rather than run pickled code. "
            "Save model.state_dict() itself, or better upload .safetensors",
            "unsafe_checkpoint",
        ) from exc
    except Exception as exc:  # corrupt archives surface as RuntimeError, EOFError, ValueError, ...
        raise _error(f"not a readable torch.save file ({_first_line(exc)}); {_FORMATS_HINT}") from exc
    if not isinstance(loaded, Mapping) or not all(isinstance(k, str) for k in loaded):
        raise _error(
            "the .pt file must hold a state dict (a mapping of names to tensors), "
            f"got {type(loaded).__name__}"
        )
    wrapped = [k for k in ("state_dict", "model_state_dict", "model") if isinstance(loaded.get(k), Mapping)]
    if wrapped:
        raise _error(f"the file holds a training checkpoint; save its {wrapped[0]!r} entry (the state dict) on its own")
    return dict(loaded)


def _is_safetensors_head(head: bytes) -> bool:
    # An 8-byte little-endian header length, then the JSON header.
    return len(head) > 8 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") > 0


# Recognisable first bytes: (test, what it is, formats it may be, the suffix to advise otherwise).
_SIGNATURES = (
    (
        lambda head: head.startswith(b"PK\x03\x04"),
        "a zip archive (torch.save or torch.export.save output)",
        {"pt", "pt2"},
        ".pt or .pt2",
    ),
    (lambda head: head[:1] == b"\x80", "a raw pickle (legacy torch.save output)", {"pt"}, ".pt"),
    (_is_safetensors_head, "safetensors", {"safetensors"}, ".safetensors"),
)


def _looks_like(path: Path, claimed: str) -> str:
    """'it looks like X, rename it to .Y' when the first bytes reveal a format other than ``claimed``.

    Returns '' when the content is of the claimed kind or unrecognised (the reader then decides).
    """
    with open(path, "rb") as f:
        head = f.read(16)
    for matches, kind, formats, rename_to in _SIGNATURES:
        if matches(head):
            return "" if claimed in formats else f"it looks like {kind}, rename it to {rename_to}"
    return ""


def _refused_global(exc: BaseException) -> str:
    # torch's message goes on to suggest allow-listing the global "if you trust" it; users of a
    # service should not be told that, so keep only what was refused.
    text = str(exc)
    if "Unsupported global:" in text:
        refused = text.split("Unsupported global:", 1)[1].split(" was not", 1)[0]
        return "refused global " + refused.replace("GLOBAL", "").strip()
    for line in text.splitlines():
        if "Unsupported operand" in line:
            return line.strip().rstrip(".")
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def _error(msg: str, type_: str = "invalid_checkpoint") -> InputError:
    return InputError.at(_LOC, msg, type_)
