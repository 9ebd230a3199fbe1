"""The supported ONNX operators, each as a torch function of its inputs and attributes.

``OPS[op_type](inputs, attrs) -> list of outputs``; ``inputs`` holds ``None`` for an omitted
optional input, ``attrs`` the node's attributes as Python values. Semantics follow the ONNX
operator specification for opsets ``SUPPORTED_OPSETS`` (13 to 18; where an attribute became an
input in that range, e.g. ``ReduceMean``'s ``axes`` in 18 or ``Split``'s ``num_outputs``, both
forms are accepted). Everything is built from differentiable torch functions that also work under
``torch.func.vmap``, ``jvp`` and double backward, which the probes need. Shape arguments (``Reshape``
targets, ``Slice`` bounds, ``Pad`` widths...) must be constants or computed from shapes, never from
data: they are read with ``tolist()``.

The list is in ``docs/onnx.md``; ``tests/models/graph/test_ops.py`` checks every operator against
onnxruntime.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from onnx import TensorProto

Tensor = torch.Tensor
Op = Callable[[list, dict], list]
SUPPORTED_OPSETS = (13, 18)
# The most elements any one tensor of a graph evaluation may have (per sample): ops whose output
# size comes from shape values or broadcasting are checked before they allocate, so a hostile
# graph cannot ask for unbounded memory. 2^26 float32 values = 256 MiB.
MAX_TENSOR_ELEMENTS = 2**26
# Ops whose output shape is the broadcast of their inputs' shapes (MatMul: of the batch axes).
BROADCASTING = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Equal", "Where", "Max", "Min", "Mod"})


class GraphTooLarge(ValueError):
    """Evaluating the graph would create a tensor over ``MAX_TENSOR_ELEMENTS``."""


def check_size(shape: list[int] | tuple[int, ...] | torch.Size, op: str) -> None:
    if any(d < 0 for d in shape) or math.prod(shape) > MAX_TENSOR_ELEMENTS:
        raise GraphTooLarge(f"{op} would create a tensor of shape {list(shape)} (at most {MAX_TENSOR_ELEMENTS} elements)")


def check_output_size(op_type: str, inputs: list) -> None:
    """Refuse before allocating when ``op_type`` on ``inputs`` would exceed the element limit."""
    present = [t for t in inputs if t is not None]
    if op_type in BROADCASTING:
        check_size(torch.broadcast_shapes(*(t.shape for t in present)), op_type)
    elif op_type == "MatMul" and all(t.dim() >= 2 for t in present):
        a, b = present
        batch = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        check_size([*batch, a.shape[-2], b.shape[-1]], op_type)

DTYPES = {
    TensorProto.FLOAT: torch.float32,
    TensorProto.DOUBLE: torch.float64,
    TensorProto.FLOAT16: torch.float16,
    TensorProto.BFLOAT16: torch.bfloat16,
    TensorProto.INT64: torch.int64,
    TensorProto.INT32: torch.int32,
    TensorProto.INT8: torch.int8,
    TensorProto.UINT8: torch.uint8,
    TensorProto.BOOL: torch.bool,
}


def _ints(t: Tensor | None) -> list[int] | None:
    return None if t is None else [int(v) for v in t.reshape(-1).tolist()]


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def _unary(fn: Callable[[Tensor], Tensor]) -> Op:
    return lambda x, a: [fn(x[0])]


def _binary(fn: Callable[[Tensor, Tensor], Tensor]) -> Op:
    return lambda x, a: [fn(x[0], x[1])]


def _div(a: Tensor, b: Tensor) -> Tensor:
    # Integer division truncates in ONNX (C semantics), unlike torch's floor default.
    if not a.is_floating_point():
        return torch.div(a, b, rounding_mode="trunc")
    return a / b


def _mod(x: list, a: dict) -> list:
    if a.get("fmod", 0):
        return [torch.fmod(x[0], x[1])]
    return [torch.remainder(x[0], x[1])]


def _gemm(x: list, a: dict) -> list:
    A, B = x[0], x[1]
    if a.get("transA", 0):
        A = A.transpose(-2, -1)
    if a.get("transB", 0):
        B = B.transpose(-2, -1)
    y = a.get("alpha", 1.0) * (A @ B)
    if len(x) > 2 and x[2] is not None:
        y = y + a.get("beta", 1.0) * x[2]
    return [y]


def _symmetric_pads(pads: list[int], spatial: int) -> list[int] | None:
    """ONNX pads ``[b1, b2, ..., e1, e2, ...]`` as torch's per-dim padding when begin == end."""
    begins, ends = pads[:spatial], pads[spatial:]
    return begins if begins == ends else None


