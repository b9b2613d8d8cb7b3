//! The motor loop: per tick, pick the chunk action for *now* (by the chunk's
//! age, crossfading into a newer chunk), apply the failsafe level, the drive
//! mode, the limits and the calibration, and produce the three wheel bytes.
//!
//! `MotorLoop::tick` is pure apart from its own state: time and inputs are
//! passed in, it allocates nothing and takes no lock.

use std::time::Duration;

use serde::Serialize;

use super::failsafe::{Condition, Failsafe, Level};
use super::limits::{limit_twist, rate_limit, saturate_wheels, MotionLimits, RateState};
use crate::action::{ActionChunk, InferenceEvent};
use crate::clock::Timestamp;
use crate::drive::STOP_WHEELS;
use crate::robot::calib::Calibration;
use crate::robot::kinematics::{vendor_move_offsets, Twist};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriveMode {
    /// action → body velocity (m/s) through `velocity_scale_m_s`, kinematics and the byte table.
    Velocity,
    /// The robot the model was trained on: only the direction atan2(y, x) at a
    /// fixed throttle through the vendor formula (UPSTREAM §2), with a deadzone.
    DirectionThrottle,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MotorConfig {
    pub loop_hz: u32,
    pub max_action_age: Duration,
    pub mode: DriveMode,
    pub limits: MotionLimits,
    /// Deceleration used when the failsafe says Stop (velocity mode).
    pub stop_decel_m_s2: f64,
    /// m/s per unit of action (x, y).
    pub velocity_scale_m_s: [f64; 2],
    /// Vendor throttle in percent (50 = what the trained robot used).
    pub throttle_pct: f64,
    /// |action| below this commands stop in direction_throttle mode.
    pub deadzone: f64,
    /// Offset change per second in direction_throttle mode (0 = no ramp, vendor-exact).
    pub offset_slew_per_s: f64,
    /// Blend time from the old chunk to a newer one.
    pub crossfade: Duration,
    /// Execute the chunk step for the chunk's age (true) or always step 0.
    pub chunk_by_age: bool,
}

impl MotorConfig {
    pub fn period(&self) -> Duration {
        Duration::from_nanos(1_000_000_000 / u64::from(self.loop_hz.max(1)))
    }
}

/// What one tick decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TickOutput {
    pub wheels: [u8; 3],
    pub level: Level,
    /// The action (x, y) taken from the chunk (zero when not executing).
    pub action: [f32; 2],
    /// Age of the chunk in use, if executing one.
    pub chunk_age: Option<Duration>,
}

pub struct MotorLoop {
    cfg: MotorConfig,
    calib: Calibration,
    failsafe: Failsafe,
    current: Option<ActionChunk>,
    previous: Option<ActionChunk>,
    switched_at: Timestamp,
    rate: RateState,
    offsets: [f64; 3],
    last_tick: Option<Timestamp>,
    /// Armed by the operator console at this time: only chunks from frames
    /// captured after it are executed (None: `mvla run`, always armed).
    armed_at: Option<Timestamp>,
}

impl MotorLoop {
    pub fn new(cfg: MotorConfig, calib: Calibration) -> Self {
        Self {
            cfg,
            calib,
            failsafe: Failsafe::new(),
            current: None,
            previous: None,
            switched_at: Timestamp(0),
            rate: RateState::default(),
            offsets: [0.0; 3],
            last_tick: None,
            armed_at: None,
        }
    }

    pub fn failsafe(&self) -> &Failsafe {
        &self.failsafe
    }

    pub fn failsafe_mut(&mut self) -> &mut Failsafe {
        &mut self.failsafe
    }

    pub fn config(&self) -> &MotorConfig {
        &self.cfg
    }

    /// The operator console disarms the policy (between trials, e-stop): the
    /// wheels stop on this tick (EStop level) and the chunk in hand is
    /// forgotten, so nothing from before is executed after the next arm.
    pub fn disarm(&mut self, now: Timestamp) {
        self.failsafe.raise(Condition::Disarmed, now);
        self.failsafe.raise(Condition::NoChunkYet, now);
        self.current = None;
        self.previous = None;
    }

    /// The console arms the policy at `now`: from here on only a chunk from
    /// a frame captured after `now` is executed (until then: Hold, no chunk).
    pub fn arm(&mut self, now: Timestamp) {
        self.failsafe.clear(Condition::Disarmed);
        self.failsafe.raise(Condition::NoChunkYet, now);
        self.current = None;
        self.previous = None;
        self.armed_at = Some(now);
    }

