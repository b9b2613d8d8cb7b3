"""Names of the 224x224 frame cache files of engines/train.py (torch-free, so
.ci/test can check them with the CI venv's Python)."""

import hashlib
from pathlib import Path


def cache_name(path: str) -> str:
    """The cache file of one episode: its folder and stem (readable), plus a
    digest of its absolute path, size and modification time, so a cache entry
    is never read for another file. (The folder and stem alone collided: two
    collections written to folders of the same name elsewhere, e.g. the same
    seeds recollected with another expert, silently read each other's frames
    and labels; and a file rewritten in place kept its stale entry.)"""
    p = Path(path).resolve()
    st = p.stat()
    digest = hashlib.sha256(f"{p}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:16]
    return f"{p.parent.name}__{p.stem}__{digest}.npz"
