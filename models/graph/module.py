"""A checked ONNX graph as a differentiable torch module.

``GraphModule(model, signature)`` holds the graph's parameter initializers (``roles``) as
``nn.Parameter``s under their own dotted names (``blocks.0.attn.q.weight`` stays that, so a zoo
model's export has the zoo model's parameter names; names that are not valid attribute paths are
sanitised) and every other initializer as a constant buffer. ``forward`` evaluates the nodes in
order with ``ops.OPS``.

The graph is evaluated one sample at a time (a batch of one, under ``torch.func.vmap`` over the
caller's batch axis), so graphs exported with batch size 1 and with a dynamic batch axis behave
alike, and batch-size constants baked into ``Reshape`` targets still hold.
"""

from __future__ import annotations

import re

import onnx
import torch
from onnx import numpy_helper
from torch import nn

from models.graph.checks import GraphSignature
from models.graph.ops import OPS, check_output_size
from models.graph.roles import ParamRole, parameter_roles


class GraphModule(nn.Module):
    """See the module docstring. Input ``(N, *signature.input_shape)``, output ``(N, *output_shape)``."""

    def __init__(self, model: onnx.ModelProto, signature: GraphSignature):
        super().__init__()
        graph = model.graph
        self.signature = signature
        self.roles: dict[str, ParamRole] = {}
        # ONNX value name -> attribute path of its parameter or buffer in this module.
        self._paths: dict[str, str] = {}
        roles = parameter_roles(graph)
        taken: set[str] = set()
        for index, tensor in enumerate(graph.initializer):
            value = torch.from_numpy(numpy_helper.to_array(tensor).copy())
            if tensor.name in roles:
                path = _attribute_path(self, tensor.name, taken, f"param_{index}")
                _register(self, path, nn.Parameter(value.float(), requires_grad=True))
                self.roles[path] = roles[tensor.name]
            else:
                path = _attribute_path(self, "const." + tensor.name, taken, f"const.c{index}")
                _register(self, path, value, buffer=True)
            taken.add(path)
            self._paths[tensor.name] = path
        self._nodes = [
            (
                node.op_type,
                list(node.input),
                list(node.output),
                {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute} | {"_n_outputs": len(node.output)},
            )
            for node in graph.node
        ]
        self._input = signature.input_name
        self._output = graph.output[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One sample at a time: (N, *shape) -> N graph calls on (1, *shape), vectorised by vmap.
        return torch.func.vmap(self._one)(x)

    def _one(self, sample: torch.Tensor) -> torch.Tensor:
        values: dict[str, torch.Tensor] = {name: self.get_parameter_or_buffer(path) for name, path in self._paths.items()}
        values[self._input] = sample.unsqueeze(0)
        device = sample.device
        for op_type, inputs, outputs, attrs in self._nodes:
            args = [values[name] if name else None for name in inputs]
            check_output_size(op_type, args)
            results = OPS[op_type](args, attrs)
            for name, result in zip(outputs, results):
                if name:
                    # Constant, Shape, Range... build their tensors on the CPU; the data's device wins.
                    values[name] = result if result.device == device else result.to(device)
        return values[self._output].squeeze(0)

    def spectral_weights(self):
        """(layer name, layer type, weight in torch's layout) of every weight matrix or kernel.

        The layer name drops a trailing ``.weight`` (``layers.0.weight`` -> ``layers.0``, as a
        module name); ``linear_t`` weights are given transposed, as ``nn.Linear`` stores them.
        """
        for path, param in self.named_parameters():
            layout = self.roles[path].layout
            if layout is None:
                continue
            name = path.removesuffix(".weight") if path.endswith(".weight") else path
            yield name, "linear" if layout == "linear_t" else layout, param.T if layout == "linear_t" else param

    def get_parameter_or_buffer(self, path: str) -> torch.Tensor:
        module_path, _, leaf = path.rpartition(".")
        return getattr(self.get_submodule(module_path) if module_path else self, leaf)


_SEGMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$|^[0-9]+$")


def _attribute_path(root: nn.Module, name: str, taken: set[str], fallback: str) -> str:
    """``name`` as a dotted attribute path, when every segment is an identifier or an index.

    Other names (``onnx::MatMul_174``) have their odd characters replaced by ``_``; a clash with a
    path already taken, or with a prefix of one, or with an attribute of ``root``, falls back to
    ``fallback``.
    """
    segments = [re.sub(r"[^A-Za-z0-9_]", "_", s) or "_" for s in name.split(".")]
    segments = [s if _SEGMENT.match(s) else "_" + s for s in segments]
    path = ".".join(segments)
    clashes = any(path == t or t.startswith(path + ".") or path.startswith(t + ".") for t in taken)
    # The first segment must not shadow an attribute of the module itself (``forward``, ``roles``).
    shadows = hasattr(root, segments[0]) and not isinstance(getattr(root, segments[0]), nn.Module)
    return fallback if clashes or shadows else path


def _register(root: nn.Module, path: str, value: torch.Tensor, buffer: bool = False) -> None:
    *parents, leaf = path.split(".")
    module = root
    for part in parents:
        if not hasattr(module, part):
            module.add_module(part, nn.Module())
        module = getattr(module, part)
    if buffer:
        # Constants are part of the graph, not of its state dict: they are never uploaded apart.
        module.register_buffer(leaf, value, persistent=False)
    else:
        module.register_parameter(leaf, value)
