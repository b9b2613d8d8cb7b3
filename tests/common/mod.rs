//! Shared helpers for the integration tests.
#![allow(dead_code)]

pub mod kernel_cases;

use std::path::PathBuf;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn tiny_model() -> PathBuf {
    fixtures().join("tiny_model")
}

pub fn episodes_dir() -> PathBuf {
    fixtures().join("episodes")
}

pub const FLAT_EPISODE: &str = "episode_20250101_120000_1box_hori_left_core_medium";
pub const OBS_EPISODE: &str = "episode_20250102_093000_v3_right";

/// The same deterministic pattern as `engines/make_fixtures.py::pattern_frame`.
pub fn pattern_frame(width: usize, height: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(width * height * 3);
    for y in 0..height as u64 {
        for x in 0..width as u64 {
            for c in 0..3u64 {
                let noise =
                    ((x.wrapping_mul(2654435761) ^ y.wrapping_mul(40503) ^ c.wrapping_mul(9973))
                        >> 5)
                        & 127;
                let ramp = (x + 2 * y + 50 * c) % 128;
                out.push((noise + ramp) as u8);
            }
        }
    }
    out
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Path of the built `mvla` binary (integration tests of the CLI).
pub fn mvla_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mvla"))
}

/// The `mvla` binary run from the repository root (paths in the built-in
/// default config are relative to it).
pub fn mvla() -> std::process::Command {
    let mut c = std::process::Command::new(mvla_bin());
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// The same bytes as `engines/make_fixtures.py::yuyv_pattern`.
pub fn yuyv_pattern(width: usize, height: usize) -> Vec<u8> {
    (0..(width * height * 2) as u64)
        .map(|i| ((i.wrapping_mul(2654435761) >> 7) & 255) as u8)
        .collect()
}

/// NV12 bytes (Y plane + UV plane) from the same hash as `yuyv_pattern`;
/// engines/make_fixtures.py `nv12_pattern` builds the same.
pub fn nv12_pattern(width: usize, height: usize) -> Vec<u8> {
    (0..(width * height * 3 / 2) as u64)
        .map(|i| ((i.wrapping_mul(2246822519) >> 9) & 255) as u8)
        .collect()
}

/// Wait for a child process, failing the test if it outlives `limit`.
pub fn wait_for_exit(
    child: &mut std::process::Child,
    limit: std::time::Duration,
) -> std::process::ExitStatus {
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            child.kill().ok();
            panic!("mvla did not exit within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Slack on wall-clock reaction times: these tests run the real threads,
/// pty and scheduler on a shared (CI) machine, where a 2-core box under load
/// has shown 100+ ms stalls. The exact reaction, in ticks, is asserted with a
/// manual clock in `src/control/mod.rs` and `src/control/motor.rs`; here a
/// regression that loses the reaction altogether (seconds, or never) fails.
#[allow(dead_code)] // not every test file that includes `common` checks reactions
pub const WALL_CLOCK_SLACK: std::time::Duration = std::time::Duration::from_millis(400);

/// Assert a wall-clock reaction within `spec` + [`WALL_CLOCK_SLACK`], and print
/// the measured figure (the figure itself is reported, not asserted tightly).
#[allow(dead_code)]
pub fn assert_reaction(what: &str, measured: std::time::Duration, spec: std::time::Duration) {
    eprintln!("measured: {what} after {measured:?} (design: within {spec:?})");
    assert!(
        measured <= spec + WALL_CLOCK_SLACK,
        "{what} after {measured:?}: more than {spec:?} + {WALL_CLOCK_SLACK:?} slack"
    );
}
