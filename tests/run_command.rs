//! `mvla run` as a process: the summary, clean shutdown on SIGTERM,
//! recording that survives a crash, and configuration errors. These run the
//! fast looping replay config (`tests/fixtures/replay.toml`); the built-in
//! default (the trained policy in the simulator) is tested in
//! `sim_closed_loop.rs`.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use mvla::record::Episode;

/// `mvla run --config tests/fixtures/replay.toml`: the tiny model on the
/// bundled episodes, looping.
fn replay_run() -> Command {
    let mut c = mvla();
    c.args(["run", "--config"])
        .arg(fixtures().join("replay.toml"));
    c
}

/// The replay config as text with absolute paths (model and episodes).
fn replay_config_text() -> String {
    let fixtures = fixtures().display().to_string();
    let text = std::fs::read_to_string(fixtures.clone() + "/replay.toml").unwrap();
    for pattern in ["\"tiny_model\"", "[\"episodes\"]"] {
        assert!(text.contains(pattern), "replay.toml lost {pattern}");
    }
    text.replace("\"tiny_model\"", &format!("\"{fixtures}/tiny_model\""))
        .replace("[\"episodes\"]", &format!("[\"{fixtures}/episodes\"]"))
}

fn signal(child: &std::process::Child, sig: i32) {
    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    assert_eq!(rc, 0);
}

#[test]
fn replay_run_prints_a_json_summary() {
    let out = replay_run()
        .args(["--duration-s", "2.5", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        s["counters"]["frames_captured"].as_u64().unwrap() >= 3,
        "{s}"
    );
    assert!(s["counters"]["inferences"].as_u64().unwrap() >= 3);
    assert_eq!(s["counters"]["inference_faults"], 0);
    assert!(
        s["inference"]["capture_to_chunk"]["count"]
            .as_u64()
            .unwrap()
            >= 3
    );
    assert!(s["motor"]["ticks"].as_u64().unwrap() > 100);
    assert!(s["stop_reason"].as_str().unwrap().starts_with("duration"));
}

#[test]
fn sigterm_shuts_down_cleanly_with_a_summary() {
    let mut child = replay_run()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    signal(&child, libc::SIGTERM);
    let status = wait_for_exit(&mut child, Duration::from_secs(10));
    let out = child.wait_with_output().unwrap();
    assert!(
        status.success(),
        "{status:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("stop requested") && text.contains("inferences"),
        "{text}"
    );
}

/// Regression: with the disk full the run ended 0 with one line in the
/// summary, and the file held 3 image rows but 2 action rows. Now the run
/// fails (exit 1, the error on stderr) and the file's datasets are in step.
/// The full disk is a file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored: writes
/// past it fail with EFBIG, as on a full disk).
#[test]
fn a_full_disk_fails_the_run_loudly_and_keeps_the_rows_in_step() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = replay_run();
    cmd.args(["--duration-s", "5", "--record"]).arg(dir.path());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: 4_000_000,
                rlim_max: 4_000_000,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("error: recording"), "{err}");
    let file = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "h5"))
        .expect("an episode file");
    let ep = Episode::open(&file).unwrap_or_else(|e| panic!("{}", mvla::error::report(&e)));
    assert!(ep.frames >= 1, "{err}");
    assert_eq!(ep.actions.len(), ep.frames);
    assert_eq!(ep.event_types.len(), ep.frames);
    let mut frame = Vec::new();
    for i in 0..ep.frames {
        ep.read_frame(i, &mut frame).unwrap();
    }
}

#[test]
fn a_recording_survives_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = replay_run()
        .arg("--record")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Four replayed steps (0.8 s each), then kill without any chance to clean up.
    std::thread::sleep(Duration::from_millis(3500));
    signal(&child, libc::SIGKILL);
    wait_for_exit(&mut child, Duration::from_secs(5));
    let file = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "h5"))
        .expect("an episode file");
    let ep = Episode::open(&file).unwrap();
    assert!(ep.frames >= 2, "{} rows survived", ep.frames);
    assert_eq!(ep.event_types.len(), ep.frames);
    assert_eq!(ep.event_types[0], "episode_start");
    let source = Episode::open(&episodes_dir().join(format!("{FLAT_EPISODE}.h5"))).unwrap();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for i in 0..ep.frames {
        ep.read_frame(i, &mut a).unwrap();
        source.read_frame(i, &mut b).unwrap();
        assert!(a == b, "row {i} differs from the replayed frame");
    }
    // The session log is line-flushed: every line is complete JSON.
    let log = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .unwrap();
    for line in std::fs::read_to_string(log).unwrap().lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap();
    }
}

