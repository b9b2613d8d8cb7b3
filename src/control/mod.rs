//! The motor side: calibration, kinematics, limits, the failsafe ladder,
//! the motor loop (`motor.rs`) and the thread that runs it at a fixed rate.

pub mod failsafe;
pub mod limits;
pub mod motor;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
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
use crate::telemetry::{LatencyHistogram, LatencySummary};
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
    /// Set at READY: the summary counts ticks from here on and the systemd
    /// watchdog is fed from here on (before it, while the model loads, the
    /// loop runs and commands stop but is not yet the service's loop).
    pub ready: Arc<AtomicBool>,
    /// The operator console's arm switch (`mvla run`: armed for good).
    pub arm: Arc<ArmSwitch>,
    /// What the loop did last, for the console (written every tick).
    pub status: Arc<MotorStatus>,
}

/// The operator console's arm switch, read by the motor thread every tick.
///
/// One word `generation << 1 | armed`: every [`ArmSwitch::set`] makes a new
/// generation, so an arm that follows a disarm between two ticks is still
/// seen as a disarm then an arm (the chunk of the trial before never carries
/// over). While armed, the console must keep moving `deadline_ns` forward
/// (its heartbeat): a console that stops running its loop (a stalled
/// terminal write, a hang) has the motor loop disarm on its own at the
/// deadline. Only the console thread writes; the motor thread only reads.
#[derive(Debug)]
pub struct ArmSwitch {
    word: AtomicU64,
    /// Monotonic ns after which an armed switch counts as disarmed (u64::MAX: never).
    deadline_ns: AtomicU64,
}

impl Default for ArmSwitch {
    /// Armed, no deadline: `mvla run`.
    fn default() -> Self {
        Self {
            word: AtomicU64::new(1),
            deadline_ns: AtomicU64::new(u64::MAX),
        }
    }
}

impl ArmSwitch {
    /// Disarmed at start (the console).
    pub fn disarmed() -> Self {
        Self {
            word: AtomicU64::new(0),
            deadline_ns: AtomicU64::new(u64::MAX),
        }
    }

    /// Arm (the policy may drive until `deadline`, unless moved on) or disarm.
    pub fn set(&self, armed: bool, deadline: Timestamp) {
        self.deadline_ns.store(deadline.0, Ordering::Relaxed);
        let generation = (self.word.load(Ordering::Relaxed) >> 1) + 1;
        self.word
            .store(generation << 1 | u64::from(armed), Ordering::Release);
    }

    /// The console's heartbeat: still here, keep the policy armed until `deadline`.
    pub fn extend(&self, deadline: Timestamp) {
        self.deadline_ns.store(deadline.0, Ordering::Relaxed);
    }

    pub fn word(&self) -> u64 {
        self.word.load(Ordering::Acquire)
    }

    pub fn deadline(&self) -> Timestamp {
        Timestamp(self.deadline_ns.load(Ordering::Relaxed))
    }
}

/// The motor loop's live state in atomics (Relaxed stores each tick: no
/// lock, no allocation), read by the operator console. Each word is
/// consistent on its own; a snapshot may mix adjacent ticks.
#[derive(Debug, Default)]
pub struct MotorStatus {
    /// The last command, `w0 | w1 << 8 | w2 << 16 | 1 << 24` (0: none yet).
    wheels: AtomicU32,
    /// `Level as u8`.
    level: AtomicU8,
    /// `Condition::code() + 1` of the deciding condition (0: none).
    cause: AtomicU8,
    /// Age of the chunk executed, in µs + 1 (0: not executing one).
    chunk_age_us: AtomicU64,
    ticks_by_level: [AtomicU64; 5],
    deadline_misses: AtomicU64,
    /// The arm word the loop last applied, bit 0 = armed now (cleared when
    /// the loop disarmed on its own: the console's heartbeat deadline passed).
    applied_arm: AtomicU64,
}

/// One read of [`MotorStatus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MotorStatusSnapshot {
    pub wheels: Option<[u8; 3]>,
    pub level: Level,
    pub cause: Option<Condition>,
    pub chunk_age: Option<Duration>,
    /// Ticks at each level (index `Level as usize`) since the loop started.
    pub ticks_by_level: [u64; 5],
    pub deadline_misses: u64,
    /// [`ArmSwitch`] word as the loop applied it (see [`MotorStatus`]).
    pub applied_arm: u64,
}

