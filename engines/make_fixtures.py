#!/usr/bin/env python3
"""Regenerate everything under tests/fixtures/ (the only script that writes there).

  python engines/make_fixtures.py            # from the repository root

Needs the exporter's Python environment (engines/requirements.txt: torch,
transformers, peft, onnx, onnxruntime, h5py, pillow, numpy). Rust tests never
run Python: they read what this writes.

Writes:
  tiny_model/                 backbone.onnx, head.onnx, model.json: a tiny
                              randomly initialised Mobile-VLA checkpoint with the
                              real state-dict layout, exported by export.py
  tiny_model_forward/         the same tiny layout with a head biased to drive forward (HIL tests)
  preprocess/                 Pillow references for the CPU preprocessing twin on
                              1280x720 and 640x480 pattern frames
  episodes/                   two episodes written by h5py, one per layout of
                              UPSTREAM §1 (flat BGR 720p; observations/ RGB 480p)
  capture/                    OpenCV references for YUYV and NV12 conversion and MJPEG decoding
  reference/                  per-episode PyTorch outputs (features, chunks) and
                              the eval metrics computed in Python
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
sys.path.insert(0, str(ROOT / "engines"))

if "--only-capture" not in sys.argv:
    # PyTorch and the model code only for the model fixtures: the capture
    # references need OpenCV, NumPy, h5py and Pillow alone.
    import torch  # noqa: E402
    import mobile_vla as mv  # noqa: E402

# Token ids for the tiny model's prompt (vocabulary 1000): a stand-in for the
# Kosmos-2 tokenizer output, 16 tokens long, BOS 0 ... EOS 2.
TINY_TOKEN_IDS = [0, 106, 24, 12, 37, 88, 91, 300, 4, 512, 77, 8, 9, 10, 11, 2]
DIRECTION_THRESHOLD = 0.3


def pattern_frame(width: int, height: int) -> np.ndarray:
    """Deterministic high-frequency test frame; src/ tests build the same one
    (tests/common/mod.rs `pattern_frame`)."""
    y, x, c = np.meshgrid(np.arange(height, dtype=np.uint64), np.arange(width, dtype=np.uint64), np.arange(3, dtype=np.uint64), indexing="ij")
    noise = (((x * np.uint64(2654435761)) ^ (y * np.uint64(40503)) ^ (c * np.uint64(9973))) >> np.uint64(5)) & np.uint64(127)
    ramp = (x + np.uint64(2) * y + np.uint64(50) * c) % np.uint64(128)
    return (noise + ramp).astype(np.uint8)


def pillow_preprocess(frame: np.ndarray, frame_order: str, meta: dict, rotate_deg: int):
    """The training loader's preprocessing, independently: numpy rotation,
    PIL.Image.resize(BILINEAR), /255, channel order, CLIP-style normalisation."""
    img = meta["image"]
    if rotate_deg == 180:
        frame = frame[::-1, ::-1]
    resized = np.asarray(Image.fromarray(np.ascontiguousarray(frame)).resize((img["width"], img["height"]), Image.BILINEAR))
    arr = resized.astype(np.float32) / np.float32(255.0)
    if frame_order != img["channel_order"]:
        arr = arr[..., ::-1]
    arr = (arr - np.array(img["mean"], np.float32)) / np.array(img["std"], np.float32)
    return resized, np.ascontiguousarray(arr.transpose(2, 0, 1)[None]).astype(np.float32)


def scene_frames(n: int, width: int, height: int, seed: int) -> np.ndarray:
    """Smooth synthetic frames (compress well under gzip): a floor gradient, a
    box and a bottle that drift as the robot 'moves'."""
    rng = np.random.default_rng(seed)
    frames = np.zeros((n, height, width, 3), np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    for i in range(n):
        f = np.zeros((height, width, 3), np.float32)
        f[..., 0] = 90 + 60 * yy / height
        f[..., 1] = 100 + 40 * xx / width
        f[..., 2] = 120 + 30 * (yy + xx) / (height + width)
        bx = int(width * (0.3 + 0.03 * i)) + int(rng.integers(-3, 4))
        by = int(height * 0.55)
        f[by : by + height // 5, bx : bx + width // 6] = (40, 70, 160)  # box
        cx = int(width * (0.7 - 0.02 * i))
        f[int(height * 0.35) : int(height * 0.6), cx : cx + width // 25] = (30, 160, 60)  # bottle
        frames[i] = np.clip(f, 0, 255).astype(np.uint8)
    return frames


def write_flat_episode(path: Path):
    # 1 start + 9 key presses + 2 stops, 720p, stored BGR (UPSTREAM §1 layout).
    n = 12
    frames = scene_frames(n, 1280, 720, seed=1)
    keys = [(1.15, 0.0), (1.15, 1.15), (1.15, 1.15), (0.0, 1.15), (1.15, 0.0), (1.15, -1.15), (1.15, 0.0), (1.15, 0.0), (0.0, -1.15)]
    actions = [(0.0, 0.0, 0.0)] + [(x, y, 0.0) for x, y in keys] + [(0.0, 0.0, 0.0)] * 2
    events = ["episode_start"] + ["start_action"] * len(keys) + ["stop_action"] * 2
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=frames, compression="gzip", chunks=(1, 720, 1280, 3))
        f.create_dataset("actions", data=np.array(actions, np.float32), compression="gzip")
        f.create_dataset("action_event_types", data=np.array(events, dtype=object), dtype=h5py.string_dtype("utf-8"))
        instr = "Navigate around obstacles and reach the front of the beverage bottle on the left"
        f.create_dataset("language_instruction", data=np.array([instr.encode("utf-8")], dtype="S256"))
        f.attrs["episode_name"] = path.stem
        f.attrs["total_duration"] = 9.1
        f.attrs["num_frames"] = n
        f.attrs["action_chunk_size"] = 8
        f.attrs["obstacle_layout_type"] = "hori"
        f.attrs["time_period"] = "morning"
        f.attrs["collection_datetime"] = "2025-01-01T12:00:00"
        f.attrs["collection_hour"] = 12
        f.attrs["collection_minute"] = 0


def write_observations_episode(path: Path):
    # Later collector: observations/images stored RGB, 480x640, 5 STOP frames appended.
    moves = 5
    n = 1 + moves + 5
    frames_bgr = scene_frames(n, 640, 480, seed=2)
    frames = frames_bgr[..., ::-1].copy()  # stored RGB
    keys = [(1.15, -1.15), (1.15, 0.0), (0.0, -1.15), (1.15, 0.0), (-1.15, 0.0)]
    actions = [(0.0, 0.0, 0.0)] + [(x, y, 0.0) for x, y in keys] + [(0.0, 0.0, 0.0)] * 5
    events = ["episode_start"] + ["start_action"] * moves + ["stop_action"] * 5
    with h5py.File(path, "w") as f:
        obs = f.create_group("observations")
        obs.create_dataset("images", data=frames, compression="gzip", chunks=(1, 480, 640, 3))
        f.create_dataset("actions", data=np.array(actions, np.float32))
        f.create_dataset("action_event_types", data=np.array(events, dtype=object), dtype=h5py.string_dtype("utf-8"))
        f.attrs["episode_name"] = path.stem
        f.attrs["scenario"] = "v3_right"
        f.attrs["pattern"] = "core"
        f.attrs["distance"] = "medium"
        f.attrs["end_pos"] = "right"
        f.attrs["total_duration"] = 6.4


def direction_class(x, y):
    q = lambda v: 1 if v > DIRECTION_THRESHOLD else (-1 if v < -DIRECTION_THRESHOLD else 0)  # noqa: E731
    return (q(x), q(y))


class Sums:
    def __init__(self):
        self.count, self.sq_x, self.sq_y, self.agree = 0, 0.0, 0.0, 0

    def add(self, pred, truth):
        dx, dy = float(pred[0]) - float(truth[0]), float(pred[1]) - float(truth[1])
        self.count += 1
        self.sq_x += dx * dx
        self.sq_y += dy * dy
        self.agree += direction_class(pred[0], pred[1]) == direction_class(truth[0], truth[1])

    def metrics(self):
        n = self.count
        return {
            "count": n,
            "rmse_x": (self.sq_x / n) ** 0.5,
            "rmse_y": (self.sq_y / n) ** 0.5,
            "rmse_all": ((self.sq_x + self.sq_y) / (2 * n)) ** 0.5,
            "direction_agreement": self.agree / n,
        }


def yuyv_pattern(width: int, height: int) -> np.ndarray:
    """Deterministic YUYV bytes covering the full 0..255 range of Y, U and V;
    tests/common/mod.rs `yuyv_pattern` builds the same."""
    i = np.arange(width * height * 2, dtype=np.uint64)
    return (((i * np.uint64(2654435761)) >> np.uint64(7)) & np.uint64(255)).astype(np.uint8)


def nv12_pattern(width: int, height: int) -> np.ndarray:
    """Deterministic NV12 bytes (Y plane then UV plane); tests/common/mod.rs
    `nv12_pattern` builds the same."""
    i = np.arange(width * height * 3 // 2, dtype=np.uint64)
    return (((i * np.uint64(2246822519)) >> np.uint64(9)) & np.uint64(255)).astype(np.uint8)


def capture_fixtures():
    """OpenCV (cv2.cvtColor / cv2.imdecode) references for the camera pixel formats."""
    import cv2

    cap_dir = FIX / "capture"
    shutil.rmtree(cap_dir, ignore_errors=True)
    cap_dir.mkdir(parents=True)
    w, h = 320, 240
    yuyv = yuyv_pattern(w, h)
    bgr = cv2.cvtColor(yuyv.reshape(h, w, 2), cv2.COLOR_YUV2BGR_YUYV)
    np.save(cap_dir / "yuyv_320x240_opencv_bgr.npy", bgr)
    nv12 = nv12_pattern(w, h)
    bgr = cv2.cvtColor(nv12.reshape(h * 3 // 2, w), cv2.COLOR_YUV2BGR_NV12)
    np.save(cap_dir / "nv12_320x240_opencv_bgr.npy", bgr)
    scene = scene_frames(1, w, h, seed=3)[0]
    ok, jpg = cv2.imencode(".jpg", scene, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    (cap_dir / "scene_320x240.jpg").write_bytes(jpg.tobytes())
    np.save(cap_dir / "scene_320x240_opencv_bgr.npy", cv2.imdecode(jpg, cv2.IMREAD_COLOR))
    (cap_dir / "versions.json").write_text(json.dumps({"opencv": cv2.__version__}) + "\n")


def main():
    if "--only-capture" in sys.argv:
        capture_fixtures()
        return
    capture_fixtures()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        py = sys.executable
        subprocess.run([py, str(ROOT / "engines" / "export.py"), "make-fake", "--size", "tiny", "--seed", "0", "--out", str(tmp / "ck")], check=True)
        model_dir = FIX / "tiny_model"
        shutil.rmtree(model_dir, ignore_errors=True)
        subprocess.run(
            [py, str(ROOT / "engines" / "export.py"), "export", "--checkpoint", str(tmp / "ck" / "checkpoint.ckpt"), "--config", str(tmp / "ck" / "train_config.json"), "--token-ids", ",".join(map(str, TINY_TOKEN_IDS)), "--out", str(model_dir)],
            check=True,
        )
        meta = json.loads((model_dir / "model.json").read_text())

        # A second tiny model whose chunks saturate toward "forward": the
        # hardware-in-the-loop tests need commands that move the wheels.
        subprocess.run([py, str(ROOT / "engines" / "export.py"), "make-fake", "--size", "tiny", "--seed", "1", "--head-bias", "3,0", "--out", str(tmp / "ck_fwd")], check=True)
        fwd_dir = FIX / "tiny_model_forward"
        shutil.rmtree(fwd_dir, ignore_errors=True)
        subprocess.run(
            [py, str(ROOT / "engines" / "export.py"), "export", "--checkpoint", str(tmp / "ck_fwd" / "checkpoint.ckpt"), "--config", str(tmp / "ck_fwd" / "train_config.json"), "--token-ids", ",".join(map(str, TINY_TOKEN_IDS)), "--out", str(fwd_dir)],
            check=True,
        )

        # Rebuild the PyTorch reference (unmerged LoRA, as trained) from the same checkpoint.
        cfg = mv.parse_train_config(json.loads((tmp / "ck" / "train_config.json").read_text()), "train_config.json")
        split = mv.split_checkpoint(mv.load_state_dict(str(tmp / "ck" / "checkpoint.ckpt")), "checkpoint")
        kosmos = mv.build_kosmos2(cfg)
        peft_model = mv.wrap_lora(kosmos, split.lora_modules, split.lora_rank, float(cfg.lora_alpha))
        mv.load_strict(peft_model.base_model.model, split.backbone, "backbone", "checkpoint")
        backbone = peft_model.base_model.model.eval()
        head = mv.PolicyHead(kosmos.config.text_config.embed_dim, cfg).eval()
        mv.load_strict(head, split.head, "head", "checkpoint")
        layout = mv.prompt_layout(meta["variant"], meta["prompt"]["token_ids"])

    # ---- preprocessing references
    pre_dir = FIX / "preprocess"
    shutil.rmtree(pre_dir, ignore_errors=True)
    pre_dir.mkdir(parents=True)
    cases = []
    for (w, h) in [(1280, 720), (640, 480)]:
        frame = pattern_frame(w, h)
        for frame_order, rot in [("bgr", 0), ("rgb", 180)]:
            name = f"pattern_{w}x{h}_{frame_order}_rot{rot}"
            resized, tensor = pillow_preprocess(frame, frame_order, meta, rot)
            np.save(pre_dir / f"{name}_resized_u8.npy", resized)
            np.save(pre_dir / f"{name}_tensor.npy", tensor)
            cases.append({"name": name, "width": w, "height": h, "frame_order": frame_order, "rotate_deg": rot})
    import PIL

    (pre_dir / "cases.json").write_text(json.dumps({"pillow": PIL.__version__, "numpy": np.__version__, "cases": cases}, indent=2) + "\n")

    # ---- episodes
    ep_dir = FIX / "episodes"
    shutil.rmtree(ep_dir, ignore_errors=True)
    ep_dir.mkdir(parents=True)
    write_flat_episode(ep_dir / "episode_20250101_120000_1box_hori_left_core_medium.h5")
    write_observations_episode(ep_dir / "episode_20250102_093000_v3_right.h5")

    # ---- PyTorch references over the episodes, in `mvla eval` order (sorted paths)
    ref_dir = FIX / "reference"
    shutil.rmtree(ref_dir, ignore_errors=True)
    ref_dir.mkdir(parents=True)
    token = split.action_token
    stream = mv.StreamingHeadReference(head, cfg.window)
    summary = {"episodes": []}
    all_first, all_chunk = Sums(), Sums()
    for path in sorted(ep_dir.glob("*.h5")):
        with h5py.File(path, "r") as f:
            if "images" in f:
                frames, order = f["images"][()], "bgr"
            else:
                frames, order = f["observations/images"][()], "rgb"
            actions = f["actions"][()]
        stream.reset()
        feats, chunks, tensors = [], [], []
        first, chunk = Sums(), Sums()
        for i, frame in enumerate(frames):
            _, tensor = pillow_preprocess(frame, order, meta, 0)
            tensors.append(tensor)
            feat = mv.reference_feature(backbone, token, torch.from_numpy(tensor), layout)
            out = stream.step(feat)[0].numpy()
            feats.append(feat[0].numpy())
            chunks.append(out)
            for j in range(cfg.chunk):
                if i + j >= len(actions):
                    break
                truth = np.clip(actions[i + j, :2], -1.0, 1.0)
                chunk.add(out[j], truth)
                all_chunk.add(out[j], truth)
                if j == 0:
                    first.add(out[j], truth)
                    all_first.add(out[j], truth)
        stem = path.stem
        np.save(ref_dir / f"{stem}_features.npy", np.stack(feats).astype(np.float32))
        np.save(ref_dir / f"{stem}_chunks.npy", np.stack(chunks).astype(np.float32))
        np.save(ref_dir / f"{stem}_frame0_tensor.npy", tensors[0])
        summary["episodes"].append({"file": path.name, "frames": len(frames), "channel_order": order, "first": first.metrics(), "chunk": chunk.metrics()})
    summary["overall_first"] = all_first.metrics()
    summary["overall_chunk"] = all_chunk.metrics()
    summary["note"] = "PyTorch (peft, unmerged LoRA) + Pillow + h5py references for tests/fixtures/tiny_model; regenerate with engines/make_fixtures.py"
    (ref_dir / "eval.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"fixtures written under {FIX.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