#[test]
fn a_bad_config_names_file_and_key_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("robot.toml");
    std::fs::write(
        &path,
        "[model]\ndir = \"m\"\n[capture]\nsource = \"replay\"\n[capture.replay]\nepisodes = [\"e\"]\n[motor]\nloop_hz = 0\n",
    )
    .unwrap();
    let out = mvla()
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("robot.toml") && err.contains("motor.loop_hz"),
        "{err}"
    );
}

/// The replay config with `extra` appended to `[inference]`, paths absolute.
fn config_with_inference(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let text = replay_config_text().replace("[inference]\n", &format!("[inference]\n{extra}\n"));
    let path = dir.join("robot.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn tensorrt_backend_without_engines_refuses_to_start_and_says_why() {
    // No TensorRT engines here (and, in CI, no TensorRT, GPU or feature): a
    // robot configured for TensorRT must not start on anything else.
    let dir = tempfile::tempdir().unwrap();
    let path = config_with_inference(dir.path(), "backend = \"tensorrt\"");
    let out = mvla()
        .args(["run", "--duration-s", "2", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TensorRT") && err.contains("engines"), "{err}");
}

#[test]
fn auto_backend_falls_back_to_tract_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = config_with_inference(dir.path(), "backend = \"auto\"");
    let out = mvla()
        .args(["run", "--duration-s", "2", "--json", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let backend = s["backend"].as_str().unwrap();
    assert!(
        backend.starts_with("tract (CPU) [tensorrt unavailable: "),
        "{backend}"
    );
    assert!(s["counters"]["inferences"].as_u64().unwrap() >= 1, "{s}");
}

#[test]
fn an_unknown_backend_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = config_with_inference(dir.path(), "backend = \"onnxruntime\"");
    let out = mvla()
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("inference.backend"), "{err}");
}

#[test]
fn replay_of_missing_or_non_hdf5_episodes_is_refused_before_anything_moves() {
    // Used to exit 0 with the capture thread spinning on open errors.
    let dir = tempfile::tempdir().unwrap();
    let text_file = dir.path().join("notes.h5");
    std::fs::write(&text_file, "not hdf5").unwrap();
    let fifo = dir.path().join("pipe.h5");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    // A damaged global heap (the variable-length strings of
    // `action_event_types`): libhdf5 1.10 segfaulted in H5HG_read on it, after
    // the motor loop had started, with no stop frame sent.
    let corrupt_heap = dir.path().join("corrupt_heap.h5");
    std::fs::write(&corrupt_heap, corrupt_first_heap_object(&fixture_episode())).unwrap();
    for (episode, needle) in [
        (dir.path().join("missing.h5"), "missing.h5"),
        (text_file, "notes.h5"),
        (fifo, "not a regular file"),
        (
            corrupt_heap.clone(),
            "corrupt_heap.h5: the HDF5 library crashed reading it",
        ),
    ] {
        let text = replay_config_text().replace(
            &format!("\"{}/episodes\"", fixtures().display()),
            &format!("{:?}", episode.display().to_string()),
        );
        let cfg = dir.path().join("replay.toml");
        std::fs::write(&cfg, text).unwrap();
        let t = std::time::Instant::now();
        let out = mvla()
            .args(["run", "--duration-s", "5", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{needle}: {err}");
        assert!(err.contains(needle), "{needle}: {err}");
        assert!(
            t.elapsed() < std::time::Duration::from_secs(4),
            "{needle}: refused at start"
        );
    }
}

fn fixture_episode() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/episodes/episode_20250102_093000_v3_right.h5"
    ))
    .unwrap()
}

/// The file with the size of the first object in its HDF5 global heap
/// collection (`GCOL`: 16-byte header, then objects of index u16, refcount
/// u16, reserved u32, size u64, data) made huge (HDF5 file format spec, III.E).
fn corrupt_first_heap_object(file: &[u8]) -> Vec<u8> {
    let gcol = file
        .windows(4)
        .position(|w| w == b"GCOL")
        .expect("the episode has a global heap");
    let first_object = gcol + 16;
    assert_eq!(
        u16::from_le_bytes([file[first_object], file[first_object + 1]]),
        1,
        "object 1 starts the collection"
    );
    let mut out = file.to_vec();
    out[first_object + 8 + 5] = 0x80;
    out
}

/// The file with one heap object's size grown by 256 bytes: the object
/// whose data starts with `prefix` (objects are 8-byte aligned, after the
/// 16-byte collection header).
fn grow_heap_object(file: &[u8], prefix: &[u8]) -> Vec<u8> {
    let gcol = file.windows(4).position(|w| w == b"GCOL").unwrap();
    let mut at = gcol + 16;
    loop {
        let index = u16::from_le_bytes([file[at], file[at + 1]]);
        assert_ne!(index, 0, "no heap object starting with {prefix:?}");
        let size = u64::from_le_bytes(file[at + 8..at + 16].try_into().unwrap()) as usize;
        if file[at + 16..].starts_with(prefix) {
            let mut out = file.to_vec();
            out[at + 9] += 1;
            return out;
        }
        at += 16 + size.div_ceil(8) * 8;
    }
}

/// `mvla eval` on `file`: refused (exit 2) with `needle` on stderr, the
/// process alive to say so; how long it took.
fn eval_refuses(file: &std::path::Path, needle: &str) -> std::time::Duration {
    let t = std::time::Instant::now();
    let out = mvla()
        .args(["eval", "--model"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/tiny_model"
        ))
        .arg(file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(needle), "{err}");
    t.elapsed()
}

/// A damaged heap object that makes libhdf5 1.10 spin forever: the probe
/// child makes no progress, is killed after the stall timeout, and the file
/// is refused by name.
#[test]
fn eval_of_an_episode_that_hangs_libhdf5_ends_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("episode_spins.h5");
    std::fs::write(&bad, grow_heap_object(&fixture_episode(), b"episode_2")).unwrap();
    let took = eval_refuses(
        &bad,
        "episode_spins.h5: reading it made no progress for 10 s",
    );
    assert!(took < std::time::Duration::from_secs(40), "{took:?}");
}

