"""Which initializers of a graph are parameters of its hypothesis space, and in what role.

An initializer's role comes from the operator that consumes it (the first consumer in node
order when there are several):

==========================  =====================================  ==============================
consumer                    role                                   fan-in (``default`` rule)
==========================  =====================================  ==============================
``Conv`` input W            ``weight``                             ``C_in/group * prod(kernel)``
``Conv`` input B            ``bias``                               that of its W
``Gemm`` input B            ``weight``                             ``K`` (respecting ``transB``)
``Gemm`` input C            ``bias``                               that of its B
``MatMul`` 2-D input B      ``weight``                             ``B.shape[0]``
``Add`` of a weight MatMul  ``bias``                               that of the MatMul's weight
``LayerNormalization``,     ``norm_gain`` (Scale) / ``norm_shift``  -
``BatchNormalization``      (B)
``Gather`` input data       ``embedding``                          -
==========================  =====================================  ==============================

Every other initializer (BatchNorm running statistics, reshape targets, positional tables,
masks, scalars) is a fixed constant. The ``default`` rule is PyTorch's own: ``weight`` and
``bias`` ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (``nn.Linear``/``nn.Conv*``, Kaiming-uniform with
a=sqrt(5)), ``embedding`` ~ N(0, 1) (``nn.Embedding``), norm gains 1 and shifts 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import onnx
from onnx import TensorProto

Role = Literal["weight", "bias", "norm_gain", "norm_shift", "embedding"]
NORM_ROLES = ("norm_gain", "norm_shift")
_FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16)


@dataclass(frozen=True)
class ParamRole:
    """``layout`` says how a weight is stored, for probes that read layers (weight_spectrum):
    ``linear`` (out, in) as ``nn.Linear``, ``linear_t`` (in, out), ``conv1d``/``conv2d``/``conv3d``
    (out, in/group, *kernel), ``embedding`` (vocab, dim); None for biases and norms."""

    role: Role
    fan_in: int | None = None
    layout: str | None = None


def parameter_roles(graph: onnx.GraphProto) -> dict[str, ParamRole]:
    """``{initializer name: role}`` for the initializers that are parameters (see module docstring)."""
    inits = {t.name: t for t in graph.initializer if t.data_type in _FLOAT_TYPES}
    roles: dict[str, ParamRole] = {}
    # MatMul output name -> fan-in of its weight, to recognise the bias Add that follows it.
    matmul_fan_in: dict[str, int] = {}

    # Value name -> (initializer, its dims as seen there) for initializers passed through
    # Transpose/Identity/Cast first (exports without constant folding transpose Linear weights).
    seen_as: dict[str, tuple[str, list[int]]] = {name: (name, list(t.dims)) for name, t in inits.items()}

    def claim(name: str, role: Role, fan_in: int | None = None, layout: str | None = None) -> None:
        source, shape = seen_as.get(name, (name, []))
        if source in inits and source not in roles:
            if layout in ("linear", "linear_t") and shape != list(inits[source].dims):
                # Transposed on the way (Transpose node): the stored layout is the other one.
                layout = "linear_t" if layout == "linear" else "linear"
            roles[source] = ParamRole(role, fan_in, layout)

    def dims(name: str) -> list[int]:
        return seen_as[name][1]

    for node in graph.node:
        ins = list(node.input)
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type in ("Transpose", "Identity", "Cast") and ins and ins[0] in seen_as:
            source, shape = seen_as[ins[0]]
            if node.op_type == "Transpose":
                perm = attrs.get("perm", list(reversed(range(len(shape)))))
                shape = [shape[p] for p in perm]
            seen_as[node.output[0]] = (source, shape)
            continue
        if node.op_type == "Conv" and len(ins) > 1 and ins[1] in seen_as:
            w = dims(ins[1])
            fan_in = w[1] * math.prod(w[2:]) if len(w) > 1 else 1
            conv_layout = {3: "conv1d", 4: "conv2d", 5: "conv3d"}.get(len(w))
            claim(ins[1], "weight", fan_in, conv_layout)
            if len(ins) > 2 and ins[2]:
                claim(ins[2], "bias", fan_in)
        elif node.op_type == "Gemm" and len(ins) > 1 and ins[1] in seen_as and len(dims(ins[1])) == 2:
            fan_in = dims(ins[1])[1] if attrs.get("transB", 0) else dims(ins[1])[0]
            claim(ins[1], "weight", fan_in, "linear" if attrs.get("transB", 0) else "linear_t")
            if len(ins) > 2 and ins[2]:
                claim(ins[2], "bias", fan_in)
        elif node.op_type == "MatMul" and len(ins) == 2 and ins[1] in seen_as and len(dims(ins[1])) == 2:
            fan_in = dims(ins[1])[0]
            claim(ins[1], "weight", fan_in, "linear_t")
            matmul_fan_in[node.output[0]] = fan_in
        elif node.op_type == "Add" and len(ins) == 2:
            for produced, other in ((ins[0], ins[1]), (ins[1], ins[0])):
                if produced in matmul_fan_in and other in seen_as:
                    claim(other, "bias", matmul_fan_in[produced])
        elif node.op_type in ("LayerNormalization", "BatchNormalization"):
            if len(ins) > 1:
                claim(ins[1], "norm_gain")
            if len(ins) > 2 and ins[2]:
                claim(ins[2], "norm_shift")
        elif node.op_type == "Gather" and ins and ins[0] in seen_as:
            claim(ins[0], "embedding", None, "embedding" if len(dims(ins[0])) == 2 else None)
    return roles