    /// Take an event from the inference stage.
    pub fn on_event(&mut self, event: InferenceEvent, now: Timestamp) {
        match event {
            InferenceEvent::Chunk(c) => {
                // Only newer frames replace the chunk in hand, and nothing
                // from a frame older than the console's arm is executed.
                if self.current.as_ref().is_some_and(|cur| c.t0 <= cur.t0)
                    || self.armed_at.is_some_and(|armed| c.t0 <= armed)
                    || self.failsafe.is_active(Condition::Disarmed)
                {
                    return;
                }
                // A non-number in a chunk is a fault with its level (Stop),
                // never an action quietly executed as zero. Raised at the
                // chunk's frame time: a chunk from a later frame clears it.
                if c.actions.iter().flatten().any(|v| !v.is_finite()) {
                    self.failsafe.raise(
                        Condition::Pipeline(crate::fault::FaultKind::NonFiniteOutput),
                        c.t0,
                    );
                    return;
                }
                self.failsafe.on_chunk(c.t0);
                self.previous = self.current.replace(c);
                self.switched_at = now;
            }
            InferenceEvent::Fault { kind, at } => {
                self.failsafe.raise(Condition::from_fault(kind), at)
            }
        }
    }

    /// The chunk action for `now`, crossfaded from the previous chunk.
    fn chunk_action(&self, now: Timestamp) -> Option<([f32; 2], Duration)> {
        let at = |c: &ActionChunk| {
            let (_, a) = c.action_at(now)?;
            Some(if self.cfg.chunk_by_age {
                a
            } else {
                c.actions[0]
            })
        };
        let cur = self.current.as_ref()?;
        let a = at(cur)?;
        let since = now.saturating_since(self.switched_at);
        if since < self.cfg.crossfade {
            if let Some(old) = self.previous.as_ref().and_then(at) {
                let w = (since.as_secs_f64() / self.cfg.crossfade.as_secs_f64()) as f32;
                return Some((
                    [old[0] + (a[0] - old[0]) * w, old[1] + (a[1] - old[1]) * w],
                    cur.age(now),
                ));
            }
        }
        Some((a, cur.age(now)))
    }

    /// One control tick at `now`. `link_up`: the wheel link's last send worked.
    pub fn tick(&mut self, now: Timestamp, link_up: bool, shutdown: bool) -> TickOutput {
        let dt = self
            .last_tick
            .map(|t| now.saturating_since(t).as_secs_f64())
            .unwrap_or(0.0)
            .min(0.1);
        self.last_tick = Some(now);
        if shutdown {
            self.failsafe.raise(Condition::Shutdown, now);
        }
        if link_up {
            self.failsafe.on_link_ok();
        } else {
            self.failsafe.raise(Condition::LinkError, now);
        }
        if let Some(cur) = &self.current {
            let stale = cur.age(now) > self.cfg.max_action_age;
            let exhausted = cur.action_at(now).is_none();
            self.failsafe.set_chunk_state(stale, exhausted, now);
        }
        let level = self.failsafe.level();
        let executing = matches!(level, Level::Nominal | Level::Degraded);
        let (action, chunk_age) = match (executing, self.chunk_action(now)) {
            (true, Some((a, age))) if a[0].is_finite() && a[1].is_finite() => (a, Some(age)),
            _ => ([0.0; 2], None),
        };
        let scale = if level == Level::Degraded { 0.5 } else { 1.0 };
        let wheels = match self.cfg.mode {
            DriveMode::Velocity => self.velocity_wheels(action, level, scale, dt),
            DriveMode::DirectionThrottle => self.direction_wheels(action, level, scale, dt),
        };
        TickOutput {
            wheels,
            level,
            action,
            chunk_age,
        }
    }

