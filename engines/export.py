#!/usr/bin/env python3
"""Mobile-VLA checkpoint -> backbone.onnx + head.onnx + model.json, with parity.

Subcommands:
  export     checkpoint + training config -> model directory (parity-gated)
  make-fake  write a randomly initialised checkpoint with the real state-dict
             layout (--size tiny for tests, --size full for the 1.66 B model)
  keys       list a checkpoint's keys grouped the way `export` maps them

See engines/README.md for the model.json fields and the backbone variants.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mobile_vla as mv  # noqa: E402

EXPORTER_VERSION = "1"
MODEL_FORMAT = "mvla-model/1"
FEATURE_TOL = 1e-4
CHUNK_TOL = 1e-5
LORA_TOL = 1e-4
DEFAULT_INSTRUCTION = "Navigate around obstacles and reach the front of the beverage bottle on the left"
PROMPT_TEMPLATE = "<grounding>An image of a robot {instruction}"


def log(msg: str):
    print(f"[export {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------
# make-fake


def make_fake(args):
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    raw_cfg = mv.fake_train_config(
        args.size, f"randomly initialised fake ({args.size}) written by engines/export.py make-fake, seed {args.seed}"
    )
    cfg = mv.parse_train_config(raw_cfg, "make-fake")
    t0 = time.time()
    kosmos = mv.build_kosmos2(cfg)
    targets = [name for name, m in kosmos.named_modules() if isinstance(m, torch.nn.Linear) and name.split(".")[-1] in mv.LORA_TARGETS]
    peft_model = mv.wrap_lora(kosmos, targets, cfg.lora_r, cfg.lora_alpha)
    with torch.no_grad():
        # peft initialises lora_B to zero (a no-op adapter); randomise it so the merge is exercised.
        for name, p in peft_model.named_parameters():
            if ".lora_B." in name:
                p.normal_(0.0, 0.02)
    D = kosmos.config.text_config.embed_dim
    head = mv.PolicyHead(D, cfg)
    if args.head_bias is not None:
        # A test model that drives: the final layer's bias pushes every chunk
        # step toward tanh(bias) (e.g. "3,0" = forward), whatever the image.
        bx, by = (float(v) for v in args.head_bias.split(","))
        with torch.no_grad():
            last = head.velocities.mlp[6]
            last.weight.mul_(0.1)
            last.bias.copy_(torch.tensor([bx, by] * cfg.chunk))
    sd = {}
    for k, v in peft_model.state_dict().items():
        sd["model.backbone." + k] = v
    sd["model.action_token"] = torch.randn(D) * 0.02
    for k, v in head.state_dict().items():
        sd["model.act_head." + k] = v
    ckpt = {"state_dict": sd, "epoch": 0, "global_step": 0, "pytorch-lightning_version": "fake"}
    torch.save(ckpt, out / "checkpoint.ckpt")
    (out / "train_config.json").write_text(json.dumps(raw_cfg, indent=2) + "\n")
    n = mv.param_count(kosmos)
    log(f"wrote {out/'checkpoint.ckpt'}: {len(sd)} tensors, backbone {n/1e6:.2f} M params, {time.time()-t0:.1f} s")


# --------------------------------------------------------------------------
# keys


def list_keys(args):
    sd = mv.load_state_dict(args.checkpoint)
    try:
        split = mv.split_checkpoint(sd, args.checkpoint)
        print(f"backbone: {len(split.backbone)} tensors, {len(split.lora_modules)} LoRA-adapted modules (rank {split.lora_rank})")
        print(f"action token: {tuple(split.action_token.shape)}")
        print(f"head: {len(split.head)} tensors")
        for k in sorted(split.head):
            print(f"  head {k} {tuple(split.head[k].shape)}")
        print(f"ignored: {split.ignored}")
    except ValueError as e:
        print(e)
    if args.all:
        for k, v in sd.items():
            print(k, tuple(v.shape), v.dtype)


# --------------------------------------------------------------------------
# export


def tokenize(args) -> tuple[str, list[int], str]:
    text = PROMPT_TEMPLATE.format(instruction=args.instruction)
    if args.token_ids:
        ids = [int(t) for t in args.token_ids.split(",") if t.strip()]
        return text, ids, "given explicitly (--token-ids); the text was not tokenized"
    if not args.tokenizer:
        raise SystemExit("export: give --tokenizer DIR (the Kosmos-2 tokenizer files) or --token-ids")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.tokenizer, local_files_only=True)
    ids = tok(text, add_special_tokens=True)["input_ids"]
    return text, list(ids), f"{type(tok).__name__} from {Path(args.tokenizer).name}"


def normalisation(name: str):
    if name == "clip":
        return mv.clip_image_stats()
    if name == "imagenet":
        return [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    if name == "unit":
        return [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    raise SystemExit(f"unknown normalisation {name}")


def export_onnx(module, inputs, path: Path, input_names, output_names, dynamic_axes, opset: int):
    """torch.onnx.export (TorchScript exporter) into a scratch directory, then
    re-save as one .onnx file, plus one `.data` file when the weights exceed
    1 GiB (large graphs come out of the exporter as one file per tensor).
    Returns the external data file names written beside `path`."""
    import tempfile

    import onnx

    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as scratch:
        tmp = Path(scratch) / path.name
        torch.onnx.export(
            module,
            inputs,
            str(tmp),
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            dynamo=False,
            do_constant_folding=True,
        )
        model = onnx.load(str(tmp), load_external_data=True)
    size = sum(t.ByteSize() for t in model.graph.initializer)
    data_name = path.name + ".data"
    (path.parent / data_name).unlink(missing_ok=True)
    if size > 1 << 30:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=data_name, size_threshold=1024)
        # onnx writes the data file owner-only; the service user must be able to read it.
        os.chmod(path.parent / data_name, 0o644)
        return [data_name]
    onnx.save_model(model, str(path))
    return []


def ort_session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run_export(args):
    t_start = time.time()
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.json").unlink(missing_ok=True)  # never leave a stale, unchecked model.json behind

    cfg_raw = json.loads(Path(args.config).read_text())
    cfg = mv.parse_train_config(cfg_raw, args.config)
    text, prompt_ids, tokenizer_note = tokenize(args)
    layout = mv.prompt_layout(args.variant, prompt_ids)
    log(f"prompt {text!r}: {len(prompt_ids)} tokens ({tokenizer_note}); variant {args.variant}")

    log(f"loading {args.checkpoint}")
    ckpt_sha = sha256_file(Path(args.checkpoint))
    sd = mv.load_state_dict(args.checkpoint)
    split = mv.split_checkpoint(sd, args.checkpoint)
    log(f"checkpoint: {len(split.backbone)} backbone tensors ({len(split.lora_modules)} LoRA modules, rank {split.lora_rank}), {len(split.head)} head tensors; ignored {split.ignored}")

    kosmos = mv.build_kosmos2(cfg)
    D = kosmos.config.text_config.embed_dim
    if split.action_token.numel() != D:
        raise SystemExit(f"{args.checkpoint}: action token has {split.action_token.numel()} values, the backbone width is {D}")
    H = W = kosmos.config.vision_config.image_size
    vocab = kosmos.config.text_config.vocab_size
    bad = [t for t in prompt_ids if not 0 <= t < vocab]
    if bad:
        raise SystemExit(f"prompt token ids {bad} are outside the model's vocabulary (size {vocab})")

    pixel_inputs = [torch.randn(1, 3, H, W, generator=torch.Generator().manual_seed(args.seed + i)) for i in range(2)]
    report: dict = {"lora_merge_max_abs": None, "lora_effect_max_abs": None}
    if split.lora_modules:
        rank = split.lora_rank
        if cfg.lora_r is not None and int(cfg.lora_r) != rank:
            raise SystemExit(f"{args.config}: lora_r {cfg.lora_r} but the checkpoint's adapters have rank {rank}")
        if cfg.lora_alpha is None:
            raise SystemExit(f"{args.config}: the checkpoint has LoRA adapters but the config gives no lora_alpha")
        peft_model = mv.wrap_lora(kosmos, split.lora_modules, rank, float(cfg.lora_alpha))
        mv.load_strict(peft_model.base_model.model, split.backbone, "backbone", args.checkpoint)
        peft_model.eval()
        unmerged = [mv.reference_feature(peft_model.base_model.model, split.action_token, p, layout) for p in pixel_inputs]
        with peft_model.disable_adapter():
            base = [mv.reference_feature(peft_model.base_model.model, split.action_token, p, layout) for p in pixel_inputs]
        # If the adapters changed nothing, the merge check below would prove nothing.
        report["lora_effect_max_abs"] = max(float((a - b).abs().max()) for a, b in zip(unmerged, base))
        log(f"LoRA effect: max |with - without adapters| on the feature = {report['lora_effect_max_abs']:.3e}")
        del base
        log("merging LoRA into the base weights")
        kosmos = peft_model.merge_and_unload().eval()
        merged = [mv.reference_feature(kosmos, split.action_token, p, layout) for p in pixel_inputs]
        report["lora_merge_max_abs"] = max(float((a - b).abs().max()) for a, b in zip(unmerged, merged))
        log(f"LoRA merge: max |merged - unmerged| on the feature = {report['lora_merge_max_abs']:.3e}")
        del peft_model, unmerged
    else:
        mv.load_strict(kosmos, split.backbone, "backbone", args.checkpoint)
        merged = [mv.reference_feature(kosmos, split.action_token, p, layout) for p in pixel_inputs]
    del sd

    head = mv.PolicyHead(D, cfg).eval()
    mv.load_strict(head, split.head, "head", args.checkpoint)

    backbone_module = mv.BackboneExport(kosmos, split.action_token, args.variant).eval()
    ids = torch.tensor([layout.input_ids], dtype=torch.int64)
    mask = torch.tensor([layout.attention_mask], dtype=torch.int64)
    with torch.no_grad():
        wrapper_feature = backbone_module(pixel_inputs[0], ids, mask)
    report["wrapper_vs_reference_max_abs"] = float((wrapper_feature - merged[0]).abs().max())
    log(f"export wrapper vs Hugging Face reference forward: {report['wrapper_vs_reference_max_abs']:.3e}")

    log("exporting backbone.onnx")
    t0 = time.time()
    with torch.no_grad():
        backbone_extra = export_onnx(
            backbone_module,
            (pixel_inputs[0], ids, mask),
            out / "backbone.onnx",
            ["pixel_values", "input_ids", "attention_mask"],
            ["feature"],
            None,
            args.opset,
        )
    report["backbone_export_s"] = round(time.time() - t0, 2)
    n_params = mv.param_count(kosmos)
    del backbone_module, kosmos  # the references are computed; free the weights before onnxruntime loads its copy
    gc.collect()
    log("exporting head.onnx")
    with torch.no_grad():
        head_extra = export_onnx(
            head,
            (torch.randn(1, cfg.window, D),),
            out / "head.onnx",
            ["features"],
            ["actions"],
            {"features": {1: "steps"}},
            args.opset,
        )

    # ---- parity: ONNX (onnxruntime) vs PyTorch reference
    log("parity: backbone")
    sess = ort_session(out / "backbone.onnx")
    fed = {i.name for i in sess.get_inputs()}
    feeds_common = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
    feature_err = 0.0
    for p, ref in zip(pixel_inputs, merged):
        feeds = {"pixel_values": p.numpy(), **{k: v for k, v in feeds_common.items() if k in fed}}
        got = sess.run(["feature"], feeds)[0]
        feature_err = max(feature_err, float(np.abs(got - ref.numpy()).max()))
    report["feature_max_abs"] = feature_err
    del sess
    log(f"backbone ONNX vs PyTorch reference: max abs {feature_err:.3e} (limit {FEATURE_TOL:g})")

    log("parity: head (streaming rule vs zero-state window)")
    sess = ort_session(out / "head.onnx")
    stream = mv.StreamingHeadReference(head, cfg.window)
    feats = [torch.randn(1, D, generator=torch.Generator().manual_seed(1000 + i)) for i in range(cfg.window + 4)]
    chunk_err = 0.0
    for k, f in enumerate(feats, start=1):
        ref = stream.step(f)
        window = torch.stack(feats[max(0, k - cfg.window) : k], dim=1)
        got = sess.run(["actions"], {"features": window.numpy()})[0]
        chunk_err = max(chunk_err, float(np.abs(got - ref.numpy()).max()))
    report["chunk_max_abs"] = chunk_err
    log(f"head ONNX vs streaming PyTorch reference: max abs {chunk_err:.3e} (limit {CHUNK_TOL:g})")

    failures = []
    if feature_err > FEATURE_TOL:
        failures.append(f"feature {feature_err:.3e} > {FEATURE_TOL:g}")
    if chunk_err > CHUNK_TOL:
        failures.append(f"chunk {chunk_err:.3e} > {CHUNK_TOL:g}")
    if report["lora_merge_max_abs"] is not None and report["lora_merge_max_abs"] > LORA_TOL:
        failures.append(f"LoRA merge {report['lora_merge_max_abs']:.3e} > {LORA_TOL:g}")
    if failures:
        log("PARITY FAILED: " + "; ".join(failures) + " -- model.json not written")
        raise SystemExit(3)

    mean, std = normalisation(args.normalisation)
    import onnx as onnx_mod
    import transformers

    meta = {
        "format": MODEL_FORMAT,
        "source": {
            "checkpoint": Path(args.checkpoint).name,
            "checkpoint_sha256": ckpt_sha,
            "config": Path(args.config).name,
            "config_sha256": sha256_file(Path(args.config)),
            "exporter_version": EXPORTER_VERSION,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "onnx": onnx_mod.__version__,
        },
        "variant": args.variant,
        "variant_description": mv.VARIANTS[args.variant],
        "image": {
            "width": W,
            "height": H,
            "channel_order": args.channel_order,
            "camera_rotation_deg": args.camera_rotation_deg,
            "resize": "pillow_bilinear",
            "scale": 1.0 / 255.0,
            "mean": mean,
            "std": std,
            "layout": "NCHW",
        },
        "prompt": {
            "instruction": args.instruction,
            "text": text,
            "tokenizer": tokenizer_note,
            "token_ids": prompt_ids,
            "input_ids": layout.input_ids,
            "attention_mask": layout.attention_mask,
        },
        "backbone": {
            "file": "backbone.onnx",
            "sha256": sha256_file(out / "backbone.onnx"),
            "external_data": [{"file": f, "sha256": sha256_file(out / f)} for f in backbone_extra],
            "inputs": ["pixel_values", "input_ids", "attention_mask"],
            "output": "feature",
            "feature_dim": D,
            "parameters": n_params,
        },
        "head": {
            "file": "head.onnx",
            "sha256": sha256_file(out / "head.onnx"),
            "external_data": [{"file": f, "sha256": sha256_file(out / f)} for f in head_extra],
            "input": "features",
            "output": "actions",
            "lstm_hidden": cfg.hidden_size,
            "lstm_layers": cfg.num_layers,
        },
        "window": cfg.window,
        "chunk": cfg.chunk,
        "action_dim": cfg.action_dim,
        "action_names": ["linear_x", "linear_y"][: cfg.action_dim],
        "step_ms": args.step_ms,
        "action_scale": args.action_scale,
        "action_clip": args.action_clip,
        "zero_first_step_after_reset": args.zero_first_step,
        "output_semantics": "head output is tanh in [-1, 1]; actions[0, i] applies i training steps after the newest frame; command = clip(scale * output, +-clip)",
        "opset": args.opset,
        "parity": {
            "feature_max_abs": feature_err,
            "feature_tolerance": FEATURE_TOL,
            "chunk_max_abs": chunk_err,
            "chunk_tolerance": CHUNK_TOL,
            "lora_merge_max_abs": report["lora_merge_max_abs"],
            "lora_effect_max_abs": report["lora_effect_max_abs"],
            "wrapper_vs_reference_max_abs": report["wrapper_vs_reference_max_abs"],
            "reference": "Hugging Face Kosmos2Model forward with inputs_embeds + image_embeds_position_mask (training call); head: MobileVLALSTMDecoder streaming rule",
            "runtime": "onnxruntime CPU, fp32",
        },
    }
    (out / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    elapsed = time.time() - t_start
    log(f"wrote {out/'model.json'}; total {elapsed:.1f} s, backbone export {report['backbone_export_s']} s, peak RSS {mv.human_bytes(peak_rss_bytes())}")
    if args.report:
        Path(args.report).write_text(json.dumps({**report, "total_s": round(elapsed, 2), "peak_rss_bytes": peak_rss_bytes()}, indent=2) + "\n")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    e = sub.add_parser("export", help="checkpoint -> ONNX + model.json (parity-gated)")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--config", required=True, help="training config JSON (window_size, fwd_pred_next_n, act_head, train_setup)")
    e.add_argument("--tokenizer", help="local Kosmos-2 tokenizer directory")
    e.add_argument("--token-ids", help="comma-separated prompt token ids (instead of --tokenizer)")
    e.add_argument("--instruction", default=DEFAULT_INSTRUCTION)
    e.add_argument("--variant", default="erased_prompt", choices=sorted(mv.VARIANTS))
    e.add_argument("--channel-order", default="bgr", choices=["bgr", "rgb"], help="channel order of the tensor the model was trained on (UPSTREAM §1: BGR)")
    e.add_argument("--camera-rotation-deg", type=int, default=180, choices=[0, 180], help="rotation the training capture pipeline applied to raw camera frames")
    e.add_argument("--normalisation", default="clip", choices=["clip", "imagenet", "unit"])
    e.add_argument("--step-ms", type=int, default=800, help="one training step (teleop key press spacing, UPSTREAM §1: 0.7-0.86 s)")
    e.add_argument("--action-scale", type=float, default=1.15)
    e.add_argument("--action-clip", type=float, default=1.5)
    e.add_argument("--zero-first-step", action=argparse.BooleanOptionalAction, default=True, help="first call after a reset commands zero (the research server's behaviour)")
    e.add_argument("--opset", type=int, default=17)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--out", required=True)
    e.add_argument("--report", help="write timing/memory/parity JSON here")
    e.set_defaults(fn=run_export)

    f = sub.add_parser("make-fake", help="randomly initialised checkpoint with the real layout")
    f.add_argument("--size", choices=["tiny", "full"], default="tiny")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--head-bias", help="x,y bias of the head's last layer (test models that drive)")
    f.add_argument("--out", required=True)
    f.set_defaults(fn=make_fake)

    k = sub.add_parser("keys", help="show how a checkpoint's keys are mapped")
    k.add_argument("checkpoint")
    k.add_argument("--all", action="store_true")
    k.set_defaults(fn=list_keys)

    args = p.parse_args(argv)
    try:
        args.fn(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
