//! The simulated base: pose from the wheel bytes the board actually received.
//!
//! Each wheel byte goes through the calibration's byte → rad/s table, the
//! per-trial wheel gain (a worn or slipping wheel) and a small per-10-ms speed
//! noise, then forward kinematics (`calib/serbot.toml` geometry) gives the body
//! twist, integrated in the world frame. The board holds the last command
//! until a new one arrives, like the real motor board.

use crate::clock::Timestamp;
use crate::drive::STOP_WHEELS;
use crate::robot::calib::Calibration;

use super::rng::SimRng;
use super::world::{Pose, World};

/// Integration grid: wheel noise is redrawn per 10 ms cell; a trajectory
/// sample is kept at the end of every integration step (≤ one cell).
pub const STEP_NS: u64 = 10_000_000;

/// One point of the trajectory.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Sample {
    /// Seconds since the trial started.
    pub t_s: f64,
    pub pose: Pose,
    /// Wheel bytes in force.
    pub wheels: [u8; 3],
}

pub struct SimBase {
    calib: Calibration,
    pose: Pose,
    start: Timestamp,
    /// Integrated up to here.
    time: Timestamp,
    wheels: [u8; 3],
    gains: [f64; 3],
    noise_std: f64,
    /// This 10 ms cell's speed factors.
    noise: [f64; 3],
    rng: SimRng,
    trajectory: Vec<Sample>,
    /// Keep the trajectory (the simulator) or only the pose (the plain board emulator).
    keep_trajectory: bool,
    path_length_m: f64,
    frames_received: u64,
}

impl SimBase {
    /// A base at `start` (time and pose), with the world's wheel noise for `seed`.
    pub fn new(calib: Calibration, world: &World, seed: u64, start: Timestamp) -> Self {
        let mut rng = SimRng::for_scenario(seed, &world.scenario, 0x4241_5345); // "BASE"
        let gains = [0; 3].map(|_| (1.0 + world.wheel_gain_std * rng.normal()).clamp(0.5, 1.5));
        Self::with_noise(
            calib,
            world.start,
            start,
            gains,
            world.wheel_noise_std,
            rng,
            true,
        )
    }

    /// A noise-free base that keeps no trajectory (the board emulator outside
    /// the simulator, which may run for days).
    pub fn ideal(calib: Calibration, pose: Pose, start: Timestamp) -> Self {
        Self::with_noise(calib, pose, start, [1.0; 3], 0.0, SimRng::new(0), false)
    }

    fn with_noise(
        calib: Calibration,
        pose: Pose,
        start: Timestamp,
        gains: [f64; 3],
        noise_std: f64,
        rng: SimRng,
        keep_trajectory: bool,
    ) -> Self {
        let mut b = Self {
            calib,
            pose,
            start,
            time: start,
            wheels: STOP_WHEELS,
            gains,
            noise_std,
            noise: [1.0; 3],
            rng,
            trajectory: Vec::with_capacity(if keep_trajectory { 4096 } else { 1 }),
            keep_trajectory,
            path_length_m: 0.0,
            frames_received: 0,
        };
        b.trajectory.push(Sample {
            t_s: 0.0,
            pose,
            wheels: STOP_WHEELS,
        });
        b
    }

    /// Start the clock again at `now` (the controller is up): same pose,
    /// trajectory and path length from zero, the board stopped.
    pub fn restart(&mut self, now: Timestamp) {
        self.start = now;
        self.time = now;
        self.wheels = STOP_WHEELS;
        self.path_length_m = 0.0;
        self.trajectory.clear();
        self.trajectory.push(Sample {
            t_s: 0.0,
            pose: self.pose,
            wheels: STOP_WHEELS,
        });
    }

    /// Put the base at `pose` and start again at `now` (the console's next
    /// trial in the simulator: the operator carries the robot back).
    pub fn place(&mut self, pose: Pose, now: Timestamp) {
        self.pose = pose;
        self.restart(now);
    }

    /// A wheel frame arrived at `now`: move to `now` with the old command, then hold the new one.
    pub fn command(&mut self, wheels: [u8; 3], now: Timestamp) {
        self.advance_to(now);
        self.wheels = wheels;
        self.frames_received += 1;
    }

    /// Integrate up to `now` in steps of at most [`STEP_NS`].
    pub fn advance_to(&mut self, now: Timestamp) {
        while self.time < now {
            // Steps end on the 10 ms grid from the start, so the noise is
            // drawn per grid cell whatever the calls' timing (real time's
            // irregular wheel frames and lock-step's ticks alike).
            let into_cell = (self.time.0 - self.start.0) % STEP_NS;
            if into_cell == 0 {
                for f in &mut self.noise {
                    *f = if self.noise_std > 0.0 {
                        1.0 + self.noise_std * self.rng.normal()
                    } else {
                        1.0
                    };
                }
            }
            let dt_ns = (now.0 - self.time.0).min(STEP_NS - into_cell);
            let dt = dt_ns as f64 * 1e-9;
            let mut speeds = [0.0; 3];
            for (i, s) in speeds.iter_mut().enumerate() {
                let nominal = self.calib.bytes.speed_for_byte(self.wheels[i]) * self.gains[i];
                *s = nominal * self.noise[i];
            }
            let t = self.calib.base.twist(speeds);
            // Exact for a constant twist over the step: heading at mid-step.
            let mid = self.pose.yaw + 0.5 * t.wz * dt;
            let (c, s) = (mid.cos(), mid.sin());
            let (dx, dy) = ((t.vx * c - t.vy * s) * dt, (t.vx * s + t.vy * c) * dt);
            self.pose.x += dx;
            self.pose.y += dy;
            self.pose.yaw += t.wz * dt;
            self.path_length_m += dx.hypot(dy);
            self.time = Timestamp(self.time.0 + dt_ns);
            if !self.keep_trajectory {
                continue;
            }
            self.trajectory.push(Sample {
                t_s: self.time.saturating_since(self.start).as_secs_f64(),
                pose: self.pose,
                wheels: self.wheels,
            });
        }
    }

