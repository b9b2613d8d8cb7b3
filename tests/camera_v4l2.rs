//! Needs a USB camera at /dev/video0 (the robot's camera): run on the robot with
//!   cargo test --release --test camera_v4l2 -- --ignored
//! Checks negotiation, frame delivery, driver timestamps on the monotonic clock
//! and freshest-frame behaviour with a slow consumer.

use std::sync::Arc;
use std::time::Duration;

use mvla::capture::v4l2::{PixelFormat, V4l2Config, V4l2Source};
use mvla::capture::{Frame, FrameSource};
use mvla::clock::{Clock, MonotonicClock};
use mvla::preprocess::Rotation;

fn open(format: PixelFormat, width: u32, height: u32) -> V4l2Source {
    V4l2Source::open(
        V4l2Config {
            device: "/dev/video0".into(),
            width,
            height,
            fps: 30,
            format,
            buffers: 4,
            rotation: Rotation::Rotate180,
            stall_timeout: Duration::from_millis(500),
        },
        Arc::new(MonotonicClock),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
#[ignore = "needs a V4L2 camera at /dev/video0"]
fn camera_delivers_fresh_timestamped_frames() {
    let clock = MonotonicClock;
    for (format, w, h) in [
        (PixelFormat::Yuyv, 640, 480),
        (PixelFormat::Mjpeg, 1280, 720),
    ] {
        let mut cam = open(format, w, h);
        let mut frame = Frame::default();
        let mut last = None;
        for i in 0..30 {
            cam.next_frame(&mut frame)
                .unwrap_or_else(|e| panic!("{format:?} frame {i}: {e}"));
            assert_eq!((frame.width, frame.height), (w as usize, h as usize));
            assert_eq!(
                frame.data.len(),
                frame.format.frame_len(frame.width, frame.height)
            );
            let now = clock.now();
            assert!(frame.capture_time <= now);
            if let Some(prev) = last {
                assert!(frame.capture_time > prev, "timestamps increase");
            }
            last = Some(frame.capture_time);
            if i % 10 == 9 {
                // A slow consumer: the next frame must still be fresh, not queued.
                std::thread::sleep(Duration::from_millis(300));
                cam.next_frame(&mut frame).unwrap();
                let age = clock.now().saturating_since(frame.capture_time);
                assert!(
                    age < Duration::from_millis(150),
                    "{format:?}: stale frame, {age:?} old"
                );
                last = Some(frame.capture_time);
            }
        }
    }
}
