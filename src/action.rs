//! What the inference stage hands the motor side: an [`ActionChunk`] (the
//! actions for consecutive training steps from one frame's capture time) or a
//! fault, as an [`InferenceEvent`].

use std::time::Duration;

use serde::Serialize;

use crate::clock::Timestamp;
use crate::fault::FaultKind;
use crate::frame::Frame;

/// Longest chunk the runtime carries without allocating (models use 1, 5 or 10).
pub const MAX_CHUNK: usize = 16;

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StageTimings {
    /// Capture time → inference thread picked the frame up.
    pub queue: Duration,
    pub preprocess: Duration,
    /// Backbone + head + checks.
    pub infer: Duration,
    /// Capture time → chunk ready.
    pub total: Duration,
}

/// `n` actions for consecutive training steps starting at the frame's capture time.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionChunk {
    pub seq: u64,
    pub frame_seq: u64,
    /// Capture time of the frame the chunk was computed from.
    pub t0: Timestamp,
    pub step: Duration,
    /// Scaled, clipped (x, y) commands; action i applies on [t0 + i·step, t0 + (i+1)·step).
    pub actions: heapless::Vec<[f32; 2], MAX_CHUNK>,
    /// The head's raw tanh output for step 0.
    pub raw_first: [f32; 2],
    pub forced_zero: bool,
    pub history_steps: usize,
    pub timings: StageTimings,
}

impl ActionChunk {
    /// `len` (≤ [`MAX_CHUNK`]) copies of one action from `t0`, as a policy
    /// that holds one command emits (tests, benches, scripted drivers).
    pub fn repeated(seq: u64, t0: Timestamp, step: Duration, action: [f32; 2], len: usize) -> Self {
        Self {
            seq,
            frame_seq: seq,
            t0,
            step,
            actions: std::iter::repeat_n(action, len.min(MAX_CHUNK)).collect(),
            raw_first: [action[0] / 1.15, action[1] / 1.15],
            forced_zero: false,
            history_steps: 8,
            timings: StageTimings::default(),
        }
    }

    /// The action for time `now`, with its index; `None` past the chunk's end.
    pub fn action_at(&self, now: Timestamp) -> Option<(usize, [f32; 2])> {
        let age = now.saturating_since(self.t0);
        let index = (age.as_nanos() / self.step.as_nanos().max(1)) as usize;
        self.actions.get(index).map(|a| (index, *a))
    }

    pub fn age(&self, now: Timestamp) -> Duration {
        now.saturating_since(self.t0)
    }
}

// Boxing the chunk would allocate once per inference; moving ~270 bytes
// through a capacity-1 channel is cheaper.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum InferenceEvent {
    Chunk(ActionChunk),
    /// A condition for the failsafe; `at` is when it was detected.
    Fault {
        kind: FaultKind,
        at: Timestamp,
    },
}

/// Observer of every inference result (recording, session log); must not block.
pub trait InferenceObserver: Send {
    fn on_event(&mut self, frame: Option<&Frame>, event: &InferenceEvent, error: Option<&str>);

    /// Asked before each frame: true makes the stage forget its history
    /// first (the console's new trial is a new episode for the policy).
    fn take_history_reset(&mut self) -> bool {
        false
    }
}

impl InferenceObserver for () {
    fn on_event(&mut self, _: Option<&Frame>, _: &InferenceEvent, _: Option<&str>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(t0: u64, n: usize) -> ActionChunk {
        let mut actions = heapless::Vec::new();
        for i in 0..n {
            actions.push([i as f32, -(i as f32)]).unwrap();
        }
        ActionChunk {
            seq: 1,
            frame_seq: 1,
            t0: Timestamp(t0),
            step: Duration::from_millis(800),
            actions,
            raw_first: [0.0; 2],
            forced_zero: false,
            history_steps: 1,
            timings: StageTimings::default(),
        }
    }

    #[test]
    fn action_index_is_the_age_in_steps() {
        let c = chunk(1_000_000_000, 3);
        let ms = |v: u64| Timestamp(1_000_000_000 + v * 1_000_000);
        assert_eq!(c.action_at(ms(0)), Some((0, [0.0, 0.0])));
        assert_eq!(c.action_at(ms(799)), Some((0, [0.0, 0.0])));
        assert_eq!(c.action_at(ms(800)), Some((1, [1.0, -1.0])));
        assert_eq!(c.action_at(ms(2399)), Some((2, [2.0, -2.0])));
        assert_eq!(c.action_at(ms(2400)), None, "past the chunk's end");
        assert_eq!(c.age(ms(50)), Duration::from_millis(50));
    }
}
