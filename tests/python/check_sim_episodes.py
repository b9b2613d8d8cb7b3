#!/usr/bin/env python3
"""Check `mvla sim collect` output with h5py (an independent HDF5 reader).

usage: check_sim_episodes.py DIR N_EXPECTED

Every episode must be in the training format of UPSTREAM §1: images
(N, H, W, 3) uint8, actions (N, 3) float32, action_event_types strings,
language_instruction, the root attributes; row 0 episode_start with a zero
action, then start_action rows with teleop keys (components 0 or ±1.15, no
spin) or stop_action rows with zero actions; frames not blank and changing.
"""

import sys
from pathlib import Path

import h5py
import numpy as np

KEY_VALUES = {0.0, 1.15, -1.15}


def main():
    folder, expected = Path(sys.argv[1]), int(sys.argv[2])
    files = sorted(folder.glob("episode_*.h5"))
    assert len(files) == expected, f"{len(files)} episodes in {folder}, expected {expected}"
    for path in files:
        scenario = path.stem.split("_", 3)[3]
        with h5py.File(path, "r") as f:
            images, actions = f["images"], f["actions"][()]
            events = [e.decode() if isinstance(e, bytes) else e for e in f["action_event_types"][()]]
            n = images.shape[0]
            assert images.dtype == np.uint8 and images.ndim == 4 and images.shape[3] == 3, images.shape
            assert actions.shape == (n, 3) and actions.dtype == np.float32, actions.shape
            assert len(events) == n and n == int(f.attrs["num_frames"]), (len(events), n)
            assert events[0] == "episode_start" and not actions[0].any(), (events[0], actions[0])
            for ev, a in zip(events[1:], actions[1:]):
                assert ev in ("start_action", "stop_action"), ev
                assert {round(float(v), 5) for v in a} <= KEY_VALUES, a
                assert a[2] == 0.0, a
                assert (ev == "stop_action") == (not a.any()), (ev, a)
            instr = f["language_instruction"][0]
            instr = instr.decode() if isinstance(instr, bytes) else str(instr)
            assert "Navigate" in instr, instr
            for key in ("episode_name", "time_period", "collection_datetime", "scenario"):
                assert key in f.attrs, f"{path}: attribute {key} missing"
            assert f.attrs["scenario"] == scenario, (f.attrs["scenario"], scenario)
            assert f.attrs["time_period"] in ("dawn", "morning", "evening", "night")
            assert int(f.attrs["action_chunk_size"]) == 8
            frames = images[()].astype(np.int16)
            assert frames.mean() > 30, f"{path}: frames nearly black"
            assert np.abs(np.diff(frames, axis=0)).mean() > 1.0, f"{path}: frames do not change"
            stamps = f.attrs["total_duration"]
            assert 0.7 * (n - 1) <= stamps <= 0.9 * n, stamps
        print(f"{path.name}: {n} rows, {images.shape[2]}x{images.shape[1]}, events ok")


if __name__ == "__main__":
    main()
