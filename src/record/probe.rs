//! Reading an episode file in a throw-away child process first.
//!
//! Debian's libhdf5 (1.10) dereferences what a corrupt file says: a damaged
//! global heap (the variable-length strings of `action_event_types`) or
//! damaged chunk dimensions make it segfault inside `H5Dread`, and no check
//! of ours before the call can rule that out (the heap is only followed
//! inside the library). A bundled, newer HDF5 would fix some such bugs and not
//! the class. So [`check_in_child`] forks, reads the whole file the way the
//! runtime will (every dataset, attribute and frame) in the child, and looks
//! at how the child ended: a crash or a hang there becomes an error naming the
//! file, and the controller never runs the read that would have killed it.
//! A file that passes is read in-process with the same calls, which then
//! cannot take a path the child did not (the reads are deterministic).
//!
//! `fork` in a threaded process: the child only runs the reader, allocates
//! (glibc's allocator is fork-safe) and ends with `_exit`; it never logs or
//! takes another lock of the parent. The HDF5 crate's library lock is held
//! across the fork, so no other thread is inside libhdf5 at that moment; the
//! child runs inside that lock (re-entrantly: it is the owner there) and
//! never releases it, since a release could hand it to a parent thread that
//! was waiting for it and does not exist in the child (see `run_child`).
//! Each file is checked once per process (same size and modification time),
//! so a looping replay does not fork again while the motor loop runs.

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use super::episode::{Episode, EpisodeError};

/// Longest the child may go without progress (opening the file, then each
/// frame). One 720p frame decompresses in a few ms here; 10 s leaves room
/// for a slow SD card and still ends a read that libhdf5 loops on (a mutated
/// episode made it spin for good). Progress, not the total: a long session
/// recording legitimately takes minutes to read whole.
pub const CHILD_STALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Files already checked: (size, modification time) when they passed.
static CHECKED: Mutex<Option<HashMap<PathBuf, (u64, SystemTime)>>> = Mutex::new(None);

/// Exit status of a child whose reader returned an error (not a crash).
const CHILD_READ_ERROR: i32 = 2;
/// Exit status of a child whose reader panicked.
const CHILD_PANICKED: i32 = 101;

/// Read `path` completely in a forked child. `Ok` when the child read it
/// (the in-process reader may then be used: it takes the same path), or when
/// the reader returned an error (the in-process reader returns it again, with
/// its structure). A crash or hang of the child is an error here.
pub fn check_in_child(path: &Path) -> Result<(), EpisodeError> {
    check_with_timeout(path, CHILD_STALL_TIMEOUT)
}

fn check_with_timeout(path: &Path, timeout: Duration) -> Result<(), EpisodeError> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|source| EpisodeError::Io {
        path: shown.clone(),
        source,
    })?;
    if !meta.is_file() {
        // A FIFO would block the child, a device could be endless.
        return Err(EpisodeError::NotAFile { path: shown });
    }
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let stamp = (
        meta.len(),
        meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
    );
    let mut checked = CHECKED.lock().unwrap_or_else(|e| e.into_inner());
    if checked.as_ref().and_then(|m| m.get(&key)) == Some(&stamp) {
        return Ok(());
    }
    run_child(path, &shown, timeout)?;
    checked.get_or_insert_with(HashMap::new).insert(key, stamp);
    Ok(())
}

/// Forget that `path` was checked (the episode fuzz target rewrites one file).
pub fn forget(path: &Path) {
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if let Some(m) = CHECKED.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        m.remove(&key);
    }
}

/// What the child does: everything the runtime reads. Its exit status is
/// the verdict; it never returns.
fn child_main(path: &Path, progress: OwnedFd) -> ! {
    // The child must not write stop frames to the parent's wheel link if it
    // crashes: that is the parent's port, in use by its link thread.
    crate::drive::crash_guard::forget_in_child();
    // A panic must not unwind into the parent's frames copied into the child.
    let tick = || {
        // SAFETY: write(2) of one byte from a valid buffer to our pipe.
        unsafe { libc::write(progress.as_raw_fd(), b".".as_ptr().cast(), 1) };
    };
    let status = std::panic::catch_unwind(|| match Episode::open_in_process(path) {
        Ok(ep) => {
            tick();
            let mut frame = Vec::new();
            for i in 0..ep.frames {
                if ep.read_frame(i, &mut frame).is_err() {
                    return CHILD_READ_ERROR;
                }
                tick();
            }
            0
        }
        Err(_) => CHILD_READ_ERROR,
    })
    .unwrap_or(CHILD_PANICKED);
    // SAFETY: _exit ends the child without running the parent's atexit
    // handlers or flushing its stdio buffers (they belong to the parent).
    unsafe { libc::_exit(status) }
}