    fn velocity_wheels(&mut self, a: [f32; 2], level: Level, scale: f64, dt: f64) -> [u8; 3] {
        let l = &self.cfg.limits;
        if matches!(level, Level::Hold | Level::EStop) {
            self.rate = RateState::default();
            return STOP_WHEELS;
        }
        let target = limit_twist(
            Twist {
                vx: f64::from(a[0]) * self.cfg.velocity_scale_m_s[0],
                vy: f64::from(a[1]) * self.cfg.velocity_scale_m_s[1],
                wz: 0.0,
            },
            l.max_linear_m_s * scale,
            l.max_angular_rad_s * scale,
        );
        let mut lim = *l;
        if level == Level::Stop {
            // Ramp down hard but smoothly: the stop deceleration, no jerk bound.
            lim.max_linear_accel_m_s2 = self.cfg.stop_decel_m_s2;
            lim.max_angular_accel_rad_s2 =
                self.cfg.stop_decel_m_s2 / self.calib.base.center_distance_m;
            lim.max_linear_jerk_m_s3 = f64::INFINITY;
        }
        self.rate = rate_limit(self.rate, target, dt, &lim);
        let w = saturate_wheels(
            self.calib.base.wheel_speeds(self.rate.twist),
            l.max_wheel_rad_s.min(self.calib.bytes.max_speed()),
        );
        w.map(|s| self.calib.bytes.byte_for_speed(s))
    }

