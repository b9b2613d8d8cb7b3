"""Mobile-VLA model pieces for export: checkpoint mapping, LoRA merge, the
training-time reference forward, and the two export graphs (backbone, head).

Semantics follow shared/design/UPSTREAM.md §3. Everything here runs on CPU in
fp32 unless the caller moves it.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import torch
from torch import nn

NUM_IMAGE_LATENTS = 64  # Kosmos-2 `latent_query_num`: image_to_text_projection output length.

# How the backbone input sequence is built for one frame. Both are documented in
# engines/README.md; the default is what produced the existing checkpoints.
VARIANTS = {
    # UPSTREAM §3: prompt ids right-padded with 0 to 64, embedded, action token
    # appended; image latents overwrite positions 0..63, so the prompt text is
    # erased and only its length L survives through the attention mask.
    "erased_prompt": "image latents overwrite the 64 padded prompt positions; prompt acts only via its length",
    # A fixed layout some newer trainings may use: 64 image latents, then the
    # prompt tokens, then the action token, all attended.
    "image_then_prompt": "64 image latents, then the embedded prompt, then the action token",
}

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


# --------------------------------------------------------------------------
# Training config


from train_config import TrainConfig, _pick, parse_train_config  # noqa: E402,F401  (torch-free, tested in CI)


def kosmos2_config(cfg: TrainConfig):
    from transformers import Kosmos2Config

    if cfg.kosmos2_overrides is None:
        return Kosmos2Config()  # defaults are microsoft/kosmos-2-patch14-224's sizes
    return Kosmos2Config(**cfg.kosmos2_overrides)


def build_kosmos2(cfg: TrainConfig):
    from transformers import Kosmos2Model

    model = Kosmos2Model._from_config(kosmos2_config(cfg), attn_implementation="eager")
    return model.eval()


# --------------------------------------------------------------------------
# Head (MobileVLALSTMDecoder layout: act_head.rnn.*, act_head.velocities.mlp.*)


class MLPTanhHead(nn.Module):
    def __init__(self, hidden: int, out: int):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(hidden, 1024),
            nn.ReLU(),
            nn.Linear(1024, 512),
            nn.ReLU(),
            nn.Linear(512, 256),
            nn.ReLU(),
            nn.Linear(256, out),
            nn.Tanh(),
        )

    def forward(self, x):
        return self.mlp(x)


class PolicyHead(nn.Module):
    """features [1, k, D] -> LSTM from a zero state -> output at the last step -> chunk [1, n, action_dim]."""

    def __init__(self, feature_dim: int, cfg: TrainConfig):
        super().__init__()
        self.chunk = cfg.chunk
        self.action_dim = cfg.action_dim
        self.rnn = nn.LSTM(feature_dim, cfg.hidden_size, cfg.num_layers, bias=True, batch_first=True)
        self.velocities = MLPTanhHead(cfg.hidden_size, cfg.chunk * cfg.action_dim)

    def forward(self, features):
        out, _ = self.rnn(features)
        last = out[:, -1]
        return self.velocities(last).reshape(1, self.chunk, self.action_dim)


class StreamingHeadReference:
    """The training code's streaming rule (MobileVLALSTMDecoder.forward with one
    new feature per call): carry the LSTM state for the first `window` calls,
    afterwards re-run the last `window` features from a zero state. Used to
    produce per-step references and to prove the export's zero-state form."""

    def __init__(self, head: PolicyHead, window: int):
        self.head = head
        self.window = window
        self.reset()

    def reset(self):
        self.memory: list[torch.Tensor] = []
        self.state = None

    @torch.no_grad()
    def step(self, feature: torch.Tensor) -> torch.Tensor:
        tok = feature.reshape(1, 1, -1)
        self.memory.append(tok)
        if len(self.memory) <= self.window:
            x, self.state = self.head.rnn(tok, self.state)
        else:
            self.memory = self.memory[-self.window :]
            x, _ = self.head.rnn(torch.cat(self.memory, dim=1), None)
        v = self.head.velocities(x[:, -1])
        return v.reshape(1, self.head.chunk, self.head.action_dim)


# --------------------------------------------------------------------------
# Checkpoint mapping

BACKBONE_PREFIXES = ("model.backbone.", "backbone.", "model.model.")
ACTION_TOKEN_KEYS = ("model.action_token", "action_token")
HEAD_PREFIXES = ("model.act_head.", "act_head.")
PEFT_INFIX = "base_model.model."
# Tied to embed_tokens in Kosmos2ForConditionalGeneration; not part of the feature path.
IGNORED_BACKBONE_KEYS = ("text_model.lm_head.weight",)


