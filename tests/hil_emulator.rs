//! Hardware-in-the-loop with the board emulated: `mvla run` (the real binary)
//! talks SLCAN over a pty to the emulator in this test process; assertions
//! are on the exact bytes the board receives.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use mvla::clock::{Clock, MonotonicClock, Timestamp};
use mvla::drive::emulator::{BoardEmulator, Fault};
use mvla::drive::STOP_WHEELS;
use mvla::robot::calib::Calibration;

/// Vendor forward at 50 % throttle: what the forward-biased model commands.
const FORWARD: [u8; 3] = [57, 143, 100];

fn write_config(
    dir: &Path,
    port: &Path,
    extra_replay: &str,
    extra_inference: &str,
) -> std::path::PathBuf {
    let path = dir.join("hil.toml");
    let text = format!(
        "[model]\ndir = {model:?}\n[capture]\nsource = \"replay\"\n[capture.replay]\nepisodes = [{eps:?}]\n{extra_replay}\n\
         [inference]\n{extra_inference}\n[motor]\nloop_hz = 100\nlink = \"slcan\"\n[motor.slcan]\nport = {port:?}\n",
        model = fixtures().join("tiny_model_forward"),
        eps = episodes_dir(),
        port = port.display().to_string(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn spawn(config: &Path, record: Option<&Path>) -> Child {
    let mut c = Command::new(mvla_bin());
    c.args(["run", "--json", "--config"]).arg(config);
    if let Some(r) = record {
        c.arg("--record").arg(r);
    }
    c.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn within_calibration(frames: &[(Timestamp, [u8; 3])]) {
    let c = Calibration::serbot();
    let (lo, hi) = (
        c.bytes.center - c.bytes.max_offset,
        c.bytes.center + c.bytes.max_offset,
    );
    for (_, w) in frames {
        assert!(
            w.iter().all(|b| (lo..=hi).contains(b)),
            "frame {w:?} outside {lo}..={hi}"
        );
    }
}

/// These tests check reaction times: run them one at a time, not against each other.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn init_steady_frames_and_a_stop_frame_soon_after_sigterm() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let emu = BoardEmulator::start(Calibration::serbot()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), emu.port_path(), "", "");
    let mut child = spawn(&cfg, None);
    std::thread::sleep(Duration::from_millis(2500));
    let before_term = emu.snapshot();
    let sigterm_at = MonotonicClock.now();
    // SAFETY: kill(2) on our own child process.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    assert!(wait_for_exit(&mut child, Duration::from_secs(10)).success());
    let s = emu.snapshot();

    // Exact init sequence: close, 500 kbit/s, open; then only wheel frames.
    let cmds: Vec<&[u8]> = s.commands.iter().map(|c| c.command.as_slice()).collect();
    assert_eq!(&cmds[..3], &[&b"C"[..], b"S6", b"O"]);
    assert!(
        cmds[3..]
            .iter()
            .all(|c| c.starts_with(b"t010407") && c.len() == 13),
        "only wheel frames after init"
    );
    assert_eq!(s.rejected, 0);
    within_calibration(&s.wheel_frames);

    // Steady frames at 100 Hz: over the last second before SIGTERM, 80..=120 frames.
    let window: Vec<_> = before_term
        .wheel_frames
        .iter()
        .filter(|(t, _)| sigterm_at.saturating_since(*t) <= Duration::from_secs(1))
        .collect();
    assert!(
        (80..=120).contains(&window.len()),
        "{} frames in the last second",
        window.len()
    );
    assert!(
        window.iter().any(|(_, w)| *w == FORWARD),
        "the robot was driving forward"
    );

    // After SIGTERM: a stop frame within 100 ms, and nothing but stop after it.
    let after: Vec<_> = s
        .wheel_frames
        .iter()
        .filter(|(t, _)| *t >= sigterm_at)
        .collect();
    let first_stop = after
        .iter()
        .position(|(_, w)| *w == STOP_WHEELS)
        .expect("a stop frame after SIGTERM");
    let latency = after[first_stop].0.saturating_since(sigterm_at);
    assert_reaction(
        "stop frame after SIGTERM",
        latency,
        Duration::from_millis(100),
    );
    assert!(after[first_stop..].iter().all(|(_, w)| *w == STOP_WHEELS));
    assert_eq!(
        s.wheel_frames.last().unwrap().1,
        STOP_WHEELS,
        "last frame is stop"
    );
}

#[test]
fn stops_soon_after_frames_stop() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let emu = BoardEmulator::start(Calibration::serbot()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Replay once, fast; the source ends and no frame comes any more.
    let cfg = write_config(
        dir.path(),
        emu.port_path(),
        "interval_ms = 100\nloop = false",
        "no_frame_timeout_ms = 100",
    );
    let rec = dir.path().join("rec");
    let mut child = spawn(&cfg, Some(&rec));
    assert!(
        wait_for_exit(&mut child, Duration::from_secs(20)).success(),
        "exits when the source ends"
    );
    let s = emu.snapshot();
    within_calibration(&s.wheel_frames);
    // Capture time of the last frame the policy saw, from the session log.
    let log = std::fs::read_dir(&rec)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .unwrap();
    let last_capture = std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "inference")
        .map(|v| Timestamp(v["capture_ns"].as_u64().unwrap()))
        .max()
        .unwrap();
    assert!(s.wheel_frames.iter().any(|(_, w)| *w == FORWARD));
    let first_stop = s
        .wheel_frames
        .iter()
        .find(|(t, w)| *t >= last_capture && *w == STOP_WHEELS)
        .expect("stop after the last frame");
    let latency = first_stop.0.saturating_since(last_capture);
    assert_reaction(
        "stop frame after the last camera frame",
        latency,
        Duration::from_millis(150),
    );
    assert!(
        s.wheel_frames
            .iter()
            .filter(|(t, _)| *t >= first_stop.0)
            .all(|(_, w)| *w == STOP_WHEELS),
        "stays stopped"
    );
}

#[test]
fn a_hung_adapter_stops_the_robot_and_the_link_recovers_with_stop_first() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let emu = BoardEmulator::start(Calibration::serbot()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), emu.port_path(), "", "");
    let mut child = spawn(&cfg, None);
    std::thread::sleep(Duration::from_millis(2000));
    emu.set_fault(Fault::Stall);
    std::thread::sleep(Duration::from_millis(400));
    let resumed_at = MonotonicClock.now();
    emu.set_fault(Fault::None);
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: kill(2) on our own child process.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert!(wait_for_exit(&mut child, Duration::from_secs(10)).success());
    let s = emu.snapshot();
    within_calibration(&s.wheel_frames);
    // While the adapter hung, the controller knew: link errors, and the motor
    // loop at Stop (the link-error level) for at least the stall.
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&out).expect("run --json summary");
    let motor = &summary["motor"];
    assert!(motor["link"]["errors"].as_u64().unwrap() >= 1, "{motor}");
    // 400 ms stall at 100 Hz: ≥ 40 ticks at Stop, allowing for the reply
    // timeout before the error is seen (generous for a loaded machine).
    assert!(motor["ticks_stop"].as_u64().unwrap() >= 20, "{motor}");
    // After the adapter answers again the controller re-initialises (C, S6, O)
    // and its first wheel frame is stop.
    let later: Vec<&[u8]> = s
        .commands
        .iter()
        .filter(|c| c.at >= resumed_at)
        .map(|c| c.command.as_slice())
        .collect();
    let init = later
        .windows(3)
        .position(|w| w == [&b"C"[..], b"S6", b"O"])
        .unwrap_or_else(|| panic!("no re-initialisation in {:?}", &later[..later.len().min(8)]));
    let first_frame = later[init + 3..]
        .iter()
        .find(|c| c.starts_with(b"t"))
        .unwrap();
    assert_eq!(
        *first_frame, b"t010407646464",
        "stop first after reconnecting"
    );
    // And it drives again afterwards.
    assert!(s
        .wheel_frames
        .iter()
        .any(|(t, w)| *t > resumed_at && *w == FORWARD));
}
