//! Frame sources: a real V4L2 camera, HDF5 episode replay, the simulator's
//! rendered camera (`sim`), and whatever a
//! test scripts. Every frame carries its capture timestamp (monotonic clock).
//! A source never invents a frame: a missing or broken frame is an error the
//! failsafe sees, never a synthetic or repeated image.

pub mod convert;
pub mod replay;
pub mod sim;
pub mod v4l2;

use std::time::Duration;

use crate::clock::Timestamp;
use crate::fault::FaultKind;
use crate::preprocess::{ChannelOrder, FrameRef, InputFormat, Rotation};

/// One captured frame: packed u8 H×W×3, or the camera's raw YUYV / NV12
/// bytes (`format`), which the GPU chain uploads as they are and everything
/// else converts to BGR exactly like OpenCV ([`Frame::packed`]). Buffers are
/// recycled between the capture and inference threads, so `data` keeps its
/// allocation.
#[derive(Debug, Clone, Default)]
pub struct Frame {
    /// Source-assigned sequence number (gaps = frames the driver dropped).
    pub seq: u64,
    /// Exposure time on the monotonic clock.
    pub capture_time: Timestamp,
    pub width: usize,
    pub height: usize,
    /// Channel order of packed data (raw YUYV/NV12 decode to BGR).
    pub order: ChannelOrder,
    /// Layout of `data`.
    pub format: InputFormat,
    pub data: Vec<u8>,
    /// First frame of a new episode/stream: the policy history must restart.
    pub starts_episode: bool,
    /// For replay: (episode index, frame index in the episode).
    pub replay_position: Option<(usize, usize)>,
}

impl Frame {
    /// The frame as packed pixels: a view of `data` when it is packed, else
    /// converted into `scratch` (OpenCV's YUV→BGR arithmetic).
    pub fn packed<'a>(
        &'a self,
        scratch: &'a mut Vec<u8>,
    ) -> Result<FrameRef<'a>, convert::ConvertError> {
        let (w, h) = (self.width, self.height);
        let data: &[u8] = match self.format {
            InputFormat::Packed3 => return Ok(self.view()),
            InputFormat::Yuyv => {
                scratch.resize(w * h * 3, 0);
                convert::yuyv_to_bgr(&self.data, w, h, scratch)?;
                scratch
            }
            InputFormat::Nv12 => {
                scratch.resize(w * h * 3, 0);
                convert::nv12_to_bgr(&self.data, w, h, scratch)?;
                scratch
            }
        };
        Ok(FrameRef {
            width: w,
            height: h,
            order: ChannelOrder::Bgr,
            data,
        })
    }

    /// `data` as a [`FrameRef`] (packed frames; raw layouts: see [`Frame::packed`]).
    pub fn view(&self) -> FrameRef<'_> {
        FrameRef {
            width: self.width,
            height: self.height,
            order: self.order,
            data: &self.data,
        }
    }
}

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
}

impl CaptureError {
    pub fn fault(&self) -> FaultKind {
        match self {
            Self::Stalled(_) => FaultKind::NoFrame,
            Self::Disconnected(_) | Self::Config(_) => FaultKind::CaptureDisconnected,
            Self::Corrupt(_) => FaultKind::FrameCorrupt,
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
}