@dataclasses.dataclass
class SplitCheckpoint:
    backbone: dict[str, torch.Tensor]  # Kosmos-2 keys, peft LoRA naming kept
    action_token: torch.Tensor
    head: dict[str, torch.Tensor]
    ignored: list[str]
    lora_modules: list[str]  # module paths that carry LoRA adapters
    lora_rank: int | None


def load_state_dict(path: str) -> dict[str, torch.Tensor]:
    obj = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: no state_dict found (got {type(obj).__name__})")
    return obj


def split_checkpoint(sd: dict[str, torch.Tensor], source: str) -> SplitCheckpoint:
    backbone, head, unexpected, ignored = {}, {}, [], []
    token = None
    for key, value in sd.items():
        if key in ACTION_TOKEN_KEYS:
            token = value
            continue
        hp = next((p for p in HEAD_PREFIXES if key.startswith(p)), None)
        if hp:
            head[key[len(hp) :]] = value
            continue
        bp = next((p for p in BACKBONE_PREFIXES if key.startswith(p)), None)
        if bp:
            sub = key[len(bp) :]
            if sub.startswith(PEFT_INFIX):
                sub = sub[len(PEFT_INFIX) :]
            if sub in IGNORED_BACKBONE_KEYS:
                ignored.append(key)
            else:
                backbone[sub] = value
            continue
        unexpected.append(key)
    problems = []
    if token is None:
        problems.append(f"missing action token (one of {', '.join(ACTION_TOKEN_KEYS)})")
    if not backbone:
        problems.append(f"no backbone keys (prefixes {', '.join(BACKBONE_PREFIXES)})")
    if not head:
        problems.append(f"no head keys (prefixes {', '.join(HEAD_PREFIXES)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: " + ", ".join(unexpected[:20]))
    if problems:
        raise ValueError(f"{source}: checkpoint layout not recognised:\n  - " + "\n  - ".join(problems))
    lora_modules = sorted({k.split(".lora_A.")[0] for k in backbone if ".lora_A." in k})
    ranks = {backbone[k].shape[0] for k in backbone if ".lora_A." in k and k.endswith(".weight")}
    if len(ranks) > 1:
        raise ValueError(f"{source}: LoRA adapters have mixed ranks {sorted(ranks)}")
    return SplitCheckpoint(
        backbone=backbone,
        action_token=token,
        head=head,
        ignored=ignored,
        lora_modules=lora_modules,
        lora_rank=ranks.pop() if ranks else None,
    )


def load_strict(module: nn.Module, sd: dict[str, torch.Tensor], what: str, source: str):
    """load_state_dict with an explicit, readable report of missing/unexpected/misshapen keys."""
    own = module.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shape = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}" for k in own if k in sd and sd[k].shape != own[k].shape]
    if missing or unexpected or shape:
        lines = []
        if missing:
            lines.append(f"missing {len(missing)}: " + ", ".join(missing[:25]))
        if unexpected:
            lines.append(f"unexpected {len(unexpected)}: " + ", ".join(unexpected[:25]))
        if shape:
            lines.append(f"shape mismatch {len(shape)}: " + "; ".join(shape[:10]))
        raise ValueError(f"{source}: {what} keys do not match the model:\n  - " + "\n  - ".join(lines))
    module.load_state_dict(sd, strict=True)


def wrap_lora(kosmos: nn.Module, lora_modules: list[str], rank: int, alpha: float):
    from peft import LoraConfig, get_peft_model

    # Exact module paths (regex anchored) so only what the checkpoint adapted gets adapters.
    pattern = "^(" + "|".join(re.escape(m) for m in lora_modules) + ")$"
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=pattern, lora_dropout=0.0, bias="none")
    return get_peft_model(kosmos, config)


# --------------------------------------------------------------------------
# Prompt layout and the reference (training-time) forward


@dataclasses.dataclass
class PromptLayout:
    variant: str
    prompt_ids: list[int]
    input_ids: list[int]  # fed to the exported backbone
    attention_mask: list[int]  # length = sequence length incl. action token
    image_position_mask: list[bool]  # reference path only, incl. action token position


def prompt_layout(variant: str, prompt_ids: list[int]) -> PromptLayout:
    L = len(prompt_ids)
    if L == 0:
        raise ValueError("empty prompt token ids")
    if variant == "erased_prompt":
        S = max(L, NUM_IMAGE_LATENTS)
        ids = prompt_ids + [0] * (S - L)
        mask = [1] * L + [0] * (S - L) + [1]
        img = [True] * NUM_IMAGE_LATENTS + [False] * (S - NUM_IMAGE_LATENTS) + [False]
    elif variant == "image_then_prompt":
        ids = list(prompt_ids)
        mask = [1] * (NUM_IMAGE_LATENTS + L + 1)
        img = [True] * NUM_IMAGE_LATENTS + [False] * (L + 1)
    else:
        raise ValueError(f"unknown backbone variant {variant!r}; known: {', '.join(VARIANTS)}")
    return PromptLayout(variant, list(prompt_ids), ids, mask, img)


