//! The motor side: calibration, kinematics, limits, the failsafe ladder,
//! the motor loop (`motor.rs`) and the thread that runs it at a fixed rate.

pub mod failsafe;
pub mod limits;
pub mod motor;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use serde::Serialize;

use crate::action::InferenceEvent;
use crate::channel::try_newest;
use crate::clock::Clock;
use crate::drive::{LinkSummary, LinkWorker};
use crate::systemd::Notifier;
use crate::telemetry::{LatencyHistogram, LatencySummary, RateLimit};
use failsafe::Level;
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
}

/// Flags the motor thread watches.
#[derive(Debug, Clone, Default)]
pub struct MotorFlags {
    /// Stop the robot now (EStop) and keep commanding stop.
    pub shutdown: Arc<AtomicBool>,
    /// Leave the loop (set after `shutdown` has been honoured).
    pub exit: Arc<AtomicBool>,
}

/// Run the motor loop at its fixed rate with absolute deadlines. Never blocks
/// on a channel: takes the newest event, posts the newest command to the link
/// worker. On exit the link worker commands stop before it is dropped.
pub fn motor_thread(
    mut motor: MotorLoop,
    events: Receiver<InferenceEvent>,
    link: LinkWorker,
    clock: Arc<dyn Clock>,
    flags: MotorFlags,
    notifier: Notifier,
    realtime_priority: u8,
) -> MotorSummary {
    if realtime_priority > 0 {
        set_realtime(realtime_priority);
    }
    let _stage_span = tracing::info_span!("motor_stage").entered();
    let cfg = *motor.config();
    let period = cfg.period();
    let mut s = MotorSummary {
        loop_hz: cfg.loop_hz,
        mode: format!("{:?}", cfg.mode),
        ..Default::default()
    };
    let mut age = LatencyHistogram::new();
    let mut lateness = LatencyHistogram::new();
    let mut log = RateLimit::new(Duration::from_secs(1));
    let watchdog = Notifier::watchdog_period();
    let mut last_feed = Instant::now();
    let mut misses_since_feed = 0u64;
    let mut deadline = clock.now();
    let mut last_level = Level::Hold;
    while !flags.exit.load(Ordering::Relaxed) {
        let now = clock.now();
        lateness.record(now.saturating_since(deadline));
        if let Some(event) = try_newest(&events) {
            motor.on_event(event, now);
        }
        let out = motor.tick(now, link.is_up(), flags.shutdown.load(Ordering::Relaxed));
        link.post(out.wheels);
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
            age.record(a);
        }
        if out.level != last_level {
            if let Some(suppressed) = log.allow() {
                tracing::info!(level = ?out.level, cause = ?motor.failsafe().worst(), suppressed, "failsafe level");
            }
            last_level = out.level;
        }
        // Feed systemd's watchdog only while the loop keeps its deadlines.
        if let Some(p) = watchdog {
            if last_feed.elapsed() >= p {
                if misses_since_feed < u64::from(cfg.loop_hz) / 2 {
                    notifier.notify("WATCHDOG=1");
                }
                last_feed = Instant::now();
                misses_since_feed = 0;
            }
        }
        deadline = deadline.plus(period);
        let after = clock.now();
        if after > deadline {
            s.deadline_misses += 1;
            misses_since_feed += 1;
            // Skip the missed periods instead of bursting to catch up.
            deadline = after;
        }
        clock.sleep_until(deadline);
    }
    s.chunk_age_at_use = age.summary();
    s.tick_lateness = lateness.summary();
    s.link = link.shutdown();
    s
}

/// Put the calling thread on SCHED_FIFO at `priority` (needs CAP_SYS_NICE or
/// an RTPRIO limit; the systemd unit grants both). Failure is logged loudly.
pub fn set_realtime(priority: u8) {
    let param = libc::sched_param {
        sched_priority: i32::from(priority),
    };
    // SAFETY: pid 0 = the calling thread; `param` outlives the call.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if rc != 0 {
        tracing::error!(
            "motor thread: SCHED_FIFO {priority} refused ({}); running with normal scheduling",
            std::io::Error::last_os_error()
        );
    }
}

/// Lock current and future memory (no page faults in the motor loop).
pub fn lock_memory() -> std::io::Result<()> {
    // SAFETY: mlockall takes flags only.
    let rc = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
