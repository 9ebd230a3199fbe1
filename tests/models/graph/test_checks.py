"""The hostile ONNX corpus: every file is refused with a 4xx-style ``InputError`` naming the
reason, before anything outside the upload is read and without allocating what the file claims."""

from __future__ import annotations

import resource
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from models.errors import InputError
from models.graph.checks import GraphLimits
from models.graph.store import load_graph

X = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
Y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])


def _model(nodes, initializers=(), inputs=(X,), outputs=(Y,), opset=17, **kwargs) -> onnx.ModelProto:
    graph = helper.make_graph(list(nodes), "g", list(inputs), list(outputs), initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], **kwargs)


def _write(tmp_path: Path, model: onnx.ModelProto | bytes, name: str = "m.onnx") -> Path:
    path = tmp_path / name
    path.write_bytes(model if isinstance(model, bytes) else model.SerializeToString())
    return path


def _refused(path: Path, type_: str, limits: GraphLimits = GraphLimits()) -> str:
    with pytest.raises(InputError) as info:
        load_graph(path, limits)
    (error,) = info.value.errors
    assert error["loc"] == ["file"] and error["type"] == f"onnx_{type_}", error
    return error["msg"]


def test_a_plain_graph_loads(tmp_path):
    w = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    sha, module = load_graph(_write(tmp_path, _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [w])))
    assert module.signature.input_shape == (4,) and module.signature.output_shape == (4,)
    assert [name for name, _ in module.named_parameters()] == ["w"]


def test_malformed_protobuf(tmp_path):
    assert "not a valid ONNX protobuf" in _refused(_write(tmp_path, b"\x0a\xff\xff\xff\xff\x0f garbage"), "malformed")


def test_external_data_to_etc_passwd_is_refused_without_reading_it(tmp_path, monkeypatch):
    w = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../../etc/passwd"), ("offset", "0"), ("length", "64")):
        w.external_data.add(key=key, value=value)
    path = _write(tmp_path, _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [w]))
    opened = []
    real_open = open

    def watching_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", watching_open)
    msg = _refused(path, "external_data")
    assert "../../etc/passwd" in msg
    assert not any("passwd" in f for f in opened)


def test_two_gigabyte_initializer_claimed_by_a_small_file(tmp_path):
    # Declares 2^29 floats (2 GiB) and carries 16 bytes: refused from the claim, nothing allocated.
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2**29], raw_data=b"\x00" * 16)
    path = _write(tmp_path, _model([helper.make_node("Identity", ["x"], ["y"])], [w]))
    assert path.stat().st_size < 1000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    msg = _refused(path, "size_mismatch")
    assert "2147483648 bytes" in msg
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024  # KiB: far below 2 GiB


def test_initializers_over_the_byte_limit(tmp_path):
    w = numpy_helper.from_array(np.zeros((64, 64), dtype=np.float32), "w")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])
    path = _write(tmp_path, _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [w], inputs=[x], outputs=[y]))
    _refused(path, "too_large", GraphLimits(max_initializer_bytes=1000))


def test_huge_declared_input_dims(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 100_000, 100_000])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 100_000, 100_000])
    path = _write(tmp_path, _model([helper.make_node("Relu", ["x"], ["y"])], inputs=[x], outputs=[y]))
    assert "10000000000 elements" in _refused(path, "too_large")


def test_shapes_computed_to_be_huge_are_refused_before_allocation(tmp_path):
    # ConstantOfShape asked for 2^40 elements through a constant shape tensor.
    shape = numpy_helper.from_array(np.array([2**20, 2**20], dtype=np.int64), "s")
    nodes = [helper.make_node("ConstantOfShape", ["s"], ["big"]), helper.make_node("Add", ["x", "big"], ["y"])]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["a", "b"])
    path = _write(tmp_path, _model(nodes, [shape], inputs=[x], outputs=[y]))
    assert "at most" in _refused(path, "unevaluable")


def test_too_many_nodes(tmp_path):
    nodes = [helper.make_node("Relu", ["x" if i == 0 else f"h{i}"], [f"h{i + 1}" if i < 9 else "y"]) for i in range(10)]
    _refused(_write(tmp_path, _model(nodes)), "too_many_nodes", GraphLimits(max_nodes=5))


def _nested_if(depth: int) -> onnx.GraphProto:
    cond = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
    out = helper.make_tensor_value_info("o", TensorProto.FLOAT, [1])
    if depth == 0:
        const = helper.make_node("Constant", [], ["o"], value=numpy_helper.from_array(np.ones(1, np.float32)))
        return helper.make_graph([const], "leaf", [], [out])
    node = helper.make_node("If", ["c"], ["o"], then_branch=_nested_if(depth - 1), else_branch=_nested_if(depth - 1))
    return helper.make_graph([node], f"d{depth}", [cond], [out])


def test_deeply_nested_if(tmp_path):
    inner = _nested_if(8)
    node = helper.make_node("If", ["c"], ["y"], then_branch=inner, else_branch=inner)
    c = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
    path = _write(tmp_path, _model([node], inputs=[c]))
    assert "nested deeper than 4" in _refused(path, "too_deep")


def test_unknown_domain(tmp_path):
    node = helper.make_node("Relu", ["x"], ["y"], domain="com.evil")
    model = _model([node])
    model.opset_import.append(helper.make_opsetid("com.evil", 1))
    assert "com.evil" in _refused(_write(tmp_path, model), "unknown_domain")


def test_custom_op_in_the_standard_domain(tmp_path):
    assert "'RunShellCommand'" in _refused(_write(tmp_path, _model([helper.make_node("RunShellCommand", ["x"], ["y"])])), "unsupported_op")


def test_local_functions_are_refused(tmp_path):
    fn = helper.make_function("local", "MyRelu", ["a"], ["b"], [helper.make_node("Relu", ["a"], ["b"])],
                              [helper.make_opsetid("", 17)])
    model = _model([helper.make_node("MyRelu", ["x"], ["y"], domain="local")], functions=[fn])
    _refused(_write(tmp_path, model), "custom_op")


def test_unsupported_opset(tmp_path):
    assert "opset_version" in _refused(_write(tmp_path, _model([helper.make_node("Relu", ["x"], ["y"])], opset=21)), "unsupported_opset")


def test_checker_refusal(tmp_path):
    # Well-formed protobuf, but the node's input is never produced: onnx.checker's full check.
    _refused(_write(tmp_path, _model([helper.make_node("Relu", ["nowhere"], ["y"])])), "invalid")


def test_dynamic_sample_axis_without_data_and_its_binding(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "features"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "features"])
    path = _write(tmp_path, _model([helper.make_node("Relu", ["x"], ["y"])], inputs=[x], outputs=[y]))
    assert "dynamic (features)" in _refused(path, "unbound_shape")
    _, module = load_graph(path, bind=(5,))
    assert module.signature.input_shape == (5,) and module.signature.output_shape == (5,)
    with pytest.raises(InputError, match="takes 1 axes"):
        load_graph(path, bind=(5, 2))


def test_fixed_batch_larger_than_one(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 4])
    assert "batch size 8" in _refused(_write(tmp_path, _model([helper.make_node("Relu", ["x"], ["y"])], inputs=[x], outputs=[y])), "signature")
