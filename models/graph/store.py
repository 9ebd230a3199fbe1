"""The graphs this process has loaded, by the sha256 of their file: what ``OnnxSpec.graph`` names.

A member of an ONNX hypothesis space is a function of ``(spec, seed)``, like a zoo member, but the
spec only names its graph by content hash; whoever holds the file (the upload service, the
runner, the CLI) loads it here first with ``load_graph``, which checks it (``checks``) and keeps
the converted module. ``uploaded_model`` copies it with the file's own weights, and
``models.registry.build_model`` copies it with re-drawn parameters. A bounded number of graphs
is kept (least recently used first out), so memory does not grow with the number of uploads.
"""

from __future__ import annotations

import copy

import torch
import hashlib
import threading
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path

from models.errors import InputError
from models.graph.checks import GraphLimits, GraphSignature, read_model, signature
from models.graph.module import GraphModule

MAX_CACHED_GRAPHS = 8
_LOCK = threading.Lock()
_GRAPHS: "OrderedDict[str, GraphModule]" = OrderedDict()


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def load_graph(
    path: str | Path, limits: GraphLimits = GraphLimits(), bind: tuple[int, ...] | None = None
) -> tuple[str, GraphModule]:
    """Check and convert the ONNX file at ``path``; returns (sha256, the module with its weights).

    ``bind`` is the dataset's per-sample input shape (``checks.signature``). Raises
    ``InputError`` at ``["file"]`` for every refusal.
    """
    sha = file_sha256(path)
    model = read_model(path, limits)
    sig = signature(model, limits, bind)
    module = GraphModule(model, sig).eval()
    module.signature = replace(sig, output_shape=dry_run(module))
    with _LOCK:
        _GRAPHS[sha] = module
        _GRAPHS.move_to_end(sha)
        while len(_GRAPHS) > MAX_CACHED_GRAPHS:
            _GRAPHS.popitem(last=False)
    return sha, module


def dry_run(module: GraphModule) -> tuple[int, ...]:
    """Evaluate the graph once on a zero sample: the per-sample output shape, or ``InputError``.

    Memory stays bounded: every tensor the evaluation would create is checked against
    ``ops.MAX_TENSOR_ELEMENTS`` before it is allocated.
    """
    sig = module.signature
    dtype = torch.int64 if sig.input_dtype == "int64" else torch.float32
    try:
        with torch.no_grad():
            out = module(torch.zeros((1, *sig.input_shape), dtype=dtype))
    except (ValueError, RuntimeError, IndexError, KeyError, TypeError) as exc:
        # The graph passed the checker but cannot be evaluated here: data-dependent shapes, an
        # attribute form we do not support, or a tensor over the size limit.
        raise InputError.at(["file"], f"the graph cannot be evaluated on one sample of shape {list(sig.input_shape)}: "
                            f"{str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__}", "onnx_unevaluable") from None
    if not isinstance(out, torch.Tensor) or not out.is_floating_point() or out.dim() < 1:
        raise InputError.at(["file"], "the graph's output must be a float tensor with at least one axis per sample", "onnx_signature")
    return tuple(out.shape[1:])


def template(sha: str) -> GraphModule:
    """The loaded graph ``sha`` (its uploaded weights; do not modify it: copy it)."""
    with _LOCK:
        module = _GRAPHS.get(sha)
        if module is not None:
            _GRAPHS.move_to_end(sha)
    if module is None:
        raise InputError.at(
            ["model", "arch", "graph"],
            f"ONNX graph {sha[:12]}... is not loaded in this process; name the uploaded model (or its .onnx file) as the weights",
            "onnx_graph_unknown",
        )
    return module


def uploaded_model(sha: str) -> GraphModule:
    """A private copy of graph ``sha`` with the file's own weights."""
    return copy.deepcopy(template(sha))


def graph_signature(sha: str) -> GraphSignature:
    return template(sha).signature
