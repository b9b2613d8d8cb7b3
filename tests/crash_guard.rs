//! The crash guard: a process killed by a fatal signal (a fault in foreign
//! code, an abort) writes SLCAN stop frames to the open wheel link first.
//! Each case runs in a forked child, which really dies of the signal.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use mvla::drive::crash_guard::{self, STOP_COMMAND};

/// Fork; the child runs `f` (which must not return) and the parent gets its pid.
fn fork_child(f: impl FnOnce()) -> libc::pid_t {
    // SAFETY: the child calls only what `f` calls and then _exit; the test
    // harness's other threads are not duplicated into it.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        f();
        // SAFETY: leaving the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    pid
}

/// Wait for `pid` (at most 20 s); the signal that ended it, if one did.
fn wait_signal(pid: libc::pid_t) -> Option<libc::c_int> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child with a valid status pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break;
        }
        assert!(Instant::now() < deadline, "child {pid} did not end");
        std::thread::sleep(Duration::from_millis(10));
    }
    libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status))
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe(2) with a valid two-element array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors are new and owned here.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn expected_bytes() -> Vec<u8> {
    let mut v = b"\r".to_vec();
    for _ in 0..3 {
        v.extend_from_slice(STOP_COMMAND);
    }
    v
}

fn crash_with(how: fn()) -> (Option<libc::c_int>, Vec<u8>) {
    let (read_end, write_end) = pipe();
    let fd = write_end.as_raw_fd();
    let pid = fork_child(move || {
        crash_guard::install();
        crash_guard::arm(fd);
        how();
    });
    drop(write_end);
    let signal = wait_signal(pid);
    let mut got = Vec::new();
    std::fs::File::from(read_end).read_to_end(&mut got).unwrap();
    (signal, got)
}

#[test]
fn a_segfault_writes_stop_frames_then_dies_of_sigsegv() {
    let (signal, got) = crash_with(|| {
        // A real invalid memory access, as a crash in a C library would be.
        // SAFETY: none: the point is to fault.
        unsafe { std::ptr::null_mut::<u8>().write_volatile(1) };
    });
    assert_eq!(signal, Some(libc::SIGSEGV));
    assert_eq!(got, expected_bytes(), "{:?}", String::from_utf8_lossy(&got));
}

#[test]
fn an_abort_writes_stop_frames_then_dies_of_sigabrt() {
    let (signal, got) = crash_with(|| std::process::abort());
    assert_eq!(signal, Some(libc::SIGABRT));
    assert_eq!(got, expected_bytes(), "{:?}", String::from_utf8_lossy(&got));
}

#[test]
fn a_sigsegv_sent_by_kill_also_ends_the_process() {
    // Rust's own SIGSEGV handler returns for a signal that was not a fault
    // (the process would run on); the guard re-raises it.
    let (signal, got) = crash_with(|| {
        // SAFETY: kill(2) on our own pid.
        unsafe { libc::kill(libc::getpid(), libc::SIGSEGV) };
        std::thread::sleep(Duration::from_secs(5));
    });
    assert_eq!(signal, Some(libc::SIGSEGV));
    assert_eq!(got, expected_bytes());
}

#[test]
fn with_no_link_open_nothing_is_written() {
    let (read_end, write_end) = pipe();
    let fd = write_end.as_raw_fd();
    let pid = fork_child(move || {
        crash_guard::install();
        crash_guard::arm(fd);
        crash_guard::disarm(fd);
        std::process::abort();
    });
    drop(write_end);
    assert_eq!(wait_signal(pid), Some(libc::SIGABRT));
    let mut got = Vec::new();
    std::fs::File::from(read_end).read_to_end(&mut got).unwrap();
    assert!(got.is_empty(), "{got:?}");
}

/// The real SLCAN link arms the guard with its port: a crash after a moving
/// command leaves the (emulated) board commanded to stop.
#[test]
fn a_crash_while_driving_leaves_the_board_stopped() {
    use mvla::drive::emulator::BoardEmulator;
    use mvla::drive::slcan::{Slcan, SlcanConfig};
    use mvla::drive::{MotorLink, STOP_WHEELS};

    let emu = BoardEmulator::start(mvla::robot::calib::Calibration::serbot()).unwrap();
    let config = SlcanConfig {
        reply_timeout: Duration::from_millis(200),
        ..SlcanConfig::new(emu.port_path().display().to_string(), 115_200)
    };
    let pid = fork_child(move || {
        let mut link = Slcan::open(config).expect("open");
        link.send([57, 143, 100]).expect("moving command");
        assert!(crash_guard::armed_fd() >= 0);
        // SAFETY: none: the point is to fault.
        unsafe { std::ptr::null_mut::<u8>().write_volatile(1) };
    });
    assert_eq!(wait_signal(pid), Some(libc::SIGSEGV));
    // The emulator thread reads the pty: give it the handler's bytes.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = emu.snapshot();
        let frames: Vec<[u8; 3]> = s.wheel_frames.iter().map(|f| f.1).collect();
        if frames.len() >= 4 {
            assert_eq!(frames[0], [57, 143, 100], "{frames:?}");
            assert!(frames[1..].iter().all(|&w| w == STOP_WHEELS), "{frames:?}");
            assert_eq!(frames.last(), Some(&STOP_WHEELS));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "board saw {frames:?}, no stop after the crash"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `mvla stop` (the unit's ExecStopPost) opens the configured SLCAN link and
/// sends a stop frame: after a crash or SIGKILL the board is commanded to stop.
#[test]
fn mvla_stop_sends_a_stop_frame_over_the_configured_link() {
    use mvla::drive::emulator::BoardEmulator;
    use mvla::drive::STOP_WHEELS;

    let emu = BoardEmulator::start(mvla::robot::calib::Calibration::serbot()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = dir.path().join("robot.toml");
    std::fs::write(
        &config,
        format!(
            "[model]\ndir = {:?}\n[capture]\nsource = \"replay\"\n[capture.replay]\nepisodes = [{:?}]\n\
             [motor]\nlink = \"slcan\"\n[motor.slcan]\nport = {:?}\n",
            root.join("tests/fixtures/tiny_model"),
            root.join("tests/fixtures/episodes/episode_20250102_093000_v3_right.h5"),
            emu.port_path(),
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mvla"))
        .args(["stop", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let s = emu.snapshot();
    assert_eq!(
        s.wheel_frames.iter().map(|f| f.1).collect::<Vec<_>>(),
        vec![STOP_WHEELS],
        "{text}"
    );
    assert!(s.open, "the adapter was opened (C, S6, O): {text}");
}

/// The shipped unit stops the wheels after the process ends, over the same
/// configuration the controller ran with.
#[test]
fn the_unit_runs_mvla_stop_with_the_controllers_config_after_it_ends() {
    let unit = include_str!("../systemd/mvla.service");
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {key} in the unit"))
            .to_string()
    };
    let start = value("ExecStart");
    let stop_post = value("ExecStopPost");
    assert_eq!(
        stop_post,
        start.replacen(" run ", " stop ", 1),
        "{start} / {stop_post}"
    );
    assert!(stop_post.contains(" stop --config "), "{stop_post}");
}