def _padded(x: Tensor, pads: list[int], spatial: int, value: float = 0.0) -> Tensor:
    # F.pad takes (last-dim begin, last-dim end, second-to-last begin, ...).
    torch_pads = []
    for i in reversed(range(spatial)):
        torch_pads += [pads[i], pads[i + spatial]]
    return F.pad(x, torch_pads, value=value)


def _check_auto_pad(a: dict) -> None:
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise ValueError("auto_pad is not supported; export with explicit pads")


def _conv(x: list, a: dict) -> list:
    _check_auto_pad(a)
    inp, weight = x[0], x[1]
    bias = x[2] if len(x) > 2 else None
    spatial = weight.dim() - 2
    pads = a.get("pads", [0] * 2 * spatial)
    symmetric = _symmetric_pads(pads, spatial)
    if symmetric is None:
        inp, symmetric = _padded(inp, pads, spatial), [0] * spatial
    conv = (F.conv1d, F.conv2d, F.conv3d)[spatial - 1]
    return [
        conv(inp, weight, bias, stride=a.get("strides", [1] * spatial), padding=symmetric,
             dilation=a.get("dilations", [1] * spatial), groups=a.get("group", 1))
    ]


def _pool(x: list, a: dict, kind: str) -> list:
    _check_auto_pad(a)
    if a.get("ceil_mode", 0):
        raise ValueError("ceil_mode=1 is not supported")
    inp, kernel = x[0], a["kernel_shape"]
    spatial = len(kernel)
    pads = a.get("pads", [0] * 2 * spatial)
    strides = a.get("strides", [1] * spatial)
    symmetric = _symmetric_pads(pads, spatial)
    if kind == "max":
        if symmetric is None:
            inp, symmetric = _padded(inp, pads, spatial, value=-math.inf), [0] * spatial
        pool = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[spatial - 1]
        return [pool(inp, kernel, strides, symmetric, dilation=a.get("dilations", [1] * spatial))]
    include = bool(a.get("count_include_pad", 0))
    if symmetric is None:
        if not include:
            raise ValueError("asymmetric pads with count_include_pad=0 are not supported")
        inp, symmetric = _padded(inp, pads, spatial), [0] * spatial
    pool = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[spatial - 1]
    return [pool(inp, kernel, strides, symmetric, count_include_pad=include)]


def _batchnorm(x: list, a: dict) -> list:
    if a.get("training_mode", 0):
        raise ValueError("BatchNormalization with training_mode=1 is not supported; export in eval mode")
    inp, scale, shift, mean, var = x[:5]
    shape = [1, -1] + [1] * (inp.dim() - 2)
    eps = a.get("epsilon", 1e-5)
    normalised = (inp - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + eps)
    return [normalised * scale.reshape(shape) + shift.reshape(shape)]


def _layernorm(x: list, a: dict) -> list:
    inp, scale = x[0], x[1]
    shift = x[2] if len(x) > 2 else None
    axis = _axis(a.get("axis", -1), inp.dim())
    return [F.layer_norm(inp, inp.shape[axis:], scale, shift, a.get("epsilon", 1e-5))]


def _reduce(fn: Callable) -> Op:
    def op(x: list, a: dict) -> list:
        inp = x[0]
        axes = a.get("axes") or _ints(x[1] if len(x) > 1 else None)
        keep = bool(a.get("keepdims", 1))
        if not axes:
            if a.get("noop_with_empty_axes", 0):
                return [inp]
            axes = list(range(inp.dim()))
        return [fn(inp, dim=[_axis(d, inp.dim()) for d in axes], keepdim=keep)]

    return op


def _reduce_max(inp: Tensor, dim: list[int], keepdim: bool) -> Tensor:
    return torch.amax(inp, dim=dim, keepdim=keepdim)


def _flatten(x: list, a: dict) -> list:
    inp = x[0]
    axis = _axis(a.get("axis", 1), inp.dim())
    return [inp.reshape(math.prod(inp.shape[:axis]), math.prod(inp.shape[axis:]))]


