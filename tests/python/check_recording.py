#!/usr/bin/env python3
"""Check `mvla run --record` output with h5py (an independent HDF5 reader).

usage: check_recording.py RECORD_DIR SOURCE_EPISODE.h5

The first recorded episode of a replay of SOURCE_EPISODE must hold exactly its
frames, in order, in the training format of UPSTREAM §1.
"""

import json
import sys
from pathlib import Path

import h5py
import numpy as np


def main():
    rec_dir, source = Path(sys.argv[1]), Path(sys.argv[2])
    # The first file has no numeric suffix ("..._session.h5" sorts before "..._session_1.h5").
    episodes = sorted(rec_dir.glob("episode_*.h5"))
    assert episodes, f"no episode in {rec_dir}"
    path = episodes[0]
    with h5py.File(path, "r") as f, h5py.File(source, "r") as src:
        images, actions = f["images"], f["actions"]
        events = [e.decode() if isinstance(e, bytes) else e for e in f["action_event_types"][()]]
        n = images.shape[0]
        assert n >= 2, f"{path}: only {n} rows"
        assert images.dtype == np.uint8 and images.shape[1:] == src["images"].shape[1:], images.shape
        assert actions.shape == (n, 3) and actions.dtype == np.float32, actions.shape
        assert len(events) == n and events[0] == "episode_start", events
        assert set(events[1:]) <= {"start_action", "stop_action"}, events
        assert np.all(actions[0] == 0), actions[0]
        assert f.attrs["num_frames"] == n, (f.attrs["num_frames"], n)
        assert f.attrs["channel_order"] == "bgr" and images.attrs["channel_order"] == "bgr"
        assert f.attrs["episode_name"] == path.stem, f.attrs["episode_name"]
        instr = f["language_instruction"][0]
        instr = instr.decode() if isinstance(instr, bytes) else instr
        assert instr.startswith("Navigate around obstacles"), instr
        for i in range(n):
            assert np.array_equal(images[i], src["images"][i]), f"row {i} differs from the source frame"
        # Nonzero commanded actions are marked start_action, zero ones stop_action.
        for a, e in zip(actions[1:], events[1:]):
            assert (e == "start_action") == bool(a[0] != 0 or a[1] != 0), (a, e)
    logs = list(rec_dir.glob("session_*.jsonl"))
    assert len(logs) == 1, logs
    lines = [json.loads(l) for l in logs[0].read_text().splitlines()]
    assert any(l["type"] == "inference" for l in lines), lines[:2]
    print(f"check_recording: {path.name}: {n} rows match {source.name}; session log {len(lines)} lines: ok")


if __name__ == "__main__":
    main()
