//! `mvla run`: the controller, then its summary.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use super::BadInput;

pub fn run(
    config: Option<&Path>,
    duration_s: Option<f64>,
    record: Option<PathBuf>,
    json: bool,
) -> Result<u8> {
    let config = match config {
        Some(path) => mvla::config::Config::load(path).map_err(BadInput::of)?,
        None => mvla::config::Config::builtin_default(),
    };
    let duration = match duration_s {
        Some(s) if !(s.is_finite() && s > 0.0) => {
            bail!(BadInput::msg(format!("--duration-s {s}: must be positive")))
        }
        // A year bounds any field session and keeps Duration from overflowing.
        Some(s) if s > 3.2e7 => {
            bail!(BadInput::msg(format!(
                "--duration-s {s}: at most 3.2e7 (a year)"
            )))
        }
        Some(s) => Some(std::time::Duration::from_secs_f64(s)),
        None => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("installing signal handlers")?;
    }
    let options = mvla::run::RunOptions {
        duration,
        record_dir: record,
    };
    let summary = match mvla::run::run(&config, &options, stop) {
        Ok(s) => s,
        Err(e) if e.is_bad_input() => bail!(BadInput::of(e)),
        Err(e) => return Err(e.into()),
    };
    if json {
        out!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_run_summary(&summary);
    }
    // A recording that failed (disk full, a write error) is a failed run:
    // said on stderr (the summary may go to a pipe) and in the exit status.
    if let Some(r) = summary.record.as_ref().filter(|r| !r.errors.is_empty()) {
        for e in &r.errors {
            eprintln!("error: recording: {e}");
        }
        eprintln!(
            "error: the recording is incomplete; what was written before the error is kept ({})",
            r.episodes
                .iter()
                .map(|(p, rows)| format!("{p}: {rows} rows"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(1);
    }
    Ok(0)
}

fn print_run_summary(s: &mvla::run::RunSummary) {
    let c = &s.counters;
    out!("mvla run: {} ({})", s.stop_reason, s.config);
    out!(
        "  model {} ({}, {}); source: {}",
        s.model_dir,
        s.model_id,
        s.backend,
        s.source
    );
    out!(
        "  ran {:.1} s: frames captured {}, dropped (replaced unread) {}, capture errors {}",
        s.ran_s,
        c.frames_captured,
        c.frames_dropped,
        c.capture_errors
    );
    out!(
        "  inferences {}, inference faults {}, chunks superseded unread {}",
        c.inferences,
        c.inference_faults,
        c.chunks_superseded_unread
    );
    if !s.inference.faults.is_empty() {
        let faults: Vec<String> = s
            .inference
            .faults
            .iter()
            .map(|(k, n)| format!("{k} x{n}"))
            .collect();
        out!("  faults: {}", faults.join(", "));
    }
    out!(
        "  {:<28} {:>9} {:>9} {:>9} {:>7}",
        "latency (ms)",
        "p50",
        "p99",
        "max",
        "count"
    );
    let i = &s.inference;
    for (name, l) in [
        ("capture -> pickup", i.capture_to_pickup),
        ("preprocess", i.preprocess),
        ("infer (backbone+head)", i.infer),
        ("capture -> chunk", i.capture_to_chunk),
        ("chunk age at use (motor)", s.motor.chunk_age_at_use),
    ] {
        out!(
            "  {:<28} {:>9.2} {:>9.2} {:>9.2} {:>7}",
            name,
            l.p50_ms,
            l.p99_ms,
            l.max_ms,
            l.count
        );
    }
    let m = &s.motor;
    out!(
        "  motor ({}, {} Hz): ticks {} (moving {}), levels nominal {} / degraded {} / hold {} / stop {} / estop {}, deadline misses {}, tick lateness p99 {:.2} ms",
        m.mode,
        m.loop_hz,
        m.ticks,
        m.ticks_moving,
        m.ticks_nominal,
        m.ticks_degraded,
        m.ticks_hold,
        m.ticks_stop,
        m.ticks_estop,
        m.deadline_misses,
        m.tick_lateness.p99_ms
    );
    out!(
        "  link {}: frames sent {}, errors {}, superseded {}, final stop sent {}",
        m.link.link,
        m.link.frames_sent,
        m.link.errors,
        m.link.commands_superseded,
        m.link.final_stop_sent
    );
    if let Some(t) = &s.sim {
        out!(
            "  sim {} seed {}: {}, closest {:.2} m to the goal's front point",
            t.scenario,
            t.seed,
            t.verdict_line(),
            t.min_goal_distance_m
        );
    }
    if let (Some(p), Some(n)) = (s.emulator_pose, s.emulator_wheel_frames) {
        out!(
            "  emulated base: {n} wheel frames, pose x {:.3} m, y {:.3} m, heading {:.1} deg",
            p.0,
            p.1,
            p.2.to_degrees()
        );
    }
    if let Some(r) = &s.record {
        for (path, rows) in &r.episodes {
            out!("  recorded episode {path} ({rows} rows)");
        }
        out!(
            "  session log {} ({} lines); items dropped by a busy recorder: {}",
            r.session_log_path.as_deref().unwrap_or("-"),
            r.session_log_lines,
            r.dropped_items
        );
        for e in &r.errors {
            out!("  recording error: {e}");
        }
    }
}
