"""Training-time photometric augmentation: the team's colour jitter.

RoboVLMs' Mobile-VLA loader (`robovlms/data/mobile_vla_h5_dataset.py`, its
"V3" option `use_color_jitter`) applies torchvision's
`ColorJitter(brightness=0.4, contrast=0.4, saturation=0.3, hue=0.1)` to each
stored frame as a PIL image (the stored array as is, so BGR taken for RGB)
before the resize. torchvision's PIL path is Pillow's `ImageEnhance`
(Brightness, Contrast, Color) and an HSV hue rotation, in a random order.

This module does the same operations vectorised in torch over a whole window
of frames (numpy in, numpy out), with two deliberate differences:
  - one draw per training sample (window): every frame of a window sees the
    same lighting change, as a real change of light would look; upstream's
    transform draws anew for every frame;
  - it runs on the cached 224x224 frames (after the squash), not before it:
    every operation is per pixel except contrast's mean grey, which the
    squash barely moves.

tests/python/test_augment.py checks each operation against Pillow itself
(a development test: it needs torch, so CI does not run it).
"""

from __future__ import annotations

import numpy as np
import torch

# Pillow's "L" conversion (ITU-R 601-2 luma), which ImageEnhance.Contrast and
# ImageEnhance.Color use for their grey image.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

OPS = ("brightness", "contrast", "saturation", "hue")


def parse_jitter(text: str) -> tuple[float, float, float, float]:
    """'B,C,S,H' -> four ranges as torchvision's ColorJitter takes them."""
    parts = text.split(",")
    if len(parts) != 4:
        raise ValueError(f"--color-jitter wants B,C,S,H (four numbers), got {text!r}")
    try:
        b, c, s, h = (float(x) for x in parts)
    except ValueError:
        raise ValueError(f"--color-jitter wants B,C,S,H (four numbers), got {text!r}") from None
    for name, v in zip(OPS, (b, c, s)):
        if not (0.0 <= v <= 1.0):
            raise ValueError(f"--color-jitter {name} must be in [0, 1], got {v}")
    if not (0.0 <= h <= 0.5):
        raise ValueError(f"--color-jitter hue must be in [0, 0.5], got {h}")
    return b, c, s, h


def draw(rng: np.random.Generator, ranges: tuple[float, float, float, float]) -> list[tuple[str, float]]:
    """One ColorJitter draw: factors uniform in [1-x, 1+x] (hue in [-h, h]),
    applied in a random order; ops with a zero range are left out."""
    b, c, s, h = ranges
    factors = {
        "brightness": rng.uniform(max(0.0, 1 - b), 1 + b),
        "contrast": rng.uniform(max(0.0, 1 - c), 1 + c),
        "saturation": rng.uniform(max(0.0, 1 - s), 1 + s),
        "hue": rng.uniform(-h, h),
    }
    order = rng.permutation(4)
    active = {"brightness": b > 0, "contrast": c > 0, "saturation": s > 0, "hue": h > 0}
    return [(OPS[i], float(factors[OPS[i]])) for i in order if active[OPS[i]]]


def _round(x):
    # Pillow's enhancers round each result to a byte
    return x.round_().clamp_(0.0, 255.0)


def _grey(x):
    # Pillow "L": luma of [N, 3, H, W] as [N, 1, H, W], rounded to a byte
    a, b, c = (float(v) for v in LUMA)
    return (x[:, 0:1] * a).add_(x[:, 1:2], alpha=b).add_(x[:, 2:3], alpha=c).round_()


def brightness(x, f: float):
    """ImageEnhance.Brightness: blend with black. x: float [N, 3, H, W] in 0..255."""
    return _round(x * f)


def contrast(x, f: float):
    """ImageEnhance.Contrast: blend with the frame's mean grey (one per frame)."""
    mean = _grey(x).mean(dim=(1, 2, 3), keepdim=True).round_()
    return _round(mean + f * (x - mean))


def saturation(x, f: float):
    """ImageEnhance.Color: blend with the frame's grey image."""
    g = _grey(x)
    return _round(g + f * (x - g))


def hue(x, f: float):
    """torchvision adjust_hue: rotate the HSV hue by f turns (f in [-0.5, 0.5]),
    keeping saturation and value."""
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    mx = torch.maximum(torch.maximum(r, g), b)
    d = mx - torch.minimum(torch.minimum(r, g), b)
    inv = torch.where(d > 0, 1.0 / d.clamp(min=1e-6), torch.zeros_like(d))
    # hue in sextants [0, 6): which channel is the max picks the formula
    h6 = (g - b) * inv
    h6 = torch.where(mx == g, 2.0 + (b - r) * inv, h6)
    h6 = torch.where((mx == b) & (mx != g) & (mx != r), 4.0 + (r - g) * inv, h6)
    h6 = torch.remainder(h6 + 6.0 * (f % 1.0), 6.0)
    # back from (h, s, v) with v = mx and chroma d: channel = v - d * clip(min(k, 4 - k), 0, 1),
    # k = (n + h6) mod 6 with n = 5, 3, 1 for R, G, B
    out = []
    for n in (5.0, 3.0, 1.0):
        k = h6 + n
        k = torch.where(k >= 6.0, k - 6.0, k)
        k = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
        out.append(mx - d * k)
    return _round(torch.stack(out, dim=1))


def apply(frames: np.ndarray, ops: list[tuple[str, float]]) -> np.ndarray:
    """frames [N, H, W, 3] uint8 (channel order as stored), the same draw on
    each; returns new uint8 frames (the input is not modified)."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"colour jitter wants uint8 [N, H, W, 3] frames, got {frames.dtype} {frames.shape}")
    fn = {"brightness": brightness, "contrast": contrast, "saturation": saturation, "hue": hue}
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().contiguous()
    for name, f in ops:
        x = fn[name](x, f)
    return x.to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
