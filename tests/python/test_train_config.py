"""engines/train_config.py (torch-free): the training config as the exporter
reads it. Run by .ci/test with the CI venv's Python."""

import pathlib
import sys
import unittest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "engines"))
import train_config as tc  # noqa: E402


class TrainConfigTest(unittest.TestCase):
    def test_a_real_config_without_head_sizes_gets_the_upstream_defaults(self):
        # The shape of the team's chunk-10 "left" config: no num_layers, no hidden_size.
        raw = {"window_size": 8, "fwd_pred_next_n": 10, "act_head": {"action_dim": 2},
               "train_setup": {"lora_r": 32, "lora_alpha": 16}}
        cfg = tc.parse_train_config(raw, "left.json")
        self.assertEqual((cfg.hidden_size, cfg.num_layers), (1024, 4))
        self.assertEqual((cfg.window, cfg.chunk, cfg.action_dim), (8, 10, 2))
        self.assertEqual((cfg.lora_r, cfg.lora_alpha), (32, 16))

    def test_given_head_sizes_win_over_the_defaults(self):
        raw = {"window_size": 8, "fwd_pred_next_n": 5,
               "act_head": {"hidden_size": 512, "num_layers": 3}}
        cfg = tc.parse_train_config(raw, "c.json")
        self.assertEqual((cfg.hidden_size, cfg.num_layers), (512, 3))

    def test_window_and_chunk_are_still_required(self):
        with self.assertRaises(ValueError) as e:
            tc.parse_train_config({"act_head": {}}, "bad.json")
        self.assertIn("window", str(e.exception))
        self.assertIn("chunk", str(e.exception))


if __name__ == "__main__":
    unittest.main()
