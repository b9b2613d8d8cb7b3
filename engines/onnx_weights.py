"""Recover a training state dict from an exported model directory
(`backbone.onnx` + `head.onnx`, as `engines/export.py export` writes them),
so that `engines/train.py --init-from MODEL_DIR` can fine-tune a committed
model whose checkpoint is not kept (e.g. on DAgger data aggregated with the
original demonstrations).

What the TorchScript exporter does to the weights, undone here:
  - most parameters keep their names under the export wrapper's prefixes
    (`kosmos.` for the backbone, none for the head);
  - a Linear's weight folded into a MatMul becomes an anonymous initializer
    holding weight.T; the MatMul node's scope name gives the module
    (`/vision_model/model/encoder/layers.0/self_attn/q_proj/MatMul`);
  - the perceiver's latent queries become the input of an Expand node
    (`/image_to_text_projection/Expand`), [1, n, D];
  - the LSTM's weights are ONNX's W [1, 4H, in], R [1, 4H, H], B [1, 8H]
    in gate order i, o, f, c; PyTorch's are [4H, in] / [4H, H] / [4H] x 2 in
    gate order i, f, g(=c), o.

Every anonymous initializer must be claimed and every trainable parameter
found (nothing silently keeps its random init); `model.json`'s variant,
prompt ids and mask, window and chunk must equal the training model's.
The recovered weights are then checked against onnxruntime running the same
files (an independent implementation of the exported function, through
export.py's own session, graph optimisation off): the training model's
feature and chunk must match within export.py's parity tolerances
(FEATURE_TOL, CHUNK_TOL). On any failure `RecoverError` is raised, naming
the file and key; the model's weights may then already be overwritten, so a
caller must not train on after it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from export import CHUNK_TOL, FEATURE_TOL, ort_session, sha256_file


class RecoverError(ValueError):
    pass


def _initializers(path: Path):
    import onnx
    from onnx import numpy_helper

    if not path.is_file():
        raise RecoverError(f"{path}: no such file")
    try:
        m = onnx.load(str(path))
        inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    except Exception as e:  # protobuf DecodeError, truncated external data, ...
        raise RecoverError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e})") from e
    return m, inits


def _lstm_torch_order(a: np.ndarray, hidden: int) -> np.ndarray:
    """[4H, ...] in ONNX gate order i, o, f, c -> PyTorch order i, f, c, o."""
    i, o, f, c = (a[k * hidden : (k + 1) * hidden] for k in range(4))
    return np.concatenate([i, f, c, o], axis=0)


def backbone_weights(path: Path, wanted: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor, list[str]]:
    """Kosmos-2 state dict (keys as `wanted`), action token [D], keys not found."""
    m, inits = _initializers(path)
    found: dict[str, np.ndarray] = {}
    claimed: set[str] = set()
    for k in wanted:
        if "kosmos." + k in inits:
            found[k] = inits["kosmos." + k]
            claimed.add("kosmos." + k)

    def put(key, value, node):
        if key in found and not np.array_equal(found[key], value):
            raise RecoverError(f"{path}: two different weights map to {key} (the second from node {node.name})")
        found[key] = value

    for node in m.graph.node:
        anon = [(j, x) for j, x in enumerate(node.input) if x in inits and not x.startswith("kosmos.") and x != "action_token"]
        if not anon:
            continue
        scope = node.name.lstrip("/").rsplit("/", 1)[0].replace("/", ".")
        if scope.startswith("kosmos."):
            scope = scope[len("kosmos.") :]
        if node.op_type == "MatMul" and len(anon) == 1 and anon[0][0] == 1 and inits[anon[0][1]].ndim == 2:
            put(scope + ".weight", inits[anon[0][1]].T, node)
            claimed.add(anon[0][1])
        elif node.op_type == "Expand" and scope == "image_to_text_projection" and len(anon) == 1 and anon[0][0] == 0 and inits[anon[0][1]].ndim == 3:
            put("image_to_text_projection.latent_query", inits[anon[0][1]][0], node)
            claimed.add(anon[0][1])
    # Small anonymous initializers are the exporter's constants (shapes,
    # scales); anything larger is a weight this mapping does not know.
    unknown = [f"{n} {list(a.shape)}" for n, a in inits.items() if n not in claimed and n != "action_token" and a.size > 16]
    if unknown:
        raise RecoverError(f"{path}: initializers no training parameter claims (an exporter change?): {', '.join(unknown[:8])}")
    if "action_token" not in inits:
        raise RecoverError(f"{path}: no initializer 'action_token'")
    token = torch.from_numpy(inits["action_token"].reshape(-1).copy())
    out, absent = {}, []
    for k, ref in wanted.items():
        if k not in found:
            absent.append(k)
            continue
        a = found[k]
        if tuple(a.shape) != tuple(ref.shape):
            raise RecoverError(f"{path}: {k} has shape {tuple(a.shape)} in the graph, the model expects {tuple(ref.shape)}")
        out[k] = torch.from_numpy(np.array(a, copy=True)).to(ref.dtype)
    return out, token, absent


def head_weights(path: Path, wanted: dict[str, torch.Tensor], hidden: int, layers: int) -> dict[str, torch.Tensor]:
    m, inits = _initializers(path)
    lstm = [n for n in m.graph.node if n.op_type == "LSTM"]
    if layers != 1 or len(lstm) != 1:
        raise RecoverError(f"{path}: {len(lstm)} LSTM node(s) in the graph, the training model has {layers} LSTM layer(s) (--lstm-layers); only one-layer heads are recovered")
    if len(lstm[0].input) < 4 or any(x not in inits for x in lstm[0].input[1:4]):
        raise RecoverError(f"{path}: the LSTM's W, R, B are not initializers")
    W, R, B = (inits[x][0] for x in lstm[0].input[1:4])
    if W.shape[0] != 4 * hidden or R.shape != (4 * hidden, hidden) or B.shape != (8 * hidden,):
        raise RecoverError(f"{path}: the LSTM has hidden size {W.shape[0] // 4} (W {W.shape}, R {R.shape}, B {B.shape}), the training model {hidden} (--lstm-hidden)")
    got = {
        "rnn.weight_ih_l0": _lstm_torch_order(W, hidden),
        "rnn.weight_hh_l0": _lstm_torch_order(R, hidden),
        "rnn.bias_ih_l0": _lstm_torch_order(B[: 4 * hidden], hidden),
        "rnn.bias_hh_l0": _lstm_torch_order(B[4 * hidden :], hidden),
    }
    for k in wanted:
        if k.startswith("velocities.") and k in inits:
            got[k] = inits[k]
    missing = sorted(set(wanted) - set(got))
    if missing:
        raise RecoverError(f"{path}: head weights not found in the graph: {', '.join(missing)}")
    out = {}
    for k, ref in wanted.items():
        if tuple(got[k].shape) != tuple(ref.shape):
            raise RecoverError(f"{path}: {k} has shape {tuple(got[k].shape)}, the model expects {tuple(ref.shape)}")
        out[k] = torch.from_numpy(np.array(got[k], copy=True)).to(ref.dtype)
    return out


def load_into(model, model_dir: str, log=print) -> dict:
    """Load the exported weights of `model_dir` into train.py's MobileVLA
    `model` (same sizes), then gate on onnxruntime parity. Returns a report."""
    d = Path(model_dir)
    meta_path = d / "model.json"
    if not meta_path.is_file():
        raise RecoverError(f"{d}: no model.json (not an exported model directory)")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RecoverError(f"{meta_path}: not readable JSON ({e})") from e
    if not isinstance(meta, dict):
        raise RecoverError(f"{meta_path}: expected a JSON object")
    prompt = meta.get("prompt") if isinstance(meta.get("prompt"), dict) else {}
    expect = {
        "variant": ("erased_prompt", meta.get("variant")),
        "window": (model.cfg.window, meta.get("window")),
        "chunk": (model.cfg.chunk, meta.get("chunk")),
        "prompt.input_ids": (model.ids[0].tolist(), prompt.get("input_ids")),
        "prompt.attention_mask": (model.mask[0].tolist(), prompt.get("attention_mask")),
    }
    for key, (ours, theirs) in expect.items():
        if ours != theirs:
            raise RecoverError(f"{meta_path}: {key} is {theirs!r}, the training model's is {ours!r} (match --window, --chunk, --token-ids to the model)")
    bb_sd = model.backbone.state_dict()
    bb, token, absent = backbone_weights(d / "backbone.onnx", bb_sd)
    # Every trainable parameter must come from the file; a buffer the graph
    # does not hold (e.g. position ids) is deterministic and keeps its value.
    params = dict(model.backbone.named_parameters())
    unused = [k for k in absent if k in params]
    if unused:
        raise RecoverError(f"{d / 'backbone.onnx'}: no weight for {len(unused)} backbone parameter(s) (unused by the export, or de-duplicated by the exporter): {', '.join(unused[:8])}")
    bb.update({k: v for k, v in bb_sd.items() if k in absent})
    model.backbone.load_state_dict(bb, strict=True)
    with torch.no_grad():
        model.action_token.copy_(token.to(model.action_token.dtype))
    head_sd = model.act_head.state_dict()
    model.act_head.load_state_dict(head_weights(d / "head.onnx", head_sd, model.cfg.hidden_size, model.cfg.num_layers), strict=True)

    # parity gate against onnxruntime on the same files
    try:
        bsess = ort_session(d / "backbone.onnx")
        hsess = ort_session(d / "head.onnx")
    except Exception as e:  # onnxruntime's Fail / InvalidArgument are plain Exceptions
        raise RecoverError(f"{d}: onnxruntime cannot load the model ({e})") from e
    fed = {i.name for i in bsess.get_inputs()}
    ids = model.ids.numpy().astype(np.int64)
    mask = model.mask.numpy().astype(np.int64)
    g = torch.Generator().manual_seed(7)
    was_training = model.training
    model.eval()
    feat_err, chunk_err = 0.0, 0.0
    feats = []
    with torch.no_grad():
        for _ in range(model.cfg.window):
            px = torch.randn(1, 3, 224, 224, generator=g)
            ref = model.features(px)
            feeds = {"pixel_values": px.numpy(), "input_ids": ids, "attention_mask": mask}
            got = bsess.run(["feature"], {k: v for k, v in feeds.items() if k in fed})[0]
            feat_err = max(feat_err, float(np.abs(got - ref.numpy()).max()))
            feats.append(ref)
        window = torch.stack(feats, dim=1)
        ref_chunk = model.act_head(window)
        got_chunk = hsess.run(["actions"], {"features": window.numpy()})[0]
        chunk_err = float(np.abs(got_chunk - ref_chunk.numpy()).max())
    model.train(was_training)
    digests = {f: sha256_file(d / f) for f in ("backbone.onnx", "head.onnx", "model.json")}
    report = {"model_dir": str(d), "sha256": digests, "format": meta.get("format"), "feature_max_abs": feat_err, "chunk_max_abs": chunk_err}
    log(f"init from {d}: feature vs onnxruntime max abs {feat_err:.3e} (limit {FEATURE_TOL:g}), chunk {chunk_err:.3e} (limit {CHUNK_TOL:g})")
    if feat_err > FEATURE_TOL or chunk_err > CHUNK_TOL:
        raise RecoverError(f"{d}: recovered weights do not reproduce the exported model (feature {feat_err:.3e}, chunk {chunk_err:.3e})")
    return report
