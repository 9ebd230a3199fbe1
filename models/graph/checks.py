"""Parse and check an uploaded ONNX file before anything else looks at it.

The checks run in order of cost, so a hostile file is refused before it can cost much:

1. size: the file is at most ``limits.max_file_bytes`` (it was already streamed under the upload
   limit) and is read once into memory; it is parsed with ``ModelProto.ParseFromString`` only,
   never ``onnx.load``, which follows external-data references to other files.
2. structure, walking every graph and subgraph iteratively: subgraph depth (``If``/``Loop``
   bodies) at most ``limits.max_subgraph_depth``; no tensor stored outside the file (external data,
   any ``location``), no sparse initializers, no local functions, no training info; operator
   domains only the standard one; every operator in ``ops.OPS``; node and initializer counts and
   the bytes every initializer claims within limits, and each initializer's claim matching the
   bytes it actually carries.
3. ``onnx.checker.check_model(full_check=True)`` (type and shape inference included), which is
   only run on a graph that passed 1-2.
4. the input: one float (or int64 token) input whose non-batch dims are fixed, or bound from the
   dataset's per-sample shape, with at most ``limits.max_input_elements`` elements per sample.

Every refusal is an ``InputError`` at ``["file"]`` whose ``type`` names the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx import TensorProto

from models.errors import InputError
from models.graph.ops import OPS, SUPPORTED_OPSETS

_LOC = ["file"]
_STANDARD_DOMAINS = ("", "ai.onnx")
# Bytes per element of each tensor element type we accept in initializers and constants.
_ELEMENT_BYTES = {
    TensorProto.FLOAT: 4,
    TensorProto.DOUBLE: 8,
    TensorProto.FLOAT16: 2,
    TensorProto.BFLOAT16: 2,
    TensorProto.INT64: 8,
    TensorProto.INT32: 4,
    TensorProto.INT8: 1,
    TensorProto.UINT8: 1,
    TensorProto.BOOL: 1,
}
# The repeated field that holds a tensor's values when it has no raw_data, per element type.
_VALUE_FIELDS = {
    TensorProto.FLOAT: "float_data",
    TensorProto.DOUBLE: "double_data",
    TensorProto.FLOAT16: "int32_data",
    TensorProto.BFLOAT16: "int32_data",
    TensorProto.INT64: "int64_data",
    TensorProto.INT32: "int32_data",
    TensorProto.INT8: "int32_data",
    TensorProto.UINT8: "int32_data",
    TensorProto.BOOL: "int32_data",
}


@dataclass(frozen=True)
class GraphLimits:
    """What an uploaded graph may cost; the service takes them from its settings."""

    max_file_bytes: int = 256 * 2**20
    max_nodes: int = 10_000
    max_initializers: int = 10_000
    max_initializer_bytes: int = 256 * 2**20
    max_subgraph_depth: int = 4
    max_input_elements: int = 1_000_000


@dataclass(frozen=True)
class GraphSignature:
    """What a checked graph takes and gives, per sample (the batch axis removed).

    ``input_dtype`` is ``"float"`` or ``"int64"``; ``batch`` is ``"dynamic"`` when the graph's
    first input axis is symbolic and ``"one"`` when it is fixed to 1 (the interpreter evaluates one
    sample at a time either way).
    """

    input_name: str
    input_shape: tuple[int, ...]
    input_dtype: str
    output_shape: tuple[int, ...]  # () until store.load_graph has evaluated the graph once
    batch: str
    opset: int


def refuse(msg: str, type_: str) -> InputError:
    return InputError.at(_LOC, msg, f"onnx_{type_}")


def read_model(path: str | Path, limits: GraphLimits = GraphLimits()) -> onnx.ModelProto:
    """Parse ``path`` as an ONNX ModelProto and run checks 1-3 of the module docstring."""
    path = Path(path)
    size = path.stat().st_size
    if size > limits.max_file_bytes:
        raise refuse(f"the file has {size} bytes; at most {limits.max_file_bytes} are accepted", "too_large")
    data = path.read_bytes()
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RecursionError, ValueError) as exc:
        raise refuse(f"not a valid ONNX protobuf ({str(exc)[:200] or type(exc).__name__})", "malformed") from None
    if not model.HasField("graph"):
        raise refuse("not a valid ONNX model: it has no graph", "malformed")
    check_structure(model, limits)
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise refuse(f"onnx.checker refused the model: {_first_line(exc)}", "invalid") from None
    return model


def check_structure(model: onnx.ModelProto, limits: GraphLimits) -> None:
    """Check 2 of the module docstring; see there."""
    if model.functions:
        raise refuse(f"the model defines {len(model.functions)} local functions; only standard operators are accepted", "custom_op")
    if model.training_info:
        raise refuse("the model carries training info; export it for inference", "unsupported")
    standard_opset(model)
    graphs = subgraphs(model.graph, limits.max_subgraph_depth)
    n_nodes = n_inits = init_bytes = 0
    for graph in graphs:
        if graph.sparse_initializer:
            raise refuse("sparse initializers are not supported", "unsupported")
        n_nodes += len(graph.node)
        n_inits += len(graph.initializer)
        if n_nodes > limits.max_nodes:
            raise refuse(f"the graph has more than {limits.max_nodes} nodes", "too_many_nodes")
        if n_inits > limits.max_initializers:
            raise refuse(f"the graph has more than {limits.max_initializers} initializers", "too_many_initializers")
        for tensor in graph.initializer:
            init_bytes += check_tensor(tensor, f"initializer {tensor.name!r}")
        for node in graph.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    init_bytes += check_tensor(attr.t, f"attribute {attr.name!r} of node {node.name or node.op_type!r}")
                if attr.sparse_tensor.ByteSize() or attr.sparse_tensors:
                    raise refuse("sparse tensors are not supported", "unsupported")
                for tensor in attr.tensors:
                    init_bytes += check_tensor(tensor, f"attribute {attr.name!r} of node {node.name or node.op_type!r}")
            if node.domain not in _STANDARD_DOMAINS:
                raise refuse(
                    f"node {node.name or node.op_type!r} uses operator domain {node.domain!r}; only the standard "
                    "ONNX domain is accepted",
                    "unknown_domain",
                )
            if node.op_type not in OPS:
                raise refuse(
                    f"operator {node.op_type!r} (node {node.name!r}) is not supported; supported: "
                    f"{', '.join(sorted(OPS))} (docs/onnx.md)",
                    "unsupported_op",
                )
        if init_bytes > limits.max_initializer_bytes:
            raise refuse(
                f"the initializers claim more than {limits.max_initializer_bytes} bytes", "too_large"
            )


def subgraphs(graph: onnx.GraphProto, max_depth: int) -> list[onnx.GraphProto]:
    """``graph`` and every subgraph in it (If/Loop/Scan bodies), refusing nesting beyond ``max_depth``.

    Iterative, so a deep nesting cannot exhaust the stack; checked before anything else looks at
    the nodes, so the refusal names the depth.
    """
    found, pending = [], [(graph, 0)]
    while pending:
        current, depth = pending.pop()
        if depth > max_depth:
            raise refuse(f"subgraphs (If/Loop/Scan bodies) are nested deeper than {max_depth} levels", "too_deep")
        found.append(current)
        for node in current.node:
            for attr in node.attribute:
                if attr.HasField("g"):
                    pending.append((attr.g, depth + 1))
                pending.extend((g, depth + 1) for g in attr.graphs)
    return found


def standard_opset(model: onnx.ModelProto) -> int:
    """The model's standard-domain opset version; refuses other domains and unsupported versions."""
    versions = {}
    for entry in model.opset_import:
        if entry.domain not in _STANDARD_DOMAINS:
            raise refuse(
                f"the model imports operator domain {entry.domain!r}; only the standard ONNX domain is accepted",
                "unknown_domain",
            )
        versions[entry.domain] = entry.version
    version = versions.get("", versions.get("ai.onnx"))
    low, high = SUPPORTED_OPSETS
    if version is None or not low <= version <= high:
        raise refuse(
            f"opset {version} is not supported; export with opset_version between {low} and {high} "
            "(torch.onnx.export(..., opset_version=17))",
            "unsupported_opset",
        )
    return version


