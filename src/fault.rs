//! The small set of fault kinds every stage maps its errors to; the motor
//! loop's failsafe decides on these, never on error strings.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// No frame arrived for longer than allowed (camera stall, source ended).
    NoFrame,
    /// A frame could not be decoded or has the wrong size.
    FrameCorrupt,
    /// The camera disappeared (unplugged, driver error).
    CaptureDisconnected,
    /// The frame source has no more frames (replay ended).
    SourceEnded,
    /// Preprocessing or a backend call failed.
    InferenceError,
    /// The policy produced NaN/Inf.
    NonFiniteOutput,
    /// The policy produced values outside the model's output range.
    OutOfRangeOutput,
}

impl FaultKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::NoFrame => "no_frame",
            Self::FrameCorrupt => "frame_corrupt",
            Self::CaptureDisconnected => "capture_disconnected",
            Self::SourceEnded => "source_ended",
            Self::InferenceError => "inference_error",
            Self::NonFiniteOutput => "non_finite_output",
            Self::OutOfRangeOutput => "out_of_range_output",
        }
    }
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
