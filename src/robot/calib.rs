//! Per-robot calibration (`calib/*.toml`): wheel geometry and the measured
//! wheel byte offset ↔ wheel speed table.

use std::path::Path;

use serde::Deserialize;

use super::kinematics::{Omniwheel, Wheel};

pub const SERBOT_CALIB: &str = include_str!("../../calib/serbot.toml");

#[derive(Debug, thiserror::Error)]
pub enum CalibError {
    /// toml's message carries the line, column and key.
    #[error("{path}: not a valid calibration file")]
    Parse {
        path: String,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("{path}: key `{key}`: {message}")]
    Invalid {
        path: String,
        key: &'static str,
        message: String,
    },
    #[error("{path}: cannot read")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCalib {
    wheel_radius_m: f64,
    center_distance_m: f64,
    wheel: Vec<RawWheel>,
    bytes: RawBytes,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWheel {
    name: String,
    position_deg: f64,
    drive_deg: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBytes {
    center: u8,
    max_offset: u8,
    table: Vec<RawPoint>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPoint {
    offset: u8,
    wheel_rad_s: f64,
}

/// Wheel byte ↔ wheel speed map: monotone piecewise-linear through the
/// measured points, a deadband below half the smallest measured speed,
/// saturation at `max_offset`.
#[derive(Debug, Clone, PartialEq)]
pub struct ByteMap {
    pub center: u8,
    pub max_offset: u8,
    /// (offset, rad/s), ascending in both.
    points: heapless::Vec<(u8, f64), 32>,
}

impl ByteMap {
    pub fn new(center: u8, max_offset: u8, points: &[(u8, f64)]) -> Result<Self, String> {
        if points.is_empty() {
            return Err("the table needs at least one point".into());
        }
        if points.len() > 32 {
            return Err(format!("{} points, at most 32", points.len()));
        }
        for w in points.windows(2) {
            if w[1].0 <= w[0].0 || w[1].1 <= w[0].1 {
                return Err(format!(
                    "not strictly increasing at offsets {} -> {} ({} -> {} rad/s)",
                    w[0].0, w[1].0, w[0].1, w[1].1
                ));
            }
        }
        if points[0].0 == 0 || points[0].1 <= 0.0 || points.iter().any(|p| !p.1.is_finite()) {
            return Err("offsets start at 1 with a positive speed".into());
        }
        if max_offset == 0 || u16::from(center) + u16::from(max_offset) > 255 || max_offset > center
        {
            return Err(format!(
                "centre {center} ± max offset {max_offset} does not fit in a byte"
            ));
        }
        Ok(Self {
            center,
            max_offset,
            points: points.iter().copied().collect(),
        })
    }

    /// Largest wheel speed the table allows (at `max_offset`, extrapolated
    /// along the last segment if the table stops short of it).
    pub fn max_speed(&self) -> f64 {
        self.speed_of_offset(self.max_offset)
    }

    /// Wheel speed (rad/s, ≥ 0) for a non-negative offset.
    pub fn speed_of_offset(&self, offset: u8) -> f64 {
        if offset == 0 {
            return 0.0;
        }
        let p = &self.points;
        let (o, s) = (f64::from(offset), |i: usize| (f64::from(p[i].0), p[i].1));
        if p.len() == 1 {
            return p[0].1 * o / f64::from(p[0].0);
        }
        let mut i = p
            .iter()
            .position(|q| q.0 >= offset)
            .unwrap_or(p.len() - 1)
            .max(1);
        if offset < p[0].0 {
            i = 1;
        }
        let ((o0, s0), (o1, s1)) = (s(i - 1), s(i));
        (s0 + (s1 - s0) * (o - o0) / (o1 - o0)).max(0.0)
    }

    /// Signed wheel speed → byte. Speeds under half of offset 1's speed are
    /// the deadband (centre byte); larger ones round to the nearest offset
    /// (at least 1) and saturate at `max_offset`.
    pub fn byte_for_speed(&self, rad_s: f64) -> u8 {
        if !rad_s.is_finite() {
            return self.center; // never send a command from a non-number
        }
        let mag = rad_s.abs();
        if mag < self.speed_of_offset(1) / 2.0 {
            return self.center;
        }
        // Invert the monotone map by bisection over integer offsets.
        let (mut lo, mut hi) = (1u8, self.max_offset);
        if mag >= self.speed_of_offset(hi) {
            lo = hi;
        }
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.speed_of_offset(mid) < mag {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        // lo: first offset with speed >= mag; pick the nearer of lo-1 and lo.
        let offset =
            if lo > 1 && (mag - self.speed_of_offset(lo - 1)) < (self.speed_of_offset(lo) - mag) {
                lo - 1
            } else {
                lo
            };
        if rad_s >= 0.0 {
            self.center + offset
        } else {
            self.center - offset
        }
    }

    /// Byte → signed wheel speed (for the emulator and forward kinematics).
    pub fn speed_for_byte(&self, byte: u8) -> f64 {
        let off = i16::from(byte) - i16::from(self.center);
        let speed = self.speed_of_offset(off.unsigned_abs().min(255) as u8);
        if off < 0 {
            -speed
        } else {
            speed
        }
    }
}

#[derive(Debug, Clone)]
pub struct Calibration {
    pub source: String,
    pub base: Omniwheel,
    pub bytes: ByteMap,
    pub wheel_names: [String; 3],
}

impl Calibration {
    pub fn from_toml(text: &str, source: &str) -> Result<Self, CalibError> {
        let raw: RawCalib = toml::from_str(text).map_err(|e| CalibError::Parse {
            path: source.into(),
            source: Box::new(e),
        })?;
        let invalid = |key: &'static str, message: String| CalibError::Invalid {
            path: source.into(),
            key,
            message,
        };
        if raw.wheel.len() != 3 {
            return Err(invalid(
                "wheel",
                format!("{} wheels, the Serbot has 3", raw.wheel.len()),
            ));
        }
        if !(raw.wheel_radius_m > 0.0 && raw.wheel_radius_m < 1.0) {
            return Err(invalid(
                "wheel_radius_m",
                format!("{} m", raw.wheel_radius_m),
            ));
        }
        if !(raw.center_distance_m > 0.0 && raw.center_distance_m < 2.0) {
            return Err(invalid(
                "center_distance_m",
                format!("{} m", raw.center_distance_m),
            ));
        }
        let wheels: Vec<Wheel> = raw
            .wheel
            .iter()
            .map(|w| Wheel {
                position_rad: w.position_deg.to_radians(),
                drive_rad: w.drive_deg.to_radians(),
            })
            .collect();
        let base = Omniwheel::new(
            [wheels[0], wheels[1], wheels[2]],
            raw.wheel_radius_m,
            raw.center_distance_m,
        )
        .map_err(|m| invalid("wheel", m))?;
        let points: Vec<(u8, f64)> = raw
            .bytes
            .table
            .iter()
            .map(|p| (p.offset, p.wheel_rad_s))
            .collect();
        let bytes = ByteMap::new(raw.bytes.center, raw.bytes.max_offset, &points)
            .map_err(|m| invalid("bytes.table", m))?;
        Ok(Self {
            source: source.into(),
            base,
            bytes,
            wheel_names: [
                raw.wheel[0].name.clone(),
                raw.wheel[1].name.clone(),
                raw.wheel[2].name.clone(),
            ],
        })
    }

    pub fn load(path: &Path) -> Result<Self, CalibError> {
        let shown = path.display().to_string();
        let text = crate::textfile::read(path).map_err(|source| CalibError::Io {
            path: shown.clone(),
            source,
        })?;
        Self::from_toml(&text, &shown)
    }

    /// The shipped Serbot calibration (`calib/serbot.toml`).
    pub fn serbot() -> Self {
        Self::from_toml(SERBOT_CALIB, "calib/serbot.toml")
            .expect("shipped calibration is valid (tested)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_calibration_loads() {
        let c = Calibration::serbot();
        assert_eq!(c.bytes.center, 100);
        assert_eq!(c.bytes.max_offset, 80);
        assert!((c.bytes.max_speed() - 10.27).abs() < 1e-9);
    }

    #[test]
    fn byte_map_round_trips_on_table_points_and_has_a_deadband() {
        let m = ByteMap::new(100, 80, &[(1, 2.0), (40, 7.0), (80, 10.27)]).unwrap();
        assert_eq!(m.byte_for_speed(0.0), 100);
        assert_eq!(
            m.byte_for_speed(0.99),
            100,
            "deadband below half of offset 1"
        );
        assert_eq!(m.byte_for_speed(1.01), 101, "at least offset 1 above it");
        assert_eq!(m.byte_for_speed(-2.0), 99);
        assert_eq!(m.byte_for_speed(7.0), 140);
        assert_eq!(m.byte_for_speed(-7.0), 60);
        assert_eq!(m.byte_for_speed(50.0), 180, "saturates at max offset");
        assert_eq!(m.byte_for_speed(f64::NAN), 100);
        for b in [60u8, 99, 100, 101, 140, 180] {
            assert_eq!(m.byte_for_speed(m.speed_for_byte(b)), b);
        }
    }

    #[test]
    fn non_monotone_tables_are_rejected() {
        assert!(ByteMap::new(100, 80, &[(1, 2.0), (5, 1.5)]).is_err());
        assert!(ByteMap::new(100, 80, &[(5, 2.0), (5, 3.0)]).is_err());
        assert!(ByteMap::new(100, 120, &[(1, 2.0)]).is_err());
    }
}
