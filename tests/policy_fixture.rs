//! The tract backend and the policy runner against PyTorch references
//! (tests/fixtures/reference, from engines/make_fixtures.py: Hugging Face
//! Kosmos-2 with unmerged LoRA + the training code's streaming LSTM rule).

mod common;

use common::*;
use mvla::clock::Timestamp;
use mvla::npy;
use mvla::policy::tract::TractPolicy;
use mvla::policy::{ModelMeta, Policy, PolicyError, PolicyRunner};
use mvla::preprocess::{CpuPreprocessor, FrameRef, Preprocessor, Rotation};
use mvla::record::Episode;

const TOL: f32 = 1e-4;

fn episode_tensors(stem: &str, meta: &ModelMeta) -> Vec<Vec<f32>> {
    let ep = Episode::open(&episodes_dir().join(format!("{stem}.h5"))).unwrap();
    let spec = meta.preprocess_spec(Rotation::None);
    let mut pre = CpuPreprocessor::new(spec);
    let mut frame = Vec::new();
    (0..ep.frames)
        .map(|i| {
            ep.read_frame(i, &mut frame).unwrap();
            let mut t = vec![0f32; spec.output_len()];
            pre.run(
                FrameRef {
                    width: ep.width,
                    height: ep.height,
                    order: ep.channel_order,
                    data: &frame,
                },
                &mut t,
            )
            .unwrap();
            t
        })
        .collect()
}

#[test]
fn episode_frames_preprocess_like_pillow() {
    let meta = ModelMeta::load(&tiny_model()).unwrap();
    for stem in [FLAT_EPISODE, OBS_EPISODE] {
        let ours = &episode_tensors(stem, &meta)[0];
        let reference =
            npy::read::<f32>(&fixtures().join(format!("reference/{stem}_frame0_tensor.npy")))
                .unwrap();
        assert!(max_abs_diff(ours, &reference.data) <= 1e-5, "{stem}");
    }
}

#[test]
fn backbone_features_match_pytorch() {
    let mut policy = TractPolicy::load(&tiny_model()).unwrap();
    let dim = policy.meta().feature_dim();
    for stem in [FLAT_EPISODE, OBS_EPISODE] {
        let tensors = episode_tensors(stem, policy.meta());
        let reference =
            npy::read::<f32>(&fixtures().join(format!("reference/{stem}_features.npy"))).unwrap();
        assert_eq!(reference.shape, vec![tensors.len(), dim]);
        let mut feature = vec![0f32; dim];
        for (i, t) in tensors.iter().enumerate() {
            policy.encode(t, &mut feature).unwrap();
            let err = max_abs_diff(&feature, &reference.data[i * dim..(i + 1) * dim]);
            assert!(err <= TOL, "{stem} frame {i}: feature max abs {err}");
        }
    }
}

#[test]
fn chunks_follow_the_training_streaming_rule() {
    // Frames one training step apart; the first `window` steps use a growing
    // window, later ones the last `window` features (fixture: 12 frames, window 8).
    let policy = TractPolicy::load(&tiny_model()).unwrap();
    let step = policy.meta().step();
    let (window, n) = (policy.meta().raw.window, policy.meta().raw.chunk * 2);
    let mut runner = PolicyRunner::new(policy, window);
    for stem in [FLAT_EPISODE, OBS_EPISODE] {
        let tensors = episode_tensors(stem, runner.meta());
        assert!(tensors.len() > window, "fixture must exceed the window");
        let reference =
            npy::read::<f32>(&fixtures().join(format!("reference/{stem}_chunks.npy"))).unwrap();
        runner.reset();
        for (i, t) in tensors.iter().enumerate() {
            let out = runner
                .step(Timestamp::from_duration(step * i as u32), t)
                .unwrap();
            assert_eq!(out.steps, (i + 1).min(window));
            let err = max_abs_diff(out.raw, &reference.data[i * n..(i + 1) * n]);
            assert!(err <= TOL, "{stem} step {i}: chunk max abs {err}");
            // Scaling per metadata (x1.15, clip 1.5); the first call after reset is zero.
            if i == 0 {
                assert!(out.forced_zero && out.actions.iter().all(|&a| a == 0.0));
            } else {
                for (a, r) in out.actions.iter().zip(out.raw) {
                    assert!((a - r * 1.15).abs() < 1e-6);
                }
            }
        }
    }
}

#[test]
fn camera_rate_frames_reproduce_the_step_spaced_window() {
    // The same frames at one per step, with extra frames in between that must
    // not enter the window: the chunk at each step frame must equal the reference.
    let policy = TractPolicy::load(&tiny_model()).unwrap();
    let step = policy.meta().step();
    let window = policy.meta().raw.window;
    let n = policy.meta().raw.chunk * 2;
    let mut runner = PolicyRunner::new(policy, 64);
    let tensors = episode_tensors(FLAT_EPISODE, runner.meta());
    let reference =
        npy::read::<f32>(&fixtures().join(format!("reference/{FLAT_EPISODE}_chunks.npy"))).unwrap();
    let distractor = &tensors[tensors.len() - 1];
    for (i, t) in tensors.iter().enumerate() {
        let t0 = Timestamp::from_duration(step * i as u32);
        let out = runner.step(t0, t).unwrap();
        let err = max_abs_diff(out.raw, &reference.data[i * n..(i + 1) * n]);
        assert!(err <= TOL, "step {i}: {err}");
        assert_eq!(out.steps, (i + 1).min(window));
        // Three camera frames between steps (at 1/4, 2/4, 3/4 of a step).
        for q in 1..4u32 {
            runner.step(t0.plus((step / 4) * q), distractor).unwrap();
        }
    }
}

