//! A closed stdout (`mvla … | head`) ends no command with a panic: the
//! output is dropped, the command finishes with its normal exit code.
//! (Used to be "failed printing to stdout: Broken pipe", exit 101.)

use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};

/// A pipe whose read end is already closed: every write to it fails (EPIPE).
fn broken_pipe() -> Stdio {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors were just created and are owned here only.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    Stdio::from(write)
}

#[test]
fn commands_with_a_closed_stdout_end_without_a_panic() {
    for args in [
        &[
            "eval",
            "--json",
            "--model",
            "tests/fixtures/tiny_model",
            "tests/fixtures/episodes",
        ][..],
        &[
            "eval",
            "--model",
            "tests/fixtures/tiny_model",
            "tests/fixtures/episodes",
        ],
        &["run", "--duration-s", "1"],
        &["run", "--duration-s", "1", "--json"],
        &["sim", "list"],
        &[
            "sim",
            "trials",
            "--policy",
            "expert",
            "--scenario",
            "v3_*",
            "--trials",
            "2",
        ],
        &[
            "sim",
            "trials",
            "--policy",
            "expert",
            "--scenario",
            "v3_*",
            "--json",
        ],
        &["doctor", "--list-hardware-tests"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_mvla"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .stdout(broken_pipe())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
}