impl MotorStatus {
    fn publish(&self, out: &motor::TickOutput, cause: Option<Condition>) {
        let [a, b, c] = out.wheels;
        self.wheels.store(
            u32::from(a) | u32::from(b) << 8 | u32::from(c) << 16 | 1 << 24,
            Ordering::Relaxed,
        );
        self.level.store(out.level as u8, Ordering::Relaxed);
        self.cause
            .store(cause.map_or(0, |c| c.code() + 1), Ordering::Relaxed);
        self.chunk_age_us.store(
            out.chunk_age
                .map_or(0, |d| (d.as_micros() as u64).saturating_add(1)),
            Ordering::Relaxed,
        );
        self.ticks_by_level[out.level as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> MotorStatusSnapshot {
        let w = self.wheels.load(Ordering::Relaxed);
        let age = self.chunk_age_us.load(Ordering::Relaxed);
        let cause = self.cause.load(Ordering::Relaxed);
        MotorStatusSnapshot {
            wheels: (w >> 24 != 0).then_some([w as u8, (w >> 8) as u8, (w >> 16) as u8]),
            level: Level::ALL
                .get(usize::from(self.level.load(Ordering::Relaxed)))
                .copied()
                .unwrap_or(Level::EStop),
            cause: cause.checked_sub(1).and_then(Condition::from_code),
            chunk_age: age.checked_sub(1).map(Duration::from_micros),
            ticks_by_level: std::array::from_fn(|i| self.ticks_by_level[i].load(Ordering::Relaxed)),
            deadline_misses: self.deadline_misses.load(Ordering::Relaxed),
            applied_arm: self.applied_arm.load(Ordering::Relaxed),
        }
    }
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

/// At most one failsafe level change per this interval is logged; the
/// others are counted and reported with the next one logged.
const LEVEL_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// What one [`MotorThread::cycle`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cycle {
    /// The wheel command posted to the link worker.
    pub wheels: [u8; 3],
    pub level: Level,
    /// The absolute deadline of the next tick.
    pub deadline: Timestamp,
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
    /// When a level change was last logged, and how many since were not.
    level_logged_at: Option<Timestamp>,
    level_suppressed: u64,
    watchdog: Option<Duration>,
    last_feed: Timestamp,
    misses_since_feed: u64,
    deadline: Timestamp,
    last_level: Level,
    /// The arm word last seen (starts as `ArmSwitch::default`'s: armed,
    /// generation 0, like `mvla run`), and whether the loop is armed now
    /// (false after a self-disarm at the heartbeat deadline, until a new word).
    seen_arm: u64,
    armed: bool,
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
            level_logged_at: None,
            level_suppressed: 0,
            watchdog: Notifier::watchdog_period(),
            last_feed: now,
            misses_since_feed: 0,
            deadline: now,
            last_level: Level::Hold,
            seen_arm: 1,
            armed: true,
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
            let deadline = self.cycle().deadline;
            self.clock.sleep_until(deadline);
        }
        self.finish()
    }

