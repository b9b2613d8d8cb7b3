//! The accepted range of every numeric setting: the run config's keys and
//! `model.json`'s. One table, read by the validation (a value outside its
//! range is refused naming the key, never clamped) and by the README's
//! "Setting ranges" table (a test keeps them equal).
//!
//! The ranges are physical or practical bounds, each with its reason: a
//! value past them is a typo or a hostile file, and letting it through
//! moved the robot (`velocity_scale_m_s = 1e308`), hung start-up (`window =
//! 1000000`) or aborted on an allocation (`feature_dim` near 2⁶⁴).

/// One key's inclusive range.
#[derive(Debug, Clone, Copy)]
pub struct KeyRange {
    /// Dotted key: `motor.deadzone`; `model.json:` prefix for model.json keys.
    pub key: &'static str,
    pub lo: f64,
    pub hi: f64,
    /// Why these bounds.
    pub why: &'static str,
}

const fn r(key: &'static str, lo: f64, hi: f64, why: &'static str) -> KeyRange {
    KeyRange { key, lo, hi, why }
}

/// Every bounded key.
pub const RANGES: &[KeyRange] = &[
    r(
        "model.step_ms",
        1.0,
        10_000.0,
        "a teleop training step is 0.4–0.86 s",
    ),
    r(
        "inference.no_frame_timeout_ms",
        1.0,
        60_000.0,
        "the Stop fault must come within a minute",
    ),
    r(
        "inference.history_capacity",
        1.0,
        4096.0,
        "features kept for step spacing; 4096 × 2048 floats = 32 MiB",
    ),
    r(
        "inference.budget_ms",
        1.0,
        10_000.0,
        "a chunk older than its steps is useless",
    ),
    r(
        "capture.replay.interval_ms",
        0.0,
        60_000.0,
        "0 = as fast as possible",
    ),
    r(
        "capture.v4l2.width",
        2.0,
        8192.0,
        "camera sensor sizes (even: YUYV pairs)",
    ),
    r("capture.v4l2.height", 1.0, 8192.0, "camera sensor sizes"),
    r("capture.v4l2.fps", 1.0, 240.0, "UVC camera rates"),
    r(
        "capture.v4l2.buffers",
        2.0,
        32.0,
        "V4L2 mmap buffers; 2 are needed to stream",
    ),
    r(
        "capture.v4l2.stall_timeout_ms",
        1.0,
        10_000.0,
        "longest wait for one frame",
    ),
    r(
        "motor.loop_hz",
        1.0,
        2000.0,
        "the board takes a frame per ms at most",
    ),
    r(
        "motor.max_action_age_ms",
        1.0,
        10_000.0,
        "an action older than 10 s is not the present",
    ),
    r(
        "motor.throttle_pct",
        1.0,
        58.0,
        "58 % keeps the vendor formula's largest offset within ±80",
    ),
    r("motor.deadzone", 0.0, 2.0, "actions are ±1.15 nominal"),
    r(
        "motor.offset_slew_per_s",
        0.0,
        100_000.0,
        "0 = no slew limit; wheel byte offsets per second",
    ),
    r(
        "motor.velocity_scale_m_s",
        0.01,
        2.0,
        "m/s per unit action; the Serbot tops out near 0.42 m/s",
    ),
    r(
        "motor.max_linear_m_s",
        0.01,
        2.0,
        "the Serbot tops out near 0.42 m/s (10.27 rad/s × 0.041 m)",
    ),
    r("motor.max_angular_rad_s", 0.01, 20.0, "body spin rate"),
    r(
        "motor.max_wheel_rad_s",
        0.1,
        50.0,
        "the measured table ends at 10.27 rad/s",
    ),
    r("motor.max_linear_accel_m_s2", 0.01, 20.0, "m/s²"),
    r("motor.max_angular_accel_rad_s2", 0.01, 200.0, "rad/s²"),
    r("motor.max_linear_jerk_m_s3", 0.01, 1000.0, "m/s³"),
    r(
        "motor.stop_decel_m_s2",
        0.01,
        20.0,
        "m/s²; how hard a stop brakes",
    ),
    r(
        "motor.crossfade_ms",
        0.0,
        2000.0,
        "blend between chunks; 0 = switch at once",
    ),
    r(
        "motor.realtime_priority",
        0.0,
        99.0,
        "SCHED_FIFO priority (sched(7)); 0 = normal scheduling",
    ),
    r(
        "motor.link_realtime_priority",
        0.0,
        99.0,
        "SCHED_FIFO priority of the thread that sends the stop frames",
    ),
    r(
        "motor.slcan.baud",
        1200.0,
        4_000_000.0,
        "serial rates of USB SLCAN adapters",
    ),
    r(
        "motor.slcan.reply_timeout_ms",
        1.0,
        1000.0,
        "an adapter answers within ms; a tick is 10 ms",
    ),
    r(
        "capture.sim.fps",
        5.0,
        120.0,
        "the camera thread sleeps one period; shutdown waits ≤ 200 ms",
    ),
    r("capture.sim.width", 16.0, 4096.0, "even"),
    r("capture.sim.height", 16.0, 4096.0, "even"),
    r(
        "model.json:window",
        1.0,
        64.0,
        "history frames; start-up prepares a head plan per length (upstream: 8)",
    ),
    r(
        "model.json:chunk",
        1.0,
        crate::action::MAX_CHUNK as f64,
        "the motor side carries at most 16 actions per chunk (upstream: 10)",
    ),
    r(
        "model.json:step_ms",
        1.0,
        10_000.0,
        "a teleop training step is 0.4–0.86 s",
    ),
    r(
        "model.json:image.width",
        1.0,
        4096.0,
        "model input (upstream: 224)",
    ),
    r(
        "model.json:image.height",
        1.0,
        4096.0,
        "model input (upstream: 224)",
    ),
    r(
        "model.json:backbone.feature_dim",
        1.0,
        16_384.0,
        "per-frame feature (upstream: 2048)",
    ),
    r(
        "model.json:action_scale",
        0.001,
        10.0,
        "head output × scale = action (upstream: 1.15)",
    ),
    r(
        "model.json:action_clip",
        0.001,
        10.0,
        "labels were clamped to ±1",
    ),
    r(
        "model.json:prompt.input_ids",
        1.0,
        4096.0,
        "token count (upstream: 64 after padding)",
    ),
    r(
        "plan:repetitions",
        1.0,
        1000.0,
        "trials per scenario; the team runs 10",
    ),
    r(
        "plan:time_limit_s",
        1.0,
        3600.0,
        "a trial over ~2 m lasts 10–60 s",
    ),
    r("plan:scenarios", 1.0, 256.0, "scenario names in one plan"),
];

