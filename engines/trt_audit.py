"""TensorRT 10 compatibility audit of an exported model (backbone.onnx, head.onnx).

Checks every node of both graphs (subgraphs too) against the operator support
matrix of TensorRT 10's ONNX parser, kept as data in
`engines/trt10_onnx_support.json` (source named inside: onnx/onnx-tensorrt,
docs/operators.md of the 10.1-GA branch, the newest 10.x in reach; JetPack 6
ships TensorRT 10.3, whose parser only adds support). Reports:

- every op: supported / unsupported, the dtype it runs in vs the supported
  types, and its documented restrictions (checked where the graph shows them:
  `axes` as an initializer or constant, LSTM `input_forget`/`layout`,
  LayerNormalization's extra outputs, Constant's string/sparse values);
- opsets (TensorRT 10: 9..20), custom domains;
- int64 tensors (TensorRT 10 runs INT64 natively; listed for review);
- dynamic input/output dims (the head's window length is covered by the
  engine build's optimisation profile 1..window).

Exit status 1 when anything is unsupported (each named by node and op), else 0.

`--fp16-ranges` also runs both graphs with onnxruntime (CPU, no graph
optimisation) on the fixture frame tensors and the model's own prompt ids,
exposes every intermediate float tensor, and lists those that leave the fp16
range (|x| > 65504), come near it (> 2^14) or would mostly underflow (more
than 10 % of the nonzero values below fp16's smallest normal, 6.1e-5).
Values >= 1e38 are reported apart: float32's lowest value used as an additive
attention mask (Hugging Face's `finfo.min`), which fp16 turns into -inf.

  python engines/trt_audit.py tests/fixtures/tiny_model
  python engines/trt_audit.py MODEL_DIR --json
  python engines/trt_audit.py MODEL_DIR --fp16-ranges [--frames a.npy,b.npy]

Needs `onnx` (and `onnxruntime` + `numpy` for --fp16-ranges).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import onnx
from onnx import TensorProto

HERE = Path(__file__).resolve().parent
TABLE = HERE / "trt10_onnx_support.json"

TYPE_NAMES = {
    TensorProto.FLOAT: "FP32",
    TensorProto.FLOAT16: "FP16",
    TensorProto.BFLOAT16: "BF16",
    TensorProto.DOUBLE: "DOUBLE",
    TensorProto.INT32: "INT32",
    TensorProto.INT64: "INT64",
    TensorProto.INT8: "INT8",
    TensorProto.UINT8: "UINT8",
    TensorProto.BOOL: "BOOL",
    TensorProto.INT16: "INT16",
    TensorProto.UINT16: "UINT16",
    TensorProto.UINT32: "UINT32",
    TensorProto.UINT64: "UINT64",
    TensorProto.STRING: "STRING",
}

# Input index of the `axes` operand where it is an input (opset >= 13 / 18).
AXES_INPUT = {"Slice": 3, "Squeeze": 1, "Unsqueeze": 1, "ReduceL2": 1, "ReduceMean": 1,
              "ReduceSum": 1, "ReduceMax": 1, "ReduceMin": 1, "ReduceProd": 1}


# Where's data operands start at input 1 (input 0 is the BOOL condition).
DATA_FROM = {"Where": 1}
# Index, shape and mask operands (Gather indices, Slice starts, Reshape shape,
# Shape's output, comparison outputs...): TensorRT 10 runs these natively.
INDEX_TYPES = {"INT32", "INT64", "BOOL"}


def load_table() -> dict:
    return json.loads(TABLE.read_text())


def iter_nodes(graph, path=""):
    """Every node of `graph` and of its subgraphs, with a readable location."""
    for node in graph.node:
        yield node, path
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from iter_nodes(attr.g, f"{path}{node.name or node.op_type}/")
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from iter_nodes(g, f"{path}{node.name or node.op_type}/")


def tensor_types(model) -> dict:
    """Element type of every named tensor (after shape inference)."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    g = inferred.graph
    types = {}
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.type.HasField("tensor_type"):
            types[vi.name] = vi.type.tensor_type.elem_type
    for init in g.initializer:
        types[init.name] = init.data_type
    for node, _ in iter_nodes(g):
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    types[node.output[0]] = a.t.data_type
    return types


