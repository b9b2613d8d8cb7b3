//! A USB camera through V4L2 (`v4l` crate): format negotiation, mmap
//! streaming, driver timestamps on the monotonic clock, freshest frame wins.
//!
//! Tested without a device: format choice, timestamp mapping, pixel
//! conversion (`convert.rs`). With a camera: the ignored test in
//! `tests/camera_v4l2.rs` (command in the README).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use v4l::buffer::{Flags, Type};
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;
use v4l::{Device, FourCC};

use super::convert::{mjpeg_to_bgr, ConvertError};
use super::{CaptureError, Frame, FrameSource};
use crate::backoff::Backoff;
use crate::clock::{Clock, Timestamp};
use crate::frame::{ChannelOrder, InputFormat, Rotation};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    Yuyv,
    Mjpeg,
    /// 4:2:0 semi-planar (CSI cameras through the Jetson ISP, some UVC cameras).
    Nv12,
}

impl PixelFormat {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "YUYV" => Some(Self::Yuyv),
            "MJPG" | "MJPEG" => Some(Self::Mjpeg),
            "NV12" => Some(Self::Nv12),
            _ => None,
        }
    }

    pub fn fourcc(self) -> [u8; 4] {
        match self {
            Self::Yuyv => *b"YUYV",
            Self::Mjpeg => *b"MJPG",
            Self::Nv12 => *b"NV12",
        }
    }
}

#[derive(Debug, Clone)]
pub struct V4l2Config {
    pub device: PathBuf,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub format: PixelFormat,
    /// Driver buffers (≥ 2: one being filled while one is read).
    pub buffers: u32,
    pub rotation: Rotation,
    /// No frame for this long = stall.
    pub stall_timeout: Duration,
}

/// What a camera offers: (fourcc, sizes) per format.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    pub fourcc: [u8; 4],
    pub sizes: Vec<(u32, u32)>,
}

fn fourcc_text(f: &[u8; 4]) -> String {
    String::from_utf8_lossy(f).into_owned()
}

