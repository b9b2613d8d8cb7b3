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

fn check<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {report}"))
}

#[test]
fn default_config_exits_0_with_every_check_reported_and_hardware_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = doctor(&[
        "--json",
        "--report-dir",
        tmp.path().to_str().unwrap(),
        // The disk check must run, not pass on whatever the CI disk has free.
        "--min-free-gib",
        "0",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    let checks = report["checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, mvla::doctor::CHECKS);
    for c in checks {
        let status = c["status"].as_str().unwrap();
        assert!(["pass", "fail", "skip"].contains(&status), "{c}");
        assert!(!c["detail"].as_str().unwrap().is_empty(), "{c}");
    }
    // No camera, GPU, TensorRT or adapter here (nvrtc may compile when the
    // library is installed, without a GPU): skipped, each saying why.
    for name in [
        "camera",
        "cuda",
        "kernels",
        "tensorrt",
        "engines",
        "gpu_chain",
        "link",
    ] {
        assert_eq!(check(&report, name)["status"], "skip", "{name}");
    }
    assert!(check(&report, "camera")["detail"]
        .as_str()
        .unwrap()
        .contains("replay"));
    assert!(check(&report, "link")["detail"]
        .as_str()
        .unwrap()
        .contains("emulator"));
    // Disk and real-time checks run on any machine.
    assert_eq!(check(&report, "disk")["status"], "pass");
    assert!(
        check(&report, "disk")["figures"]["free_gib"]
            .as_f64()
            .unwrap()
            >= 0.0
    );
    // The default config asks for no real-time priority: probed, cannot fail.
    let rt = check(&report, "realtime");
    assert_eq!(rt["status"], "pass", "{rt}");
    assert!(rt["figures"]["sched_fifo_ok"].is_boolean(), "{rt}");
    assert!(rt["figures"]["rlimit_memlock_bytes"].is_string(), "{rt}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["versions"]["mvla"], env!("CARGO_PKG_VERSION"));
    assert!(report["utc"].as_str().unwrap().ends_with('Z'));
    assert!(!report["hardware_tests"].as_array().unwrap().is_empty());
}

#[test]
fn the_table_fits_80_columns() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, stdout, _) = doctor(&["--report-dir", tmp.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}");
    for line in stdout.lines() {
        // Single words longer than a line (paths) may overflow; nothing here has one.
        assert!(line.chars().count() <= 80, "{} columns: {line}", line.len());
    }
    assert!(stdout.contains("result: ok"), "{stdout}");
}

#[test]
fn a_required_check_that_was_skipped_fails_the_run() {
    let (code, stdout, _) = doctor(&["--require", "camera,link"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("FAIL  camera     required but skipped"),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAIL  link       required but skipped"),
        "{stdout}"
    );
    assert!(stdout.contains("result: FAILED"), "{stdout}");
}

#[test]
fn require_gpu_without_a_gpu_fails_naming_the_check() {
    let (code, stdout, _) = doctor(&["--require", "gpu"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("FAIL  cuda       required but skipped"),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAIL  kernels    required but skipped"),
        "{stdout}"
    );
    // Checks outside the group keep their skip.
    assert!(stdout.contains("skip  camera"), "{stdout}");
    // --strict: every check must run.
    let (code, stdout, _) = doctor(&["--strict", "--json"]);
    assert_eq!(code, 1, "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["status"] != "skip"));
}

#[test]
fn build_without_tensorrt_fails_the_engines_check_and_keeps_the_json_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = doctor(&[
        "--build",
        "--json",
        "--report-dir",
        tmp.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("stdout is the JSON only");
    let engines = check(&report, "engines");
    assert_eq!(engines["status"], "fail", "{engines}");
    assert!(engines["detail"].as_str().unwrap().contains("--build"));
    // The report is still written when the build cannot run.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
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
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    // doctor_YYYYmmdd_HHMMSS.json (UTC), complete (no temporary file left).
    let name = files[0].file_name().unwrap().to_str().unwrap();
    let stamp = name
        .strip_prefix("doctor_")
        .and_then(|n| n.strip_suffix(".json"))
        .unwrap_or_else(|| panic!("{name}"));
    assert_eq!(stamp.len(), 15, "{name}");
    assert_eq!(&stamp[8..9], "_", "{name}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
    assert_eq!(
        report["checks"].as_array().unwrap().len(),
        mvla::doctor::CHECKS.len()
    );
    assert!(report["versions"].is_object());
    assert!(stderr.contains("report: "), "{stderr}");
    // A second run in the same second does not replace the first report.
    let (code, _, _) = doctor(&["--report-dir", dir.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
}

#[test]
fn without_a_report_dir_it_says_where_the_report_was_not_written() {
    let (code, _, stderr) = doctor(&[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("report not written"), "{stderr}");
}

#[test]
fn bad_arguments_and_configs_exit_2() {
    let (code, _, stderr) = doctor(&["--require", "warp_drive"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no such check or group"), "{stderr}");
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
    use mvla::doctor::{run, DoctorOptions, Status};
    use mvla::drive::emulator::{BoardEmulator, Fault};
    use mvla::robot::calib::Calibration;

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