/// `mvla eval` on the damaged heap of the replay test: refused by name.
#[test]
fn eval_of_an_episode_that_crashes_libhdf5_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("episode_bad_heap.h5");
    std::fs::write(&bad, corrupt_first_heap_object(&fixture_episode())).unwrap();
    eval_refuses(
        &bad,
        "episode_bad_heap.h5: the HDF5 library crashed reading it (signal 11)",
    );
}

/// Regression: shutdown waited for the replay source's sleep, so a long
/// `interval_ms` made SIGTERM (and `--duration-s`) never finish.
#[test]
fn sigterm_ends_a_long_replay_interval_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("slow.toml");
    std::fs::write(
        &cfg,
        format!(
            "[model]\ndir = {:?}\n[capture]\nsource = \"replay\"\n[capture.replay]\nepisodes = [{:?}]\ninterval_ms = 60000\n",
            fixtures().join("tiny_model"),
            episodes_dir()
        ),
    )
    .unwrap();
    let mut child = mvla()
        .args(["run", "--config"])
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first frame is taken at once; the second is due in a minute (the
    // longest interval_ms accepted).
    std::thread::sleep(Duration::from_millis(2500));
    let sent = std::time::Instant::now();
    signal(&child, libc::SIGTERM);
    let status = wait_for_exit(&mut child, Duration::from_secs(20));
    let took = sent.elapsed();
    assert!(status.success(), "{status:?}");
    // Design: 200 ms (the capture thread looks at its stop flag every 20 ms,
    // the motor side sends stop ticks for 30 ms); slack for a loaded machine.
    assert_reaction("exit after SIGTERM", took, Duration::from_millis(200));
}