/// What a camera offers, one `FOURCC [WxH ...]` per format, `; `-separated.
pub fn describe_offers(offers: &[Offer]) -> String {
    offers
        .iter()
        .map(|o| {
            let sizes = if o.sizes.is_empty() {
                "any size".to_string()
            } else {
                o.sizes
                    .iter()
                    .map(|(w, h)| format!("{w}x{h}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            format!("{} [{}]", fourcc_text(&o.fourcc), sizes)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The formats and discrete frame sizes the device at `path` offers (what
/// `open` negotiates from; `mvla doctor` reports it).
pub fn list_offers(path: &Path) -> Result<Vec<Offer>, CaptureError> {
    let shown = path.display().to_string();
    let dev = Device::with_path(path).map_err(|source| CaptureError::Device {
        device: shown.clone(),
        what: "cannot open",
        source,
    })?;
    device_offers(&dev, &shown)
}

fn device_offers(dev: &Device, shown: &str) -> Result<Vec<Offer>, CaptureError> {
    let mut offers = Vec::new();
    for desc in dev.enum_formats().map_err(|source| CaptureError::Setup {
        device: shown.to_string(),
        what: "cannot list formats",
        source,
    })? {
        let sizes = dev
            .enum_framesizes(desc.fourcc)
            .map(|list| {
                list.into_iter()
                    .flat_map(|fs| fs.size.to_discrete())
                    .map(|d| (d.width, d.height))
                    .collect()
            })
            .unwrap_or_default();
        offers.push(Offer {
            fourcc: desc.fourcc.repr,
            sizes,
        });
    }
    Ok(offers)
}

/// Pick the requested format and size from what the camera offers, or
/// explain what it offers instead. An empty size list means "any size".
pub fn choose_format(
    offers: &[Offer],
    format: PixelFormat,
    width: u32,
    height: u32,
) -> Result<(), String> {
    let want = format.fourcc();
    let describe = || describe_offers(offers);
    let Some(offer) = offers.iter().find(|o| o.fourcc == want) else {
        return Err(format!(
            "camera does not offer {}; it offers: {}",
            fourcc_text(&want),
            describe()
        ));
    };
    if !offer.sizes.is_empty() && !offer.sizes.contains(&(width, height)) {
        return Err(format!(
            "camera offers {} but not at {width}x{height}; it offers: {}",
            fourcc_text(&want),
            describe()
        ));
    }
    Ok(())
}

/// The frame's capture time: the driver's timestamp when it is on the
/// monotonic clock (V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC), otherwise the time we
/// dequeued it (later than the exposure, never earlier).
pub fn map_timestamp(sec: i64, usec: i64, flags: u32, dequeued_at: Timestamp) -> Timestamp {
    let kind = flags & Flags::TIMESTAMP_MASK.bits();
    if kind == Flags::TIMESTAMP_MONOTONIC.bits() && sec >= 0 && usec >= 0 {
        let t = Timestamp(sec as u64 * 1_000_000_000 + usec as u64 * 1_000);
        // A driver stamp in the future is not plausible: fall back.
        if t <= dequeued_at {
            return t;
        }
    }
    dequeued_at
}

pub struct V4l2Source {
    config: V4l2Config,
    clock: Arc<dyn Clock>,
    device: Option<Device>,
    stream: Option<Stream<'static>>,
    raw: Vec<u8>,
    raw_meta: (i64, i64, u32, u32),
    frames_since_open: u64,
    reopen: Backoff,
}

/// Reopen attempts after an unplug start at this interval and double up to 5 s.
const REOPEN_BACKOFF_START: Duration = Duration::from_millis(250);
const REOPEN_BACKOFF_MAX: Duration = Duration::from_secs(5);

fn io_to_capture(e: std::io::Error, stall: Duration, device: &Path) -> CaptureError {
    match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
            CaptureError::Stalled(stall)
        }
        _ => CaptureError::Device {
            device: device.display().to_string(),
            what: "capture",
            source: e,
        },
    }
}

impl V4l2Source {
    /// Open and negotiate; errors list what the camera offers.
    pub fn open(config: V4l2Config, clock: Arc<dyn Clock>) -> Result<Self, CaptureError> {
        if config.buffers < 2 {
            return Err(CaptureError::Config(
                "v4l2: buffers must be at least 2".into(),
            ));
        }
        let mut source = Self {
            config,
            clock,
            device: None,
            stream: None,
            raw: Vec::new(),
            raw_meta: (0, 0, 0, 0),
            frames_since_open: 0,
            reopen: Backoff::new(REOPEN_BACKOFF_START, REOPEN_BACKOFF_MAX),
        };
        source.open_device()?;
        Ok(source)
    }

    fn open_device(&mut self) -> Result<(), CaptureError> {
        let c = &self.config;
        let shown = c.device.display().to_string();
        let dev = Device::with_path(&c.device).map_err(|source| CaptureError::Device {
            device: shown.clone(),
            what: "cannot open",
            source,
        })?;
        let offers = device_offers(&dev, &shown)?;
        choose_format(&offers, c.format, c.width, c.height)
            .map_err(|m| CaptureError::Config(format!("{shown}: {m}")))?;
        let mut fmt = dev.format().map_err(|source| CaptureError::Setup {
            device: shown.clone(),
            what: "cannot read the format",
            source,
        })?;
        fmt.width = c.width;
        fmt.height = c.height;
        fmt.fourcc = FourCC::new(&c.format.fourcc());
        let got = dev.set_format(&fmt).map_err(|source| CaptureError::Setup {
            device: shown.clone(),
            what: "set format",
            source,
        })?;
        if got.width != c.width || got.height != c.height || got.fourcc.repr != c.format.fourcc() {
            return Err(CaptureError::Config(format!(
                "{shown}: asked for {}x{} {}, driver set {}x{} {}",
                c.width,
                c.height,
                fourcc_text(&c.format.fourcc()),
                got.width,
                got.height,
                fourcc_text(&got.fourcc.repr)
            )));
        }
        let params = v4l::video::capture::Parameters::with_fps(c.fps);
        if let Err(e) = dev.set_params(&params) {
            tracing::warn!("{shown}: could not set {} fps: {e}", c.fps);
        }
        let mut stream =
            Stream::with_buffers(&dev, Type::VideoCapture, c.buffers).map_err(|source| {
                CaptureError::Setup {
                    device: shown.clone(),
                    what: "mmap buffers",
                    source,
                }
            })?;
        stream.set_timeout(c.stall_timeout);
        self.device = Some(dev);
        self.stream = Some(stream);
        self.frames_since_open = 0;
        tracing::info!(
            "{shown}: streaming {}x{} {} at {} fps",
            c.width,
            c.height,
            fourcc_text(&c.format.fourcc()),
            c.fps
        );
        Ok(())
    }

    /// Dequeue one buffer, copying its bytes; then drain whatever else is
    /// already waiting so the newest wins.
    fn dequeue_newest(&mut self) -> Result<(), CaptureError> {
        let stall = self.config.stall_timeout;
        let device = &self.config.device;
        let stream = self.stream.as_mut().expect("open stream");
        let (raw, raw_meta) = (&mut self.raw, &mut self.raw_meta);
        // time_t is i64 on the 64-bit targets we build for (x86-64, aarch64 Jetson).
        #[allow(clippy::useless_conversion)]
        let mut keep = |buf: &[u8], meta: &v4l::buffer::Metadata| {
            let used = (meta.bytesused as usize).min(buf.len());
            raw.clear();
            raw.extend_from_slice(&buf[..used]);
            *raw_meta = (
                i64::from(meta.timestamp.sec),
                i64::from(meta.timestamp.usec),
                meta.flags.bits(),
                meta.sequence,
            );
        };
        stream.set_timeout(stall);
        let (buf, meta) = stream.next().map_err(|e| io_to_capture(e, stall, device))?;
        keep(buf, meta);
        // Zero timeout: take only buffers that are already complete.
        stream.set_timeout(Duration::ZERO);
        while let Ok((buf, meta)) = stream.next() {
            keep(buf, meta);
        }
        stream.set_timeout(stall);
        Ok(())
    }
}

impl FrameSource for V4l2Source {
    fn describe(&self) -> String {
        let c = &self.config;
        format!(
            "V4L2 {} {}x{} {} @ {} fps, {} buffers",
            c.device.display(),
            c.width,
            c.height,
            fourcc_text(&c.format.fourcc()),
            c.fps,
            c.buffers
        )
    }

    fn pending_rotation(&self) -> Rotation {
        self.config.rotation
    }

    fn next_frame(&mut self, frame: &mut Frame) -> Result<(), CaptureError> {
        if self.stream.is_none() {
            // Unplugged earlier: retry opening with backoff, never a fake frame.
            let now = Instant::now();
            if !self.reopen.ready(now) {
                std::thread::sleep(Duration::from_millis(20));
                return Err(CaptureError::Disconnected(format!(
                    "{} (waiting to reopen)",
                    self.config.device.display()
                )));
            }
            if let Err(e) = self.open_device() {
                self.reopen.failed(now);
                return Err(e);
            }
            self.reopen.succeeded();
        }
        if let Err(e) = self.dequeue_newest() {
            if matches!(
                e,
                CaptureError::Disconnected(_) | CaptureError::Device { .. }
            ) {
                self.stream = None;
                self.device = None;
                self.reopen.wait_from(Instant::now());
            }
            return Err(e);
        }
        let dequeued_at = self.clock.now();
        let (sec, usec, flags, sequence) = self.raw_meta;
        let (w, h) = (self.config.width as usize, self.config.height as usize);
        frame.width = w;
        frame.height = h;
        frame.order = ChannelOrder::Bgr;
        frame.seq = u64::from(sequence);
        frame.capture_time = map_timestamp(sec, usec, flags, dequeued_at);
        frame.starts_episode = self.frames_since_open == 0;
        frame.replay_position = None;
        self.frames_since_open += 1;
        // YUYV and NV12 travel raw: the GPU chain decodes them in its first
        // kernel, the CPU chain converts only the frames it actually uses
        // (newest wins, so dropped frames are never converted).
        let raw_frame = |format: InputFormat, frame: &mut Frame| {
            let need = format.frame_len(w, h);
            if self.raw.len() < need {
                return Err(ConvertError::RawSize {
                    format: format!("{format:?}"),
                    expected: need,
                    actual: self.raw.len(),
                });
            }
            frame.format = format;
            frame.data.clear();
            frame.data.extend_from_slice(&self.raw[..need]);
            Ok(())
        };
        match self.config.format {
            PixelFormat::Yuyv => raw_frame(InputFormat::Yuyv, frame),
            PixelFormat::Mjpeg => {
                frame.format = InputFormat::Packed3;
                mjpeg_to_bgr(&self.raw, w, h, &mut frame.data)
            }
            PixelFormat::Nv12 => raw_frame(InputFormat::Nv12, frame),
        }
        .map_err(|source| CaptureError::Frame {
            device: self.config.device.display().to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offers() -> Vec<Offer> {
        vec![
            Offer {
                fourcc: *b"MJPG",
                sizes: vec![(1280, 720), (640, 480)],
            },
            Offer {
                fourcc: *b"YUYV",
                sizes: vec![(640, 480)],
            },
        ]
    }

    #[test]
    fn requested_format_and_size_are_accepted() {
        assert!(choose_format(&offers(), PixelFormat::Mjpeg, 1280, 720).is_ok());
        assert!(choose_format(&offers(), PixelFormat::Yuyv, 640, 480).is_ok());
    }

    #[test]
    fn refusal_lists_what_the_camera_offers() {
        let err = choose_format(&offers(), PixelFormat::Yuyv, 1280, 720).unwrap_err();
        assert!(err.contains("not at 1280x720"), "{err}");
        assert!(
            err.contains("MJPG [1280x720 640x480]") && err.contains("YUYV [640x480]"),
            "{err}"
        );
        let only_yuyv = vec![Offer {
            fourcc: *b"YUYV",
            sizes: vec![],
        }];
        let err = choose_format(&only_yuyv, PixelFormat::Mjpeg, 640, 480).unwrap_err();
        assert!(
            err.contains("does not offer MJPG") && err.contains("YUYV [any size]"),
            "{err}"
        );
    }

    #[test]
    fn monotonic_driver_timestamps_are_used() {
        let now = Timestamp(10_000_000_000);
        let flags = Flags::TIMESTAMP_MONOTONIC.bits();
        assert_eq!(
            map_timestamp(9, 500_000, flags, now),
            Timestamp(9_500_000_000)
        );
        // Unknown clock: the dequeue time.
        assert_eq!(map_timestamp(9, 500_000, 0, now), now);
        // A stamp from the future is not believed.
        assert_eq!(map_timestamp(11, 0, flags, now), now);
    }

    #[test]
    fn pixel_format_names() {
        assert_eq!(PixelFormat::parse("yuyv"), Some(PixelFormat::Yuyv));
        assert_eq!(PixelFormat::parse("MJPEG"), Some(PixelFormat::Mjpeg));
        assert_eq!(PixelFormat::parse("nv12"), Some(PixelFormat::Nv12));
        assert_eq!(PixelFormat::parse("I420"), None);
    }
}
