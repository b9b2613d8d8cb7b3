//! `mvla doctor` on a machine without the hardware (CI): the hardware checks
//! are skipped with their reason, the others run, the report is written, and
//! `--require` / thresholds / bad input give the documented exit codes.

mod common;

use std::process::Command;

use common::{fixtures, mvla_bin};

fn doctor(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(mvla_bin())
        .arg("doctor")
        .args(args)
        .output()
        .expect("run mvla doctor");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The built-in default plus a recordings directory (so the disk check runs).
fn config_with_record_dir(dir: &std::path::Path) -> std::path::PathBuf {
    let f = fixtures();
    let text = format!(
        "[model]\ndir = \"{}\"\n[capture]\nsource = \"replay\"\n[capture.replay]\nepisodes = [\"{}\"]\n[record]\ndir = \"{}\"\n",
        f.join("tiny_model").display(),
        f.join("episodes").display(),
        dir.join("recordings").display()
    );
    let path = dir.join("doctor.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn default_config_exits_0_with_every_check_reported_and_hardware_skipped() {
    let (code, stdout, _) = doctor(&["--json"]);
    assert_eq!(code, 0, "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    let checks = report["checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, mvla::doctor::CHECKS);
    for c in checks {
        let status = c["status"].as_str().unwrap();
        assert!(["pass", "fail", "skip"].contains(&status), "{c}");
        assert!(!c["detail"].as_str().unwrap().is_empty(), "{c}");
    }
    // The default config replays episodes through an emulated board: no camera, no adapter.
    for name in ["camera", "link"] {
        let c = checks.iter().find(|c| c["name"] == name).unwrap();
        assert_eq!(c["status"], "skip", "{c}");
    }
    assert_eq!(report["ok"], true);
    assert!(!report["hardware_tests"].as_array().unwrap().is_empty());
}

#[test]
fn a_required_check_that_was_skipped_fails_the_run() {
    let (code, stdout, _) = doctor(&["--require", "camera,link"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("FAIL  camera     required but skipped"),
        "{stdout}"
    );
    assert!(stdout.contains("result: FAILED"), "{stdout}");
}

#[test]
fn disk_check_runs_on_the_recordings_dir_and_fails_below_the_threshold() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config_with_record_dir(tmp.path());
    let c = config.to_str().unwrap();
    let (code, stdout, stderr) = doctor(&["--config", c, "--json"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let disk = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "disk")
        .unwrap()
        .clone();
    assert_eq!(disk["status"], "pass", "{disk}");
    assert!(disk["figures"]["free_gib"].as_f64().unwrap() > 0.0);
    // The report went next to the recordings.
    let written: Vec<_> = std::fs::read_dir(tmp.path().join("recordings"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        written
            .iter()
            .any(|n| n.starts_with("doctor_") && n.ends_with(".json")),
        "{written:?}"
    );
    let (code, stdout, _) = doctor(&["--config", c, "--min-free-gib", "1e9"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("FAIL  disk"), "{stdout}");
}

#[test]
fn report_dir_receives_a_json_report_with_every_check() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("reports");
    let (code, _, stderr) = doctor(&["--report-dir", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(
        report["checks"].as_array().unwrap().len(),
        mvla::doctor::CHECKS.len()
    );
    assert!(stderr.contains("report: "), "{stderr}");
}

#[test]
fn bad_arguments_and_configs_exit_2() {
    let (code, _, stderr) = doctor(&["--require", "warp_drive"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no such check"), "{stderr}");
    let (code, _, stderr) = doctor(&["--min-free-gib", "NaN"]);
    assert_eq!(code, 2, "{stderr}");
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "[motor]\nloop_hz = \"fast\"\n").unwrap();
    let (code, _, stderr) = doctor(&["--config", bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("bad.toml"), "{stderr}");
}

#[test]
fn hardware_tests_are_listed_with_their_commands() {
    let (code, stdout, _) = doctor(&["--list-hardware-tests"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("--test camera_v4l2 -- --ignored"),
        "{stdout}"
    );
    assert!(stdout.contains("--test cuda_kernels"), "{stdout}");
    // Every #[ignore]d test file of the repository is listed.
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs")
            && std::fs::read_to_string(&path)
                .unwrap()
                .contains("#[ignore = \"needs")
        {
            let stem = path.file_stem().unwrap().to_str().unwrap();
            assert!(
                stdout.contains(&format!("--test {stem}")),
                "{stem} has hardware tests but doctor does not list them"
            );
        }
    }
}

/// A config whose SLCAN port is the in-tree board emulator's pty.
fn slcan_config(port: &std::path::Path) -> mvla::config::Config {
    let f = fixtures();
    let text = format!(
        "[model]\ndir = \"{}\"\n[capture]\nsource = \"replay\"\n[capture.replay]\nepisodes = [\"{}\"]\n\
         [motor]\nlink = \"slcan\"\n[motor.slcan]\nport = \"{}\"\nreply_timeout_ms = 50\n",
        f.join("tiny_model").display(),
        f.join("episodes").display(),
        port.display()
    );
    mvla::config::Config::from_toml(&text, "doctor link test", std::path::Path::new(".")).unwrap()
}

#[test]
fn link_check_opens_the_adapter_and_sends_only_stop_frames() {
    use mvla::control::calib::Calibration;
    use mvla::doctor::{run, DoctorOptions, Status};
    use mvla::drive::emulator::{BoardEmulator, Fault};

    let emu = BoardEmulator::start(Calibration::serbot()).unwrap();
    let report = run(&slcan_config(emu.port_path()), &DoctorOptions::default());
    let link = report.checks.iter().find(|c| c.name == "link").unwrap();
    assert_eq!(link.status, Status::Pass, "{}", link.detail);
    let s = emu.snapshot();
    // The runtime's open sequence, then stop frames only: the robot never moves.
    let cmds: Vec<&[u8]> = s.commands.iter().map(|c| c.command.as_slice()).collect();
    assert_eq!(&cmds[..3], &[&b"C"[..], b"S6", b"O"]);
    assert_eq!(s.wheel_frames.len(), 5);
    assert!(s
        .wheel_frames
        .iter()
        .all(|(_, w)| *w == mvla::drive::STOP_WHEELS));

    // An adapter that answers BEL fails the check, naming the reason.
    let emu = BoardEmulator::start(Calibration::serbot()).unwrap();
    emu.set_fault(Fault::BelReplies);
    let report = run(&slcan_config(emu.port_path()), &DoctorOptions::default());
    let link = report.checks.iter().find(|c| c.name == "link").unwrap();
    assert_eq!(link.status, Status::Fail, "{}", link.detail);
    assert!(!report.ok);
}