    fn direction_wheels(&mut self, a: [f32; 2], level: Level, scale: f64, dt: f64) -> [u8; 3] {
        let target = if level == Level::Stop || f64::from(a[0].hypot(a[1])) < self.cfg.deadzone {
            [0.0; 3]
        } else {
            let angle = f64::from(a[1]).atan2(f64::from(a[0]));
            vendor_move_offsets(angle, self.cfg.throttle_pct * scale).map(|o| o as f64)
        };
        if matches!(level, Level::Hold | Level::EStop) || self.cfg.offset_slew_per_s <= 0.0 {
            self.offsets = target;
        } else {
            let max_step = self.cfg.offset_slew_per_s * dt;
            for (o, t) in self.offsets.iter_mut().zip(target) {
                *o += (t - *o).clamp(-max_step, max_step);
            }
        }
        let max = f64::from(self.calib.bytes.max_offset);
        let center = f64::from(self.calib.bytes.center);
        self.offsets
            .map(|o| (center + o.round().clamp(-max, max)) as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::StageTimings;
    use crate::fault::FaultKind;

    /// The shipped defaults (built-in config), with the mode and slew under test.
    fn cfg(mode: DriveMode, slew: f64) -> MotorConfig {
        let mut c = crate::config::Config::builtin_default().motor;
        c.mode = mode;
        c.offset_slew_per_s = slew;
        c
    }

    fn chunk(t0_ms: u64, actions: &[[f32; 2]]) -> InferenceEvent {
        InferenceEvent::Chunk(ActionChunk {
            seq: t0_ms,
            frame_seq: t0_ms,
            t0: ms(t0_ms),
            step: Duration::from_millis(800),
            actions: actions.iter().copied().collect(),
            raw_first: [0.0; 2],
            forced_zero: false,
            history_steps: 1,
            timings: StageTimings::default(),
        })
    }

    fn ms(v: u64) -> Timestamp {
        Timestamp(v * 1_000_000)
    }

    /// The vendor bytes for every 5°, computed outside this crate by the
    /// research stack's own arithmetic in Python (CPython `round`, half to
    /// even; f32 actions as the server received them):
    /// ```text
    /// x, y = f32(1.15*cos(a)), f32(1.15*sin(a)); ang = degrees(atan2(y, x))
    /// Vx, Vy = sin(radians(ang))*50, cos(radians(ang))*50
    /// (100-round(0.5*Vx+0.866*Vy), 100-round(0.5*Vx-0.866*Vy), 100+round(Vx))
    /// ```
    const VENDOR_BYTES: [(u32, [u8; 3]); 72] = [
        (0, [57, 143, 100]),
        (5, [55, 141, 104]),
        (10, [53, 138, 109]),
        (15, [52, 135, 113]),
        (20, [51, 132, 117]),
        (25, [50, 129, 121]),
        (30, [50, 125, 125]),
        (35, [50, 121, 129]),
        (40, [51, 117, 132]),
        (45, [52, 113, 135]),
        (50, [53, 109, 138]),
        (55, [55, 104, 141]),
        (60, [57, 100, 143]),
        (65, [59, 96, 145]),
        (70, [62, 91, 147]),
        (75, [65, 87, 148]),
        (80, [68, 83, 149]),
        (85, [71, 79, 150]),
        (90, [75, 75, 150]),
        (95, [79, 71, 150]),
        (100, [83, 68, 149]),
        (105, [87, 65, 148]),
        (110, [91, 62, 147]),
        (115, [96, 59, 145]),
        (120, [100, 57, 143]),
        (125, [104, 55, 141]),
        (130, [109, 53, 138]),
        (135, [113, 52, 135]),
        (140, [117, 51, 132]),
        (145, [121, 50, 129]),
        (150, [125, 50, 125]),
        (155, [129, 50, 121]),
        (160, [132, 51, 117]),
        (165, [135, 52, 113]),
        (170, [138, 53, 109]),
        (175, [141, 55, 104]),
        (180, [143, 57, 100]),
        (185, [145, 59, 96]),
        (190, [147, 62, 91]),
        (195, [148, 65, 87]),
        (200, [149, 68, 83]),
        (205, [150, 71, 79]),
        (210, [150, 75, 75]),
        (215, [150, 79, 71]),
        (220, [149, 83, 68]),
        (225, [148, 87, 65]),
        (230, [147, 91, 62]),
        (235, [145, 96, 59]),
        (240, [143, 100, 57]),
        (245, [141, 104, 55]),
        (250, [138, 109, 53]),
        (255, [135, 113, 52]),
        (260, [132, 117, 51]),
        (265, [129, 121, 50]),
        (270, [125, 125, 50]),
        (275, [121, 129, 50]),
        (280, [117, 132, 51]),
        (285, [113, 135, 52]),
        (290, [109, 138, 53]),
        (295, [104, 141, 55]),
        (300, [100, 143, 57]),
        (305, [96, 145, 59]),
        (310, [91, 147, 62]),
        (315, [87, 148, 65]),
        (320, [83, 149, 68]),
        (325, [79, 150, 71]),
        (330, [75, 150, 75]),
        (335, [71, 150, 79]),
        (340, [68, 149, 83]),
        (345, [65, 148, 87]),
        (350, [62, 147, 91]),
        (355, [59, 145, 96]),
    ];

    #[test]
    fn direction_throttle_reproduces_the_vendor_bytes() {
        // Every direction the model can output, steady state, no ramp.
        for (deg, expect) in VENDOR_BYTES {
            let a = f64::from(deg).to_radians();
            let mut m = MotorLoop::new(
                cfg(DriveMode::DirectionThrottle, 0.0),
                Calibration::serbot(),
            );
            m.on_event(
                chunk(0, &[[(1.15 * a.cos()) as f32, (1.15 * a.sin()) as f32]]),
                ms(0),
            );
            let out = m.tick(ms(10), true, false);
            assert_eq!(out.wheels, expect, "{deg} deg");
            assert_eq!(out.level, Level::Nominal);
        }
    }

    #[test]
    fn console_disarm_stops_at_once_and_arm_takes_only_later_frames() {
        let mut m = MotorLoop::new(
            cfg(DriveMode::DirectionThrottle, 0.0),
            Calibration::serbot(),
        );
        // Armed by default (mvla run): a chunk drives forward.
        m.on_event(chunk(100, &[[1.15, 0.0]; 4]), ms(110));
        assert_eq!(m.tick(ms(120), true, false).wheels, [57, 143, 100]);
        // The console's Space: stop bytes on this very tick, EStop level.
        m.disarm(ms(130));
        let o = m.tick(ms(130), true, false);
        assert_eq!((o.level, o.wheels), (Level::EStop, STOP_WHEELS));
        assert_eq!(m.failsafe().worst(), Some(Condition::Disarmed));
        // Chunks keep coming while disarmed: still stopped.
        m.on_event(chunk(200, &[[1.15, 0.0]; 4]), ms(210));
        assert_eq!(m.tick(ms(220), true, false).wheels, STOP_WHEELS);
        // Armed at 300 ms: a chunk from a frame captured before the arm is
        // not executed (Hold, no chunk), one captured after it is.
        m.arm(ms(300));
        m.on_event(chunk(290, &[[1.15, 0.0]; 4]), ms(305));
        let o = m.tick(ms(310), true, false);
        assert_eq!((o.level, o.wheels), (Level::Hold, STOP_WHEELS));
        m.on_event(chunk(320, &[[1.15, 0.0]; 4]), ms(330));
        let o = m.tick(ms(340), true, false);
        assert_eq!((o.level, o.wheels), (Level::Nominal, [57, 143, 100]));
    }

    #[test]
    fn deadzone_and_forced_zero_stop() {
        let mut m = MotorLoop::new(
            cfg(DriveMode::DirectionThrottle, 0.0),
            Calibration::serbot(),
        );
        m.on_event(chunk(0, &[[0.1, -0.1]]), ms(0));
        assert_eq!(m.tick(ms(10), true, false).wheels, STOP_WHEELS);
    }

    #[test]
    fn scenario_faults_stop_the_wheels_and_fresh_chunks_resume() {
        let mut m = MotorLoop::new(
            cfg(DriveMode::DirectionThrottle, 0.0),
            Calibration::serbot(),
        );
        // Start: Hold, stop bytes.
        let o = m.tick(ms(0), true, false);
        assert_eq!((o.level, o.wheels), (Level::Hold, STOP_WHEELS));
        // A chunk: forward.
        m.on_event(chunk(100, &[[1.15, 0.0], [0.0, 1.15]]), ms(110));
        let o = m.tick(ms(120), true, false);
        assert_eq!((o.level, o.wheels), (Level::Nominal, [57, 143, 100]));
        // Step 1 of the chunk one step after capture: left.
        assert_eq!(m.tick(ms(950), true, false).wheels, [75, 75, 150]);
        // NaN from the policy (a fault event): stop immediately.
        m.on_event(
            InferenceEvent::Fault {
                kind: FaultKind::NonFiniteOutput,
                at: ms(960),
            },
            ms(960),
        );
        assert_eq!(m.tick(ms(970), true, false).wheels, STOP_WHEELS);
        // A chunk from a later frame resumes.
        m.on_event(chunk(980, &[[1.15, 0.0]]), ms(990));
        assert_eq!(m.tick(ms(1000), true, false).level, Level::Nominal);
        // The link fails: stop.
        assert_eq!(m.tick(ms(1010), false, false).wheels, STOP_WHEELS);
        // Chunk too old: stop.
        assert_eq!(m.tick(ms(980 + 1001), true, false).level, Level::Stop);
        // Shutdown: e-stop at once.
        m.on_event(chunk(2000, &[[1.15, 0.0]]), ms(2000));
        let o = m.tick(ms(2010), true, true);
        assert_eq!((o.level, o.wheels), (Level::EStop, STOP_WHEELS));
    }

    #[test]
    fn a_chunk_with_a_non_number_is_a_fault_not_a_zero_action() {
        let mut m = MotorLoop::new(
            cfg(DriveMode::DirectionThrottle, 0.0),
            Calibration::serbot(),
        );
        // Moving on a good chunk.
        m.on_event(chunk(100, &[[1.15, 0.0]; 3]), ms(110));
        assert_eq!(m.tick(ms(120), true, false).level, Level::Nominal);
        // A newer chunk carrying NaN in a later step: Stop now, wheels stopped,
        // and the bad chunk is not executed.
        m.on_event(chunk(200, &[[1.15, 0.0], [f32::NAN, 0.0]]), ms(210));
        let o = m.tick(ms(220), true, false);
        assert_eq!((o.level, o.wheels), (Level::Stop, STOP_WHEELS));
        assert_eq!(
            m.failsafe().worst(),
            Some(Condition::Pipeline(FaultKind::NonFiniteOutput))
        );
        // Infinity too; then a chunk from a later frame clears it.
        m.on_event(chunk(300, &[[f32::INFINITY, 0.0]]), ms(310));
        assert_eq!(m.tick(ms(320), true, false).level, Level::Stop);
        m.on_event(chunk(400, &[[1.15, 0.0]]), ms(410));
        assert_eq!(m.tick(ms(420), true, false).level, Level::Nominal);
    }

    #[test]
    fn stop_ramps_quickly_with_a_slew_limit() {
        let mut m = MotorLoop::new(
            cfg(DriveMode::DirectionThrottle, 800.0),
            Calibration::serbot(),
        );
        m.on_event(chunk(0, &[[1.15, 0.0]]), ms(0));
        for t in 1..=30 {
            m.tick(ms(t * 10), true, false);
        }
        assert_eq!(
            m.tick(ms(310), true, false).wheels,
            [57, 143, 100],
            "ramped up"
        );
        m.on_event(
            InferenceEvent::Fault {
                kind: FaultKind::NoFrame,
                at: ms(315),
            },
            ms(315),
        );
        let mut stopped_at = None;
        for t in 32..60 {
            if m.tick(ms(t * 10), true, false).wheels == STOP_WHEELS {
                stopped_at = Some(t * 10);
                break;
            }
        }
        // 43 offsets at 800/s: ~54 ms.
        assert!(stopped_at.is_some_and(|t| t - 315 <= 70), "{stopped_at:?}");
    }

    #[test]
    fn velocity_mode_stays_within_wheel_limits_and_stops() {
        let mut m = MotorLoop::new(cfg(DriveMode::Velocity, 0.0), Calibration::serbot());
        m.on_event(chunk(0, &[[1.15, 1.15]]), ms(0));
        let mut last = STOP_WHEELS;
        for t in 1..=70 {
            last = m.tick(ms(t * 10), true, false).wheels;
            assert!(last.iter().all(|&b| (20..=180).contains(&b)));
        }
        assert_ne!(last, STOP_WHEELS, "moving after 0.7 s");
        m.on_event(
            InferenceEvent::Fault {
                kind: FaultKind::InferenceError,
                at: ms(705),
            },
            ms(705),
        );
        let mut t = 71;
        while m.tick(ms(t * 10), true, false).wheels != STOP_WHEELS {
            t += 1;
            assert!(t < 71 + 30, "stopped within 300 ms");
        }
    }

    #[test]
    fn crossfade_blends_into_a_newer_chunk() {
        let mut m = MotorLoop::new(cfg(DriveMode::Velocity, 0.0), Calibration::serbot());
        m.on_event(chunk(0, &[[1.0, 0.0]]), ms(0));
        m.tick(ms(10), true, false);
        m.on_event(chunk(20, &[[0.0, 1.0]]), ms(30));
        let mid = m.tick(ms(80), true, false).action;
        assert!(
            (mid[0] - 0.5).abs() < 1e-6 && (mid[1] - 0.5).abs() < 1e-6,
            "{mid:?}"
        );
        let end = m.tick(ms(140), true, false).action;
        assert_eq!(end, [0.0, 1.0]);
        // An older chunk never replaces a newer one.
        m.on_event(chunk(10, &[[-1.0, 0.0]]), ms(150));
        assert_eq!(m.tick(ms(160), true, false).action, [0.0, 1.0]);
    }

    #[test]
    fn crossfade_with_execution_by_age_off_blends_step_zero_of_both_chunks() {
        // The old chunk is 0.95 s old at the blend's midpoint: by age it is
        // in its step 1, with execution by age off it stays at step 0.
        for (by_age, old_step) in [(true, [0.0, 1.0]), (false, [1.0, 0.0])] {
            let mut c = cfg(DriveMode::Velocity, 0.0);
            c.chunk_by_age = by_age;
            c.max_action_age = Duration::from_secs(5);
            c.crossfade = Duration::from_millis(100);
            let mut m = MotorLoop::new(c, Calibration::serbot());
            m.on_event(chunk(0, &[[1.0, 0.0], [0.0, 1.0]]), ms(0));
            m.tick(ms(10), true, false);
            m.on_event(chunk(880, &[[0.0, -1.0], [-1.0, 0.0]]), ms(900));
            // Halfway through the 100 ms blend from the old action to the new step 0.
            let mid = m.tick(ms(950), true, false).action;
            let want = [0.5 * old_step[0], 0.5 * (old_step[1] - 1.0)];
            assert!(
                (mid[0] - want[0]).abs() < 1e-6 && (mid[1] - want[1]).abs() < 1e-6,
                "chunk_by_age {by_age}: {mid:?}, want {want:?}"
            );
            // After the blend: the new chunk's step 0 (0.12 s old) either way.
            assert_eq!(m.tick(ms(1000), true, false).action, [0.0, -1.0]);
        }
    }

    #[test]
    fn chunk_steps_follow_the_chunk_age_unless_execution_by_age_is_off() {
        let steps = [[1.0, 0.0], [0.0, 1.0], [0.0, -1.0]];
        for (by_age, want) in [(true, steps), (false, [steps[0]; 3])] {
            let mut c = cfg(DriveMode::Velocity, 0.0);
            c.chunk_by_age = by_age;
            c.max_action_age = Duration::from_secs(5);
            let mut m = MotorLoop::new(c, Calibration::serbot());
            m.on_event(chunk(0, &steps), ms(0));
            // 0.8 s steps: 0.4 s is in step 0, 1.2 s in step 1, 2.0 s in step 2.
            let got = [400, 1200, 2000].map(|t| m.tick(ms(t), true, false).action);
            assert_eq!(got, want, "chunk_by_age {by_age}");
            // Past the chunk's end both stop executing it.
            assert_eq!(m.tick(ms(2500), true, false).action, [0.0, 0.0]);
        }
    }
}
