"""engines/trt_audit.py must be able to fail: graphs with constructs TensorRT 10's
ONNX parser does not support are rejected (exit 1, node and op named), and the
tiny fixture model passes. Run: python tests/python/test_trt_audit.py (CI: .ci/test)."""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import onnx
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parents[2]
AUDIT = ROOT / "engines" / "trt_audit.py"


def audit(model_dir, *args):
    p = subprocess.run([sys.executable, str(AUDIT), str(model_dir), *args],
                       capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def graph(nodes, inputs, outputs, opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def write_pair(d, backbone, head):
    onnx.save(backbone, str(Path(d) / "backbone.onnx"))
    onnx.save(head, str(Path(d) / "head.onnx"))


def main():
    code, out, err = audit(ROOT / "tests/fixtures/tiny_model")
    assert code == 0, out + err
    assert "result: ok" in out, out
    code, out, _ = audit(ROOT / "tests/fixtures/tiny_model", "--json")
    report = json.loads(out)
    assert report["ok"] and {g["graph"] for g in report["graphs"]} == {"backbone.onnx", "head.onnx"}
    assert "LSTM" in report["graphs"][1]["ops"]

    ok_head = graph([helper.make_node("Relu", ["x"], ["y"], name="relu")],
                    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    cases = {
        "unsupported op": (graph(
            [helper.make_node("BitwiseAnd", ["a", "b"], ["c"], name="band")],
            [helper.make_tensor_value_info("a", TensorProto.INT32, [4]),
             helper.make_tensor_value_info("b", TensorProto.INT32, [4])],
            [helper.make_tensor_value_info("c", TensorProto.INT32, [4])], opset=18),
            "band [BitwiseAnd]: BitwiseAnd is not supported"),
        "unsupported dtype": (graph(
            [helper.make_node("Abs", ["a"], ["c"], name="abs8")],
            [helper.make_tensor_value_info("a", TensorProto.INT8, [4])],
            [helper.make_tensor_value_info("c", TensorProto.INT8, [4])]),
            "abs8 [Abs]: runs in INT8"),
        "unsupported dtype in a later operand": (graph(
            [helper.make_node("Where", ["c", "a", "b"], ["d"], name="where8")],
            [helper.make_tensor_value_info("c", TensorProto.BOOL, [4]),
             helper.make_tensor_value_info("a", TensorProto.INT8, [4]),
             helper.make_tensor_value_info("b", TensorProto.INT8, [4])],
            [helper.make_tensor_value_info("d", TensorProto.INT8, [4])]),
            "where8 [Where]: runs in INT8"),
        "unsupported output dtype": (graph(
            [helper.make_node("Cast", ["a"], ["c"], name="cast8", to=TensorProto.INT8)],
            [helper.make_tensor_value_info("a", TensorProto.FLOAT, [4])],
            [helper.make_tensor_value_info("c", TensorProto.INT8, [4])]),
            "cast8 [Cast]: operand c is INT8"),
        "axes not constant": (graph(
            [helper.make_node("Squeeze", ["a", "axes"], ["c"], name="sq")],
            [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 4]),
             helper.make_tensor_value_info("axes", TensorProto.INT64, [1])],
            [helper.make_tensor_value_info("c", TensorProto.FLOAT, [4])]),
            "sq [Squeeze]: `axes` (axes) must be an initializer or constant"),
        "opset too new": (graph(
            [helper.make_node("Relu", ["x"], ["y"], name="relu")],
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], opset=21),
            "opset 21 outside TensorRT 10's 9..20"),
    }
    for name, (bad, expect) in cases.items():
        with tempfile.TemporaryDirectory() as d:
            write_pair(d, bad, ok_head)
            code, out, err = audit(d)
            assert code == 1, f"{name}: exit {code}\n{out}{err}"
            assert expect in out, f"{name}: expected {expect!r} in\n{out}"
    with tempfile.TemporaryDirectory() as d:
        code, _, err = audit(d)
        assert code == 2 and "no such file" in err, err
    print(f"trt_audit: tiny model passes, {len(cases)} unsupported constructs caught")


if __name__ == "__main__":
    main()
