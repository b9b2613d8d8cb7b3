//! The motor side: calibration, kinematics, limits, the failsafe ladder,
//! the motor loop (`motor.rs`) and the thread that runs it at a fixed rate.

pub mod failsafe;
pub mod limits;
pub mod motor;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;
use serde::Serialize;

use crate::action::InferenceEvent;
use crate::channel::try_newest;
use crate::clock::{Clock, Timestamp};
use crate::drive::{LinkSummary, LinkWorker};
use crate::realtime::{set_thread_priority, Scheduling};
use crate::rtlog::RtLog;
use crate::systemd::Notifier;
use crate::telemetry::{LatencyHistogram, LatencySummary, RateLimit};
use failsafe::{Condition, Level};
use motor::MotorLoop;

#[derive(Debug, Clone, Default, Serialize)]
pub struct MotorSummary {
    pub loop_hz: u32,
    pub mode: String,
    pub ticks: u64,
    pub deadline_misses: u64,
    /// How late each tick started after its deadline.
    pub tick_lateness: LatencySummary,
    pub ticks_moving: u64,
    pub ticks_nominal: u64,
    pub ticks_degraded: u64,
    pub ticks_hold: u64,
    pub ticks_stop: u64,
    pub ticks_estop: u64,
    /// Age of the chunk (now − capture time) at each tick that executed it.
    pub chunk_age_at_use: LatencySummary,
    pub link: LinkSummary,
    /// How the motor thread was scheduled.
    pub scheduling: Scheduling,
    /// WATCHDOG=1 notifications that could not be sent (socket full or gone).
    pub watchdog_feed_errors: u64,
}

/// Flags the motor thread watches.
#[derive(Debug, Clone, Default)]
pub struct MotorFlags {
    /// Stop the robot now (EStop) and keep commanding stop.
    pub shutdown: Arc<AtomicBool>,
    /// Leave the loop (set after `shutdown` has been honoured).
    pub exit: Arc<AtomicBool>,
}

/// A failsafe level change, logged by the logger thread (the motor thread
/// does no logging I/O).
#[derive(Debug, Clone, Copy)]
pub struct MotorEvent {
    pub level: Level,
    pub cause: Option<Condition>,
    /// Level changes not logged before this one (at most one per second is).
    pub suppressed: u64,
}

impl crate::rtlog::RtEvent for MotorEvent {
    fn emit(&self, dropped: u64) {
        tracing::info!(
            level = ?self.level,
            cause = ?self.cause,
            suppressed = self.suppressed,
            dropped,
            "failsafe level"
        );
    }
}

/// The motor thread's loop: the motor loop at its fixed rate with absolute
/// deadlines, fed by the newest inference event, posting the newest command
/// to the link worker. Never blocks on a channel, never allocates, takes no
/// lock and does no logging I/O after [`MotorThread::new`].
pub struct MotorThread {
    motor: MotorLoop,
    events: Receiver<InferenceEvent>,
    link: LinkWorker,
    clock: Arc<dyn Clock>,
    flags: MotorFlags,
    notifier: Notifier,
    log: RtLog<MotorEvent>,
    period: Duration,
    summary: MotorSummary,
    age: LatencyHistogram,
    lateness: LatencyHistogram,
    level_log: RateLimit,
    watchdog: Option<Duration>,
    last_feed: Timestamp,
    misses_since_feed: u64,
    deadline: Timestamp,
    last_level: Level,
}

impl MotorThread {
    pub fn new(
        motor: MotorLoop,
        events: Receiver<InferenceEvent>,
        link: LinkWorker,
        clock: Arc<dyn Clock>,
        flags: MotorFlags,
        notifier: Notifier,
        log: RtLog<MotorEvent>,
    ) -> Self {
        let cfg = *motor.config();
        let now = clock.now();
        Self {
            period: cfg.period(),
            summary: MotorSummary {
                loop_hz: cfg.loop_hz,
                mode: format!("{:?}", cfg.mode),
                ..Default::default()
            },
            age: LatencyHistogram::new(),
            lateness: LatencyHistogram::new(),
            level_log: RateLimit::new(Duration::from_secs(1)),
            watchdog: Notifier::watchdog_period(),
            last_feed: now,
            misses_since_feed: 0,
            deadline: now,
            last_level: Level::Hold,
            motor,
            events,
            link,
            clock,
            flags,
            notifier,
            log,
        }
    }

    /// Run on the calling thread until `flags.exit`, at SCHED_FIFO
    /// `realtime_priority` when it is > 0; the link worker commands stop
    /// before the summary is returned.
    pub fn run(mut self, realtime_priority: u8) -> MotorSummary {
        self.summary.scheduling = set_thread_priority(realtime_priority, "mvla-motor");
        let _stage_span = tracing::info_span!("motor_stage").entered();
        while !self.flags.exit.load(Ordering::Relaxed) {
            let deadline = self.cycle();
            self.clock.sleep_until(deadline);
        }
        self.finish()
    }

    /// One tick, in order: take the newest event → tick the motor loop (pick
    /// the action for now → limits → wheel bytes, failsafe decides) → post
    /// the command → count → hand a level change to the logger → feed the
    /// watchdog → next absolute deadline (missed periods are skipped, not
    /// caught up). Returns the deadline to sleep until.
    pub fn cycle(&mut self) -> Timestamp {
        let now = self.clock.now();
        self.lateness.record(now.saturating_since(self.deadline));
        if let Some(event) = try_newest(&self.events) {
            self.motor.on_event(event, now);
        }
        let shutdown = self.flags.shutdown.load(Ordering::Relaxed);
        let out = self.motor.tick(now, self.link.is_up(), shutdown);
        self.link.post(out.wheels);
        let s = &mut self.summary;
        s.ticks += 1;
        match out.level {
            Level::Nominal => s.ticks_nominal += 1,
            Level::Degraded => s.ticks_degraded += 1,
            Level::Hold => s.ticks_hold += 1,
            Level::Stop => s.ticks_stop += 1,
            Level::EStop => s.ticks_estop += 1,
        }
        if out.wheels != crate::drive::STOP_WHEELS {
            s.ticks_moving += 1;
        }
        if let Some(a) = out.chunk_age {
            self.age.record(a);
        }
        if out.level != self.last_level {
            if let Some(suppressed) = self.level_log.allow() {
                self.log.push(MotorEvent {
                    level: out.level,
                    cause: self.motor.failsafe().worst(),
                    suppressed,
                });
            }
            self.last_level = out.level;
        }
        // Feed systemd's watchdog only while the loop keeps its deadlines.
        if let Some(p) = self.watchdog {
            if now.saturating_since(self.last_feed) >= p {
                if self.misses_since_feed < u64::from(self.summary.loop_hz) / 2
                    && self.notifier.try_notify("WATCHDOG=1").is_err()
                {
                    self.summary.watchdog_feed_errors += 1;
                }
                self.last_feed = now;
                self.misses_since_feed = 0;
            }
        }
        self.deadline = self.deadline.plus(self.period);
        let after = self.clock.now();
        if after > self.deadline {
            self.summary.deadline_misses += 1;
            self.misses_since_feed += 1;
            // Skip the missed periods instead of bursting to catch up.
            self.deadline = after;
        }
        self.deadline
    }

    /// The summary; the link worker commands stop on the way out.
    pub fn finish(self) -> MotorSummary {
        let mut s = self.summary;
        s.chunk_age_at_use = self.age.summary();
        s.tick_lateness = self.lateness.summary();
        s.link = self.link.shutdown();
        s
    }
}
