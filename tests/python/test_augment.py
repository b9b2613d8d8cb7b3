#!/usr/bin/env python3
"""engines/augment.py (train.py --color-jitter) against Pillow, the
independent reference: torchvision's ColorJitter on PIL images is
ImageEnhance.Brightness / Contrast / Color and a hue shift of Pillow's HSV
image. A development test (augment.py runs on torch, which CI does not
install): .venv/bin/python tests/python/test_augment.py"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "engines"))
import augment  # noqa: E402


def frames(seed: int, n: int = 3, size: int = 48) -> np.ndarray:
    """Smooth colour fields plus noise and a few saturated and grey patches."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(n):
        base = np.stack([128 + 100 * np.sin(6 * xx + rng.uniform(0, 6)), 128 + 100 * np.cos(5 * yy + rng.uniform(0, 6)), 128 + 100 * np.sin(4 * (xx + yy))], -1)
        img = np.clip(base + rng.normal(0, 12, base.shape), 0, 255)
        img[:8, :8] = [255, 0, 0]
        img[:8, 8:16] = [0, 0, 0]
        img[:8, 16:24] = [255, 255, 255]
        img[8:16, :8] = [90, 90, 90]
        out.append(img.astype(np.uint8))
    return np.stack(out)


def pil_each(x: np.ndarray, fn) -> np.ndarray:
    return np.stack([np.asarray(fn(Image.fromarray(f))) for f in x])


def pil_hue(img: Image.Image, f: float) -> Image.Image:
    # torchvision.transforms.functional_pil.adjust_hue
    h, s, v = img.convert("HSV").split()
    np_h = np.array(h, dtype=np.uint8)
    np_h = (np_h.astype(np.int16) + int(round(f * 255))) % 256
    h = Image.fromarray(np_h.astype(np.uint8), "L")
    return Image.merge("HSV", (h, s, v)).convert("RGB")


def check(name, got, want, max_abs, mean_abs):
    diff = np.abs(got.astype(np.int32) - want.astype(np.int32))
    assert got.dtype == np.uint8 and got.shape == want.shape, (name, got.dtype, got.shape)
    assert diff.max() <= max_abs and diff.mean() <= mean_abs, f"{name}: max {diff.max()} mean {diff.mean():.3f} (allowed {max_abs}, {mean_abs})"
    return diff


def test_against_pillow():
    x = frames(0)
    moved = 0
    for f in (0.6, 0.85, 1.0, 1.2, 1.4):
        check(f"brightness {f}", augment.apply(x, [("brightness", f)]), pil_each(x, lambda im: ImageEnhance.Brightness(im).enhance(f)), 1, 0.5)
        check(f"contrast {f}", augment.apply(x, [("contrast", f)]), pil_each(x, lambda im: ImageEnhance.Contrast(im).enhance(f)), 1, 0.5)
        check(f"saturation {f}", augment.apply(x, [("saturation", f)]), pil_each(x, lambda im: ImageEnhance.Color(im).enhance(f)), 1, 0.5)
        moved += int(f != 1.0 and np.any(augment.apply(x, [("brightness", f)]) != x))
    assert moved == 4, "brightness factors other than 1 must change the frames"
    for f in (-0.1, -0.03, 0.0, 0.05, 0.1, 0.5):
        # Pillow quantises hue to 256 steps (one step moves a saturated channel ~6 levels) and S, V to bytes
        check(f"hue {f}", augment.apply(x, [("hue", f)]), pil_each(x, lambda im: pil_hue(im, f)), 10, 1.0)
        if f != 0.0:
            assert np.any(augment.apply(x, [("hue", f)]) != x), f"hue {f} changed nothing"


def test_hue_keeps_greys_and_wraps():
    x = frames(1)
    g = np.full_like(x, 77)
    assert np.array_equal(augment.apply(g, [("hue", 0.3)]), g), "a grey frame has no hue to rotate"
    # a full turn is the identity (up to rounding); a third of a turn maps red to green
    assert np.abs(augment.apply(x, [("hue", 0.5)]).astype(int) - augment.apply(x, [("hue", 0.25), ("hue", 0.25)]).astype(int)).max() <= 2
    red = np.zeros((1, 2, 2, 3), np.uint8)
    red[..., 0] = 255
    assert augment.apply(red, [("hue", 1 / 3)])[0, 0, 0].tolist() == [0, 255, 0]


def test_draw_and_apply():
    rng = np.random.default_rng(3)
    ranges = augment.parse_jitter("0.4,0.4,0.3,0.1")
    seen = set()
    for _ in range(200):
        ops = augment.draw(rng, ranges)
        assert sorted(n for n, _ in ops) == sorted(augment.OPS)
        seen.add(tuple(n for n, _ in ops))
        f = dict(ops)
        assert 0.6 <= f["brightness"] <= 1.4 and 0.6 <= f["contrast"] <= 1.4
        assert 0.7 <= f["saturation"] <= 1.3 and -0.1 <= f["hue"] <= 0.1
    assert len(seen) > 12, f"the order must be random ({len(seen)} orders seen)"
    assert [n for n, _ in augment.draw(rng, (0.4, 0.0, 0.0, 0.0))] == ["brightness"]
    # one draw, every frame of the window: apply = the ops in order, frame by frame alike
    x = frames(2)
    ops = augment.draw(np.random.default_rng(4), ranges)
    y = augment.apply(x, ops)
    for i in range(len(x)):
        assert np.array_equal(y[i], augment.apply(x[i : i + 1], ops)[0])
    assert not np.array_equal(y, x)
    assert np.array_equal(x, frames(2)), "apply must not modify its input"


def test_bad_arguments():
    for bad in ("0.4,0.4,0.3", "a,b,c,d", "1.5,0,0,0", "0,0,0,0.7", "-0.1,0,0,0"):
        try:
            augment.parse_jitter(bad)
        except ValueError as e:
            assert "--color-jitter" in str(e)
        else:
            raise AssertionError(f"accepted {bad!r}")
    for bad in (np.zeros((2, 4, 4, 3), np.float32), np.zeros((4, 4, 3), np.uint8), np.zeros((1, 4, 4, 4), np.uint8)):
        try:
            augment.apply(bad, [("brightness", 1.1)])
        except ValueError:
            pass
        else:
            raise AssertionError(f"accepted {bad.dtype} {bad.shape}")


if __name__ == "__main__":
    for name, fn in list(globals().items()):
        if name.startswith("test_") and callable(fn):
            fn()
            print("ok", name)
