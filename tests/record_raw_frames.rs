//! Raw YUYV / NV12 camera frames reach the recorder untouched; the episode
//! file must still hold the packed BGR frame OpenCV's conversion gives (the
//! training format), and a short raw frame must be reported, not written.

mod common;

use std::time::Duration;

use common::*;
use mvla::action::{ActionChunk, InferenceEvent, InferenceObserver, StageTimings};
use mvla::capture::Frame;
use mvla::clock::Timestamp;
use mvla::frame::convert::{nv12_to_bgr, yuyv_to_bgr};
use mvla::preprocess::{ChannelOrder, InputFormat};
use mvla::record::session::{spawn_recorder, RecordSettings};
use mvla::record::Episode;

fn chunk(t0: Timestamp) -> InferenceEvent {
    InferenceEvent::Chunk(ActionChunk {
        seq: 1,
        frame_seq: 1,
        t0,
        step: Duration::from_millis(800),
        actions: [[1.15f32, 0.3]; 5].into_iter().collect(),
        raw_first: [1.0, 0.26],
        forced_zero: false,
        history_steps: 1,
        timings: StageTimings::default(),
    })
}

#[test]
fn raw_frames_are_recorded_as_their_opencv_bgr_conversion() {
    let (w, h) = (64usize, 48usize);
    for (format, raw) in [
        (InputFormat::Yuyv, yuyv_pattern(w, h)),
        (InputFormat::Nv12, nv12_pattern(w, h)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (mut recorder, handle) = spawn_recorder(RecordSettings {
            dir: dir.path().to_path_buf(),
            episode: true,
            session_log: false,
            scenario: "raw_test".into(),
            instruction: "test".into(),
            model_id: "tiny".into(),
            chunk_size: 5,
            step: Duration::from_millis(800),
        })
        .unwrap();
        let frame = |i: u64, data: Vec<u8>| Frame {
            seq: i,
            capture_time: Timestamp(1_000_000_000 + i * 800_000_000),
            width: w,
            height: h,
            order: ChannelOrder::Bgr,
            format,
            data,
            starts_episode: i == 0,
            replay_position: None,
        };
        let good = frame(0, raw.clone());
        recorder.on_event(Some(&good), &chunk(good.capture_time), None);
        let short = frame(1, raw[..raw.len() / 2].to_vec());
        recorder.on_event(Some(&short), &chunk(short.capture_time), None);
        drop(recorder);
        let outcome = handle.join().unwrap();
        assert_eq!(outcome.episodes.len(), 1, "{outcome:?}");
        assert_eq!(outcome.episodes[0].1, 1, "only the intact frame is a row");
        assert!(
            outcome
                .errors
                .iter()
                .any(|e| e.contains("frame 1 not recorded")),
            "{:?}",
            outcome.errors
        );

        let mut want = vec![0u8; w * h * 3];
        match format {
            InputFormat::Yuyv => yuyv_to_bgr(&raw, w, h, &mut want).unwrap(),
            _ => nv12_to_bgr(&raw, w, h, &mut want).unwrap(),
        }
        let ep = Episode::open(std::path::Path::new(&outcome.episodes[0].0)).unwrap();
        assert_eq!((ep.width, ep.frames), (w, 1));
        let mut got = Vec::new();
        ep.read_frame(0, &mut got).unwrap();
        assert_eq!(got, want, "{format:?}");
    }
}
