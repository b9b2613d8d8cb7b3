//! The failsafe ladder: an ordered level, the maximum over active conditions.
//! Time is passed in; nothing here reads a clock.
//!
//! | level | motor behaviour |
//! |---|---|
//! | Nominal | execute the chunk |
//! | Degraded | execute at half the speed limits |
//! | Hold | command zero (nothing to execute yet; not an error) |
//! | Stop | ramp to zero with the deceleration limit |
//! | EStop | zero at once, latched until `reset_estop` |

use serde::Serialize;

use crate::clock::Timestamp;
use crate::fault::FaultKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Nominal,
    Degraded,
    Hold,
    Stop,
    EStop,
}

impl Level {
    /// Every level, mildest first (`as usize` indexes it).
    pub const ALL: [Level; 5] = [
        Level::Nominal,
        Level::Degraded,
        Level::Hold,
        Level::Stop,
        Level::EStop,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Level::Nominal => "nominal",
            Level::Degraded => "degraded",
            Level::Hold => "hold",
            Level::Stop => "stop",
            Level::EStop => "estop",
        }
    }
}

/// Everything that can hold the robot back. Each has a level and a clear rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// No chunk received since start or since the last reset. Clears: a chunk arrives.
    NoChunkYet,
    /// The chunk in hand is older than `max_action_age`. Clears: a fresh chunk.
    StaleAction,
    /// The chunk's last step has passed. Clears: a new chunk.
    ChunkExhausted,
    /// A pipeline fault (no frame, inference error, bad output, camera gone).
    /// Clears: a chunk computed from a frame captured after the fault.
    Pipeline(FaultKind),
    /// One corrupt frame: keep going slower. Clears: a chunk from a later frame.
    FrameCorrupt,
    /// The wheel link failed. Clears: the link reports a successful send.
    LinkError,
    /// An operator/external e-stop. Clears: only `reset_estop`.
    EStopRequest,
    /// The operator console has not armed the policy (between trials, after
    /// its e-stop key). Clears: only [`crate::control::motor::MotorLoop::arm`].
    Disarmed,
    /// The process is shutting down. Never clears.
    Shutdown,
}

impl Condition {
    pub fn level(self) -> Level {
        match self {
            Self::NoChunkYet => Level::Hold,
            Self::FrameCorrupt => Level::Degraded,
            Self::StaleAction | Self::ChunkExhausted | Self::Pipeline(_) | Self::LinkError => {
                Level::Stop
            }
            Self::EStopRequest | Self::Disarmed | Self::Shutdown => Level::EStop,
        }
    }

    /// Every condition, in a fixed order ([`Condition::code`] indexes it).
    pub const ALL: [Condition; 15] = [
        Self::NoChunkYet,
        Self::StaleAction,
        Self::ChunkExhausted,
        Self::Pipeline(FaultKind::NoFrame),
        Self::Pipeline(FaultKind::FrameCorrupt),
        Self::Pipeline(FaultKind::CaptureDisconnected),
        Self::Pipeline(FaultKind::SourceEnded),
        Self::Pipeline(FaultKind::InferenceError),
        Self::Pipeline(FaultKind::NonFiniteOutput),
        Self::Pipeline(FaultKind::OutOfRangeOutput),
        Self::FrameCorrupt,
        Self::LinkError,
        Self::EStopRequest,
        Self::Disarmed,
        Self::Shutdown,
    ];