fn copy_model(dir: &std::path::Path) {
    for f in ["backbone.onnx", "head.onnx", "model.json"] {
        std::fs::copy(tiny_model().join(f), dir.join(f)).unwrap();
    }
}

#[test]
fn a_changed_graph_file_is_refused_by_hash() {
    let dir = tempfile::tempdir().unwrap();
    copy_model(dir.path());
    let head = dir.path().join("head.onnx");
    let mut bytes = std::fs::read(&head).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&head, bytes).unwrap();
    match TractPolicy::load(dir.path()) {
        Err(PolicyError::Meta(e)) => {
            let msg = mvla::error::report(&e);
            assert!(msg.contains("head.onnx") && msg.contains("sha256"), "{msg}");
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a modified head.onnx was loaded"),
    }
}

#[test]
fn model_json_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    copy_model(dir.path());
    let path = dir.path().join("model.json");
    let original = std::fs::read_to_string(&path).unwrap();

    let mut v: serde_json::Value = serde_json::from_str(&original).unwrap();
    v["image"]["channel_order"] = "yuv".into();
    std::fs::write(&path, serde_json::to_string(&v).unwrap()).unwrap();
    let msg = mvla::error::report(&ModelMeta::load(dir.path()).unwrap_err());
    assert!(
        msg.contains("image.channel_order") && msg.contains("yuv"),
        "{msg}"
    );

    let mut v: serde_json::Value = serde_json::from_str(&original).unwrap();
    v["surprise"] = 1.into();
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    let msg = mvla::error::report(&ModelMeta::load(dir.path()).unwrap_err());
    assert!(
        msg.contains("model.json") && msg.contains("surprise") && msg.contains("line"),
        "{msg}"
    );
}

#[test]
fn chunks_longer_than_the_runtime_carries_are_refused_at_load() {
    // Used to be cut to 16 actions silently at run time.
    let dir = tempfile::tempdir().unwrap();
    copy_model(dir.path());
    let path = dir.path().join("model.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v["chunk"] = (mvla::action::MAX_CHUNK + 1).into();
    std::fs::write(&path, serde_json::to_string(&v).unwrap()).unwrap();
    let msg = mvla::error::report(&ModelMeta::load(dir.path()).unwrap_err());
    assert!(msg.contains("chunk") && msg.contains("at most 16"), "{msg}");
}

/// Regression: a model.json whose `chunk` or `feature_dim` disagrees with its
/// graphs loaded fine and then faulted every inference (exit 0 for `run`).
#[test]
fn a_model_json_that_disagrees_with_its_graphs_is_refused_at_load() {
    for (key, value, says) in [
        ("chunk", serde_json::json!(4), "chunk × action_dim = 8"),
        (
            "feature_dim",
            serde_json::json!(31),
            "backbone.feature_dim = 31",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let src = fixtures().join("tiny_model");
        for e in std::fs::read_dir(&src).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
            }
        }
        let path = dir.path().join("model.json");
        let mut meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        if key == "chunk" {
            meta["chunk"] = value;
        } else {
            meta["backbone"]["feature_dim"] = value;
        }
        std::fs::write(&path, meta.to_string()).unwrap();
        let err = match mvla::policy::tract::TractPolicy::load(dir.path()) {
            Ok(_) => panic!("{key}: loaded a model.json that disagrees with its graphs"),
            Err(e) => mvla::error::report(&e),
        };
        assert!(err.contains(says), "{key}: {err}");
    }
}

/// Every bounded model.json key: one past its range is refused at load,
/// naming the key. Regression: `window = 1000000` hung start-up (a head plan
/// per window length); `feature_dim` near 2^64 aborted on "capacity overflow".
#[test]
fn model_json_numbers_outside_their_documented_range_are_refused() {
    let original = std::fs::read_to_string(tiny_model().join("model.json")).unwrap();
    let mut checked = 0;
    for r in mvla::bounds::RANGES {
        let Some(key) = r.key.strip_prefix("model.json:") else {
            continue;
        };
        let dir = tempfile::tempdir().unwrap();
        copy_model(dir.path());
        let mut v: serde_json::Value = serde_json::from_str(&original).unwrap();
        let mut slot = &mut v;
        for part in key.split('.') {
            slot = &mut slot[part];
        }
        *slot = if key == "prompt.input_ids" {
            serde_json::Value::Array(vec![1.into(); r.hi as usize + 1])
        } else if slot.is_f64() {
            (r.hi * 2.0).into()
        } else {
            (r.hi as u64 + 1).into()
        };
        std::fs::write(dir.path().join("model.json"), v.to_string()).unwrap();
        let msg = mvla::error::report(&ModelMeta::load(dir.path()).unwrap_err());
        assert!(msg.contains(&format!("`{key}`")), "{key}: {msg}");
        checked += 1;
    }
    assert!(checked >= 9, "{checked}");
}
