"""engines/episode_cache.py (torch-free): the frame cache of engines/train.py
never serves one episode file's entry for another. Run by .ci/test."""

import os
import pathlib
import sys
import tempfile
import unittest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "engines"))
from episode_cache import cache_name  # noqa: E402

STEM = "episode_20260101_132000_1box_hori_left_core_close"


class EpisodeCacheTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = pathlib.Path(self.tmp.name)

    def tearDown(self):
        self.tmp.cleanup()

    def write(self, rel: str, data: bytes) -> pathlib.Path:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        return p

    def test_same_folder_name_and_stem_elsewhere_is_another_entry(self):
        # Regression: the key was folder name + stem, so data/c800/X and
        # dz/c800/X (the same seeds recollected with another expert) shared one.
        a = self.write(f"data/c800/{STEM}.h5", b"a" * 10)
        b = self.write(f"dz/c800/{STEM}.h5", b"a" * 10)
        self.assertNotEqual(cache_name(str(a)), cache_name(str(b)))
        self.assertTrue(cache_name(str(a)).startswith(f"c800__{STEM}__"))

    def test_a_rewritten_file_is_another_entry(self):
        p = self.write(f"data/c800/{STEM}.h5", b"a" * 10)
        before = cache_name(str(p))
        self.assertEqual(before, cache_name(str(p)))
        p.write_bytes(b"b" * 11)
        self.assertNotEqual(before, cache_name(str(p)))
        # Same size, only the modification time moved: another entry too.
        rewritten = cache_name(str(p))
        st = p.stat()
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
        self.assertNotEqual(rewritten, cache_name(str(p)))

    def test_a_relative_and_an_absolute_path_to_one_file_agree(self):
        p = self.write(f"data/val/{STEM}.h5", b"v")
        cwd = os.getcwd()
        try:
            os.chdir(self.root)
            self.assertEqual(cache_name(f"data/val/{STEM}.h5"), cache_name(str(p)))
        finally:
            os.chdir(cwd)


if __name__ == "__main__":
    unittest.main()
