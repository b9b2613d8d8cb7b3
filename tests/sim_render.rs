//! The simulator's camera: renderer golden images (small size, with a
//! tolerance) and a stalled render reaching the failsafe as `no_frame` like
//! a stalled camera (no allocation per frame: `tests/sim_render_alloc.rs`).
//!
//! Golden images are regenerated only by
//! `MVLA_REGENERATE_SIM_GOLDEN=1 cargo test --test sim_render` (after a
//! deliberate change to the renderer or the scenario files; look at them).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mvla::action::InferenceEvent;
use mvla::capture::sim::SimCamera;
use mvla::clock::{Clock, MonotonicClock};
use mvla::fault::FaultKind;
use mvla::pipeline::{InferenceSettings, InferenceStage};
use mvla::policy::tract::TractPolicy;
use mvla::policy::PolicyRunner;
use mvla::preprocess::{CpuPreprocessor, Rotation};
use mvla::robot::calib::Calibration;
use mvla::sim::base::SimBase;
use mvla::sim::render::{PixelLayout, Renderer};
use mvla::sim::world::{Catalogue, Pose, World};

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sim")
}

/// (file stem, scenario, seed, pose) of each golden image.
fn cases() -> Vec<(&'static str, World, Pose)> {
    let c = Catalogue::builtin();
    let mut out = Vec::new();
    for (stem, name, seed) in [
        ("1box_left_start", "1box_hori_left_core_medium", 0),
        ("2box_right_start", "2box_hori_right_variant_close", 1),
        ("v3_left_start", "v3_left", 2),
    ] {
        let w = c.world(name, seed).unwrap();
        let start = w.start;
        out.push((stem, w, start));
    }
    let w = c.world("1box_hori_left_core_far", 3).unwrap();
    let (_, hi) = w.obstacles[0].y_extent();
    let beside = Pose {
        x: w.obstacles[0].x,
        y: hi + w.robot_radius_m + 0.1,
        yaw: 0.2,
    };
    out.push(("1box_left_beside", w, beside));
    out
}

#[test]
fn renderer_matches_the_golden_images() {
    let regenerate = std::env::var_os("MVLA_REGENERATE_SIM_GOLDEN").is_some();
    let (width, height) = (160, 90);
    for (stem, world, pose) in cases() {
        let mut r = Renderer::new(width, height, &world.camera);
        let mut img = Vec::new();
        r.render(&world, pose, 1, PixelLayout::Bgr, &mut img);
        let path = golden_dir().join(format!("{stem}_160x90_bgr.npy"));
        if regenerate {
            std::fs::create_dir_all(golden_dir()).unwrap();
            mvla::npy::write(&path, &[height, width, 3], &img).unwrap();
            continue;
        }
        let golden = mvla::npy::read::<u8>(&path).unwrap_or_else(|e| {
            panic!("{e}: regenerate with MVLA_REGENERATE_SIM_GOLDEN=1 cargo test --test sim_render")
        });
        assert_eq!(golden.shape, vec![height, width, 3], "{stem}");
        // Tolerance: libm's sin/cos/pow may differ in the last bit between
        // platforms, which can move an edge pixel or a rounding step.
        let diffs: Vec<u8> = golden
            .data
            .iter()
            .zip(&img)
            .map(|(a, b)| a.abs_diff(*b))
            .collect();
        let big = diffs.iter().filter(|&&d| d > 3).count();
        let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
        assert!(
            big <= diffs.len() / 200 && mean < 0.5,
            "{stem}: {big} of {} values differ by > 3, mean abs diff {mean:.3}",
            diffs.len()
        );
    }
}

#[test]
fn golden_images_are_not_blank_and_differ() {
    // Guards the goldens themselves: a black or identical set would pass the comparison vacuously.
    let mut seen: Vec<Vec<u8>> = Vec::new();
    for (stem, _, _) in cases() {
        let g =
            mvla::npy::read::<u8>(&golden_dir().join(format!("{stem}_160x90_bgr.npy"))).unwrap();
        let mean = g.data.iter().map(|&v| f64::from(v)).sum::<f64>() / g.data.len() as f64;
        let distinct: std::collections::BTreeSet<u8> = g.data.iter().copied().collect();
        assert!(
            mean > 30.0 && distinct.len() > 50,
            "{stem}: mean {mean}, {} values",
            distinct.len()
        );
        assert!(
            !seen.contains(&g.data),
            "{stem} equals another golden image"
        );
        seen.push(g.data);
    }
}

#[test]
fn a_stalled_render_is_a_no_frame_fault_like_a_stalled_camera() {
    // The sim camera cannot render while the base is locked (as if the
    // renderer hung): the inference stage raises no_frame; it never gets a
    // made-up frame, and frames resume once the render does.
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_model");
    let policy = TractPolicy::load(&dir).unwrap();
    let meta = mvla::policy::ModelMeta::load(&dir).unwrap();
    let spec = meta.preprocess_spec(Rotation::Rotate180);
    let stage = InferenceStage::new(PolicyRunner::new(policy, 64), CpuPreprocessor::new(spec));
    let clock: Arc<dyn Clock> = Arc::new(MonotonicClock);
    let world = Catalogue::builtin()
        .world("1box_hori_left_core_medium", 0)
        .unwrap();
    let base = Arc::new(Mutex::new(SimBase::new(
        Calibration::serbot(),
        &world,
        0,
        clock.now(),
    )));
    let camera = SimCamera::new(
        world,
        base.clone(),
        320,
        180,
        10.0,
        PixelLayout::Bgr,
        Rotation::Rotate180,
        clock.clone(),
    );
    let hold = base.lock().unwrap(); // the render blocks from its first frame
    let stages = mvla::pipeline::spawn_stages(
        Box::new(camera),
        stage,
        InferenceSettings {
            no_frame_timeout: Duration::from_millis(300),
            budget: Duration::from_millis(200),
        },
        clock.clone(),
        Box::new(()),
    )
    .unwrap();
    let first = stages.events.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        matches!(
            first,
            InferenceEvent::Fault {
                kind: FaultKind::NoFrame,
                ..
            }
        ),
        "{first:?}"
    );
    assert_eq!(stages.counters.snapshot().frames_captured, 0);
    let released = clock.now();
    drop(hold);
    let chunk = loop {
        match stages.events.recv_timeout(Duration::from_secs(5)).unwrap() {
            InferenceEvent::Chunk(c) => break c,
            InferenceEvent::Fault { .. } => continue,
        }
    };
    // Captured after the stall ended: nothing was made up while it lasted.
    assert!(chunk.t0 >= released, "{:?} < {released:?}", chunk.t0);
    stages
        .stop
        .store(true, std::sync::atomic::Ordering::Relaxed);
    stages.capture.join().unwrap();
    stages.inference.join().unwrap();
}