@torch.no_grad()
def reference_feature(kosmos, action_token: torch.Tensor, pixel_values: torch.Tensor, layout: PromptLayout) -> torch.Tensor:
    """The training code's call (UPSTREAM §3 steps 1-4), through Hugging Face's
    own Kosmos-2 forward with inputs_embeds + image_embeds_position_mask."""
    D = action_token.numel()
    text = kosmos.text_model.model
    if layout.variant == "erased_prompt":
        ids = torch.tensor([layout.input_ids])
    else:
        ids = torch.tensor([[0] * NUM_IMAGE_LATENTS + layout.prompt_ids])
    embeds = text.embed_tokens(ids)
    embeds = torch.cat([embeds, action_token.reshape(1, 1, D).to(embeds.dtype)], dim=1)
    out = kosmos(
        pixel_values=pixel_values,
        inputs_embeds=embeds,
        attention_mask=torch.tensor([layout.attention_mask]),
        image_embeds_position_mask=torch.tensor([layout.image_position_mask]),
        output_hidden_states=True,
        use_cache=False,
    )
    return out.hidden_states[-1][:, -1]


class BackboneExport(nn.Module):
    """Export form of the same computation without boolean scatter: the image
    latents are concatenated in place of the positions they overwrite.
    Inputs: pixel_values [1,3,H,W] f32, input_ids [1,S] i64, attention_mask [1,T] i64.
    Output: feature [1, D]."""

    def __init__(self, kosmos, action_token: torch.Tensor, variant: str):
        super().__init__()
        self.kosmos = kosmos
        self.variant = variant
        self.action_token = nn.Parameter(action_token.detach().reshape(1, 1, -1).clone(), requires_grad=False)

    def forward(self, pixel_values, input_ids, attention_mask):
        latents = self.kosmos.get_image_features(pixel_values, return_dict=True).pooler_output
        tokens = self.kosmos.text_model.model.embed_tokens(input_ids)
        if self.variant == "erased_prompt":
            parts = [latents, tokens[:, NUM_IMAGE_LATENTS:], self.action_token]
        else:
            parts = [latents, tokens, self.action_token]
        seq = torch.cat(parts, dim=1)
        hidden = self.kosmos.text_model(inputs_embeds=seq, attention_mask=attention_mask, use_cache=False).last_hidden_state
        return hidden[:, -1]


def clip_image_stats():
    # CLIP normalisation used by the Kosmos-2 processor (UPSTREAM §3).
    return [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]


def fake_train_config(size: str, note: str) -> dict[str, Any]:
    """Training config (raw JSON form) of a randomly initialised model with the
    real layout: "full" has the sizes of the trained checkpoints (Kosmos-2
    1.66 B, LSTM 1024 x 4, chunk 10), "tiny" a test-sized one."""
    tiny = size == "tiny"
    raw_cfg = {
        "model": "kosmos",
        "window_size": 8,
        "fwd_pred_next_n": 10 if not tiny else 5,
        "act_head": {
            "type": "MobileVLALSTMDecoder",
            "hidden_size": 1024 if not tiny else 32,
            "num_layers": 4 if not tiny else 2,
            "action_dim": 2,
            "window_size": 8,
            "fwd_pred_next_n": 10 if not tiny else 5,
            "down_sample": "none",
            "latent": 1,
        },
        "train_setup": {"lora_enable": True, "lora_r": 32 if not tiny else 4, "lora_alpha": 16 if not tiny else 8, "lora_dropout": 0.05},
        "note": note,
    }
    if tiny:
        raw_cfg["vlm"] = {"kosmos2_config": tiny_kosmos2_overrides()}
    return raw_cfg


def tiny_kosmos2_overrides() -> dict[str, Any]:
    """A Kosmos-2 with the real layout (224 px, patch 14, 64 latents) but tiny widths."""
    return {
        "latent_query_num": NUM_IMAGE_LATENTS,
        "vision_config": {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 224,
            "patch_size": 14,
        },
        "text_config": {
            "vocab_size": 1000,
            "embed_dim": 64,
            "layers": 2,
            "ffn_dim": 128,
            "attention_heads": 4,
            "max_position_embeddings": 256,
        },
    }


def param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


