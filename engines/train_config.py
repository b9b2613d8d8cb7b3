"""The RoboVLMs-style training config (train_config.json) as the exporter,
the trainer and the fixtures read it. No torch here: CI tests it
(tests/python/test_train_config.py) without PyTorch.
"""

from __future__ import annotations

import dataclasses
from typing import Any

# The upstream head's defaults when a training config omits them
# (shared/design/UPSTREAM.md §3.1).
DEFAULT_HIDDEN_SIZE = 1024
DEFAULT_NUM_LAYERS = 4


@dataclasses.dataclass
class TrainConfig:
    window: int
    chunk: int
    action_dim: int
    hidden_size: int
    num_layers: int
    lora_r: int | None
    lora_alpha: float | None
    kosmos2_overrides: dict[str, Any] | None  # None = kosmos-2-patch14-224 sizes
    raw: dict[str, Any]


def _pick(d: dict, paths: list[str], default=None):
    for path in paths:
        cur: Any = d
        ok = True
        for part in path.split("."):
            if isinstance(cur, dict) and part in cur:
                cur = cur[part]
            else:
                ok = False
                break
        if ok and cur is not None:
            return cur
    return default


def parse_train_config(raw: dict[str, Any], source: str) -> TrainConfig:
    """Read the RoboVLMs-style training config (window_size, fwd_pred_next_n,
    act_head.{hidden_size,num_layers,action_dim}, train_setup.{lora_r,lora_alpha}).
    window and chunk are required; the head's size defaults to the upstream
    MobileVLALSTMDecoder's (hidden 1024, 4 layers) when the config omits it."""
    missing = []

    def need(paths, name):
        v = _pick(raw, paths)
        if v is None:
            missing.append(f"{name} (looked for {', '.join(paths)})")
        return v

    window = need(["window_size", "window", "act_head.window_size"], "window")
    chunk = need(["fwd_pred_next_n", "act_head.fwd_pred_next_n", "chunk_size"], "chunk")
    # Real training configs omit these (e.g. the chunk-10 "left" config has
    # no num_layers): the upstream head's defaults apply (UPSTREAM §3.1).
    hidden = _pick(raw, ["act_head.hidden_size", "hidden_size"], DEFAULT_HIDDEN_SIZE)
    layers = _pick(raw, ["act_head.num_layers", "num_layers"], DEFAULT_NUM_LAYERS)
    if missing:
        raise ValueError(f"{source}: training config lacks: " + "; ".join(missing))
    return TrainConfig(
        window=int(window),
        chunk=int(chunk),
        action_dim=int(_pick(raw, ["act_head.action_dim", "action_dim"], 2)),
        hidden_size=int(hidden),
        num_layers=int(layers),
        lora_r=_pick(raw, ["train_setup.lora_r", "lora_r"]),
        lora_alpha=_pick(raw, ["train_setup.lora_alpha", "lora_alpha"]),
        kosmos2_overrides=_pick(raw, ["vlm.kosmos2_config", "kosmos2_config"]),
        raw=raw,
    )