def check_tensor(tensor: onnx.TensorProto, what: str) -> int:
    """The bytes ``tensor`` claims, after checking it carries exactly them, inside this file."""
    if tensor.data_location == TensorProto.EXTERNAL or tensor.external_data:
        location = next((e.value for e in tensor.external_data if e.key == "location"), "?")
        raise refuse(
            f"{what} refers to external data ({location!r}); tensors must be stored inside the uploaded file "
            "(torch.onnx.export(..., external_data=False))",
            "external_data",
        )
    if tensor.data_type not in _ELEMENT_BYTES:
        raise refuse(f"{what} has element type {TensorProto.DataType.Name(tensor.data_type)}, which is not supported", "unsupported")
    if any(d < 0 for d in tensor.dims):
        raise refuse(f"{what} has a negative dimension", "invalid")
    count = math.prod(tensor.dims)
    claimed = count * _ELEMENT_BYTES[tensor.data_type]
    if tensor.HasField("raw_data"):
        carried = len(tensor.raw_data)
        if carried != claimed:
            raise refuse(
                f"{what} declares shape {list(tensor.dims)} ({claimed} bytes) but carries {carried} bytes", "size_mismatch"
            )
    else:
        carried = len(getattr(tensor, _VALUE_FIELDS[tensor.data_type]))
        if carried != count:
            raise refuse(f"{what} declares {count} elements but carries {carried}", "size_mismatch")
    return claimed