    /// A small number for an atomic status word (index into [`Condition::ALL`]).
    pub fn code(self) -> u8 {
        Self::ALL
            .iter()
            .position(|c| *c == self)
            .expect("ALL lists every condition") as u8
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code)).copied()
    }

    /// Short operator-facing name (console, trial store).
    pub fn name(self) -> String {
        match self {
            Self::NoChunkYet => "no chunk yet".into(),
            Self::StaleAction => "stale action".into(),
            Self::ChunkExhausted => "chunk exhausted".into(),
            Self::Pipeline(kind) => kind.name().into(),
            Self::FrameCorrupt => "frame corrupt".into(),
            Self::LinkError => "link error".into(),
            Self::EStopRequest => "e-stop request".into(),
            Self::Disarmed => "disarmed".into(),
            Self::Shutdown => "shutdown".into(),
        }
    }

    /// Map a pipeline fault to the condition it raises.
    pub fn from_fault(kind: FaultKind) -> Self {
        match kind {
            FaultKind::FrameCorrupt => Self::FrameCorrupt,
            other => Self::Pipeline(other),
        }
    }
}

/// Fixed table of active conditions (no allocation).
#[derive(Debug, Clone)]
pub struct Failsafe {
    active: heapless::Vec<(Condition, Timestamp), 16>,
}

impl Default for Failsafe {
    fn default() -> Self {
        Self::new()
    }
}

impl Failsafe {
    /// Starts in Hold: nothing to execute yet.
    pub fn new() -> Self {
        let mut f = Self {
            active: heapless::Vec::new(),
        };
        f.raise(Condition::NoChunkYet, Timestamp(0));
        f
    }

    /// Activate (or refresh the time of) a condition.
    pub fn raise(&mut self, c: Condition, at: Timestamp) {
        if let Some(e) = self.active.iter_mut().find(|(k, _)| *k == c) {
            e.1 = at;
            return;
        }
        if self.active.push((c, at)).is_err() {
            // Table full (cannot happen with 16 slots for the conditions above):
            // fail safe by latching an e-stop in the last slot.
            let last = self.active.len() - 1;
            self.active[last] = (Condition::EStopRequest, at);
        }
    }

    fn clear_where(&mut self, pred: impl Fn(Condition, Timestamp) -> bool) {
        self.active.retain(|(c, t)| !pred(*c, *t));
    }

    /// A chunk from a frame captured at `t0` arrived at `now`, fresh enough.
    pub fn on_chunk(&mut self, t0: Timestamp) {
        self.clear_where(|c, raised| match c {
            Condition::NoChunkYet | Condition::StaleAction | Condition::ChunkExhausted => true,
            Condition::Pipeline(_) | Condition::FrameCorrupt => t0 > raised,
            _ => false,
        });
    }

    pub fn on_link_ok(&mut self) {
        self.clear_where(|c, _| c == Condition::LinkError);
    }

    /// Clear what the chunk's age decides (called every tick with the current state).
    pub fn set_chunk_state(&mut self, stale: bool, exhausted: bool, now: Timestamp) {
        for (cond, on) in [
            (Condition::StaleAction, stale),
            (Condition::ChunkExhausted, exhausted),
        ] {
            if on {
                if !self.is_active(cond) {
                    self.raise(cond, now);
                }
            } else {
                self.clear_where(|c, _| c == cond);
            }
        }
    }

    /// Operator reset of a latched e-stop (not of a shutdown).
    pub fn reset_estop(&mut self) {
        self.clear_where(|c, _| c == Condition::EStopRequest);
    }

    /// Clear a condition whatever its clear rule (the console's arm).
    pub fn clear(&mut self, c: Condition) {
        self.clear_where(|k, _| k == c);
    }

    pub fn is_active(&self, c: Condition) -> bool {
        self.active.iter().any(|(k, _)| *k == c)
    }

    pub fn level(&self) -> Level {
        self.active
            .iter()
            .map(|(c, _)| c.level())
            .max()
            .unwrap_or(Level::Nominal)
    }

