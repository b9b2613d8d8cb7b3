//! Time as the controller sees it: monotonic nanoseconds, from a real clock or
//! a manual one that tests and replays step by hand.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Nanoseconds on the monotonic clock (`CLOCK_MONOTONIC`, the clock V4L2
/// timestamps frames with). Only differences are meaningful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn from_duration(d: Duration) -> Self {
        Self(d.as_nanos() as u64)
    }

    /// `self − earlier`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    pub fn plus(self, d: Duration) -> Self {
        Self(self.0.saturating_add(d.as_nanos() as u64))
    }
}

pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
    /// Block until `deadline` (absolute, so periodic loops do not drift).
    fn sleep_until(&self, deadline: Timestamp);
}

/// Sleep until `deadline` or until `stop` is set, whichever comes first,
/// looking at `stop` every [`STOP_POLL`]; `false` when stopped early. For
/// waits whose length comes from input (a replay interval), so shutdown is
/// never held up by them.
pub fn sleep_until_or_stop(
    clock: &dyn Clock,
    deadline: Timestamp,
    stop: &std::sync::atomic::AtomicBool,
) -> bool {
    loop {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            return false;
        }
        let now = clock.now();
        if now >= deadline {
            return true;
        }
        clock.sleep_until(deadline.min(now.plus(STOP_POLL)));
    }
}

/// How often an interruptible sleep looks at its stop flag: a fifth of the
/// 200 ms shutdown budget.
pub const STOP_POLL: Duration = Duration::from_millis(20);

/// The system monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct MonotonicClock;

impl Clock for MonotonicClock {
    fn now(&self) -> Timestamp {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime only writes into the timespec we own; CLOCK_MONOTONIC always exists on Linux.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        Timestamp(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
    }

    fn sleep_until(&self, deadline: Timestamp) {
        let ts = libc::timespec {
            tv_sec: (deadline.0 / 1_000_000_000) as libc::time_t,
            tv_nsec: (deadline.0 % 1_000_000_000) as libc::c_long,
        };
        loop {
            // SAFETY: clock_nanosleep reads the timespec we own; with TIMER_ABSTIME
            // the remainder pointer is unused and may be null.
            let rc = unsafe {
                libc::clock_nanosleep(
                    libc::CLOCK_MONOTONIC,
                    libc::TIMER_ABSTIME,
                    &ts,
                    std::ptr::null_mut(),
                )
            };
            if rc != libc::EINTR {
                break; // 0 = reached; other errors cannot occur with valid arguments
            }
        }
    }
}

/// A clock that only moves when told to. Cloning shares the same time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self(Arc::new(AtomicU64::new(start.0)))
    }

    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_nanos() as u64, Ordering::SeqCst);
    }

    pub fn set(&self, t: Timestamp) {
        self.0.store(t.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }

    /// Virtual time: sleeping moves the clock forward to the deadline.
    fn sleep_until(&self, deadline: Timestamp) {
        self.0.fetch_max(deadline.0, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_clock_does_not_go_back() {
        let c = MonotonicClock;
        let a = c.now();
        let b = c.now();
        assert!(b >= a);
        assert!(a.0 > 0);
    }

    #[test]
    fn monotonic_sleep_until_reaches_the_deadline() {
        let c = MonotonicClock;
        let deadline = c.now().plus(Duration::from_millis(2));
        c.sleep_until(deadline);
        assert!(c.now() >= deadline);
    }

    #[test]
    fn manual_sleep_advances_virtual_time() {
        let c = ManualClock::new(Timestamp(100));
        c.sleep_until(Timestamp(50));
        assert_eq!(c.now(), Timestamp(100));
        c.sleep_until(Timestamp(500));
        assert_eq!(c.now(), Timestamp(500));
    }

    #[test]
    fn manual_clock_is_shared_between_clones() {
        let a = ManualClock::new(Timestamp(5));
        let b = a.clone();
        a.advance(Duration::from_nanos(10));
        assert_eq!(b.now(), Timestamp(15));
    }
}