def signature(
    model: onnx.ModelProto, limits: GraphLimits = GraphLimits(), bind: tuple[int, ...] | None = None
) -> GraphSignature:
    """Check 4: the graph's per-sample input and output shapes.

    ``bind`` is the dataset's per-sample input shape; it fills symbolic non-batch dims and must
    agree with fixed ones.
    bound input shape, so symbolic output dims are resolved the same way.
    """
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise refuse(
            f"the graph must have exactly one input and one output (got {len(inputs)} and {len(graph.output)})", "signature"
        )
    (inp,), out = inputs, graph.output[0]
    elem = inp.type.tensor_type.elem_type
    dtype = {TensorProto.FLOAT: "float", TensorProto.INT64: "int64"}.get(elem)
    if dtype is None:
        raise refuse(f"input {inp.name!r} must be float32 (or int64 token ids)", "signature")
    dims = list(inp.type.tensor_type.shape.dim)
    if len(dims) < 2:
        raise refuse(f"input {inp.name!r} must have a batch axis and at least one more axis", "signature")
    batch_dim = dims[0]
    if batch_dim.HasField("dim_value") and batch_dim.dim_value != 1:
        raise refuse(
            f"input {inp.name!r} has a fixed batch size {batch_dim.dim_value}; export with batch size 1 or a dynamic "
            "batch axis",
            "signature",
        )
    shape = []
    for axis, dim in enumerate(dims[1:], start=1):
        value = dim.dim_value if dim.HasField("dim_value") else None
        if bind is not None:
            if len(bind) != len(dims) - 1:
                raise refuse(
                    f"the data's samples have shape {list(bind)} but input {inp.name!r} takes {len(dims) - 1} axes per sample",
                    "unbound_shape",
                )
            if value is not None and value != bind[axis - 1]:
                raise refuse(
                    f"the data's samples have shape {list(bind)} but axis {axis} of input {inp.name!r} is fixed to {value}",
                    "unbound_shape",
                )
            value = bind[axis - 1]
        if value is None or value < 1:
            raise refuse(
                f"axis {axis} of input {inp.name!r} is dynamic ({dim.dim_param or '?'}) and no dataset binds it; "
                "export with fixed sample shapes or give a dataset",
                "unbound_shape",
            )
        shape.append(value)
    if math.prod(shape) > limits.max_input_elements:
        raise refuse(
            f"input {inp.name!r} has {math.prod(shape)} elements per sample; at most {limits.max_input_elements}", "too_large"
        )
    return GraphSignature(
        input_name=inp.name,
        input_shape=tuple(shape),
        input_dtype=dtype,
        output_shape=(),
        batch="one" if batch_dim.HasField("dim_value") else "dynamic",
        opset=standard_opset(model),
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]
