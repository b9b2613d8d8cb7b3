//! Motion limits as pure functions (property-tested below).

use crate::robot::kinematics::Twist;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MotionLimits {
    pub max_linear_m_s: f64,
    pub max_angular_rad_s: f64,
    pub max_wheel_rad_s: f64,
    /// Linear and angular acceleration bounds (norm of the change per second).
    pub max_linear_accel_m_s2: f64,
    pub max_angular_accel_rad_s2: f64,
    /// Bound on the change of the linear acceleration per second.
    pub max_linear_jerk_m_s3: f64,
}

/// Scale the whole twist by one factor so that linear speed and angular rate
/// are within bounds: the direction of motion (and the ratio of turning to
/// driving) is preserved. Non-finite input gives zero.
pub fn limit_twist(t: Twist, max_linear: f64, max_angular: f64) -> Twist {
    if !(t.vx.is_finite() && t.vy.is_finite() && t.wz.is_finite()) {
        return Twist::ZERO;
    }
    let lin = t.linear_speed();
    let mut s: f64 = 1.0;
    if lin > max_linear {
        s = s.min(max_linear / lin);
    }
    if t.wz.abs() > max_angular {
        s = s.min(max_angular / t.wz.abs());
    }
    Twist {
        vx: t.vx * s,
        vy: t.vy * s,
        wz: t.wz * s,
    }
}

/// Scale all wheel speeds by one factor so none exceeds `max` (keeps the
/// body motion's direction; a per-wheel clip would bend the path).
pub fn saturate_wheels(w: [f64; 3], max: f64) -> [f64; 3] {
    let peak = w.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    if !peak.is_finite() {
        return [0.0; 3];
    }
    if peak <= max {
        return w;
    }
    let s = max / peak;
    [w[0] * s, w[1] * s, w[2] * s]
}

/// State of the rate limiter: last commanded twist and linear acceleration.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RateState {
    pub twist: Twist,
    pub accel_x: f64,
    pub accel_y: f64,
}

/// Move from `state.twist` toward `target` over `dt` seconds with bounded
/// linear acceleration (vector norm), bounded linear jerk, and bounded
/// angular acceleration.
pub fn rate_limit(state: RateState, target: Twist, dt: f64, limits: &MotionLimits) -> RateState {
    if dt.is_nan() || dt <= 0.0 {
        return state;
    }
    let prev = state.twist;
    // Desired acceleration to reach the target this tick, bounded in norm.
    let (mut ax, mut ay) = ((target.vx - prev.vx) / dt, (target.vy - prev.vy) / dt);
    let norm = ax.hypot(ay);
    if norm > limits.max_linear_accel_m_s2 {
        let s = limits.max_linear_accel_m_s2 / norm;
        ax *= s;
        ay *= s;
    }
    // Bounded change of acceleration (jerk).
    let (dax, day) = (ax - state.accel_x, ay - state.accel_y);
    let jn = dax.hypot(day);
    let max_da = limits.max_linear_jerk_m_s3 * dt;
    if jn > max_da {
        let s = max_da / jn;
        ax = state.accel_x + dax * s;
        ay = state.accel_y + day * s;
    }
    let max_dw = limits.max_angular_accel_rad_s2 * dt;
    let dw = (target.wz - prev.wz).clamp(-max_dw, max_dw);
    RateState {
        twist: Twist {
            vx: prev.vx + ax * dt,
            vy: prev.vy + ay * dt,
            wz: prev.wz + dw,
        },
        accel_x: ax,
        accel_y: ay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limits() -> MotionLimits {
        MotionLimits {
            max_linear_m_s: 0.4,
            max_angular_rad_s: 1.5,
            max_wheel_rad_s: 10.27,
            max_linear_accel_m_s2: 1.0,
            max_angular_accel_rad_s2: 4.0,
            max_linear_jerk_m_s3: 20.0,
        }
    }

    proptest! {
        #[test]
        fn twist_scaling_preserves_direction_and_bounds(vx in -5.0f64..5.0, vy in -5.0f64..5.0, wz in -10.0f64..10.0) {
            let t = Twist { vx, vy, wz };
            let l = limit_twist(t, 0.4, 1.5);
            prop_assert!(l.linear_speed() <= 0.4 + 1e-12);
            prop_assert!(l.wz.abs() <= 1.5 + 1e-12);
            // Same direction: l = s * t with 0 <= s <= 1.
            let s = if t.vx.abs() > 1e-9 { l.vx / t.vx } else if t.vy.abs() > 1e-9 { l.vy / t.vy } else if t.wz.abs() > 1e-9 { l.wz / t.wz } else { 1.0 };
            prop_assert!((0.0..=1.0 + 1e-12).contains(&s));
            prop_assert!((l.vx - s * t.vx).abs() < 1e-9 && (l.vy - s * t.vy).abs() < 1e-9 && (l.wz - s * t.wz).abs() < 1e-9);
        }

        #[test]
        fn no_wheel_over_its_limit(a in -50.0f64..50.0, b in -50.0f64..50.0, c in -50.0f64..50.0) {
            let w = saturate_wheels([a, b, c], 10.27);
            prop_assert!(w.iter().all(|v| v.abs() <= 10.27 + 1e-9));
            // One common factor.
            let peak = a.abs().max(b.abs()).max(c.abs());
            if peak > 10.27 {
                let s = 10.27 / peak;
                prop_assert!((w[0] - a * s).abs() < 1e-9 && (w[1] - b * s).abs() < 1e-9 && (w[2] - c * s).abs() < 1e-9);
            } else {
                prop_assert_eq!(w, [a, b, c]);
            }
        }

        #[test]
        fn acceleration_and_jerk_are_bounded(
            targets in proptest::collection::vec((-0.4f64..0.4, -0.4f64..0.4, -1.5f64..1.5), 1..60),
            dt in 0.001f64..0.02,
        ) {
            let lim = limits();
            let mut s = RateState::default();
            for (vx, vy, wz) in targets {
                let next = rate_limit(s, Twist { vx, vy, wz }, dt, &lim);
                let ax = (next.twist.vx - s.twist.vx) / dt;
                let ay = (next.twist.vy - s.twist.vy) / dt;
                prop_assert!(ax.hypot(ay) <= lim.max_linear_accel_m_s2 + 1e-6);
                prop_assert!(((next.accel_x - s.accel_x).hypot(next.accel_y - s.accel_y)) / dt <= lim.max_linear_jerk_m_s3 + 1e-6);
                prop_assert!(((next.twist.wz - s.twist.wz) / dt).abs() <= lim.max_angular_accel_rad_s2 + 1e-6);
                s = next;
            }
        }
    }

    #[test]
    fn non_finite_twist_becomes_zero() {
        let t = Twist {
            vx: f64::NAN,
            vy: 0.1,
            wz: 0.0,
        };
        assert_eq!(limit_twist(t, 1.0, 1.0), Twist::ZERO);
        assert_eq!(saturate_wheels([f64::INFINITY, 0.0, 0.0], 1.0), [0.0; 3]);
    }

    #[test]
    fn rate_limit_reaches_a_steady_target() {
        let lim = limits();
        let mut s = RateState::default();
        let target = Twist {
            vx: 0.3,
            vy: 0.0,
            wz: 0.5,
        };
        for _ in 0..200 {
            s = rate_limit(s, target, 0.01, &lim);
        }
        assert!(
            (s.twist.vx - 0.3).abs() < 1e-3 && (s.twist.wz - 0.5).abs() < 1e-9,
            "{s:?}"
        );
    }
}
