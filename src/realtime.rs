//! Real-time set-up of the threads that move the robot (the motor loop and
//! the wheel link): SCHED_FIFO priority, and memory locking scoped to what
//! those threads need.

use serde::Serialize;

/// How a real-time thread ended up scheduled (in the run summary, so a
/// refused priority is visible after the fact, not only in the log).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Scheduling {
    /// Priority asked for (0 = normal scheduling was asked for).
    pub requested_priority: u8,
    /// `"SCHED_FIFO"` or `"SCHED_OTHER"`, read back from the kernel.
    pub policy: String,
    pub priority: i32,
    /// Why SCHED_FIFO was refused, when it was.
    pub refused: Option<String>,
}

/// Put the calling thread on SCHED_FIFO at `priority` (1..=99; 0 = leave it
/// on normal scheduling). Needs CAP_SYS_NICE or an RTPRIO limit (the
/// systemd unit grants both). A refusal is logged loudly and reported.
pub fn set_thread_priority(priority: u8, thread: &str) -> Scheduling {
    let mut refused = None;
    if priority > 0 {
        if let Err(e) = try_sched_fifo(priority) {
            tracing::error!(
                thread,
                priority,
                "SCHED_FIFO refused ({e}); running with normal scheduling"
            );
            refused = Some(e.to_string());
        }
    }
    let (policy, priority_now) = current_scheduling();
    Scheduling {
        requested_priority: priority,
        policy,
        priority: priority_now,
        refused,
    }
}

/// The bare request: the calling thread to SCHED_FIFO at `priority` (also
/// `mvla doctor`'s probe, on a short-lived thread).
pub fn try_sched_fifo(priority: u8) -> std::io::Result<()> {
    let param = libc::sched_param {
        sched_priority: i32::from(priority),
    };
    // SAFETY: pid 0 = the calling thread; `param` outlives the call.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The calling thread's scheduling policy and priority, as the kernel has them.
pub fn current_scheduling() -> (String, i32) {
    // SAFETY: pid 0 = the calling thread.
    let policy = unsafe { libc::sched_getscheduler(0) };
    let mut param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 = the calling thread; `param` is a valid out-pointer.
    unsafe { libc::sched_getparam(0, &mut param) };
    let name = match policy {
        libc::SCHED_FIFO => "SCHED_FIFO",
        libc::SCHED_RR => "SCHED_RR",
        libc::SCHED_OTHER => "SCHED_OTHER",
        libc::SCHED_BATCH => "SCHED_BATCH",
        libc::SCHED_IDLE => "SCHED_IDLE",
        _ => "unknown",
    };
    (name.to_string(), param.sched_priority)
}

/// Lock every page the process has mapped *now* (code, libraries, heap and
/// the stacks of the threads started so far), but not what it maps later.
///
/// `mvla run` calls this once the motor and link threads exist and before the
/// model is loaded, so the real-time path cannot page-fault while the model's
/// weights (gigabytes on the robot, and the GPU libraries) stay pageable.
/// `MCL_FUTURE` is deliberately not used: it would pin the model too.
pub fn lock_current_memory() -> std::io::Result<()> {
    // SAFETY: mlockall takes flags only.
    let rc = unsafe { libc::mlockall(libc::MCL_CURRENT) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Locked memory of this process in KiB (`VmLck` of /proc/self/status).
pub fn locked_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_scheduling_is_reported_as_it_is() {
        let s = std::thread::spawn(|| set_thread_priority(0, "test"))
            .join()
            .unwrap();
        assert_eq!(s.requested_priority, 0);
        assert_eq!(s.refused, None);
        assert_eq!(s.policy, "SCHED_OTHER");
    }

    #[test]
    fn fifo_is_set_or_the_refusal_is_reported() {
        let s = std::thread::spawn(|| set_thread_priority(10, "test"))
            .join()
            .unwrap();
        match &s.refused {
            None => assert_eq!((s.policy.as_str(), s.priority), ("SCHED_FIFO", 10)),
            Some(why) => {
                eprintln!("SCHED_FIFO not permitted here ({why}): the refusal path is what ran");
                assert_eq!(s.policy, "SCHED_OTHER");
            }
        }
    }

    #[test]
    fn memory_locked_now_does_not_include_what_is_allocated_later() {
        if let Err(e) = lock_current_memory() {
            eprintln!("mlockall not permitted here ({e}): nothing to check");
            return;
        }
        let locked = locked_kib().expect("VmLck");
        assert!(locked > 0, "the current mappings are locked");
        // 64 MiB allocated and touched after the lock (like the model's
        // weights) must not be locked.
        let big = vec![1u8; 64 << 20];
        std::hint::black_box(&big);
        let after = locked_kib().expect("VmLck");
        // SAFETY: munlockall takes no arguments; undo the lock for the other tests.
        unsafe { libc::munlockall() };
        assert!(
            after < locked + 32 * 1024,
            "VmLck grew from {locked} to {after} KiB: later allocations are locked"
        );
    }
}
