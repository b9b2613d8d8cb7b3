"""engines/onnx_weights.py: recovering training weights from an exported model
directory (train.py --init-from). Needs PyTorch, so CI does not run it (its
venv has none); run it with the training venv:

    .venv/bin/python tests/python/test_onnx_weights.py

The reference is onnxruntime on the committed model's own ONNX files."""

import json
import pathlib
import shutil
import sys
import tempfile
import unittest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "engines"))
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402
from onnx import numpy_helper  # noqa: E402

import mobile_vla as mv  # noqa: E402
import onnx_weights as ow  # noqa: E402
import train  # noqa: E402

MODEL = ROOT / "models" / "mobile_vla_sim"


def fresh_model(seed=0):
    raw = json.loads((MODEL / "train_config.json").read_text())
    cfg = mv.parse_train_config(raw, "train_config.json")
    layout = mv.prompt_layout("erased_prompt", raw["prompt"]["token_ids"])
    torch.manual_seed(seed)
    return train.MobileVLA(cfg, layout, pos_std=1.0, attn_sharpness=3)


class OnnxWeightsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        torch.set_num_threads(1)

    def test_committed_model_is_recovered_within_the_export_tolerances(self):
        m = fresh_model()
        before = m.act_head.rnn.weight_ih_l0.detach().clone()
        rep = ow.load_into(m, str(MODEL), log=lambda s: None)
        self.assertLess(rep["feature_max_abs"], ow.FEATURE_TOL)
        self.assertLess(rep["chunk_max_abs"], ow.CHUNK_TOL)
        self.assertFalse(torch.equal(before, m.act_head.rnn.weight_ih_l0))
        self.assertTrue(m.training, "load_into must leave the model in training mode")

    def test_a_weight_changed_in_the_file_is_the_weight_recovered(self):
        # a MatMul-folded Linear (stored transposed): element [i, j] of the
        # initializer is weight[j, i]
        with tempfile.TemporaryDirectory() as tmp:
            d = self.copy_model(tmp)
            g = onnx.load(str(d / "backbone.onnx"))
            node = next(n for n in g.graph.node if n.name == "/text_model/model/layers.1/ffn/fc1/MatMul")
            init = next(i for i in g.graph.initializer if i.name in node.input)
            a = numpy_helper.to_array(init).copy()
            self.assertEqual(a.shape, (128, 256))
            a[3, 200] += 0.5
            init.CopyFrom(numpy_helper.from_array(a, init.name))
            onnx.save(g, str(d / "backbone.onnx"))
            m, ref = fresh_model(), fresh_model()
            ow.load_into(m, str(d), log=lambda s: None)
            ow.load_into(ref, str(MODEL), log=lambda s: None)
            diff = m.backbone.text_model.model.layers[1].ffn.fc1.weight - ref.backbone.text_model.model.layers[1].ffn.fc1.weight
            self.assertAlmostEqual(float(diff.detach()[200, 3]), 0.5, places=5)
            self.assertEqual(int((diff.detach() != 0).sum()), 1)

    def test_a_wrong_lstm_gate_order_is_caught_by_the_gate(self):
        orig = ow._lstm_torch_order
        try:
            ow._lstm_torch_order = lambda a, h: a  # ONNX order taken as PyTorch's
            with self.assertRaises(ow.RecoverError) as e:
                ow.load_into(fresh_model(), str(MODEL), log=lambda s: None)
            self.assertIn("do not reproduce", str(e.exception))
        finally:
            ow._lstm_torch_order = orig

    def test_a_missing_matmul_mapping_is_caught_by_the_gate(self):
        m = fresh_model()
        orig = ow.backbone_weights

        def drop_one(path, wanted):
            out, token, absent = orig(path, wanted)
            k = "vision_model.model.encoder.layers.0.self_attn.q_proj.weight"
            del out[k]
            return out, token, absent + [k]

        try:
            ow.backbone_weights = drop_one
            with self.assertRaises(ow.RecoverError) as e:
                ow.load_into(m, str(MODEL), log=lambda s: None)
            self.assertIn("no weight for 1 backbone parameter", str(e.exception))
            self.assertIn("q_proj.weight", str(e.exception))
        finally:
            ow.backbone_weights = orig

    def copy_model(self, tmp):
        d = pathlib.Path(tmp) / "m"
        shutil.copytree(MODEL, d)
        return d

    def test_unreadable_model_json_names_the_file(self):
        with tempfile.TemporaryDirectory() as tmp:
            d = self.copy_model(tmp)
            for text in ("{not json", "[]"):
                (d / "model.json").write_text(text)
                with self.assertRaises(ow.RecoverError) as e:
                    ow.load_into(fresh_model(), str(d), log=lambda s: None)
                self.assertIn("model.json", str(e.exception))

    def test_a_truncated_onnx_file_names_the_file(self):
        with tempfile.TemporaryDirectory() as tmp:
            d = self.copy_model(tmp)
            data = (d / "backbone.onnx").read_bytes()
            (d / "backbone.onnx").write_bytes(data[: len(data) // 3])
            with self.assertRaises(ow.RecoverError) as e:
                ow.load_into(fresh_model(), str(d), log=lambda s: None)
            self.assertIn("backbone.onnx", str(e.exception))

    def test_a_different_prompt_is_refused_by_model_json(self):
        # the weights would load and match onnxruntime fed the training
        # model's own ids; model.json says which prompt the model ran with
        raw = json.loads((MODEL / "train_config.json").read_text())
        cfg = mv.parse_train_config(raw, "c")
        layout = mv.prompt_layout("erased_prompt", list(range(2, 12)))
        m = train.MobileVLA(cfg, layout, pos_std=1.0, attn_sharpness=3)
        with self.assertRaises(ow.RecoverError) as e:
            ow.load_into(m, str(MODEL), log=lambda s: None)
        self.assertIn("prompt.", str(e.exception))

    def test_train_py_exits_2_on_a_bad_init_from_and_writes_no_config(self):
        with tempfile.TemporaryDirectory() as tmp:
            out = pathlib.Path(tmp) / "run"
            rc = train.main(["--train", tmp, "--val", tmp, "--out", str(out), "--init-from", tmp,
                             "--size", "small-p28", "--lstm-hidden", "256", "--lstm-layers", "1"])
            self.assertEqual(rc, 2)
            self.assertFalse((out / "train_config.json").exists())
            self.assertIn("model.json", (out / "train.log").read_text())

    def test_not_a_model_directory(self):
        with tempfile.TemporaryDirectory() as tmp:
            with self.assertRaises(ow.RecoverError) as e:
                ow.load_into(fresh_model(), tmp, log=lambda s: None)
            self.assertIn("model.json", str(e.exception))

    def test_a_size_mismatch_names_the_key(self):
        raw = json.loads((MODEL / "train_config.json").read_text())
        raw["act_head"]["hidden_size"] = 128
        cfg = mv.parse_train_config(raw, "c")
        layout = mv.prompt_layout("erased_prompt", raw["prompt"]["token_ids"])
        m = train.MobileVLA(cfg, layout, pos_std=1.0, attn_sharpness=3)
        with self.assertRaises(ow.RecoverError) as e:
            ow.load_into(m, str(MODEL), log=lambda s: None)
        self.assertIn("hidden size 256", str(e.exception))
        self.assertIn("--lstm-hidden", str(e.exception))


if __name__ == "__main__":
    unittest.main()
