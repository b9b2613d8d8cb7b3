//! The motor side of the pipeline.
//!
//! For now this holds the *dry-run* motor loop: it runs at the configured
//! rate, picks the action for "now" from the newest chunk by its age, stops
//! on any fault, stale or exhausted chunk, and logs/counts the command it
//! would send. The real loop (limits, kinematics, failsafe ladder, wheel
//! link) replaces it behind the same inputs.

pub mod calib;
pub mod failsafe;
pub mod kinematics;
pub mod limits;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;
use serde::Serialize;

use crate::clock::{Clock, Timestamp};
use crate::fault::FaultKind;
use crate::pipeline::{try_newest, ActionChunk, InferenceEvent};
use crate::telemetry::{LatencyHistogram, LatencySummary, RateLimit};

/// Why the command is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandReason {
    /// Executing chunk step `index`.
    Chunk {
        index: usize,
    },
    NoChunkYet,
    Fault(FaultKind),
    StaleChunk,
    ChunkExhausted,
}

/// What the motor side knows between ticks.
#[derive(Debug, Clone, Default)]
pub struct MotorInputs {
    pub chunk: Option<ActionChunk>,
    /// The newest fault and when it was seen; cleared by a chunk from a later frame.
    pub fault: Option<(FaultKind, Timestamp)>,
}

impl MotorInputs {
    pub fn apply(&mut self, event: InferenceEvent) {
        match event {
            InferenceEvent::Chunk(c) => {
                if self.fault.is_some_and(|(_, at)| c.t0 > at) {
                    self.fault = None;
                }
                self.chunk = Some(c);
            }
            InferenceEvent::Fault { kind, at } => self.fault = Some((kind, at)),
        }
    }
}

