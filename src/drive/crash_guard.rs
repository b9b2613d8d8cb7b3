//! The last line of defence when the process itself dies.
//!
//! A crash in foreign code (libhdf5 on a corrupt file, the CUDA driver,
//! TensorRT), an `abort()` (a C library's assertion, an allocation failure,
//! the systemd watchdog's SIGABRT) kills the process before any Rust code
//! can stop the robot. For those signals [`install`] sets a handler that
//! writes SLCAN stop frames straight to the serial port's file descriptor
//! (armed by the SLCAN link while it is open), then lets the signal kill the
//! process as it would have (core dump, exit status).
//!
//! The handler is async-signal-safe: it loads atomics and calls only
//! `write(2)`, `tcdrain(3)`, `sigaction(2)` and `raise(3)`, all on the POSIX
//! list. It runs on the thread's alternate signal stack (Rust's runtime gives
//! every thread one), so a stack overflow is covered too.
//!
//! What it cannot cover: SIGKILL (`kill -9`, the kernel's OOM killer), power
//! loss, a kernel hang. Under systemd the unit's `ExecStopPost=mvla stop`
//! sends stop frames after the process is gone, whatever killed it; beyond
//! that only the motor board's own command timeout is left (not verified on
//! the Serbot board: see the README).

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Once;

/// The SLCAN command for "all wheels stopped" (`slcan::wheel_command(STOP_WHEELS)`;
/// a test checks they agree). A constant: the handler may not build it.
pub const STOP_COMMAND: &[u8] = b"t010407646464\r";

/// The signals that end the process because of a crash or an abort.
const FATAL_SIGNALS: [libc::c_int; 5] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGABRT,
];

/// The serial port the handler writes to; -1 = none open.
static PORT_FD: AtomicI32 = AtomicI32::new(-1);
static INSTALL: Once = Once::new();

/// Install the handler for the fatal signals (once per process; later calls
/// do nothing). Call before the wheel link opens.
pub fn install() {
    INSTALL.call_once(|| {
        for sig in FATAL_SIGNALS {
            // SAFETY: a zeroed sigaction is a valid start (empty mask, no
            // flags); the handler is an `extern "C" fn(c_int)`, what
            // sa_sigaction holds without SA_SIGINFO.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_fatal_signal as extern "C" fn(libc::c_int) as usize;
                // ONSTACK: a stack overflow has no stack left to run on.
                // RESETHAND: a fault inside the handler ends the process.
                action.sa_flags = libc::SA_ONSTACK | libc::SA_RESETHAND;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(sig, &action, std::ptr::null_mut());
            }
        }
    });
}

/// The link's serial port is open on `fd`: a fatal signal writes stop frames to it.
pub fn arm(fd: RawFd) {
    PORT_FD.store(fd, Ordering::SeqCst);
}

/// The port on `fd` is about to close: stop writing to it (a later file
/// could reuse the number).
pub fn disarm(fd: RawFd) {
    let _ = PORT_FD.compare_exchange(fd, -1, Ordering::SeqCst, Ordering::SeqCst);
}

/// In a forked child (the episode probe): never write to the parent's port,
/// and die of a fatal signal quietly (the parent reports it).
pub fn forget_in_child() {
    PORT_FD.store(-1, Ordering::SeqCst);
    for sig in FATAL_SIGNALS {
        // SAFETY: restoring the default action; signal(2) is async-signal-safe.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
}

/// The descriptor the handler would write to now (-1 = none).
pub fn armed_fd() -> RawFd {
    PORT_FD.load(Ordering::SeqCst)
}

/// Write all of `bytes` to `fd`, retrying short writes and EINTR; gives up on
/// any other error (nothing else can be done in a dying process).
fn write_all_raw(fd: RawFd, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: write(2) with a valid pointer/length pair; async-signal-safe.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n > 0 {
            bytes = &bytes[n as usize..];
        } else if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        } else {
            return;
        }
    }
}

/// `sig` as decimal digits, without allocating.
fn decimal(mut v: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return &buf[i..];
        }
    }
}

extern "C" fn on_fatal_signal(sig: libc::c_int) {
    let fd = PORT_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        // A CR first ends a command the crash may have cut in half (the
        // adapter rejects the fragment); then stop three times, as
        // `MotorLink::stop` does, and wait until the bytes left the UART.
        write_all_raw(fd, b"\r");
        for _ in 0..3 {
            write_all_raw(fd, STOP_COMMAND);
        }
        // SAFETY: tcdrain on an open descriptor; async-signal-safe.
        unsafe { libc::tcdrain(fd) };
    }
    let mut digits = [0u8; 10];
    write_all_raw(libc::STDERR_FILENO, b"mvla: fatal signal ");
    write_all_raw(libc::STDERR_FILENO, decimal(sig as u32, &mut digits));
    write_all_raw(
        libc::STDERR_FILENO,
        if fd >= 0 {
            b": stop frames written to the wheel link\n"
        } else {
            b": no wheel link open\n"
        },
    );
    // SA_RESETHAND already restored the default action; raising the signal
    // again (blocked until this handler returns) ends the process with it,
    // also when it was sent by kill(2) rather than raised by a fault.
    // SAFETY: raise(3) is async-signal-safe.
    unsafe { libc::raise(sig) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stop_command_is_the_encoders_stop_frame() {
        assert_eq!(
            STOP_COMMAND,
            crate::drive::slcan::wheel_command(crate::drive::STOP_WHEELS).as_slice()
        );
    }

    #[test]
    fn decimal_digits() {
        let mut b = [0u8; 10];
        assert_eq!(decimal(0, &mut b), b"0");
        assert_eq!(decimal(11, &mut b), b"11");
        assert_eq!(decimal(u32::MAX, &mut b), b"4294967295");
    }
}