/// The range of `key` (a key missing from [`RANGES`] is a programming error,
/// caught by the tests that check every entry).
pub fn range_of(key: &str) -> &'static KeyRange {
    RANGES
        .iter()
        .find(|r| r.key == key)
        .unwrap_or_else(|| panic!("no range for {key}"))
}

/// `Ok` when `value` is finite and within `key`'s range, else the message
/// for the key's error: `"1e308 (range 0.01..=2: m/s per unit action; …)"`.
pub fn check(key: &str, value: f64) -> Result<(), String> {
    // Debug: 1e308 as "1e308", not 309 digits.
    verdict(
        key,
        |r| value.is_finite() && value >= r.lo && value <= r.hi,
        format_args!("{value:?}"),
    )
}

/// [`check`] for an unsigned integer setting (exact for every value that
/// can pass: the bounds are far below 2⁵³).
pub fn check_u64(key: &str, value: u64) -> Result<(), String> {
    verdict(
        key,
        |r| (value as f64) >= r.lo && (value as f64) <= r.hi,
        format_args!("{value}"),
    )
}

fn verdict(
    key: &str,
    inside: impl FnOnce(&KeyRange) -> bool,
    shown: std::fmt::Arguments<'_>,
) -> Result<(), String> {
    let r = range_of(key);
    if inside(r) {
        Ok(())
    } else {
        Err(format!("{shown} (range {}..={}: {})", r.lo, r.hi, r.why))
    }
}

/// The README's table: one row per key.
pub fn markdown_rows() -> String {
    RANGES
        .iter()
        .map(|r| format!("| `{}` | {} – {} | {} |\n", r.key, r.lo, r.hi, r.why))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_ranges_ordered() {
        for (i, a) in RANGES.iter().enumerate() {
            assert!(a.lo <= a.hi, "{}", a.key);
            assert!(RANGES[i + 1..].iter().all(|b| b.key != a.key), "{}", a.key);
        }
    }

    #[test]
    fn the_chunk_range_is_what_the_motor_side_carries() {
        assert_eq!(
            range_of("model.json:chunk").hi,
            crate::action::MAX_CHUNK as f64
        );
        assert!(range_of("model.json:chunk")
            .why
            .contains(&format!("at most {}", crate::action::MAX_CHUNK)));
    }

    #[test]
    fn bounds_are_inclusive_and_non_finite_values_fail() {
        assert!(check("motor.deadzone", 0.0).is_ok());
        assert!(check("motor.deadzone", 2.0).is_ok());
        assert!(check("motor.deadzone", 2.000001).is_err());
        assert!(check("motor.deadzone", f64::NAN).is_err());
        assert!(check("motor.deadzone", f64::INFINITY).is_err());
        assert!(check_u64("motor.loop_hz", 0).is_err());
        assert!(check_u64("motor.loop_hz", u64::MAX).is_err());
        let e = check("motor.velocity_scale_m_s", 1e308).unwrap_err();
        assert!(e.contains("1e308") && e.contains("0.01..=2"), "{e}");
    }

    #[test]
    fn the_readme_lists_every_range_as_the_code_has_it() {
        let readme = include_str!("../README.md");
        for row in markdown_rows().lines() {
            assert!(
                readme.contains(row),
                "README lacks the row\n{row}\n(regenerate the table from bounds::markdown_rows)"
            );
        }
    }
}
