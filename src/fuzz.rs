//! Fuzz targets: every parser of outside data, each a function of arbitrary
//! bytes that must return (an error is fine) and never panic, abort or hang.
//!
//! The same functions run in two harnesses: the coverage-guided one
//! (`fuzz/`: AFL++ in persistent mode, long runs, figures in the README) and
//! the deterministic smoke run in CI (`tests/fuzz_smoke.rs`: the seed corpus
//! plus a fixed set of mutants of it).

use std::path::Path;

/// A fuzz target: arbitrary bytes in, nothing out.
pub type Target = fn(&[u8]);

/// The targets, by name (the harness takes one as its argument).
pub const TARGETS: &[(&str, Target)] = &[
    ("config", config),
    ("model_json", model_json),
    ("calibration", calibration),
    ("scenario", scenario),
    ("plan", plan),
    ("console_keys", console_keys),
    ("npy", npy),
    ("slcan_replies", slcan_replies),
    ("episode", episode),
];

/// The seed corpus: files in the repository, per target (paths from the
/// repository root). `fuzz/seeds/` holds the seeds that exist nowhere else.
pub const SEEDS: &[(&str, &str)] = &[
    ("config", "src/default_config.toml"),
    ("config", "systemd/robot.toml"),
    ("config", "tests/fixtures/replay.toml"),
    ("config", "benches/run_replay_fast.toml"),
    ("model_json", "tests/fixtures/tiny_model/model.json"),
    ("calibration", "calib/serbot.toml"),
    ("scenario", "src/sim/scenarios/box_hori.toml"),
    ("scenario", "src/sim/scenarios/v3.toml"),
    ("plan", "plans/left-right.toml"),
    ("console_keys", "fuzz/seeds/console_keys/session"),
    (
        "npy",
        "tests/fixtures/reference/episode_20250102_093000_v3_right_chunks.npy",
    ),
    (
        "npy",
        "tests/fixtures/reference/episode_20250102_093000_v3_right_features.npy",
    ),
    ("slcan_replies", "fuzz/seeds/slcan_replies/ok"),
    ("slcan_replies", "fuzz/seeds/slcan_replies/sent"),
    ("slcan_replies", "fuzz/seeds/slcan_replies/bel"),
    ("slcan_replies", "fuzz/seeds/slcan_replies/commands"),
    ("slcan_replies", "fuzz/seeds/slcan_replies/garbage"),
    ("episode", "fuzz/seeds/episode/episode_tiny.h5"),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// The run config (`--config`): TOML → validated `Config`. Relative paths
/// resolve under a folder that does not exist, so nothing outside is read
/// except absolute paths the input names.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::config::Config::from_toml(text, "fuzz.toml", Path::new("/nonexistent"));
    }
}

/// `model.json`.
pub fn model_json(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::policy::ModelMeta::from_json(text, Path::new("/nonexistent"));
    }
}

/// A calibration file (`motor.calib`).
pub fn calibration(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::robot::calib::Calibration::from_toml(text, "fuzz.toml");
    }
}

/// A simulator scenario file, parsed and every scenario in it built.
pub fn scenario(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(file) = crate::sim::world::ScenarioFile::parse(text, "fuzz.toml") {
            for name in file.names().into_iter().take(64) {
                if let Ok((spec, parts)) = file.spec(&name) {
                    let _ = crate::sim::world::World::sample(&spec, &name, parts, 0);
                }
            }
        }
    }
}

/// A trial plan (`mvla trial --plan`), its order drawn.
pub fn plan(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::trial::plan::Plan::parse(
            text.into(),
            "fuzz.toml".into(),
            "fuzz".into(),
            Some(1),
        );
    }
}

/// Bytes from the operator's terminal, as the trial console reads them.
pub fn console_keys(data: &[u8]) {
    let _ = crate::trial::console::parse_keys(data);
}

/// A `.npy` frame or tensor, as each element type.
pub fn npy(data: &[u8]) {
    // parse() views the bytes in place: align them as read() does.
    let mut words = vec![0u64; data.len().div_ceil(8)];
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
    bytes[..data.len()].copy_from_slice(data);
    let bytes = &bytes[..data.len()];
    let _ = crate::npy::parse::<u8>("fuzz.npy", bytes);
    let _ = crate::npy::parse::<f32>("fuzz.npy", bytes);
    let _ = crate::npy::parse::<i64>("fuzz.npy", bytes);
}

/// Bytes from the SLCAN adapter (replies) and, the other way, command lines
/// as the board emulator decodes them.
pub fn slcan_replies(data: &[u8]) {
    let mut parser = crate::drive::slcan::ReplyParser::default();
    for &b in data {
        let _ = parser.push(b);
    }
    let mut board = crate::drive::emulator::BoardProtocol::default();
    for line in data.split(|&b| b == b'\r') {
        let _ = board.command(line);
    }
}

/// An episode file, through the reader the runtime uses (the probe child
/// first, then in-process). Written to one temporary file per process and
/// thread (removed afterwards).
pub fn episode(data: &[u8]) {
    let path = std::env::temp_dir().join(format!(
        "mvla-fuzz-{}-{:?}.h5",
        std::process::id(),
        std::thread::current().id()
    ));
    if std::fs::write(&path, data).is_ok() {
        crate::record::probe::forget(&path);
        if let Ok(ep) = crate::record::episode::Episode::open(&path) {
            let mut frame = Vec::new();
            for i in 0..ep.frames.min(64) {
                let _ = ep.read_frame(i, &mut frame);
            }
        }
    }
    let _ = std::fs::remove_file(&path);
}