def _reshape(x: list, a: dict) -> list:
    inp, shape = x[0], _ints(x[1])
    if not a.get("allowzero", 0):
        shape = [inp.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return [inp.reshape(shape)]


def _transpose(x: list, a: dict) -> list:
    inp = x[0]
    return [inp.permute(a.get("perm", list(reversed(range(inp.dim())))))]


def _constant(x: list, a: dict) -> list:
    from onnx import numpy_helper

    if "value" in a:
        return [torch.from_numpy(numpy_helper.to_array(a["value"]).copy())]
    for key, dtype in (("value_float", torch.float32), ("value_int", torch.int64)):
        if key in a:
            return [torch.tensor(a[key], dtype=dtype)]
    for key, dtype in (("value_floats", torch.float32), ("value_ints", torch.int64)):
        if key in a:
            return [torch.tensor(list(a[key]), dtype=dtype)]
    raise ValueError("Constant without a supported value attribute")


def _constant_of_shape(x: list, a: dict) -> list:
    from onnx import numpy_helper

    value = torch.from_numpy(numpy_helper.to_array(a["value"]).copy()) if "value" in a else torch.zeros(1)
    check_size(_ints(x[0]), "ConstantOfShape")
    return [torch.full(_ints(x[0]), value.reshape(()).item(), dtype=value.dtype)]


def _shape(x: list, a: dict) -> list:
    dims = list(x[0].shape)
    start, end = a.get("start", 0), a.get("end", len(dims))
    return [torch.tensor(dims[start:end], dtype=torch.int64)]


def _slice(x: list, a: dict) -> list:
    inp = x[0]
    starts, ends = _ints(x[1]), _ints(x[2])
    axes = _ints(x[3]) if len(x) > 3 and x[3] is not None else list(range(len(starts)))
    steps = _ints(x[4]) if len(x) > 4 and x[4] is not None else [1] * len(starts)
    index: list = [slice(None)] * inp.dim()
    flips = []
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis = _axis(axis, inp.dim())
        size = inp.shape[axis]
        if step > 0:
            start = min(max(start + size if start < 0 else start, 0), size)
            end = min(max(end + size if end < 0 else end, 0), size)
            index[axis] = slice(start, max(end, start), step)
        else:
            # torch slices take positive steps only: slice the reversed axis instead.
            start = min(max(start + size if start < 0 else start, -1), size - 1)
            end = min(max(end + size if end < 0 else end, -1), size - 1)
            index[axis] = slice(size - 1 - start, max(size - 1 - end, size - 1 - start), -step)
            flips.append(axis)
    if flips:
        inp = inp.flip(flips)
    return [inp[tuple(index)]]


def _gather(x: list, a: dict) -> list:
    data, indices = x[0], x[1]
    axis = _axis(a.get("axis", 0), data.dim())
    indices = torch.where(indices < 0, indices + data.shape[axis], indices)
    # index_select + reshape covers scalar and tensor indices alike, also when the indices are
    # the (vmapped) data, e.g. token ids into an embedding table.
    picked = data.index_select(axis, indices.reshape(-1))
    return [picked.reshape(*data.shape[:axis], *indices.shape, *data.shape[axis + 1 :])]


def _unsqueeze(x: list, a: dict) -> list:
    inp = x[0]
    axes = a.get("axes") or _ints(x[1])
    rank = inp.dim() + len(axes)
    for axis in sorted(_axis(d, rank) for d in axes):
        inp = inp.unsqueeze(axis)
    return [inp]


def _squeeze(x: list, a: dict) -> list:
    inp = x[0]
    axes = a.get("axes") or _ints(x[1] if len(x) > 1 else None)
    if axes is None:
        axes = [d for d, s in enumerate(inp.shape) if s == 1]
    for axis in sorted((_axis(d, inp.dim()) for d in axes), reverse=True):
        inp = inp.squeeze(axis)
    return [inp]


def _expand(x: list, a: dict) -> list:
    inp, shape = x[0], _ints(x[1])
    # ONNX Expand broadcasts both ways (a 1 in `shape` keeps the input's size).
    rank = max(inp.dim(), len(shape))
    dims = [1] * (rank - inp.dim()) + list(inp.shape)
    shape = [1] * (rank - len(shape)) + shape
    target = [d if s == 1 else s for d, s in zip(dims, shape)]
    check_size(target, "Expand")
    return [inp.reshape(dims).expand(target)]


def _split(x: list, a: dict) -> list:
    inp = x[0]
    axis = _axis(a.get("axis", 0), inp.dim())
    sizes = a.get("split") or _ints(x[1] if len(x) > 1 else None)
    if sizes is None:
        n = a["_n_outputs"]
        size = -(-inp.shape[axis] // n)
        sizes = [min(size, inp.shape[axis] - i * size) for i in range(n)]
    return list(torch.split(inp, sizes, dim=axis))


def _pad(x: list, a: dict) -> list:
    inp, pads = x[0], _ints(x[1])
    value = x[2] if len(x) > 2 and x[2] is not None else None
    axes = _ints(x[3]) if len(x) > 3 and x[3] is not None else list(range(inp.dim()))
    axes = [_axis(d, inp.dim()) for d in axes]
    mode = a.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if any(p < 0 for p in pads):
        raise ValueError("negative pads are not supported")
    torch_pads: list[int] = []
    first = min(axes)
    for d in reversed(range(first, inp.dim())):
        k = axes.index(d) if d in axes else None
        torch_pads += [0, 0] if k is None else [pads[k], pads[k + len(axes)]]
    # Unpadded leading axes are left out: torch's reflect/replicate/circular pad trailing dims only.
    while torch_pads[-2:] == [0, 0] and len(torch_pads) > 2:
        torch_pads = torch_pads[:-2]
    check_size([d + pads[axes.index(i)] + pads[axes.index(i) + len(axes)] if i in axes else d
                for i, d in enumerate(inp.shape)], "Pad")
    if mode == "constant":
        return [F.pad(inp, torch_pads, value=0.0 if value is None else float(value.reshape(()).item()))]
    torch_mode = {"reflect": "reflect", "edge": "replicate", "wrap": "circular"}[mode]
    return [F.pad(inp, torch_pads, mode=torch_mode)]


def _range(x: list, a: dict) -> list:
    start, limit, delta = (v.reshape(()).item() for v in x[:3])
    if delta == 0:
        raise ValueError("Range with delta 0")
    check_size([max(math.ceil((limit - start) / delta), 0)], "Range")
    return [torch.arange(start, limit, delta, dtype=x[0].dtype)]


def _where(x: list, a: dict) -> list:
    return [torch.where(x[0], x[1], x[2])]


def _cast(x: list, a: dict) -> list:
    return [x[0].to(DTYPES[a["to"]])]


def _clip(x: list, a: dict) -> list:
    inp = x[0]
    low = x[1] if len(x) > 1 and x[1] is not None else None
    high = x[2] if len(x) > 2 and x[2] is not None else None
    return [torch.clamp(inp, low, high)]


def _softmax(fn: Callable) -> Op:
    return lambda x, a: [fn(x[0], dim=a.get("axis", -1))]


def _variadic(fn: Callable[[Tensor, Tensor], Tensor]) -> Op:
    def op(x: list, a: dict) -> list:
        out = x[0]
        for other in x[1:]:
            out = fn(out, other)
        return [out]

    return op


def _concat(x: list, a: dict) -> list:
    return [torch.cat(x, dim=a["axis"])]


def _tile(x: list, a: dict) -> list:
    reps = _ints(x[1])
    check_size([d * r for d, r in zip(x[0].shape, reps)], "Tile")
    return [x[0].repeat(reps)]


def _global_average_pool(x: list, a: dict) -> list:
    return [x[0].mean(dim=tuple(range(2, x[0].dim())), keepdim=True)]


OPS: dict[str, Op] = {
    "Abs": _unary(torch.abs),
    "Add": _binary(torch.add),
    "AveragePool": lambda x, a: _pool(x, a, "avg"),
    "BatchNormalization": _batchnorm,
    "Cast": _cast,
    "Clip": _clip,
    "Concat": _concat,
    "Constant": _constant,
    "ConstantOfShape": _constant_of_shape,
    "Conv": _conv,
    "Cos": _unary(torch.cos),
    "Div": _binary(_div),
    "Equal": _binary(torch.eq),
    "Erf": _unary(torch.erf),
    "Exp": _unary(torch.exp),
    "Expand": _expand,
    "Flatten": _flatten,
    "Gather": _gather,
    "Gemm": _gemm,
    "GlobalAveragePool": _global_average_pool,
    "Identity": _unary(lambda t: t),
    "LayerNormalization": _layernorm,
    "LeakyRelu": lambda x, a: [F.leaky_relu(x[0], a.get("alpha", 0.01))],
    "Log": _unary(torch.log),
    "LogSoftmax": _softmax(torch.log_softmax),
    "MatMul": _binary(torch.matmul),
    "Max": _variadic(torch.maximum),
    "MaxPool": lambda x, a: _pool(x, a, "max"),
    "Min": _variadic(torch.minimum),
    "Mod": _mod,
    "Mul": _binary(torch.mul),
    "Neg": _unary(torch.neg),
    "Pad": _pad,
    "Pow": _binary(torch.pow),
    "Range": _range,
    "Reciprocal": _unary(torch.reciprocal),
    "ReduceMax": _reduce(_reduce_max),
    "ReduceMean": _reduce(torch.mean),
    "ReduceSum": _reduce(torch.sum),
    "Relu": _unary(torch.relu),
    "Reshape": _reshape,
    "Shape": _shape,
    "Sigmoid": _unary(torch.sigmoid),
    "Sin": _unary(torch.sin),
    "Slice": _slice,
    "Softmax": _softmax(torch.softmax),
    "Softplus": _unary(F.softplus),
    "Split": _split,
    "Sqrt": _unary(torch.sqrt),
    "Squeeze": _squeeze,
    "Sub": _binary(torch.sub),
    "Tanh": _unary(torch.tanh),
    "Tile": _tile,
    "Transpose": _transpose,
    "Unsqueeze": _unsqueeze,
    "Where": _where,
}