    /// The condition deciding the level (for logs), if any.
    pub fn worst(&self) -> Option<Condition> {
        self.active
            .iter()
            .max_by_key(|(c, _)| c.level())
            .map(|(c, _)| *c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_condition_has_a_status_code() {
        // A new variant must join Condition::ALL: this match stops compiling
        // until it is listed here, and the round trip checks ALL.
        fn listed(c: Condition) -> bool {
            match c {
                Condition::NoChunkYet
                | Condition::StaleAction
                | Condition::ChunkExhausted
                | Condition::FrameCorrupt
                | Condition::LinkError
                | Condition::EStopRequest
                | Condition::Disarmed
                | Condition::Shutdown => true,
                Condition::Pipeline(k) => match k {
                    FaultKind::NoFrame
                    | FaultKind::FrameCorrupt
                    | FaultKind::CaptureDisconnected
                    | FaultKind::SourceEnded
                    | FaultKind::InferenceError
                    | FaultKind::NonFiniteOutput
                    | FaultKind::OutOfRangeOutput => true,
                },
            }
        }
        for (i, c) in Condition::ALL.iter().enumerate() {
            assert!(listed(*c));
            assert_eq!(c.code() as usize, i);
            assert_eq!(Condition::from_code(c.code()), Some(*c));
        }
        assert_eq!(Condition::from_code(Condition::ALL.len() as u8), None);
        assert_eq!(Condition::Disarmed.level(), Level::EStop);
    }

    fn t(ms: u64) -> Timestamp {
        Timestamp(ms * 1_000_000)
    }

    #[test]
    fn scenario_start_run_stall_recover_estop() {
        let mut f = Failsafe::new();
        // Power-up: nothing to execute.
        assert_eq!(f.level(), Level::Hold);
        // First chunk (frame at 100 ms): run.
        f.on_chunk(t(100));
        assert_eq!(f.level(), Level::Nominal);
        // A corrupt frame: slow down, keep going.
        f.raise(Condition::FrameCorrupt, t(150));
        assert_eq!(f.level(), Level::Degraded);
        // The camera stalls: stop beats degraded.
        f.raise(Condition::from_fault(FaultKind::NoFrame), t(1200));
        assert_eq!(f.level(), Level::Stop);
        // A chunk from an older frame (captured 1100 ms) clears neither.
        f.on_chunk(t(1100));
        assert_eq!(f.level(), Level::Stop);
        // A chunk from a frame after the stall clears both.
        f.on_chunk(t(1300));
        assert_eq!(f.level(), Level::Nominal);
        // The chunk runs out: stop until a new one.
        f.set_chunk_state(false, true, t(9300));
        assert_eq!(f.level(), Level::Stop);
        f.on_chunk(t(9400));
        f.set_chunk_state(false, false, t(9410));
        assert_eq!(f.level(), Level::Nominal);
        // External e-stop latches through new chunks ...
        f.raise(Condition::EStopRequest, t(9500));
        f.on_chunk(t(9600));
        assert_eq!(f.level(), Level::EStop);
        // ... until an operator resets it.
        f.reset_estop();
        assert_eq!(f.level(), Level::Nominal);
    }

    #[test]
    fn scenario_link_error_and_shutdown() {
        let mut f = Failsafe::new();
        f.on_chunk(t(0));
        // The serial link fails: stop.
        f.raise(Condition::LinkError, t(10));
        assert_eq!(f.level(), Level::Stop);
        // New chunks do not clear a link error ...
        f.on_chunk(t(20));
        assert_eq!(f.worst(), Some(Condition::LinkError));
        // ... a successful send does.
        f.on_link_ok();
        assert_eq!(f.level(), Level::Nominal);
        // Shutdown: e-stop, and it never clears.
        f.raise(Condition::Shutdown, t(30));
        f.reset_estop();
        f.on_chunk(t(40));
        assert_eq!(f.level(), Level::EStop);
    }

    #[test]
    fn bad_output_stops_until_a_later_frame() {
        let mut f = Failsafe::new();
        f.on_chunk(t(0));
        f.raise(Condition::from_fault(FaultKind::NonFiniteOutput), t(500));
        assert_eq!(f.level(), Level::Stop);
        f.on_chunk(t(400));
        assert_eq!(f.level(), Level::Stop);
        f.on_chunk(t(600));
        assert_eq!(f.level(), Level::Nominal);
    }
}