def audit_graph(path: Path, table: dict) -> dict:
    model = onnx.load(str(path), load_external_data=False)
    g = model.graph
    ops = table["operators"]
    lo, hi = table["opset_range"]
    problems, notes, op_summary = [], [], {}
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            if not lo <= imp.version <= hi:
                problems.append(f"opset {imp.version} outside TensorRT 10's {lo}..{hi}")
        else:
            problems.append(f"custom opset domain {imp.domain!r} (needs a TensorRT plugin)")
    types = tensor_types(model)
    constants = {i.name for i in g.initializer}
    constants |= {n.output[0] for n, _ in iter_nodes(g) if n.op_type == "Constant"}
    consumed = {i for n, _ in iter_nodes(g) for i in n.input}
    consumed |= {o.name for o in g.output}
    for node, where in iter_nodes(g):
        op = node.op_type
        name = f"{where}{node.name or '(unnamed)'} [{op}]"
        entry = ops.get(op)
        s = op_summary.setdefault(op, {"count": 0, "dtypes": set(), "restrictions": None})
        s["count"] += 1
        if node.domain not in ("", "ai.onnx"):
            problems.append(f"{name}: op in domain {node.domain!r} is not in the ONNX standard set")
            continue
        if entry is None or not entry["supported"]:
            problems.append(f"{name}: {op} is not supported by TensorRT 10's ONNX parser")
            continue
        s["restrictions"] = entry.get("restrictions") or None
        # The dtype the op runs in: its first data operand (Where: X, not the
        # condition; Constant/ConstantOfShape: the output), checked strictly.
        # Every other operand (inputs and outputs: Cast's target type, the
        # other data inputs) must be a supported type too, or an index/shape/
        # mask type (INT32, INT64, BOOL), which TensorRT 10 runs natively.
        data = [i for k, i in enumerate(node.input) if i and k >= DATA_FROM.get(op, 0)]
        if op in ("Constant", "ConstantOfShape") or not data:
            data = [o for o in node.output[:1] if o]
        operands = [t for t in list(node.input) + list(node.output) if t]
        probe = data[0] if data else None
        if probe is not None and probe in types:
            tname = TYPE_NAMES.get(types[probe], f"type {types[probe]}")
            s["dtypes"].add(tname)
            if entry["types"] and tname not in entry["types"]:
                problems.append(f"{name}: runs in {tname}, TensorRT 10 supports {', '.join(entry['types'])}")
        elif probe is not None:
            notes.append(f"{name}: dtype of {probe!r} unknown after shape inference")
        for t in operands:
            if t not in types or (probe in types and types[t] == types[probe]):
                continue  # unknown, or already reported as the type it runs in
            tname = TYPE_NAMES.get(types[t], f"type {types[t]}")
            if entry["types"] and tname not in entry["types"] and tname not in INDEX_TYPES:
                problems.append(f"{name}: operand {t} is {tname}, TensorRT 10 supports {', '.join(entry['types'])}")
        # Restrictions the graph shows.
        if op in AXES_INPUT and len(node.input) > AXES_INPUT[op] and node.input[AXES_INPUT[op]]:
            axes = node.input[AXES_INPUT[op]]
            if axes not in constants:
                problems.append(f"{name}: `axes` ({axes}) must be an initializer or constant")
        attrs = {a.name: a for a in node.attribute}
        if op == "LSTM":
            if "input_forget" in attrs and attrs["input_forget"].i != 0:
                problems.append(f"{name}: input_forget must be 0")
            if "layout" in attrs and attrs["layout"].i != 0:
                problems.append(f"{name}: layout must be 0")
        if op == "LayerNormalization" and any(o and o in consumed for o in node.output[1:]):
            problems.append(f"{name}: only the first output is supported")
        if op == "Constant" and any(k in attrs for k in ("sparse_value", "value_string", "value_strings")):
            problems.append(f"{name}: sparse/string constants are unsupported")
    int64 = sorted(n for n, t in types.items() if t == TensorProto.INT64)
    dynamic = []
    for vi in list(g.input) + list(g.output):
        dims = vi.type.tensor_type.shape.dim
        for k, d in enumerate(dims):
            if not d.HasField("dim_value"):
                dynamic.append(f"{vi.name}[{k}] = {d.dim_param or '?'}")
    return {
        "graph": path.name,
        "opset": [f"{i.domain or 'ai.onnx'}:{i.version}" for i in model.opset_import],
        "nodes": sum(1 for _ in iter_nodes(g)),
        "ops": {k: {"count": v["count"], "dtypes": sorted(v["dtypes"]),
                    "restrictions": v["restrictions"]} for k, v in sorted(op_summary.items())},
        "int64_tensors": len(int64),
        "int64_examples": int64[:8],
        "dynamic_dims": dynamic,
        "problems": problems,
        "notes": notes,
    }


