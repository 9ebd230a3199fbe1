"""Read the weights of a ``torch.export`` ``.pt2`` archive without running anything from it.

Why we do not call ``torch.export.load`` on uploads (checked against torch 2.13's source,
``torch/export/pt2_archive/_package.py`` and ``torch/_export/serde/serialize.py``): a ``.pt2`` is a
zip archive, and loading it as a program unpickles and evaluates parts of it. Weights whose
entry in ``data/weights/model_weights_config.json`` says ``use_pickle`` go through
``torch.load`` with ``weights_only=False``; constants go through that same unsafe ``torch.load``,
``pickle.loads`` or the TorchScript unpickler; the example inputs ``data/sample_inputs/model.pt``
that every archive carries are read with ``weights_only=True`` but *fall back to
``weights_only=False``* when that fails; symbolic shape strings in the program JSON go through
``sympy.sympify``, which calls ``eval``; and a ``data/aotinductor/`` folder makes it ``dlopen`` a
shared library from the archive. Each of these runs code chosen by whoever wrote the file (the
tests show a crafted archive creating a file during ``torch.export.load``). The documentation of
``torch.export.load`` itself says never to load untrusted files with it.

What we do instead: we read only what weights need and nothing that can hold code. We parse the
zip directory with :mod:`zipfile`, check ``archive_format == "pt2"``, the archive version and the
byte order, read the JSON weights config with :func:`json.loads`, refuse any weight marked as
pickled, and build each tensor from its raw little-endian bytes with :func:`torch.frombuffer`
after checking dtype (float16/bfloat16/float32/float64), layout, sizes, strides and offset against
the record's length. The program graph, constants, sample inputs, extra files and compiled
artifacts are never opened, so no pickle, ``eval`` or shared library from the archive is ever
reached; the architecture comes from the user's spec, exactly as for safetensors. Weight records
must be stored uncompressed (``torch.export.save`` always writes them so), which bounds the memory
a record can take by the file's own size. Archives in the legacy layout
(``serialized_exported_program.json``) keep their weights in a pickle and are refused; so is
anything we cannot verify: upload safetensors instead.
"""

from __future__ import annotations

import json
import math
import os
import re
import zipfile
import zlib
from typing import Any

import torch

from models.errors import InputError

# Codes of torch._export.serde.schema.ScalarType (pinned here so that reading never imports the
# deserializer; a test checks them against the installed schema). Only floating types: a weight
# of any other type is refused later anyway.
FLOAT_SCALAR_TYPES: dict[int, torch.dtype] = {6: torch.float16, 7: torch.float32, 8: torch.float64, 13: torch.bfloat16}
STRIDED_LAYOUT = 7  # torch._export.serde.schema.Layout.Strided
ARCHIVE_VERSION = "0"
MODEL_NAME = "model"  # the name torch.export.save gives the one program it writes
MAX_CONFIG_BYTES = 64 * 2**20
MAX_TENSOR_DIMS = 64
_HINT = "upload the weights as .safetensors instead (safetensors.torch.save_file(model.state_dict(), path))"


def read_pt2_weights(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The state dict stored in a ``torch.export.save`` archive, read without executing anything.

    Args:
        path: a ``.pt2`` file written by ``torch.export.save`` (archive layout version 0).

    Returns:
        ``{fully qualified name: CPU tensor}``, names as in the exported module's ``state_dict()``.

    Raises:
        InputError (loc ``["weights"]``): not a zip, not a pt2 archive, an unsupported archive
        version or byte order, pickled or compressed weight records, or tensor metadata that does
        not fit its record.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            return _read_weights(archive, os.path.getsize(path))
    except InputError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError) as exc:
        # ValueError covers json.JSONDecodeError and UnicodeDecodeError; NotImplementedError is
        # zipfile's answer to an unknown compression method.
        raise _refuse(f"the .pt2 file is not a readable zip archive ({exc})") from exc


def _read_weights(archive: zipfile.ZipFile, file_size: int) -> dict[str, torch.Tensor]:
    records = {info.filename: info for info in archive.infolist()}
    if any(name.rsplit("/", 1)[-1] == "serialized_exported_program.json" for name in records):
        raise _refuse("this .pt2 uses the legacy torch.export layout, which stores weights as a pickle")
    root = _archive_root(records)
    if _read_text(archive, records, root + "archive_format") != "pt2":
        raise _refuse("the archive's archive_format is not 'pt2'")
    version = _read_text(archive, records, root + "archive_version")
    if version != ARCHIVE_VERSION:
        raise _refuse(f"pt2 archive version {version!r} is not supported (expected {ARCHIVE_VERSION!r})")
    if root + "byteorder" in records and _read_text(archive, records, root + "byteorder") != "little":
        raise _refuse("the archive was written on a big-endian machine; only little-endian weights are read")

    weights_dir = root + "data/weights/"
    if weights_dir + f"{MODEL_NAME}.pt" in records:
        raise _refuse("this .pt2 stores its weights in the legacy pickled format")
    config = json.loads(_read_text(archive, records, weights_dir + f"{MODEL_NAME}_weights_config.json"))
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
        raise _refuse("the weights config of the .pt2 has no 'config' mapping")

    storages: dict[str, torch.Tensor] = {}  # record name -> flat tensor; records can be shared
    state: dict[str, torch.Tensor] = {}
    for name, meta in config["config"].items():
        state[name] = _tensor_from_meta(archive, records, weights_dir, name, meta, storages, file_size)
    return state


