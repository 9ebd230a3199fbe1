"""Uploaded ONNX graphs as hypothesis spaces: safe parsing (``checks``), the torch interpreter for
the supported operators (``ops``, ``module``), parameter roles and their init rules (``roles``), and
the content-addressed catalogue of graphs a process has loaded (``store``).

Nothing in an uploaded graph is ever executed as code: the file is parsed as protobuf, checked,
and evaluated node by node with the torch implementations in ``ops.OPS``, the supported list.
"""
