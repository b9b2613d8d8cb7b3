//! `mvla eval` and the episode reader on h5py-written episodes (both layouts),
//! against metrics computed in Python from the PyTorch reference run.

mod common;

use std::process::Command;

use common::*;
use mvla::preprocess::ChannelOrder;
use mvla::record::{Episode, EpisodeError, EpisodeLayout};

#[test]
fn both_episode_layouts_are_read() {
    let flat = Episode::open(&episodes_dir().join(format!("{FLAT_EPISODE}.h5"))).unwrap();
    assert_eq!(flat.layout, EpisodeLayout::Flat);
    assert_eq!((flat.frames, flat.height, flat.width), (12, 720, 1280));
    assert_eq!(flat.channel_order, ChannelOrder::Bgr);
    assert_eq!(flat.event_types[0], "episode_start");
    assert_eq!(flat.event_types[1], "start_action");
    assert_eq!(flat.event_types[11], "stop_action");
    assert_eq!(flat.actions[1], [1.15, 0.0, 0.0]);
    assert_eq!(
        flat.instruction.as_deref(),
        Some("Navigate around obstacles and reach the front of the beverage bottle on the left")
    );
    assert_eq!(flat.attrs.action_chunk_size, Some(8));
    assert_eq!(flat.attrs.time_period.as_deref(), Some("morning"));
    assert_eq!(flat.name(), FLAT_EPISODE);

    let obs = Episode::open(&episodes_dir().join(format!("{OBS_EPISODE}.h5"))).unwrap();
    assert_eq!(obs.layout, EpisodeLayout::Observations);
    assert_eq!((obs.frames, obs.height, obs.width), (11, 480, 640));
    assert_eq!(obs.channel_order, ChannelOrder::Rgb);
    assert_eq!(obs.attrs.scenario.as_deref(), Some("v3_right"));
    assert_eq!(obs.instruction, None);
    let mut frame = Vec::new();
    obs.read_frame(10, &mut frame).unwrap();
    assert_eq!(frame.len(), 480 * 640 * 3);
    match obs.read_frame(11, &mut frame) {
        Err(EpisodeError::FrameIndex {
            index: 11,
            frames: 11,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
}

#[derive(serde::Deserialize)]
struct PyMetrics {
    count: u64,
    rmse_x: f64,
    rmse_y: f64,
    rmse_all: f64,
    direction_agreement: f64,
}

#[derive(serde::Deserialize)]
struct PyEpisode {
    file: String,
    first: PyMetrics,
    chunk: PyMetrics,
}

#[derive(serde::Deserialize)]
struct PyEval {
    episodes: Vec<PyEpisode>,
    overall_first: PyMetrics,
    overall_chunk: PyMetrics,
}

fn assert_metrics(ours: &serde_json::Value, py: &PyMetrics, what: &str) {
    assert_eq!(ours["count"].as_u64().unwrap(), py.count, "{what} count");
    for (key, want) in [
        ("rmse_x", py.rmse_x),
        ("rmse_y", py.rmse_y),
        ("rmse_all", py.rmse_all),
        ("direction_agreement", py.direction_agreement),
    ] {
        let got = ours[key].as_f64().unwrap();
        assert!(
            (got - want).abs() <= 1e-4,
            "{what} {key}: {got} vs python {want}"
        );
    }
}

fn run_eval(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(mvla_bin())
        .arg("eval")
        .arg("--model")
        .arg(tiny_model())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn eval_json_matches_the_python_reference() {
    let out = run_eval(&["--json".as_ref(), episodes_dir().as_os_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ours: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let py: PyEval = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("reference/eval.json")).unwrap(),
    )
    .unwrap();
    let episodes = ours["episodes"].as_array().unwrap();
    assert_eq!(episodes.len(), py.episodes.len());
    for (e, p) in episodes.iter().zip(&py.episodes) {
        assert!(e["path"].as_str().unwrap().ends_with(&p.file));
        assert_metrics(&e["first"], &p.first, &p.file);
        assert_metrics(&e["chunk"], &p.chunk, &p.file);
    }
    assert_metrics(&ours["overall_first"], &py.overall_first, "overall first");
    assert_metrics(&ours["overall_chunk"], &py.overall_chunk, "overall chunk");
    assert_eq!(ours["steps_evaluated"], 23);
    assert!(ours["skipped"].as_array().unwrap().is_empty());
}

#[test]
fn a_corrupt_episode_is_named_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    for stem in [FLAT_EPISODE, OBS_EPISODE] {
        std::fs::copy(
            episodes_dir().join(format!("{stem}.h5")),
            dir.path().join(format!("{stem}.h5")),
        )
        .unwrap();
    }
    // Not HDF5 at all.
    std::fs::write(
        dir.path().join("episode_20250103_000000_broken.h5"),
        b"not an hdf5 file",
    )
    .unwrap();
    // Valid HDF5 prefix, truncated: copy half of a real episode.
    let real = std::fs::read(episodes_dir().join(format!("{OBS_EPISODE}.h5"))).unwrap();
    std::fs::write(
        dir.path().join("episode_20250104_000000_truncated.h5"),
        &real[..real.len() / 2],
    )
    .unwrap();

    let out = run_eval(&["--json".as_ref(), dir.path().as_os_str()]);
    assert_eq!(out.status.code(), Some(3), "partial result exit code");
    let ours: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let skipped = ours["skipped"].as_array().unwrap();
    let names: Vec<&str> = skipped
        .iter()
        .map(|s| s["path"].as_str().unwrap())
        .collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(names.iter().any(|p| p.ends_with("broken.h5")));
    assert!(names.iter().any(|p| p.ends_with("truncated.h5")));
    for s in skipped {
        assert!(
            s["error"]
                .as_str()
                .unwrap()
                .contains(s["path"].as_str().unwrap()),
            "error names the file: {s}"
        );
    }
    // The good episodes are still evaluated.
    assert_eq!(ours["episodes"].as_array().unwrap().len(), 2);
    assert_eq!(ours["steps_evaluated"], 23);
}

#[test]
fn eval_table_is_the_default_output() {
    let out = run_eval(&[episodes_dir()
        .join(format!("{FLAT_EPISODE}.h5"))
        .as_os_str()]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(FLAT_EPISODE) && text.contains("OVERALL"),
        "{text}"
    );
}

#[test]
fn a_missing_model_is_a_bad_input_exit() {
    let out = Command::new(mvla_bin())
        .args(["eval", "--model", "no/such/model"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no/such/model/model.json"));
}

/// Regression: an episode with no frames printed rmse 0.0000 and exit 0.
fn write_empty_episode(path: &std::path::Path) {
    let f = hdf5::File::create(path).unwrap();
    f.new_dataset::<u8>()
        .shape([0, 48, 64, 3])
        .create("images")
        .unwrap();
    f.new_dataset::<f32>()
        .shape([0, 3])
        .create("actions")
        .unwrap();
    f.new_dataset::<hdf5::types::VarLenUnicode>()
        .shape([0])
        .create("action_event_types")
        .unwrap();
}

#[test]
fn an_episode_without_frames_is_skipped_not_scored() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("episode_20250105_000000_empty.h5");
    write_empty_episode(&empty);
    // Alone: nothing to evaluate is a bad input (exit 2) naming the file.
    let out = run_eval(&[empty.as_os_str()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nothing to evaluate") && err.contains("empty.h5"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "no table of zeros");
    // With a real episode: skipped by name, the real one scored, exit 3.
    std::fs::copy(
        episodes_dir().join(format!("{FLAT_EPISODE}.h5")),
        dir.path().join(format!("{FLAT_EPISODE}.h5")),
    )
    .unwrap();
    let out = run_eval(&["--json".as_ref(), dir.path().as_os_str()]);
    assert_eq!(out.status.code(), Some(3));
    let ours: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ours["episodes"].as_array().unwrap().len(), 1);
    let skipped = ours["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0]["path"].as_str().unwrap().ends_with("empty.h5"));
    assert!(skipped[0]["error"].as_str().unwrap().contains("no frame"));
}
