#!/usr/bin/env python3
"""Train a small Mobile-VLA (Kosmos-2 backbone + action token + LSTM head) on
HDF5 episodes (e.g. `mvla sim collect` demonstrations) the research team's way
(shared/design/UPSTREAM.md §3, §3.1), and write what `engines/export.py export`
loads unchanged: a Lightning-style `checkpoint.ckpt` (`state_dict` with
`model.backbone.*`, `model.action_token`, `model.act_head.*`) and
`train_config.json` (RoboVLMs style).

Recipe (UPSTREAM §3.1), and where this script departs from it:
  - loader: the stored frame array as is (BGR), Pillow bilinear 224x224
    squash, /255, CLIP mean/std per tensor channel;
  - prompt `<grounding>An image of a robot {instruction}` as explicit token ids
    (no Kosmos-2 tokenizer offline), right-padded with 0 to 64, the action
    token appended, the 64 image latents overwrite positions 0..63
    (`erased_prompt`): only the prompt length L acts, so the ids' values
    are irrelevant; the same ids go to `export.py --token-ids`;
  - samples: windows of `window` frames one training step apart, each
    position labelled with the next n actions (`actions[s : s+window+n]`
    unfolded by n, the last chunk dropped), labels = columns 0-1 clamped to
    [-1, 1]; Huber loss (optional extra weight on non-forward labels);
  - AdamW, weight decay 0.01, gradient clip 1.0;
  - optional, the team's colour jitter (`--color-jitter 0.4,0.4,0.3,0.1`,
    RoboVLMs' `use_color_jitter`), one draw per window (engines/augment.py);
  - departures: the backbone is a small, randomly initialised Kosmos-2 and is
    fully fine-tuned (LoRA on a random backbone would adapt nothing useful);
    the learning rate may be raised above 1e-4 (from-scratch weights);
    fp32 on CPU; one optimiser step = `--episodes-per-step` episodes x all
    their windows (the frames an episode's windows share go through the
    backbone once: same loss and gradient as those windows in one batch).

Example:
  python engines/train.py --train DIR [DIR...] --val DIR --out RUN --epochs 12
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import augment  # noqa: E402
from episode_cache import cache_name  # noqa: E402
import mobile_vla as mv  # noqa: E402

PROMPT_TEMPLATE = "<grounding>An image of a robot {instruction}"
IMAGE_SIZE = 224


def log(msg: str, fh=None):
    line = f"[train {time.strftime('%H:%M:%S')}] {msg}"
    print(line, flush=True)
    if fh is not None:
        fh.write(line + "\n")
        fh.flush()


def seed_everything(seed: int, deterministic: bool):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    if deterministic:  # ~1.5x slower backward on CPU; seeds alone already fix the run on one machine
        torch.use_deterministic_algorithms(True, warn_only=True)


# --------------------------------------------------------------------------
# Data


def episode_files(dirs: list[str]) -> list[str]:
    files = []
    for d in dirs:
        files += sorted(glob.glob(os.path.join(d, "*.h5")))
    if not files:
        raise SystemExit(f"no .h5 episodes under {dirs}")
    return files


def load_episode(path: str) -> dict:
    """Frames squashed to 224x224 with Pillow bilinear, channel order as stored
    (BGR for the team's layout and for `mvla sim collect`)."""
    import h5py
    from PIL import Image

    with h5py.File(path, "r") as f:
        if "images" in f:
            imgs = f["images"][()]
        else:  # later collector layout (RGB); accepted, but note it
            imgs = f["observations/images"][()]
        actions = f["actions"][()].astype(np.float32)
        events = [e.decode() if isinstance(e, bytes) else str(e) for e in f["action_event_types"][()]]
        instr = None
        if "language_instruction" in f:
            raw = f["language_instruction"][()][0]
            instr = (raw.decode() if isinstance(raw, bytes) else str(raw)).rstrip("\x00")
    small = np.stack([np.asarray(Image.fromarray(fr).resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)) for fr in imgs])
    return {"path": path, "images": small, "actions": actions, "events": events, "instruction": instr}