/// The (x, y) command for `now`: the chunk's action for the current step, or
/// zero when there is a fault, no chunk, a chunk older than `max_age`, or a
/// chunk that has run out.
pub fn command_for(
    now: Timestamp,
    inputs: &MotorInputs,
    max_age: Duration,
) -> ([f32; 2], CommandReason) {
    if let Some((kind, _)) = inputs.fault {
        return ([0.0; 2], CommandReason::Fault(kind));
    }
    let Some(chunk) = &inputs.chunk else {
        return ([0.0; 2], CommandReason::NoChunkYet);
    };
    if chunk.age(now) > max_age {
        return ([0.0; 2], CommandReason::StaleChunk);
    }
    match chunk.action_at(now) {
        Some((index, a)) => (a, CommandReason::Chunk { index }),
        None => ([0.0; 2], CommandReason::ChunkExhausted),
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct MotorSummary {
    pub loop_hz: u32,
    pub ticks: u64,
    pub deadline_misses: u64,
    pub ticks_moving: u64,
    pub ticks_stopped: u64,
    pub stopped_by_fault: u64,
    pub stopped_stale_or_exhausted: u64,
    pub stopped_no_chunk: u64,
    /// Age of the chunk (now − capture time) at each tick that used it.
    pub chunk_age_at_use: LatencySummary,
}

/// Dry-run motor loop: fixed rate on `clock`, absolute deadlines, never
/// blocks on the channel. Returns its summary when `stop` is set.
pub fn dry_run_motor_loop(
    events: Receiver<InferenceEvent>,
    clock: Arc<dyn Clock>,
    loop_hz: u32,
    max_age: Duration,
    stop: Arc<AtomicBool>,
) -> MotorSummary {
    let period = Duration::from_nanos(1_000_000_000 / u64::from(loop_hz.max(1)));
    let mut inputs = MotorInputs::default();
    let mut age = LatencyHistogram::new();
    let mut s = MotorSummary {
        loop_hz,
        ..Default::default()
    };
    let mut log = RateLimit::new(Duration::from_secs(1));
    let mut deadline = clock.now().plus(period);
    while !stop.load(Ordering::Relaxed) {
        if let Some(event) = try_newest(&events) {
            inputs.apply(event);
        }
        let now = clock.now();
        let (cmd, reason) = command_for(now, &inputs, max_age);
        s.ticks += 1;
        match reason {
            CommandReason::Chunk { .. } => {
                if let Some(c) = &inputs.chunk {
                    age.record(c.age(now));
                }
                if cmd != [0.0, 0.0] {
                    s.ticks_moving += 1;
                } else {
                    s.ticks_stopped += 1;
                }
            }
            CommandReason::Fault(_) => {
                s.ticks_stopped += 1;
                s.stopped_by_fault += 1;
            }
            CommandReason::StaleChunk | CommandReason::ChunkExhausted => {
                s.ticks_stopped += 1;
                s.stopped_stale_or_exhausted += 1;
            }
            CommandReason::NoChunkYet => {
                s.ticks_stopped += 1;
                s.stopped_no_chunk += 1;
            }
        }
        if log.allow().is_some() {
            tracing::info!(
                x = cmd[0],
                y = cmd[1],
                ?reason,
                "dry-run motor: would command"
            );
        }
        clock.sleep_until(deadline);
        let after = clock.now();
        if after > deadline.plus(period) {
            s.deadline_misses += 1;
            // Skip missed periods instead of bursting to catch up.
            deadline = after.plus(period);
        } else {
            deadline = deadline.plus(period);
        }
    }
    s.chunk_age_at_use = age.summary();
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::StageTimings;

    fn chunk(t0_ms: u64) -> ActionChunk {
        let mut actions = heapless::Vec::new();
        actions.push([1.15, 0.0]).unwrap();
        actions.push([0.0, 1.15]).unwrap();
        ActionChunk {
            seq: 1,
            frame_seq: 1,
            t0: Timestamp(t0_ms * 1_000_000),
            step: Duration::from_millis(800),
            actions,
            raw_first: [1.0, 0.0],
            forced_zero: false,
            history_steps: 1,
            timings: StageTimings::default(),
        }
    }

    fn ms(v: u64) -> Timestamp {
        Timestamp(v * 1_000_000)
    }

    #[test]
    fn commands_follow_chunk_age_and_stop_when_unsure() {
        let max_age = Duration::from_millis(1000);
        let mut inputs = MotorInputs::default();
        // Nothing yet: stopped.
        assert_eq!(
            command_for(ms(0), &inputs, max_age).1,
            CommandReason::NoChunkYet
        );
        inputs.apply(InferenceEvent::Chunk(chunk(100)));
        // Step 0 of the chunk, then step 1 once one step has passed since capture.
        assert_eq!(
            command_for(ms(150), &inputs, max_age),
            ([1.15, 0.0], CommandReason::Chunk { index: 0 })
        );
        assert_eq!(
            command_for(ms(900), &inputs, max_age),
            ([0.0, 1.15], CommandReason::Chunk { index: 1 })
        );
        // Older than max_age: stop, even though the chunk still has a step.
        assert_eq!(
            command_for(ms(1101), &inputs, max_age).1,
            CommandReason::StaleChunk
        );
        // A fault stops at once ...
        inputs.apply(InferenceEvent::Fault {
            kind: FaultKind::NoFrame,
            at: ms(200),
        });
        assert_eq!(
            command_for(ms(201), &inputs, max_age),
            ([0.0; 2], CommandReason::Fault(FaultKind::NoFrame))
        );
        // ... a chunk from an older frame does not clear it ...
        inputs.apply(InferenceEvent::Chunk(chunk(150)));
        assert!(matches!(
            command_for(ms(210), &inputs, max_age).1,
            CommandReason::Fault(_)
        ));
        // ... a chunk from a newer frame does.
        inputs.apply(InferenceEvent::Chunk(chunk(250)));
        assert_eq!(
            command_for(ms(260), &inputs, max_age).1,
            CommandReason::Chunk { index: 0 }
        );
        // Past the chunk's end (2 steps): stop.
        assert_eq!(
            command_for(ms(250 + 1600), &inputs, Duration::from_secs(10)).1,
            CommandReason::ChunkExhausted
        );
    }
}
