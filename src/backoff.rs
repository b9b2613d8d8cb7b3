//! Reconnect backoff: after a failure, wait before the next attempt, doubling
//! the wait up to a ceiling; a success resets it. Used by the SLCAN link
//! (`drive::slcan`) and the V4L2 camera (`capture::v4l2`), each with its own
//! start and ceiling.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Backoff {
    start: Duration,
    max: Duration,
    delay: Duration,
    next_attempt: Option<Instant>,
}

impl Backoff {
    pub const fn new(start: Duration, max: Duration) -> Self {
        Self {
            start,
            max,
            delay: start,
            next_attempt: None,
        }
    }

    /// Whether an attempt may be made at `now` (none is scheduled, or its time has come).
    pub fn ready(&self, now: Instant) -> bool {
        self.next_attempt.is_none_or(|t| now >= t)
    }

    /// An attempt failed (or the connection was lost): wait the current
    /// delay from `now`, and double it for the next failure.
    pub fn failed(&mut self, now: Instant) {
        self.wait_from(now);
        self.delay = (self.delay * 2).min(self.max);
    }

    /// Schedule the next attempt one current delay after `now` without
    /// escalating (a connection lost after it had come back).
    pub fn wait_from(&mut self, now: Instant) {
        self.next_attempt = Some(now + self.delay);
    }

    /// Connected: the next failure waits the start delay again.
    pub fn succeeded(&mut self) {
        self.delay = self.start;
        self.next_attempt = None;
    }

    /// The wait the next failure schedules.
    pub fn delay(&self) -> Duration {
        self.delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_ceiling_and_resets_on_success() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(350));
        let t0 = Instant::now();
        assert!(b.ready(t0), "nothing scheduled yet");
        b.failed(t0);
        assert!(!b.ready(t0 + ms(99)));
        assert!(b.ready(t0 + ms(100)));
        assert_eq!(b.delay(), ms(200));
        b.failed(t0);
        assert_eq!(b.delay(), ms(350), "capped");
        b.failed(t0);
        assert_eq!(b.delay(), ms(350));
        assert!(!b.ready(t0 + ms(349)) && b.ready(t0 + ms(350)));
        b.wait_from(t0);
        assert_eq!(b.delay(), ms(350), "wait_from does not escalate");
        b.succeeded();
        assert!(b.ready(t0));
        assert_eq!(b.delay(), ms(100));
    }
}
