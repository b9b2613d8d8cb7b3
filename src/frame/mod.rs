//! The pixel data that flows from capture to preprocessing and recording:
//! [`Frame`] (an owned, recycled camera frame with its capture time), the
//! borrowed packed view [`FrameRef`], the buffer layouts ([`InputFormat`]),
//! channel order and rotation, and the camera-format conversions
//! ([`convert`]). A leaf module: capture, preprocessing, recording and the
//! simulator depend on it, it depends on none of them.

pub mod convert;

use crate::clock::Timestamp;

/// Frame buffer layouts: packed pixels, or raw camera layouts that the GPU
/// kernels decode themselves (the CPU path converts them like OpenCV first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InputFormat {
    /// Packed 3-channel u8 (BGR or RGB).
    #[default]
    Packed3,
    /// YUYV 4:2:2, decoded to BGR like OpenCV.
    Yuyv,
    /// NV12 4:2:0 (Y plane, interleaved UV plane), decoded to BGR like OpenCV.
    Nv12,
}

impl InputFormat {
    /// Bytes of one `width × height` frame in this layout.
    pub fn frame_len(self, width: usize, height: usize) -> usize {
        match self {
            Self::Packed3 => width * height * 3,
            Self::Yuyv => width * height * 2,
            Self::Nv12 => width * height + width * height / 2,
        }
    }
}

/// Channel order of packed 3-channel pixels (first byte first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    Rgb,
    /// The robot camera pipeline's order (UPSTREAM §1).
    #[default]
    Bgr,
}

impl ChannelOrder {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "rgb" => Some(Self::Rgb),
            "bgr" => Some(Self::Bgr),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Rgb => "rgb",
            Self::Bgr => "bgr",
        }
    }
}

impl std::fmt::Display for ChannelOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    None,
    Rotate180,
}

impl Rotation {
    pub fn from_degrees(deg: u32) -> Option<Self> {
        match deg {
            0 => Some(Self::None),
            180 => Some(Self::Rotate180),
            _ => None,
        }
    }

    pub fn degrees(self) -> u32 {
        match self {
            Self::None => 0,
            Self::Rotate180 => 180,
        }
    }
}

/// A borrowed packed u8 frame, row-major H×W×3.
#[derive(Debug, Clone, Copy)]
pub struct FrameRef<'a> {
    pub width: usize,
    pub height: usize,
    pub order: ChannelOrder,
    pub data: &'a [u8],
}

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