# ---------------------------------------------------------------- fp16 ranges

FP16_MAX = 65504.0
FP16_MIN_NORMAL = 6.103515625e-05


def expose_intermediates(path: Path) -> tuple[Path, dict]:
    """A copy of the graph with every float intermediate as an output, written
    beside the original (onnxruntime only reads external data from the
    model's own directory); the caller deletes it. Returns (path, producer of
    each exposed tensor)."""
    model = onnx.load(str(path), load_external_data=False)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    float_types = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16}
    have = {o.name for o in model.graph.output}
    producer = {}
    for node in model.graph.node:
        for o in node.output:
            producer[o] = f"{node.name or '(unnamed)'} [{node.op_type}]"
    for vi in inferred.graph.value_info:
        if vi.type.tensor_type.elem_type in float_types and vi.name not in have and vi.name in producer:
            model.graph.output.append(vi)
            have.add(vi.name)
    out = path.with_name(f".trt_audit_ranges_{os.getpid()}_{path.name}")
    onnx.save(model, str(out))
    return out, producer


def range_report(path: Path, feeds: list) -> tuple[list, dict]:
    import numpy as np
    import onnxruntime as ort

    exposed, producer = expose_intermediates(path)
    try:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sess = ort.InferenceSession(str(exposed), opts, providers=["CPUExecutionProvider"])
    finally:
        exposed.unlink()
    names = [o.name for o in sess.get_outputs()]
    rows = []
    outputs = {}
    for feed in feeds:
        values = sess.run(names, feed)
        for name, v in zip(names, values):
            outputs.setdefault(name, []).append(v[0] if v.ndim > 1 else v)
            if not np.issubdtype(v.dtype, np.floating) or v.size == 0:
                continue
            a = np.abs(v.astype(np.float64))
            nz = a[a > 0]
            under = float((nz < FP16_MIN_NORMAL).mean()) if nz.size else 0.0
            rows.append((name, float(a.max()), under))
    merged = {}
    for name, mx, under in rows:
        m = merged.setdefault(name, [0.0, 0.0])
        m[0] = max(m[0], mx)
        m[1] = max(m[1], under)
    report = []
    for name, (mx, under) in merged.items():
        flags = []
        if mx >= 1e38:
            # float32's lowest value (or -inf) as an additive attention mask:
            # becomes -inf in fp16, harmless for softmax unless a whole row is
            # masked; keep these layers fp32 or export with -65504.
            flags.append("attention-mask sentinel (float32 min / inf)")
        elif mx > FP16_MAX:
            flags.append("OVERFLOWS fp16")
        elif mx > 2.0 ** 14:
            flags.append("near the fp16 limit")
        if under > 0.10:
            flags.append(f"{under:.0%} of nonzero values below fp16 normal range")
        report.append({"tensor": name, "producer": producer.get(name, "graph input"),
                       "max_abs": mx, "below_fp16_normal": under, "flags": flags})
    report.sort(key=lambda r: -r["max_abs"])
    return report, outputs