    /// One tick, in order: take the newest event → tick the motor loop (pick
    /// the action for now → limits → wheel bytes, failsafe decides) → post
    /// the command → count → hand a level change to the logger → feed the
    /// watchdog → next absolute deadline (missed periods are skipped, not
    /// caught up). Returns what was commanded and the deadline to sleep until.
    pub fn cycle(&mut self) -> Cycle {
        let now = self.clock.now();
        let lateness = now.saturating_since(self.deadline);
        let arm = self.flags.arm.word();
        if arm != self.seen_arm {
            // A new word: whatever came before is over (disarm), then arm if
            // it says so; the chunk in hand never carries over.
            self.motor.disarm(now);
            self.armed = arm & 1 == 1;
            if self.armed {
                self.motor.arm(now);
            }
            self.seen_arm = arm;
        }
        if self.armed && now > self.flags.arm.deadline() {
            // The console stopped beating: nobody is watching, stop.
            self.motor.disarm(now);
            self.armed = false;
        }
        self.flags.status.applied_arm.store(
            (self.seen_arm & !1) | u64::from(self.armed),
            Ordering::Relaxed,
        );
        if let Some(event) = try_newest(&self.events) {
            self.motor.on_event(event, now);
        }
        let shutdown = self.flags.shutdown.load(Ordering::Relaxed);
        let out = self.motor.tick(now, self.link.is_up(), shutdown);
        self.link.post(out.wheels);
        self.flags
            .status
            .publish(&out, self.motor.failsafe().worst());
        if out.level != self.last_level {
            // At most one logged change per second of the loop's clock.
            if self
                .level_logged_at
                .is_none_or(|t| now.saturating_since(t) >= LEVEL_LOG_INTERVAL)
            {
                self.log.push(MotorEvent {
                    level: out.level,
                    cause: self.motor.failsafe().worst(),
                    suppressed: std::mem::take(&mut self.level_suppressed),
                });
                self.level_logged_at = Some(now);
            } else {
                self.level_suppressed += 1;
            }
            self.last_level = out.level;
        }
        let ready = self.flags.ready.load(Ordering::Relaxed);
        if ready {
            self.count(&out, now, lateness);
        }
        // Next absolute deadline; a missed one is skipped (the next tick
        // starts now) instead of bursting to catch up.
        self.deadline = self.deadline.plus(self.period);
        let after = self.clock.now();
        if after > self.deadline {
            if ready {
                self.summary.deadline_misses += 1;
                self.misses_since_feed += 1;
                self.flags
                    .status
                    .deadline_misses
                    .fetch_add(1, Ordering::Relaxed);
            }
            self.deadline = after;
        }
        Cycle {
            wheels: out.wheels,
            level: out.level,
            deadline: self.deadline,
        }
    }

