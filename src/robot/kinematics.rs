//! Three-omniwheel kinematics (body frame x forward, y left, z up).
//!
//! Wheel i sits at `position` (angle from +x) on a circle of radius R and
//! pushes the base along the unit vector `drive` for a positive speed. Its
//! contact speed for a body twist (vx, vy, wz) is `d·v + wz·(p × d)`, so
//! `ω = J · [vx, vy, wz]` with `J_i = [cos d_i, sin d_i, R sin(d_i − p_i)] / r`.

use nalgebra::{Matrix3, Vector3};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Wheel {
    pub position_rad: f64,
    pub drive_rad: f64,
}

/// Body twist: m/s, m/s, rad/s.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Twist {
    pub vx: f64,
    pub vy: f64,
    pub wz: f64,
}

impl Twist {
    pub const ZERO: Twist = Twist {
        vx: 0.0,
        vy: 0.0,
        wz: 0.0,
    };

    pub fn linear_speed(&self) -> f64 {
        self.vx.hypot(self.vy)
    }

    fn vector(&self) -> Vector3<f64> {
        Vector3::new(self.vx, self.vy, self.wz)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Omniwheel {
    pub wheels: [Wheel; 3],
    pub wheel_radius_m: f64,
    pub center_distance_m: f64,
    jacobian: Matrix3<f64>,
    inverse: Matrix3<f64>,
}

impl Omniwheel {
    pub fn new(
        wheels: [Wheel; 3],
        wheel_radius_m: f64,
        center_distance_m: f64,
    ) -> Result<Self, String> {
        let mut j = Matrix3::zeros();
        for (i, w) in wheels.iter().enumerate() {
            j[(i, 0)] = w.drive_rad.cos() / wheel_radius_m;
            j[(i, 1)] = w.drive_rad.sin() / wheel_radius_m;
            j[(i, 2)] = center_distance_m * (w.drive_rad - w.position_rad).sin() / wheel_radius_m;
        }
        let inverse = j.try_inverse().ok_or_else(|| {
            "wheel layout cannot produce every body motion (singular kinematics)".to_string()
        })?;
        Ok(Self {
            wheels,
            wheel_radius_m,
            center_distance_m,
            jacobian: j,
            inverse,
        })
    }

    /// Inverse kinematics: body twist → wheel speeds (rad/s).
    pub fn wheel_speeds(&self, twist: Twist) -> [f64; 3] {
        let w = self.jacobian * twist.vector();
        [w[0], w[1], w[2]]
    }

    /// Forward kinematics: wheel speeds (rad/s) → body twist.
    pub fn twist(&self, wheel_rad_s: [f64; 3]) -> Twist {
        let t = self.inverse * Vector3::from(wheel_rad_s);
        Twist {
            vx: t[0],
            vy: t[1],
            wz: t[2],
        }
    }
}

/// Python 3's `round()`: nearest integer, ties to even (the vendor library is Python).
pub fn round_half_even(x: f64) -> i64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && (r as i64) % 2 != 0 {
        (r - x.signum()) as i64
    } else {
        r as i64
    }
}

/// The vendor library's `move(angle, throttle)` wheel offsets (UPSTREAM §2):
/// `Vx = sin(a)·W`, `Vy = cos(a)·W`, `w0 = −round(0.5Vx + 0.866Vy)`,
/// `w1 = −round(0.5Vx − 0.866Vy)`, `w2 = round(Vx)`; W = throttle in percent.
pub fn vendor_move_offsets(angle_rad: f64, throttle_pct: f64) -> [i64; 3] {
    let vx = angle_rad.sin() * throttle_pct;
    let vy = angle_rad.cos() * throttle_pct;
    [
        -round_half_even(0.5 * vx + 0.866 * vy),
        -round_half_even(0.5 * vx - 0.866 * vy),
        round_half_even(vx),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::robot::calib::Calibration;

    #[test]
    fn forward_inverts_inverse() {
        let base = Calibration::serbot().base;
        for t in [
            Twist {
                vx: 0.3,
                vy: 0.0,
                wz: 0.0,
            },
            Twist {
                vx: -0.1,
                vy: 0.25,
                wz: 0.7,
            },
            Twist {
                vx: 0.0,
                vy: 0.0,
                wz: -1.2,
            },
        ] {
            let back = base.twist(base.wheel_speeds(t));
            assert!(
                (back.vx - t.vx).abs() < 1e-12
                    && (back.vy - t.vy).abs() < 1e-12
                    && (back.wz - t.wz).abs() < 1e-12
            );
        }
    }

    #[test]
    fn spin_drives_all_wheels_equally_and_straight_motion_does_not_spin() {
        // UPSTREAM §2: spin drives all three wheels with the same offset.
        let base = Calibration::serbot().base;
        let w = base.wheel_speeds(Twist {
            vx: 0.0,
            vy: 0.0,
            wz: 1.0,
        });
        assert!((w[0] - w[1]).abs() < 1e-12 && (w[1] - w[2]).abs() < 1e-12);
        let w = base.wheel_speeds(Twist {
            vx: 0.2,
            vy: 0.0,
            wz: 0.0,
        });
        assert!(
            w[2].abs() < 1e-12,
            "the rear wheel idles when driving straight ahead"
        );
        assert!((w[0] + w[1]).abs() < 1e-12);
    }

    #[test]
    fn shipped_geometry_matches_the_vendor_formula_direction() {
        // Wheel speeds for a unit direction are proportional to the vendor offsets.
        let base = Calibration::serbot().base;
        for deg in (0..360).step_by(15) {
            let a = f64::from(deg).to_radians();
            let w = base.wheel_speeds(Twist {
                vx: a.cos(),
                vy: a.sin(),
                wz: 0.0,
            });
            let vx = a.sin();
            let vy = a.cos();
            let vendor = [-(0.5 * vx + 0.866 * vy), -(0.5 * vx - 0.866 * vy), vx];
            let k = 1.0 / base.wheel_radius_m;
            for i in 0..3 {
                assert!(
                    (w[i] - k * vendor[i]).abs() < 2e-3 * k,
                    "{deg} deg wheel {i}: {} vs {}",
                    w[i],
                    k * vendor[i]
                );
            }
        }
    }

    #[test]
    fn python_rounding() {
        assert_eq!(round_half_even(2.5), 2);
        assert_eq!(round_half_even(3.5), 4);
        assert_eq!(round_half_even(-2.5), -2);
        assert_eq!(round_half_even(-3.5), -4);
        assert_eq!(round_half_even(43.3), 43);
        assert_eq!(round_half_even(-0.4), 0);
    }

    #[test]
    fn vendor_forward_at_half_throttle() {
        // a = 0 (forward), W = 50: Vy = 50 -> w0 = -43, w1 = +43, w2 = 0.
        assert_eq!(vendor_move_offsets(0.0, 50.0), [-43, 43, 0]);
        // a = 90 deg (left): Vx = 50 -> w0 = -25, w1 = -25, w2 = +50.
        assert_eq!(
            vendor_move_offsets(std::f64::consts::FRAC_PI_2, 50.0),
            [-25, -25, 50]
        );
    }
}