fn run_child(path: &Path, shown: &str, timeout: Duration) -> Result<(), EpisodeError> {
    // The child writes a byte per step done (its progress) and the write end
    // closes when it exits, however it exits.
    let mut fds = [0; 2];
    // SAFETY: pipe2 with a valid two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(EpisodeError::Io {
            path: shown.to_string(),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: both descriptors are new and owned here.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let (read_fd, write_fd) = (read_end.as_raw_fd(), write_end.as_raw_fd());
    // The HDF5 crate's library lock is held across the fork, which keeps
    // every other thread out of libhdf5 while its state is copied, and the
    // child runs *inside* that lock and never releases it: its reads take
    // the lock again re-entrantly (same thread, same thread id) and it ends
    // with `_exit` inside the closure. Releasing it in the child hung the
    // child now and then (ReadHung, tests/policy_fixture.rs, ~1 run in 15):
    // when another parent thread was parked waiting for the lock at the
    // fork, parking_lot's fair unlock can hand the lock to that waiter, a
    // thread that does not exist in the child, so the child's next HDF5
    // call waited for good (backtrace: child parked in RawMutex::lock_slow
    // under `hdf5::sync::sync`, from `File::open`).
    let pid = hdf5::sync::sync(|| {
        // SAFETY: fork(2); the child runs `child_main` only (see the module
        // comment) and never returns from this closure.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: in the child, closing our copy of the read end (a
            // descriptor it owns) and taking ownership of the write end; the
            // parent's `OwnedFd`s are never dropped here (`child_main` exits).
            unsafe { libc::close(read_fd) };
            child_main(path, unsafe { OwnedFd::from_raw_fd(write_fd) });
        }
        pid
    });
    if pid < 0 {
        return Err(EpisodeError::Io {
            path: shown.to_string(),
            source: std::io::Error::last_os_error(),
        });
    }
    drop(write_end);
    let mut deadline = Instant::now() + timeout;
    let mut pipe = std::fs::File::from(read_end);
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child with a valid status pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break;
        }
        if Instant::now() >= deadline {
            // SAFETY: kill and reap our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return Err(EpisodeError::ReadHung {
                path: shown.to_string(),
                seconds: timeout.as_secs_f64(),
            });
        }
        // Wait for the pipe to close (the child ended) or 50 ms, whichever is first.
        let mut pfd = libc::pollfd {
            fd: pipe.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, 50) };
        if pfd.revents & libc::POLLIN != 0 && pipe.read(&mut [0u8; 256]).is_ok_and(|n| n > 0) {
            deadline = Instant::now() + timeout;
        } else if pfd.revents & libc::POLLHUP != 0 {
            // The child is gone; waitpid reaps it on the next pass (no
            // busy loop: poll would return at once again).
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    if libc::WIFSIGNALED(status) {
        return Err(EpisodeError::ReadCrashed {
            path: shown.to_string(),
            signal: libc::WTERMSIG(status),
        });
    }
    match libc::WEXITSTATUS(status) {
        0 | CHILD_READ_ERROR => Ok(()),
        status => Err(EpisodeError::ReadExited {
            path: shown.to_string(),
            status,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_is_refused_before_anything_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("episode.h5");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo with a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(matches!(
            check_in_child(&fifo),
            Err(EpisodeError::NotAFile { .. })
        ));
        // Past that check (as a file that hangs libhdf5 would be), the
        // child blocks opening it: the timeout kills it and says so.
        let t = Instant::now();
        let r = run_child(&fifo, "episode.h5", Duration::from_millis(300));
        assert!(matches!(r, Err(EpisodeError::ReadHung { .. })), "{r:?}");
        assert!(t.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_good_episode_passes_and_is_checked_once() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/episodes/episode_20250102_093000_v3_right.h5"
        ));
        check_in_child(path).unwrap();
        let key = std::fs::canonicalize(path).unwrap();
        assert!(CHECKED.lock().unwrap().as_ref().unwrap().contains_key(&key));
        check_in_child(path).unwrap();
    }

    #[test]
    fn a_thread_waiting_for_the_hdf5_lock_at_the_fork_does_not_hang_the_child() {
        // Regression (tests/policy_fixture.rs failed now and then with
        // ReadHung): the child released the HDF5 lock it inherited, and with
        // a parent thread parked on that lock at the fork, parking_lot's fair
        // unlock handed it to that thread, which does not exist in the child.
        // Set that up: a holder keeps the lock; the prober parks on it first,
        // a waiter parks behind it; the holder lets go, the prober forks with
        // the waiter still parked.
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/episodes/episode_20250102_093000_v3_right.h5"
        ));
        for _ in 0..3 {
            let holder = std::thread::spawn(|| {
                hdf5::sync::sync(|| std::thread::sleep(Duration::from_millis(300)))
            });
            std::thread::sleep(Duration::from_millis(50));
            let prober =
                std::thread::spawn(move || run_child(path, "episode.h5", Duration::from_secs(3)));
            std::thread::sleep(Duration::from_millis(100));
            let waiter = std::thread::spawn(|| hdf5::sync::sync(|| ()));
            holder.join().unwrap();
            let r = prober.join().unwrap();
            waiter.join().unwrap();
            assert!(r.is_ok(), "{r:?}");
        }
    }
}