def fixture_feeds(model_dir: Path, frames: list[Path]):
    import numpy as np

    meta = json.loads((model_dir / "model.json").read_text())
    p = meta["prompt"]
    ids = np.array([p["input_ids"]], dtype=np.int64)
    mask = np.array([p["attention_mask"]], dtype=np.int64)
    feeds = []
    for f in frames:
        px = np.load(f).astype(np.float32)
        if px.ndim == 3:
            px = px[None]
        feeds.append({"pixel_values": px, "input_ids": ids, "attention_mask": mask})
    return feeds, meta


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--fp16-ranges", action="store_true")
    ap.add_argument("--frames", default=None,
                    help="comma-separated .npy model input tensors (default: tests/fixtures/reference/*frame0_tensor.npy)")
    args = ap.parse_args()
    table = load_table()
    result = {"table": table["source"], "graphs": []}
    for g in ("backbone.onnx", "head.onnx"):
        path = args.model_dir / g
        if not path.is_file():
            print(f"trt_audit: {path}: no such file", file=sys.stderr)
            return 2
        result["graphs"].append(audit_graph(path, table))
    problems = [f"{r['graph']}: {p}" for r in result["graphs"] for p in r["problems"]]
    if args.fp16_ranges:
        import numpy as np

        frames = ([Path(f) for f in args.frames.split(",")] if args.frames else
                  sorted((HERE.parent / "tests/fixtures/reference").glob("*frame0_tensor.npy")))
        feeds, meta = fixture_feeds(args.model_dir, frames)
        backbone, outs = range_report(args.model_dir / "backbone.onnx", feeds)
        # The head sees a full window of the backbone's features (the fixture
        # frames' features, repeated to the window length).
        feats = outs["feature"]
        window = np.concatenate([feats[i % len(feats)][None] for i in range(meta["window"])], axis=0)[None]
        head, _ = range_report(args.model_dir / "head.onnx", [{"features": window.astype(np.float32)}])
        result["fp16_ranges"] = {"inputs": [str(f) for f in frames],
                                 "backbone": backbone, "head": head}
    result["ok"] = not problems
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"operator table: {table['source']['repository']} {table['source']['path']} "
              f"@ {table['source']['ref']} ({table['source']['commit'][:12]})")
        for r in result["graphs"]:
            print(f"{r['graph']}: {r['nodes']} nodes, opset {', '.join(r['opset'])}, "
                  f"{r['int64_tensors']} int64 tensors, dynamic dims: {', '.join(r['dynamic_dims']) or 'none'}")
            for op, s in r["ops"].items():
                line = f"  {op:<20} x{s['count']:<4} {'/'.join(s['dtypes']) or '-'}"
                if s["restrictions"]:
                    line += f"   restriction: {s['restrictions']}"
                print(line)
            for n in r["notes"]:
                print(f"  note: {n}")
        if args.fp16_ranges:
            for part in ("backbone", "head"):
                rows = result["fp16_ranges"][part]
                flagged = [x for x in rows if x["flags"]]
                print(f"fp16 ranges, {part}: {len(rows)} float tensors, {len(flagged)} flagged; largest |x|:")
                for x in rows[:5]:
                    print(f"  {x['max_abs']:>12.4g}  {x['producer']}  {', '.join(x['flags'])}")
                for x in flagged[5:]:
                    print(f"  {x['max_abs']:>12.4g}  {x['producer']}  {', '.join(x['flags'])}")
        for p in problems:
            print(f"UNSUPPORTED {p}")
        print("result: " + ("ok: every node is supported by TensorRT 10" if not problems else
                            f"{len(problems)} unsupported construct(s)"))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