    pub fn pose(&self) -> Pose {
        self.pose
    }

    pub fn time(&self) -> Timestamp {
        self.time
    }

    pub fn wheels(&self) -> [u8; 3] {
        self.wheels
    }

    pub fn trajectory(&self) -> &[Sample] {
        &self.trajectory
    }

    pub fn path_length_m(&self) -> f64 {
        self.path_length_m
    }

    pub fn frames_received(&self) -> u64 {
        self.frames_received
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::robot::kinematics::vendor_move_offsets;
    use crate::sim::world::Catalogue;

    fn world() -> World {
        let mut w = Catalogue::builtin()
            .world("1box_hori_left_core_medium", 1)
            .unwrap();
        w.wheel_gain_std = 0.0;
        w.wheel_noise_std = 0.0;
        w.start = Pose::default();
        w
    }

    fn bytes(angle_deg: f64) -> [u8; 3] {
        vendor_move_offsets(angle_deg.to_radians(), 50.0).map(|o| (100 + o) as u8)
    }

    #[test]
    fn vendor_directions_move_the_base_that_way() {
        // The vendor formula's 0° = forward, 90° = left (UPSTREAM §2), through the shipped calibration.
        for (deg, dir) in [
            (0.0, 0.0),
            (45.0, 45.0),
            (90.0, 90.0),
            (-90.0, -90.0),
            (180.0, 180.0),
        ] {
            let mut b = SimBase::new(Calibration::serbot(), &world(), 0, Timestamp(0));
            b.command(bytes(deg), Timestamp(0));
            b.advance_to(Timestamp(500_000_000));
            let p = b.pose();
            let d = p.x.hypot(p.y);
            assert!(d > 0.1 && d < 0.2, "{deg}: {d} m in 0.5 s at throttle 50");
            let went = p.y.atan2(p.x).to_degrees();
            let off = (went - dir + 540.0).rem_euclid(360.0) - 180.0;
            // Diagonals bend by ~8° through the non-proportional byte table (see below).
            assert!(off.abs() < 10.0, "{deg} deg went to {went} deg ({p:?})");
            assert!(
                (b.path_length_m() - d).abs() < 2e-3,
                "{deg}: nearly straight"
            );
        }
        // Straight ahead the wheels are symmetric: no turn. Sideways the
        // vendor's offsets (−25, −25, +50) meet a byte table that is not
        // proportional (offset 1 → 2.0 rad/s, 80 → 10.27), so the base turns:
        // the simulator shows what that calibration implies.
        let turn = |deg: f64| {
            let mut b = SimBase::new(Calibration::serbot(), &world(), 0, Timestamp(0));
            b.command(bytes(deg), Timestamp(0));
            b.advance_to(Timestamp(1_000_000_000));
            b.pose().yaw
        };
        assert!(turn(0.0).abs() < 1e-9);
        assert!(turn(90.0).abs() > 0.05);
    }

    #[test]
    fn each_scenario_draws_its_own_wheel_gains_for_a_seed() {
        // Regression: the gains came from the seed alone, so every scenario
        // of a batch drove with the same worn wheels on trial i.
        let c = Catalogue::builtin();
        let gains = |name: &str| {
            let w = c.world(name, 5).unwrap();
            SimBase::new(Calibration::serbot(), &w, 5, Timestamp(0)).gains
        };
        let a = gains("1box_hori_left_core_medium");
        assert_eq!(a, gains("1box_hori_left_core_medium"));
        assert_ne!(a, gains("1box_hori_right_core_medium"));
        assert_ne!(a, gains("2box_hori_left_core_medium"));
    }

    #[test]
    fn the_board_holds_the_last_command_and_stop_stops() {
        let mut b = SimBase::new(Calibration::serbot(), &world(), 0, Timestamp(0));
        b.command(bytes(0.0), Timestamp(0));
        b.command(STOP_WHEELS, Timestamp(400_000_000));
        b.advance_to(Timestamp(2_000_000_000));
        let moved = b.pose().x;
        // Forward offset 43 → 6.40 rad/s per wheel × 0.041 m / cos 30° ≈ 0.303 m/s for 0.4 s.
        assert!((moved - 0.121).abs() < 0.005, "{moved}");
        assert_eq!(b.trajectory().len(), 201);
        assert_eq!(b.frames_received(), 2);
    }

    #[test]
    fn noise_is_seeded() {
        let mut w = world();
        w.wheel_gain_std = 0.05;
        w.wheel_noise_std = 0.05;
        let run = |seed| {
            let mut b = SimBase::new(Calibration::serbot(), &w, seed, Timestamp(0));
            b.command(bytes(0.0), Timestamp(0));
            b.advance_to(Timestamp(1_000_000_000));
            b.pose()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }
}
