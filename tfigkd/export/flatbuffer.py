"""Reading a ``.tflite`` flatbuffer: its ops (with versions) and its IO tensors."""

from __future__ import annotations

import collections

import numpy as np


def _op_names():
    from tensorflow.lite.python import schema_py_generated as schema

    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def model_ops(model_bytes):
    """The ops a model uses, in first-use order.

    Returns:
        List of ``{"name", "version", "count"}``; custom ops are named
        ``CUSTOM:<code>``.
    """
    from tensorflow.lite.python import schema_py_generated as schema

    m = schema.Model.GetRootAs(model_bytes, 0)
    names = _op_names()
    codes = []
    for i in range(m.OperatorCodesLength()):
        oc = m.OperatorCodes(i)
        # Codes above 127 live in builtin_code; older files use the deprecated field.
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        name = names.get(code, f"UNKNOWN_{code}")
        if name == "CUSTOM":
            name = f"CUSTOM:{(oc.CustomCode() or b'?').decode()}"
        codes.append((name, oc.Version()))
    counts = collections.Counter()
    order = []
    for g in range(m.SubgraphsLength()):
        sg = m.Subgraphs(g)
        for k in range(sg.OperatorsLength()):
            idx = sg.Operators(k).OpcodeIndex()
            if idx not in counts:
                order.append(idx)
            counts[idx] += 1
    return [{"name": codes[i][0], "version": codes[i][1], "count": counts[i]} for i in order]


def io_details(model_bytes):
    """Input and output tensor details of a model (name, shape, dtype, scale, zero point)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model_bytes)

    def row(d):
        scale, zp = d["quantization"]
        return {"name": d["name"], "shape": [int(v) for v in d["shape"]],
                "dtype": np.dtype(d["dtype"]).name, "scale": float(scale),
                "zero_point": int(zp)}

    return {"inputs": [row(d) for d in it.get_input_details()],
            "outputs": [row(d) for d in it.get_output_details()]}
