//! Frame sources: a real V4L2 camera, HDF5 episode replay, the simulator's
//! rendered camera (`sim`), and whatever a
//! test scripts. Every frame carries its capture timestamp (monotonic clock).
//! A source never invents a frame: a missing or broken frame is an error the
//! failsafe sees, never a synthetic or repeated image.

pub mod replay;
pub mod sim;
pub mod v4l2;

use std::time::Duration;

use crate::fault::FaultKind;
use crate::frame::Rotation;

// The frame type and the camera-format conversions live in `crate::frame`
// (recording and preprocessing use them without the capture sources).
pub use crate::frame::{convert, Frame};

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("no frame for {0:?}")]
    Stalled(Duration),
    #[error("camera disconnected: {0}")]
    Disconnected(String),
    #[error("corrupt frame: {0}")]
    Corrupt(String),
    #[error("source ended")]
    Ended,
    #[error("{0}")]
    Config(String),
    /// The camera device failed a call: unplugged or gone.
    #[error("camera {device}: {what}")]
    Device {
        device: String,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The camera refused a setting it was asked for.
    #[error("camera {device}: {what}")]
    Setup {
        device: String,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A camera frame did not convert (MJPEG decode, size).
    #[error("corrupt frame from {device}")]
    Frame {
        device: String,
        #[source]
        source: crate::frame::convert::ConvertError,
    },
    /// A replay episode could not be opened (at start: a configuration error).
    #[error("replay episode")]
    EpisodeOpen(#[source] crate::record::episode::EpisodeError),
    /// A replay episode could not be read while running.
    #[error("replay episode")]
    EpisodeRead(#[source] crate::record::episode::EpisodeError),
}

impl CaptureError {
    pub fn fault(&self) -> FaultKind {
        match self {
            Self::Stalled(_) => FaultKind::NoFrame,
            Self::Disconnected(_)
            | Self::Config(_)
            | Self::Device { .. }
            | Self::Setup { .. }
            | Self::EpisodeOpen(_) => FaultKind::CaptureDisconnected,
            Self::Corrupt(_) | Self::Frame { .. } | Self::EpisodeRead(_) => FaultKind::FrameCorrupt,
            Self::Ended => FaultKind::SourceEnded,
        }
    }
}

pub trait FrameSource: Send {
    /// One line for logs and the run summary.
    fn describe(&self) -> String;
    /// Rotation still to apply to this source's frames (a live camera mounted
    /// upside down: 180; recorded episodes were rotated before storing: none).
    fn pending_rotation(&self) -> Rotation;
    /// Block until the next frame (or an error) and write it into `frame`.
    fn next_frame(&mut self, frame: &mut Frame) -> Result<(), CaptureError>;
    /// The capture thread's stop flag, handed over before the first frame:
    /// a source whose waits come from input (replay pacing) ends them when
    /// it is set, returning [`CaptureError::Ended`].
    fn set_stop(&mut self, _stop: std::sync::Arc<std::sync::atomic::AtomicBool>) {}
}
