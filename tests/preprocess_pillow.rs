//! The CPU preprocessing twin against Pillow (`Image.resize(BILINEAR)`) and
//! the training loader's normalisation, on 1280x720 and 640x480 frames.
//! References: tests/fixtures/preprocess, written by engines/make_fixtures.py.

mod common;

use common::*;
use mvla::npy;
use mvla::policy::ModelMeta;
use mvla::preprocess::{ChannelOrder, CpuPreprocessor, FrameRef, Preprocessor, Rotation};

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    width: usize,
    height: usize,
    frame_order: String,
    rotate_deg: u32,
}

#[derive(serde::Deserialize)]
struct Cases {
    cases: Vec<Case>,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(fixtures().join("preprocess/cases.json")).unwrap();
    let cases: Cases = serde_json::from_str(&text).unwrap();
    assert_eq!(cases.cases.len(), 4, "two sizes x two orientations");
    cases.cases
}

#[test]
fn resize_matches_pillow_bilinear_byte_for_byte() {
    let meta = ModelMeta::load(&tiny_model()).unwrap();
    for case in cases() {
        let frame = pattern_frame(case.width, case.height);
        let rotation = Rotation::from_degrees(case.rotate_deg).unwrap();
        let mut pre = CpuPreprocessor::new(meta.preprocess_spec(rotation));
        let order = ChannelOrder::parse(&case.frame_order).unwrap();
        let ours = pre
            .resize_u8(FrameRef {
                width: case.width,
                height: case.height,
                order,
                data: &frame,
            })
            .unwrap()
            .to_vec();
        let pillow =
            npy::read::<u8>(&fixtures().join(format!("preprocess/{}_resized_u8.npy", case.name)))
                .unwrap();
        assert_eq!(pillow.shape, vec![224, 224, 3]);
        let differing = ours
            .iter()
            .zip(&pillow.data)
            .filter(|(a, b)| a != b)
            .count();
        let max = ours
            .iter()
            .zip(&pillow.data)
            .map(|(a, b)| (i16::from(*a) - i16::from(*b)).abs())
            .max()
            .unwrap();
        // The implementation replays Pillow's fixed-point arithmetic, so it is exact.
        assert_eq!(
            differing, 0,
            "{}: {differing} bytes differ from Pillow (max {max})",
            case.name
        );
    }
}

#[test]
fn plain_two_tap_bilinear_would_not_match_pillow() {
    // Guards the test above against a reference that cannot tell resize methods
    // apart: sampling the 2 nearest pixels (no antialiasing) differs a lot.
    let frame = pattern_frame(1280, 720);
    let pillow =
        npy::read::<u8>(&fixtures().join("preprocess/pattern_1280x720_bgr_rot0_resized_u8.npy"))
            .unwrap();
    let mut large = 0;
    for oy in 0..224 {
        for ox in 0..224 {
            let sx = ((ox as f64 + 0.5) * 1280.0 / 224.0 - 0.5).max(0.0);
            let sy = ((oy as f64 + 0.5) * 720.0 / 224.0 - 0.5).max(0.0);
            let (x0, y0) = (sx as usize, sy as usize);
            let v = frame[(y0 * 1280 + x0) * 3];
            if (i16::from(v) - i16::from(pillow.data[(oy * 224 + ox) * 3])).abs() > 8 {
                large += 1;
            }
        }
    }
    assert!(
        large > 224 * 224 / 4,
        "only {large} pixels differ: the reference is not discriminating"
    );
}

#[test]
fn tensor_matches_the_training_loader() {
    let meta = ModelMeta::load(&tiny_model()).unwrap();
    for case in cases() {
        let frame = pattern_frame(case.width, case.height);
        let rotation = Rotation::from_degrees(case.rotate_deg).unwrap();
        let spec = meta.preprocess_spec(rotation);
        let mut pre = CpuPreprocessor::new(spec);
        let mut out = vec![0f32; spec.output_len()];
        pre.run(
            FrameRef {
                width: case.width,
                height: case.height,
                order: ChannelOrder::parse(&case.frame_order).unwrap(),
                data: &frame,
            },
            &mut out,
        )
        .unwrap();
        let reference =
            npy::read::<f32>(&fixtures().join(format!("preprocess/{}_tensor.npy", case.name)))
                .unwrap();
        assert_eq!(reference.shape, vec![1, 3, 224, 224]);
        let err = max_abs_diff(&out, &reference.data);
        // Same bytes after resize; only float rounding of /255 and the normalisation differs.
        assert!(err <= 1e-5, "{}: max abs {err}", case.name);
    }
}

#[test]
fn preprocess_command_writes_the_model_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("frame.npy");
    let out = dir.path().join("tensor.npy");
    npy::write(&input, &[480, 640, 3], &pattern_frame(640, 480)).unwrap();
    let status = std::process::Command::new(mvla_bin())
        .args(["preprocess", "--model"])
        .arg(tiny_model())
        .arg("--input")
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .args(["--frame-order", "rgb", "--rotate-deg", "180"])
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let ours = npy::read::<f32>(&out).unwrap();
    let reference =
        npy::read::<f32>(&fixtures().join("preprocess/pattern_640x480_rgb_rot180_tensor.npy"))
            .unwrap();
    assert_eq!(ours.shape, vec![1, 3, 224, 224]);
    assert!(max_abs_diff(&ours.data, &reference.data) <= 1e-5);
}

#[test]
fn preprocess_command_rejects_a_wrong_frame_shape() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("frame.npy");
    npy::write(&input, &[4, 4], &[0u8; 16]).unwrap();
    let out = std::process::Command::new(mvla_bin())
        .args(["preprocess", "--model"])
        .arg(tiny_model())
        .arg("--input")
        .arg(&input)
        .arg("--out")
        .arg(dir.path().join("t.npy"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("frame.npy") && err.contains("[H, W, 3]"),
        "{err}"
    );
}