def _archive_root(records: dict[str, zipfile.ZipInfo]) -> str:
    # torch.export.save puts everything under one top-level folder named after the file.
    roots = {name[: -len("archive_format")] for name in records if re.fullmatch(r"[^/]+/archive_format", name)}
    if len(roots) != 1:
        raise _refuse("the file is a zip archive but not a torch.export .pt2 (no single archive_format record)")
    return roots.pop()


def _read_text(archive: zipfile.ZipFile, records: dict[str, zipfile.ZipInfo], name: str) -> str:
    info = records.get(name)
    if info is None:
        raise _refuse(f"the .pt2 archive has no {name.split('/', 1)[-1]!r} record")
    if info.file_size > MAX_CONFIG_BYTES:
        raise _refuse(f"the .pt2 record {name!r} is larger than {MAX_CONFIG_BYTES} bytes")
    return archive.read(info).decode("utf-8").strip()


def _tensor_from_meta(
    archive: zipfile.ZipFile,
    records: dict[str, zipfile.ZipInfo],
    weights_dir: str,
    name: str,
    meta: Any,
    storages: dict[str, torch.Tensor],
    file_size: int,
) -> torch.Tensor:
    if not isinstance(meta, dict) or not isinstance(meta.get("tensor_meta"), dict):
        raise _refuse(f"weight {name!r}: malformed entry in the weights config")
    if meta.get("use_pickle") is not False:
        raise _refuse(
            f"weight {name!r} is stored as a pickle inside the .pt2 (as torch.export does for tensor "
            "subclasses); pickles can run arbitrary code, so they are never loaded"
        )
    tensor_meta = meta["tensor_meta"]
    dtype = FLOAT_SCALAR_TYPES.get(tensor_meta.get("dtype"))
    if dtype is None:
        code = tensor_meta.get("dtype")
        raise _refuse(f"weight {name!r} has dtype code {code!r}; only float16/bfloat16/float32/float64 are accepted")
    if tensor_meta.get("layout") != STRIDED_LAYOUT:
        raise _refuse(f"weight {name!r} is not a dense (strided) tensor")
    sizes = _int_list(name, "sizes", tensor_meta.get("sizes"))
    strides = _int_list(name, "strides", tensor_meta.get("strides"))
    offset = _sym_int(name, "storage_offset", tensor_meta.get("storage_offset"))
    if len(sizes) != len(strides) or len(sizes) > MAX_TENSOR_DIMS:
        raise _refuse(f"weight {name!r} has {len(sizes)} sizes and {len(strides)} strides (equal, at most 64)")
    if 0 in sizes:
        return torch.empty(sizes, dtype=dtype)

    storage = _storage(archive, records, weights_dir, name, meta.get("path_name"), dtype, storages, file_size)
    # Highest element index the view touches; it must lie inside the record, or as_strided would
    # describe memory the file never provided.
    last = offset + sum((size - 1) * stride for size, stride in zip(sizes, strides))
    if last >= storage.numel():
        raise _refuse(f"weight {name!r}: sizes/strides/offset reach element {last}, its record holds {storage.numel()}")
    # Zero strides could expand a tiny record into a huge copy; a real weight never holds more
    # elements than the record it views.
    if math.prod(sizes) > storage.numel():
        raise _refuse(f"weight {name!r} has shape {sizes}, more elements than its record holds ({storage.numel()})")
    return torch.as_strided(storage, sizes, strides, offset).clone(memory_format=torch.contiguous_format)


def _storage(
    archive: zipfile.ZipFile,
    records: dict[str, zipfile.ZipInfo],
    weights_dir: str,
    name: str,
    path_name: Any,
    dtype: torch.dtype,
    storages: dict[str, torch.Tensor],
    file_size: int,
) -> torch.Tensor:
    if not isinstance(path_name, str) or weights_dir + path_name not in records:
        raise _refuse(f"weight {name!r} points to a record that is not in the archive ({path_name!r})")
    record = records[weights_dir + path_name]
    cached = storages.get(record.filename)
    if cached is not None:
        if cached.dtype != dtype:
            raise _refuse(f"weight {name!r} reads record {path_name!r} with a different dtype than another weight")
        return cached
    # Stored (uncompressed) records cannot expand beyond the file, so a crafted size cannot make
    # us allocate more than was uploaded.
    stored = record.compress_type == zipfile.ZIP_STORED and record.file_size == record.compress_size
    if not stored or record.file_size > file_size:
        raise _refuse(f"weight record {path_name!r} is compressed (torch.export.save writes weights uncompressed)")
    element_size = torch.empty((), dtype=dtype).element_size()
    if record.file_size % element_size:
        raise _refuse(f"weight record {path_name!r} has {record.file_size} bytes, not a multiple of {element_size}")
    raw = bytearray(archive.read(record))
    storage = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
    storages[record.filename] = storage
    return storage


def _sym_int(name: str, field: str, value: Any) -> int:
    # Sizes are serialised as {"as_int": n}; symbolic ones ({"as_expr": ...}) never occur in a
    # state dict and would need sympy (eval) to read, so they are refused.
    number = value.get("as_int") if isinstance(value, dict) and len(value) == 1 else None
    if type(number) is not int or number < 0:  # type(...) is int: bools are ints too
        raise _refuse(f"weight {name!r}: {field} must be a non-negative integer, got {value!r}")
    return number


def _int_list(name: str, field: str, values: Any) -> list[int]:
    if not isinstance(values, list):
        raise _refuse(f"weight {name!r}: {field} must be a list")
    return [_sym_int(name, field, v) for v in values]


def _refuse(problem: str) -> InputError:
    return InputError.at(["weights"], f"cannot read the .pt2 weights: {problem}; {_HINT}", "invalid_checkpoint")
