"""From a checked ONNX file to its hypothesis space: the ``OnnxSpec`` and the onnxruntime check.

``describe_graph`` binds the graph's input to the data (``DataInput``: the task's declared input
or what the dataset implies), infers the input kind from the graph when there is no data (a
per-sample rank of 3 is an image, 2 a sequence, 1 a feature vector; int64 ids are tokens), and
returns the spec every probe works with. ``agreement_with_onnxruntime`` runs the same inputs
through onnxruntime, the reference implementation, and reports the largest relative difference;
uploads are refused above ``AGREEMENT_RTOL``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from models.errors import InputError
from models.graph.checks import GraphLimits
from models.graph.module import GraphModule
from models.graph.store import load_graph
from models.specs import DataInput, InitSpec, OnnxSpec

AGREEMENT_RTOL = 1e-5
_KINDS_BY_RANK = {3: "image", 2: "sequence", 1: "tabular"}


def describe_graph(
    path: str | Path, limits: GraphLimits = GraphLimits(), data: DataInput | None = None, init: InitSpec = InitSpec()
) -> tuple[OnnxSpec, GraphModule]:
    """Check and load ``path``; return its spec (input bound to ``data`` when given) and module."""
    sha, module = load_graph(path, limits, bind=tuple(data.shape) if data is not None else None)
    sig = module.signature
    if sig.input_dtype == "int64":
        tables = [p for name, p in module.named_parameters() if module.roles[name].role == "embedding"]
        if not tables:
            raise InputError.at(["file"], "the graph takes int64 inputs but has no embedding table to say the vocabulary size", "onnx_signature")
        data_input = DataInput(kind="tokens", shape=list(sig.input_shape), vocab_size=tables[0].shape[0])
    elif data is not None and data.kind != "tokens":
        data_input = data
    else:
        data_input = DataInput(kind=_KINDS_BY_RANK.get(len(sig.input_shape), "tabular"), shape=list(sig.input_shape))
        if len(sig.input_shape) > 3:
            raise InputError.at(["file"], f"per-sample inputs of rank {len(sig.input_shape)} are not supported (at most 3)", "onnx_signature")
    spec = OnnxSpec(name="onnx", graph=sha, input=data_input, output_shape=list(sig.output_shape), init=init)
    return spec, module


def agreement_with_onnxruntime(path: str | Path, module: GraphModule, inputs: torch.Tensor) -> dict:
    """Largest relative difference between ``module`` and onnxruntime on ``inputs`` (one at a time).

    Relative to the largest output magnitude (so outputs near zero do not blow up the ratio):
    ``max|torch - ort| / max(max|ort|, tiny)``. Returns ``{"max_rel_error", "n_inputs", "rtol",
    "onnxruntime"}``.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # One thread: the check is small, and a server handles uploads in parallel.
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(Path(path).read_bytes(), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    with torch.no_grad():
        ours = module(inputs).double().numpy()
    ref = np.concatenate([session.run(None, {name: inputs[i : i + 1].numpy()})[0] for i in range(inputs.shape[0])])
    scale = max(float(np.abs(ref).max()), np.finfo(np.float32).tiny)
    error = float(np.abs(ours - ref).max()) / scale
    return {"max_rel_error": error, "n_inputs": int(inputs.shape[0]), "rtol": AGREEMENT_RTOL,
            "onnxruntime": onnxruntime.__version__}


def synthetic_inputs(spec: OnnxSpec, n: int = 8, seed: int = 0) -> torch.Tensor:
    """Seeded inputs of the graph's sample shape, when no dataset supplies real ones."""
    generator = torch.Generator().manual_seed(seed)
    shape = (n, *spec.input.shape)
    if spec.input.kind == "tokens":
        return torch.randint(0, spec.input.vocab_size or 2, shape, generator=generator)
    return torch.randn(shape, generator=generator)


def require_agreement(path: str | Path, module: GraphModule, inputs: torch.Tensor) -> dict:
    """``agreement_with_onnxruntime``, refusing the upload (``InputError``) above ``AGREEMENT_RTOL``."""
    result = agreement_with_onnxruntime(path, module, inputs)
    if not math.isfinite(result["max_rel_error"]) or result["max_rel_error"] > AGREEMENT_RTOL:
        raise InputError.at(
            ["file"],
            f"the converted graph disagrees with onnxruntime by {result['max_rel_error']:.3g} (relative; at most "
            f"{AGREEMENT_RTOL:g} accepted): an operator is used in a way we do not support",
            "onnx_disagrees",
        )
    return result