def load_cached(files: list[str], cache_dir: Path, fh) -> list[dict]:
    cache_dir.mkdir(parents=True, exist_ok=True)
    eps = []
    t0 = time.time()
    for i, p in enumerate(files):
        key = cache_dir / cache_name(p)
        if key.exists():
            z = np.load(key, allow_pickle=False)
            ep = {"path": p, "images": z["images"], "actions": z["actions"], "events": list(z["events"]), "instruction": str(z["instruction"])}
        else:
            ep = load_episode(p)
            np.savez(key, images=ep["images"], actions=ep["actions"], events=np.array(ep["events"]), instruction=np.array(ep["instruction"] or ""))
        eps.append(ep)
        if (i + 1) % 50 == 0:
            log(f"  loaded {i+1}/{len(files)} episodes ({time.time()-t0:.0f} s)", fh)
    return eps


def labels_of(actions: np.ndarray) -> np.ndarray:
    return np.clip(actions[:, :2], -1.0, 1.0).astype(np.float32)


def window_starts(n_rows: int, window: int, chunk: int) -> list[int]:
    # a sample spans window + chunk rows; unfold(chunk) gives window + 1 chunks, the last dropped
    return list(range(0, n_rows - window - chunk + 1))


class Normaliser:
    def __init__(self):
        mean, std = mv.clip_image_stats()
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)

    def __call__(self, frames_u8: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(frames_u8).permute(0, 3, 1, 2).float() / 255.0
        return (x - self.mean) / self.std


# --------------------------------------------------------------------------
# Model


@torch.no_grad()
def reinit_from_scratch(kosmos, pos_std: float, attn_sharpness: float):
    """Hugging Face's Kosmos-2 init (text and projection linears N(0, 0.02)) is
    meant for loading pretrained weights; from scratch it makes the backbone
    image-blind: the image_to_text_projection's `dense` sees an L2-normalised
    vector, so its output is ~0.01 per element, the latent queries (N(0,1))
    dominate its cross-attention and the 64 latents vary across frames by
    ~2e-5 (measured), so the action token's feature is constant and training
    collapses to the mean action. Re-initialise the text model's and the
    projection's linears variance-preserving (N(0, 1/fan_in)), and `dense`
    with N(0, 1) (unit-norm input -> unit-scale output). Vision tower keeps
    its CLIP-style init (its output does vary with the image)."""
    from torch import nn

    for name, mod in kosmos.named_modules():
        if not isinstance(mod, nn.Linear) or name.startswith("vision_model"):
            continue
        std = 1.0 if name == "image_to_text_projection.dense" else mod.in_features**-0.5
        mod.weight.normal_(0.0, std)
        if mod.bias is not None:
            mod.bias.zero_()
    # CLIP's init gives the vision position embeddings std 0.02 beside patch
    # embeddings of ~0.5 (measured on sim frames, small-p28): the tokens are
    # nearly position-blind, and a mirrored scene (left vs right scenario: the
    # same box and bottle on the other side) looks alike to every pooled
    # feature. From scratch, start them at the patch embeddings' scale.
    if pos_std > 0:
        kosmos.vision_model.model.embeddings.position_embedding.weight.normal_(0.0, pos_std)
    # Sharp attention from the start: every q/k projection N(0, c/fan_in), so
    # attention logits have std ~c on unit-scale inputs. With small inits
    # every attention (vision, latent queries, text) starts uniform, i.e. a
    # plain average over the image, and the spatial layout (box left or right
    # of the centre) is averaged away before the head sees it.
    if attn_sharpness > 0:
        for name, mod in kosmos.named_modules():
            if isinstance(mod, nn.Linear) and (name.endswith("q_proj") or name.endswith("k_proj")):
                mod.weight.normal_(0.0, (attn_sharpness / mod.in_features) ** 0.5)


class MobileVLA(torch.nn.Module):
    """Backbone (Hugging Face Kosmos2Model, called the training code's way),
    learnable action token, PolicyHead (LSTM + MLP tanh) from engines/mobile_vla.py."""

    def __init__(self, cfg: mv.TrainConfig, layout: mv.PromptLayout, pos_std: float, attn_sharpness: float, reinit: bool = True):
        super().__init__()
        self.backbone = mv.build_kosmos2(cfg).train()
        if reinit:
            reinit_from_scratch(self.backbone, pos_std, attn_sharpness)
        D = self.backbone.config.text_config.embed_dim
        self.action_token = torch.nn.Parameter(torch.randn(D) * 0.02)
        self.act_head = mv.PolicyHead(D, cfg)
        self.cfg = cfg
        self.register_buffer("ids", torch.tensor([layout.input_ids]), persistent=False)
        self.register_buffer("mask", torch.tensor([layout.attention_mask]), persistent=False)
        self.register_buffer("img_mask", torch.tensor([layout.image_position_mask]), persistent=False)

    def features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values [B,3,224,224] -> [B, D]; the same call as mv.reference_feature, batched, with grad."""
        B = pixel_values.shape[0]
        D = self.action_token.numel()
        embeds = self.backbone.text_model.model.embed_tokens(self.ids)
        embeds = torch.cat([embeds, self.action_token.view(1, 1, D).to(embeds.dtype)], dim=1).expand(B, -1, -1).clone()  # HF writes the image latents into it in place
        out = self.backbone(
            pixel_values=pixel_values,
            inputs_embeds=embeds,
            attention_mask=self.mask.expand(B, -1),
            image_embeds_position_mask=self.img_mask.expand(B, -1),
            output_hidden_states=True,
            use_cache=False,
        )
        return out.hidden_states[-1][:, -1]

    def head_all_positions(self, feats: torch.Tensor) -> torch.Tensor:
        """feats [M, W, D] -> chunks at every position [M, W, n, 2] (LSTM from a zero state)."""
        out, _ = self.act_head.rnn(feats)
        M, W, _ = out.shape
        v = self.act_head.velocities(out.reshape(M * W, -1))
        return v.reshape(M, W, self.cfg.chunk, self.cfg.action_dim)

    def state_dict_lightning(self) -> dict[str, torch.Tensor]:
        sd = {}
        for k, v in self.backbone.state_dict().items():
            sd["model.backbone." + k] = v.detach().clone()
        sd["model.action_token"] = self.action_token.detach().clone()
        for k, v in self.act_head.state_dict().items():
            sd["model.act_head." + k] = v.detach().clone()
        return sd


def kosmos_overrides(size: str) -> dict:
    base = mv.tiny_kosmos2_overrides()
    # no dropout in a small from-scratch text model (Hugging Face's 0.1 defaults
    # are for fine-tuning the pretrained 1.6 B one); inference is unaffected
    base["text_config"].update({"dropout": 0.0, "attention_dropout": 0.0})
    if size == "tiny":
        return base
    if size == "small":
        base["vision_config"].update({"hidden_size": 96, "intermediate_size": 192, "num_hidden_layers": 4, "num_attention_heads": 4})
        base["text_config"].update({"embed_dim": 128, "layers": 2, "ffn_dim": 256, "attention_heads": 4})
        return base
    if size == "small-p28":
        # patch 28 on the same 224x224 input: 64 vision tokens instead of 256 (4x cheaper on CPU)
        base["vision_config"].update({"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "patch_size": 28})
        base["text_config"].update({"embed_dim": 128, "layers": 2, "ffn_dim": 256, "attention_heads": 4})
        return base
    if size == "narrow-p14":
        # the real patch 14 (256 vision tokens, a 16x16 grid: fine spatial layout) on a narrow tower
        base["vision_config"].update({"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3, "num_attention_heads": 2, "patch_size": 14})
        base["text_config"].update({"embed_dim": 128, "layers": 2, "ffn_dim": 256, "attention_heads": 4})
        return base
    if size == "medium":
        base["vision_config"].update({"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 6, "num_attention_heads": 4})
        base["text_config"].update({"embed_dim": 128, "layers": 3, "ffn_dim": 512, "attention_heads": 4})
        return base
    raise SystemExit(f"unknown size {size}")


# --------------------------------------------------------------------------
# Training


def batch_loss(model, eps, norm, window, chunk, nonfwd_weight, mirror=None, aux=None, jitter=None):
    """All windows of the given episodes; each frame a window needs goes through the backbone once.
    `mirror[i]`: episode i seen in a mirror (frames flipped left-right, linear_y negated).
    `jitter[i]`: a colour-jitter draw (augment.draw) applied to every frame of episode i.
    `aux` = (per-frame head, weight): adds weight x Huber(head(feature of frame i), label of row i),
    a training-only signal (see --aux-frame-weight); the returned pred/target are the main head's."""
    frames, spans = [], []
    for i, ep in enumerate(eps):
        starts = window_starts(len(ep["actions"]), window, chunk)
        last = starts[-1] + window
        lab = labels_of(ep["actions"])
        imgs = ep["images"][:last]
        if mirror is not None and mirror[i]:
            lab = lab * np.array([1.0, -1.0], dtype=np.float32)
            imgs = imgs[:, :, ::-1]
        if jitter is not None:
            imgs = augment.apply(imgs, jitter[i])  # copies a mirrored view itself
        spans.append((last, starts, lab))
        frames.append(imgs)
    if getattr(model, "frozen_backbone", False):
        with torch.no_grad():
            feats = model.features(norm(np.concatenate(frames)))
    else:
        feats = model.features(norm(np.concatenate(frames)))
    seqs, labs = [], []
    off = 0
    for last, starts, lab in spans:
        f = feats[off : off + last]
        off += last
        for s in starts:
            seqs.append(f[s : s + window])
            labs.append(np.stack([lab[s + t : s + t + chunk] for t in range(window)]))
    pred = model.head_all_positions(torch.stack(seqs))
    target = torch.from_numpy(np.stack(labs))
    loss = F.huber_loss(pred, target, reduction="none")  # [M, W, n, 2]
    if nonfwd_weight != 1.0:
        fwd = (target[..., 0] > 0.5) & (target[..., 1].abs() < 0.2)
        w = torch.where(fwd, 1.0, nonfwd_weight).unsqueeze(-1)
        loss = loss * w
        total = loss.sum() / (w.expand_as(loss).sum())
    else:
        total = loss.mean()
    if aux is not None:
        head, weight = aux
        frame_labels = torch.from_numpy(np.concatenate([lab[:last] for last, _, lab in spans]))
        total = total + weight * F.huber_loss(torch.tanh(head(feats)), frame_labels)
    return total, pred, target


@torch.no_grad()
def evaluate(model, eps, norm, window, chunk):
    """Two figures on held-out episodes:
    - window loss / RMSE: the training samples' form;
    - stream RMSE: what `mvla eval` computes (frame i after a reset, LSTM from a
      zero state over the last min(i+1, window) features, chunk step j vs
      actions[i+j] clamped, where that row exists), plus direction agreement (0.3 dead band)."""
    model.eval()
    wl, wsq, wn = 0.0, 0.0, 0
    s_sq, s_n, s_agree = 0.0, 0, 0
    s0_sq, s0_n, s0_agree = 0.0, 0, 0

    def cls(v):
        return np.where(v > 0.3, 1, np.where(v < -0.3, -1, 0))

    for ep in eps:
        loss, pred, target = batch_loss(model, [ep], norm, window, chunk, 1.0)
        wl += float(loss) * pred.numel()
        wsq += float(((pred - target) ** 2).sum())
        wn += pred.numel()
        lab = labels_of(ep["actions"])
        N = len(lab)
        feats = model.features(norm(ep["images"]))
        for i in range(N):
            seq = feats[max(0, i + 1 - window) : i + 1].unsqueeze(0)
            out = model.head_all_positions(seq)[0, -1].numpy()  # [n, 2]
            for j in range(chunk):
                if i + j >= N:
                    break
                d = out[j] - lab[i + j]
                agree = int((cls(out[j]) == cls(lab[i + j])).all())
                s_sq += float((d**2).sum())
                s_n += 1
                s_agree += agree
                if j == 0:
                    s0_sq += float((d**2).sum())
                    s0_n += 1
                    s0_agree += agree
    model.train()
    return {
        "window_loss": wl / max(wn, 1),
        "window_rmse": math.sqrt(wsq / max(wn, 1)),
        "stream_rmse": math.sqrt(s_sq / max(2 * s_n, 1)),
        "stream_dir_agree": s_agree / max(s_n, 1),
        "stream_rmse_step0": math.sqrt(s0_sq / max(2 * s0_n, 1)),
        "stream_dir_agree_step0": s0_agree / max(s0_n, 1),
    }


def plot_curves(hist: list[dict], path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    tr = [h for h in hist if h["kind"] == "train"]
    va = [h for h in hist if h["kind"] == "val"]
    ax[0].plot([h["step"] for h in tr], [h["loss"] for h in tr], label="train Huber (running)", lw=0.8)
    ax[0].plot([h["step"] for h in va], [h["window_loss"] for h in va], "o-", label="val Huber (windows)")
    ax[0].set_yscale("log")
    ax[0].set_xlabel("optimiser step")
    ax[0].legend()
    ax[0].set_title("loss")
    ax[1].plot([h["step"] for h in va], [h["window_rmse"] for h in va], "o-", label="val RMSE (windows)")
    ax[1].plot([h["step"] for h in va], [h["stream_rmse"] for h in va], "s-", label="val RMSE (mvla eval form, all chunk steps)")
    ax[1].plot([h["step"] for h in va], [h["stream_rmse_step0"] for h in va], "^-", label="val RMSE (step 0)")
    ax[1].axhline(0.12, color="gray", ls="--", lw=0.8, label="team target 0.12")
    ax[1].set_xlabel("optimiser step")
    ax[1].legend(fontsize=8)
    ax[1].set_title("validation RMSE")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", nargs="+", required=True, help="directories of training episodes (.h5)")
    p.add_argument("--val", nargs="+", required=True, help="directories of held-out episodes (other seeds)")
    p.add_argument("--out", required=True)
    p.add_argument("--cache", default=None, help="224x224 frame cache directory (default OUT/../cache)")
    p.add_argument("--size", default="small", choices=["tiny", "small", "small-p28", "narrow-p14", "medium"])
    p.add_argument("--chunk", type=int, default=5)
    p.add_argument("--window", type=int, default=8)
    p.add_argument("--lstm-hidden", type=int, default=256)
    p.add_argument("--lstm-layers", type=int, default=2)
    p.add_argument("--token-ids", default=",".join(str(i) for i in range(2, 26)), help="explicit prompt ids (erased_prompt: only their count acts)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--episodes-per-step", type=int, default=4)
    p.add_argument("--windows-per-step", type=int, default=0, help="one optimiser step = this many windows drawn at random across all episodes (the recipe's shuffled batch); 0: --episodes-per-step whole episodes")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--min-lr-frac", type=float, default=0.1)
    p.add_argument("--warmup-steps", type=int, default=50)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--nonfwd-weight", type=float, default=1.0, help="extra loss weight on non-forward labels (UPSTREAM §3.1 option)")
    p.add_argument("--time-limit-min", type=float, default=40.0, help="stop after this much training time (checkpoint kept)")
    p.add_argument("--val-every", type=int, default=0, help="optimiser steps between validations (0: once per epoch)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pos-init-std", type=float, default=0.5, help="vision position embeddings' init std (0: keep CLIP's 0.02)")
    p.add_argument("--attn-sharpness", type=float, default=0.0, help="q/k projections' init variance x fan_in (attention logit std at init; 0: Hugging Face's init)")
    p.add_argument("--mirror", type=float, default=0.0, help="probability of showing a training episode mirrored (frames flipped, linear_y negated)")
    p.add_argument("--color-jitter", default=None, metavar="B,C,S,H", help="the team's colour jitter (RoboVLMs mobile_vla_h5_dataset use_color_jitter: 0.4,0.4,0.3,0.1): brightness, contrast, saturation ranges and hue range, one draw per training sample for all its frames (engines/augment.py); default off")
    p.add_argument("--aux-frame-weight", type=float, default=0.0, help="training-only per-frame head (MLP on each frame's feature -> that row's action) with this loss weight; not exported (0: off)")
    p.add_argument("--head-lr-mult", type=float, default=1.0, help="head (LSTM + MLP) learning rate = lr x this")
    p.add_argument("--freeze-backbone", action="store_true", help="diagnostic: train the head only on the random backbone's features")
    p.add_argument("--init-from", default=None, help="start from an exported model directory (backbone.onnx + head.onnx, e.g. models/mobile_vla_sim) instead of random weights: fine-tuning, e.g. on DAgger data aggregated with the original demonstrations; the sizes must match, the recovered weights are parity-checked against onnxruntime")
    p.add_argument("--deterministic", action="store_true", help="torch.use_deterministic_algorithms (slower)")
    args = p.parse_args(argv)
    try:
        jitter_ranges = augment.parse_jitter(args.color_jitter) if args.color_jitter else None
    except ValueError as e:
        p.error(str(e))

    torch.set_num_threads(args.threads)
    seed_everything(args.seed, args.deterministic)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fh = open(out / "train.log", "a")
    log("command: " + " ".join(sys.argv), fh)

    prompt_ids = [int(t) for t in args.token_ids.split(",") if t.strip()]
    layout = mv.prompt_layout("erased_prompt", prompt_ids)
    raw_cfg = {
        "model": "kosmos",
        "window_size": args.window,
        "fwd_pred_next_n": args.chunk,
        "act_head": {
            "type": "MobileVLALSTMDecoder",
            "hidden_size": args.lstm_hidden,
            "num_layers": args.lstm_layers,
            "action_dim": 2,
            "window_size": args.window,
            "fwd_pred_next_n": args.chunk,
            "down_sample": "none",
            "latent": 1,
        },
        "train_setup": {"lora_enable": False, "full_finetune": True, "precision": "fp32", "learning_rate": args.lr, "weight_decay": args.weight_decay, "gradient_clip_val": args.clip, "color_jitter": list(jitter_ranges) if jitter_ranges else None},
        "vlm": {"kosmos2_config": kosmos_overrides(args.size), "pretrained": False},
        "prompt": {"template": PROMPT_TEMPLATE, "token_ids": prompt_ids, "variant": "erased_prompt"},
        "image": {"channel_order": "bgr", "resize": "pillow_bilinear", "size": IMAGE_SIZE, "normalisation": "clip"},
        "note": f"engines/train.py, size {args.size}, seed {args.seed}" + (f", initialised from {args.init_from}" if args.init_from else ""),
    }
    cfg = mv.parse_train_config(raw_cfg, "train.py")
    # The model (and --init-from) before anything is written or loaded: a bad
    # MODEL_DIR fails fast and leaves no train_config.json claiming it.
    model = MobileVLA(cfg, layout, pos_std=args.pos_init_std, attn_sharpness=args.attn_sharpness)
    init_report = None
    if args.init_from:
        import onnx_weights

        try:
            init_report = onnx_weights.load_into(model, args.init_from, log=lambda m: log(m, fh))
        except (onnx_weights.RecoverError, RuntimeError) as e:
            log(f"error: --init-from {args.init_from}: {e}", fh)
            fh.close()
            return 2
    (out / "train_config.json").write_text(json.dumps(raw_cfg, indent=2) + "\n")

    cache = Path(args.cache) if args.cache else out.parent / "cache"
    train_files, val_files = episode_files(args.train), episode_files(args.val)
    log(f"loading {len(train_files)} training and {len(val_files)} validation episodes (cache {cache})", fh)
    train_eps = load_cached(train_files, cache, fh)
    val_eps = load_cached(val_files, cache, fh)
    instr = sorted({e["instruction"] for e in train_eps})
    n_win = sum(len(window_starts(len(e["actions"]), args.window, args.chunk)) for e in train_eps)
    lab = np.concatenate([labels_of(e["actions"]) for e in train_eps])
    keys, counts = np.unique(np.round(lab, 2), axis=0, return_counts=True)
    log(f"train: {len(train_eps)} episodes, {sum(len(e['actions']) for e in train_eps)} rows, {n_win} windows; instructions {instr}", fh)
    log("label distribution (x, y): " + ", ".join(f"{tuple(k)}: {c}" for k, c in zip(keys.tolist(), counts.tolist())), fh)

    norm = Normaliser()
    if init_report is not None:
        v0 = evaluate(model, val_eps, norm, args.window, args.chunk)
        init_report["val"] = v0
        log("val at init " + " ".join(f"{k} {v0[k]:.4f}" for k in ("window_loss", "window_rmse", "stream_rmse", "stream_dir_agree")), fh)
        (out / "init_from.json").write_text(json.dumps(init_report, indent=2) + "\n")
    if args.freeze_backbone:
        # diagnostic: the randomly initialised backbone (and action token) stay fixed, only the head trains
        model.frozen_backbone = True
        for prm in list(model.backbone.parameters()) + [model.action_token]:
            prm.requires_grad_(False)
    nb, nh = mv.param_count(model.backbone), mv.param_count(model.act_head)
    log(f"model: backbone {nb/1e6:.2f} M params ({args.size}), head {nh/1e6:.2f} M, feature {model.action_token.numel()}; prompt L={len(prompt_ids)}", fh)
    # The per-frame auxiliary head: a direct path from each frame's feature to
    # its action. Measured: through the LSTM head alone the from-scratch
    # backbone's action-token feature stays nearly constant (std across frames
    # 0.017 after 1400 steps; the vision tower's output varies 1.7) and the
    # policy is the mean action; a per-frame head on the same feature learns
    # direction (the single-frame probes). Training only: the exported model
    # is backbone + action token + LSTM head, as the recipe has it.
    aux_head = None
    named = list(model.named_parameters())
    if args.aux_frame_weight > 0:
        D = model.action_token.numel()
        aux_head = torch.nn.Sequential(torch.nn.Linear(D, 256), torch.nn.ReLU(), torch.nn.Linear(256, 2))
        named += [("aux_head." + n, q) for n, q in aux_head.named_parameters()]
    groups = {}
    for n, prm in named:
        if not prm.requires_grad:
            continue
        wd = 0.0 if prm.ndim < 2 or "norm" in n.lower() or "embed" in n.lower() or n == "action_token" else args.weight_decay
        mult = args.head_lr_mult if n.startswith("act_head.") else 1.0
        groups.setdefault((wd, mult), []).append(prm)
    opt = torch.optim.AdamW([{"params": v, "weight_decay": wd, "lr_mult": mult} for (wd, mult), v in groups.items()], lr=args.lr)
    # What an epoch shuffles and a step takes: with --windows-per-step, every
    # (episode, window start) pair, each as a one-window slice (rows
    # s .. s+window+chunk-1: window_starts of the slice is [0]); otherwise
    # whole episodes.
    span = args.window + args.chunk
    if args.windows_per_step > 0:
        all_windows = [(i, s0) for i, e in enumerate(train_eps) for s0 in window_starts(len(e["actions"]), args.window, args.chunk)]
        n_units, per_step = len(all_windows), args.windows_per_step

        def take(k):
            i, s0 = all_windows[k]
            e = train_eps[i]
            return {"images": e["images"][s0 : s0 + span], "actions": e["actions"][s0 : s0 + span]}
    else:
        n_units, per_step = len(train_eps), args.episodes_per_step

        def take(k):
            return train_eps[k]
    steps_per_epoch = math.ceil(n_units / per_step)
    total = steps_per_epoch * args.epochs

    def lr_at(step):
        if step < args.warmup_steps:
            return args.lr * (step + 1) / args.warmup_steps
        t = (step - args.warmup_steps) / max(1, total - args.warmup_steps)
        return args.lr * (args.min_lr_frac + (1 - args.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))

    hist = []
    rng = random.Random(args.seed)
    jitter_rng = np.random.default_rng(args.seed)
    step, t0 = 0, time.time()
    best = None
    stop = False
    val_every = args.val_every or steps_per_epoch
    run_loss = None
    for epoch in range(args.epochs):
        order = list(range(n_units))
        rng.shuffle(order)
        for b in range(steps_per_epoch):
            idx = order[b * per_step : (b + 1) * per_step]
            if not idx:
                continue
            batch = [take(k) for k in idx]
            for g in opt.param_groups:
                g["lr"] = lr_at(step) * g["lr_mult"]
            # drawn only when asked, so runs without --mirror keep their shuffle order
            mirror = [rng.random() < args.mirror for _ in idx] if args.mirror > 0 else None
            # its own generator, so runs without it keep their shuffle and mirror draws
            jitter = [augment.draw(jitter_rng, jitter_ranges) for _ in idx] if jitter_ranges else None
            aux = (aux_head, args.aux_frame_weight) if aux_head is not None else None
            loss, _, _ = batch_loss(model, batch, norm, args.window, args.chunk, args.nonfwd_weight, mirror, aux, jitter)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            # one clip over the model and the per-frame head together (the
            # norm includes the head's gradients when --aux-frame-weight > 0)
            gnorm = float(torch.nn.utils.clip_grad_norm_([q for _, q in named if q.requires_grad], args.clip))
            opt.step()
            step += 1
            run_loss = float(loss) if run_loss is None else 0.95 * run_loss + 0.05 * float(loss)
            hist.append({"kind": "train", "step": step, "epoch": epoch, "loss": run_loss, "batch_loss": float(loss), "grad_norm": gnorm, "lr": lr_at(step - 1)})
            if step % 20 == 0:
                log(f"epoch {epoch} step {step}/{total} loss {float(loss):.4f} (running {run_loss:.4f}) |g| {gnorm:.2f} lr {lr_at(step-1):.2e} {time.time()-t0:.0f} s", fh)
            elapsed_min = (time.time() - t0) / 60
            if elapsed_min > args.time_limit_min:
                log(f"time limit {args.time_limit_min} min reached at step {step}", fh)
                stop = True
            if step % val_every == 0 or stop or (epoch == args.epochs - 1 and b == steps_per_epoch - 1):
                v = evaluate(model, val_eps, norm, args.window, args.chunk)
                v.update({"kind": "val", "step": step, "epoch": epoch, "train_s": time.time() - t0})
                hist.append(v)
                log("val " + " ".join(f"{k} {v[k]:.4f}" for k in ("window_loss", "window_rmse", "stream_rmse", "stream_rmse_step0", "stream_dir_agree", "stream_dir_agree_step0")), fh)
                ckpt = {"state_dict": model.state_dict_lightning(), "epoch": epoch, "global_step": step, "pytorch-lightning_version": "none (engines/train.py)", "val": v}
                torch.save(ckpt, out / "last.ckpt")
                if best is None or v["window_loss"] < best:
                    best = v["window_loss"]
                    torch.save(ckpt, out / "checkpoint.ckpt")
                    log(f"  best so far -> {out/'checkpoint.ckpt'}", fh)
                (out / "history.json").write_text(json.dumps(hist) + "\n")
                plot_curves(hist, out / "curves.png")
            if stop:
                break
        if stop:
            break
    train_s = time.time() - t0
    log(f"done: {step} steps in {train_s/60:.1f} min; best val window loss {best:.4f}", fh)
    (out / "summary.json").write_text(json.dumps({"steps": step, "train_s": train_s, "best_val_window_loss": best, "final_val": [h for h in hist if h["kind"] == "val"][-1], "backbone_params": nb, "head_params": nh, "train_episodes": len(train_eps), "val_episodes": len(val_eps), "windows": n_win}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