    /// The summary's counters and the systemd watchdog (from READY on).
    fn count(&mut self, out: &motor::TickOutput, now: Timestamp, lateness: Duration) {
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
        self.lateness.record(lateness);
        // Feed systemd's watchdog only while the loop keeps its deadlines
        // (at least one feed allowed per period even at very low loop rates).
        if let Some(p) = self.watchdog {
            if now.saturating_since(self.last_feed) >= p {
                if self.misses_since_feed < (u64::from(self.summary.loop_hz) / 2).max(1)
                    && self.notifier.try_notify("WATCHDOG=1").is_err()
                {
                    self.summary.watchdog_feed_errors += 1;
                }
                self.last_feed = now;
                self.misses_since_feed = 0;
            }
        }
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

/// The thread loop's reactions, in ticks of a manual clock (the wall-clock
/// versions in tests/hil_*.rs add the real threads, serial link and scheduling).
#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::ActionChunk;
    use crate::clock::ManualClock;
    use crate::drive::{LinkError, MotorLink, STOP_WHEELS};
    use crate::fault::FaultKind;

    struct NullLink;
    impl MotorLink for NullLink {
        fn describe(&self) -> String {
            "null".into()
        }
        fn send(&mut self, _: [u8; 3]) -> Result<(), LinkError> {
            Ok(())
        }
    }

    fn forward_chunk(t0: Timestamp) -> InferenceEvent {
        InferenceEvent::Chunk(ActionChunk::repeated(
            1,
            t0,
            Duration::from_millis(800),
            [1.15, 0.0],
            10,
        ))
    }

    /// A motor thread on a manual clock with `flags`, a null link, the
    /// built-in motor config; the sending end of its event channel.
    fn motor_thread(
        flags: &MotorFlags,
    ) -> (
        MotorThread,
        Arc<ManualClock>,
        crate::channel::Latest<InferenceEvent>,
    ) {
        let clock = Arc::new(ManualClock::new(Timestamp(1_000_000_000)));
        let (tx, rx) = crate::channel::latest();
        let link = LinkWorker::spawn(Box::new(NullLink)).unwrap();
        let cfg = crate::config::Config::builtin_default().motor;
        let m = MotorThread::new(
            MotorLoop::new(cfg, crate::robot::calib::Calibration::serbot()),
            rx,
            link,
            clock.clone(),
            flags.clone(),
            Notifier::from_env(),
            RtLog::direct(),
        );
        (m, clock, tx)
    }

    /// A motor thread driving forward steadily on a manual clock.
    fn driving() -> (
        MotorThread,
        Arc<ManualClock>,
        crate::channel::Latest<InferenceEvent>,
        MotorFlags,
    ) {
        let flags = MotorFlags::default();
        flags
            .ready
            .store(true, std::sync::atomic::Ordering::Relaxed);
        // The link reports up after its first send; the motor loop holds until then.
        let (mut m, clock, tx) = motor_thread(&flags);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !m.link.is_up() {
            assert!(std::time::Instant::now() < deadline, "link never up");
            let c = m.cycle();
            clock.sleep_until(c.deadline);
            std::thread::sleep(Duration::from_millis(1));
        }
        tx.send(forward_chunk(clock.now()));
        // Ramp up to full forward (offset slew), then steady.
        for _ in 0..30 {
            let c = m.cycle();
            clock.sleep_until(c.deadline);
        }
        let c = m.cycle();
        assert_eq!((c.level, c.wheels), (Level::Nominal, [57, 143, 100]));
        clock.sleep_until(c.deadline);
        (m, clock, tx, flags)
    }

    #[test]
    fn shutdown_commands_stop_on_the_next_tick() {
        let (mut m, _clock, _tx, flags) = driving();
        flags.shutdown.store(true, Ordering::Relaxed);
        let c = m.cycle();
        assert_eq!((c.level, c.wheels), (Level::EStop, STOP_WHEELS));
        m.finish();
    }

    #[test]
    fn the_console_switch_stops_on_the_next_tick_and_the_status_shows_why() {
        let (mut m, clock, tx, flags) = driving();
        let before = flags.status.snapshot();
        assert_eq!(before.wheels, Some([57, 143, 100]));
        assert_eq!(before.level, Level::Nominal);
        assert!(before.chunk_age.is_some());
        flags.arm.set(false, Timestamp(u64::MAX));
        let c = m.cycle();
        assert_eq!((c.level, c.wheels), (Level::EStop, STOP_WHEELS));
        let s = flags.status.snapshot();
        assert_eq!(s.wheels, Some(STOP_WHEELS));
        assert_eq!(
            (s.level, s.cause),
            (Level::EStop, Some(Condition::Disarmed))
        );
        assert_eq!(s.chunk_age, None);
        assert_eq!(
            s.ticks_by_level[Level::EStop as usize],
            before.ticks_by_level[Level::EStop as usize] + 1
        );
        // Arm again: the chunk from before the disarm is gone (Hold) until a
        // chunk from a frame captured after the arm arrives.
        clock.sleep_until(c.deadline);
        flags.arm.set(true, Timestamp(u64::MAX));
        let c = m.cycle();
        assert_eq!((c.level, c.wheels), (Level::Hold, STOP_WHEELS));
        clock.sleep_until(c.deadline);
        tx.send(forward_chunk(clock.now()));
        let c = m.cycle();
        assert_eq!(c.level, Level::Nominal);
        m.finish();
    }

    #[test]
    fn a_switch_made_disarmed_stops_from_the_first_tick() {
        // The console's motor thread: ArmSwitch::disarmed() from the start.
        let flags = MotorFlags {
            arm: Arc::new(ArmSwitch::disarmed()),
            ..Default::default()
        };
        let (mut m, clock, tx) = motor_thread(&flags);
        tx.send(forward_chunk(clock.now().plus(Duration::from_millis(1))));
        for _ in 0..20 {
            let c = m.cycle();
            assert_eq!(c.wheels, STOP_WHEELS);
            assert_eq!(c.level, Level::EStop, "disarmed, whatever the chunk says");
            clock.sleep_until(c.deadline);
        }
        assert_eq!(flags.status.snapshot().applied_arm & 1, 0);
        m.finish();
    }

    #[test]
    fn a_disarm_and_an_arm_between_two_ticks_still_drop_the_old_chunk() {
        let (mut m, clock, _tx, flags) = driving();
        // The console marks the trial and starts the next within one tick.
        flags.arm.set(false, Timestamp(u64::MAX));
        flags.arm.set(true, Timestamp(u64::MAX));
        let c = m.cycle();
        assert_eq!(
            (c.level, c.wheels),
            (Level::Hold, STOP_WHEELS),
            "the chunk of the trial before is gone"
        );
        clock.sleep_until(c.deadline);
        m.finish();
    }

    #[test]
    fn a_console_that_stops_beating_is_disarmed_at_its_deadline() {
        let (mut m, clock, tx, flags) = driving();
        let deadline = clock.now().plus(Duration::from_millis(50));
        flags.arm.set(true, deadline);
        let word = flags.arm.word();
        // The tick that applies the arm, then a chunk from a later frame.
        let c = m.cycle();
        clock.sleep_until(c.deadline);
        tx.send(forward_chunk(clock.now()));
        // Armed and beating: drives.
        for _ in 0..3 {
            let c = m.cycle();
            clock.sleep_until(c.deadline);
        }
        assert_eq!(m.cycle().level, Level::Nominal);
        // No heartbeat past the deadline: stop frames on the first tick after it.
        clock.sleep_until(deadline.plus(Duration::from_millis(1)));
        let c = m.cycle();
        assert_eq!((c.level, c.wheels), (Level::EStop, STOP_WHEELS));
        let s = flags.status.snapshot();
        assert_eq!(s.applied_arm, word & !1, "the console can see why");
        // A late heartbeat does not re-arm: only a new arm does.
        flags.arm.extend(Timestamp(u64::MAX));
        clock.sleep_until(c.deadline);
        assert_eq!(m.cycle().level, Level::EStop);
        m.finish();
    }

    #[test]
    fn a_pipeline_fault_commands_stop_on_the_next_tick() {
        let (mut m, clock, tx, _flags) = driving();
        tx.send(InferenceEvent::Fault {
            kind: FaultKind::NoFrame,
            at: clock.now(),
        });
        let c = m.cycle();
        assert_eq!(c.level, Level::Stop, "Stop on the next tick");
        clock.sleep_until(c.deadline);
        ramps_to_stop(&mut m, &clock, c.wheels);
        m.finish();
    }

    /// Stop ramps the wheel offsets down at `offset_slew_per_s` (800/s: the
    /// 43-offset forward in 54 ms): never faster, never back up, stop within
    /// that time plus one tick.
    fn ramps_to_stop(m: &mut MotorThread, clock: &ManualClock, first: [u8; 3]) {
        let cfg = crate::config::Config::builtin_default().motor;
        let offset = |w: [u8; 3]| w.iter().map(|b| (i32::from(*b) - 100).abs()).max().unwrap();
        let ticks_allowed = (f64::from(offset(first)) / cfg.offset_slew_per_s
            * f64::from(cfg.loop_hz))
        .ceil() as usize
            + 1;
        let mut last = offset(first);
        for tick in 1..=ticks_allowed {
            let c = m.cycle();
            clock.sleep_until(c.deadline);
            assert_eq!(c.level, Level::Stop);
            assert!(offset(c.wheels) <= last, "never speeds up while stopping");
            last = offset(c.wheels);
            if c.wheels == STOP_WHEELS {
                eprintln!("stopped {tick} ticks after the first Stop tick");
                return;
            }
        }
        panic!("not stopped within {ticks_allowed} ticks");
    }

    #[test]
    fn a_stale_chunk_commands_stop_on_the_first_tick_past_max_action_age() {
        let (mut m, clock, tx, _flags) = driving();
        let t0 = clock.now();
        tx.send(forward_chunk(t0));
        let max_age = crate::config::Config::builtin_default()
            .motor
            .max_action_age;
        loop {
            let now = clock.now();
            let c = m.cycle();
            if now.saturating_since(t0) <= max_age {
                assert_ne!(
                    c.wheels,
                    STOP_WHEELS,
                    "still fresh at {:?}",
                    now.saturating_since(t0)
                );
            } else {
                assert_eq!(c.level, Level::Stop, "Stop on the first tick past max age");
                assert!(now.saturating_since(t0) <= max_age + Duration::from_millis(10));
                clock.sleep_until(c.deadline);
                ramps_to_stop(&mut m, &clock, c.wheels);
                break;
            }
            clock.sleep_until(c.deadline);
        }
        m.finish();
    }
}
