//! The capture and inference stages: golden replay against the PyTorch
//! references with a manual clock, and fault injection through the threads.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use mvla::action::InferenceEvent;
use mvla::capture::replay::{Pacing, ReplaySource};
use mvla::capture::{CaptureError, Frame, FrameSource};
use mvla::clock::{Clock, ManualClock, MonotonicClock, Timestamp};
use mvla::fault::FaultKind;
use mvla::npy;
use mvla::pipeline::{spawn_stages, InferenceSettings, InferenceStage};
use mvla::policy::tract::TractPolicy;
use mvla::policy::{Policy, PolicyRunner};
use mvla::preprocess::{ChannelOrder, CpuPreprocessor, Rotation};

fn stage(history: usize) -> (InferenceStage, Duration) {
    let policy = TractPolicy::load(&tiny_model()).unwrap();
    let step = policy.meta().step();
    let spec = policy.meta().preprocess_spec(Rotation::None);
    (
        InferenceStage::new(
            PolicyRunner::new(policy, history),
            CpuPreprocessor::new(spec),
        ),
        step,
    )
}

#[test]
fn golden_replay_reproduces_the_reference_chunk_sequence() {
    let (mut stage, step) = stage(8);
    let clock = ManualClock::new(Timestamp(1_000_000_000));
    let paths = vec![
        episodes_dir().join(format!("{FLAT_EPISODE}.h5")),
        episodes_dir().join(format!("{OBS_EPISODE}.h5")),
    ];
    let mut source = ReplaySource::new(
        paths,
        Pacing::Interval(step),
        Arc::new(clock.clone()),
        false,
    )
    .unwrap();
    let mut frame = Frame::default();
    let mut expected = Vec::new();
    for stem in [FLAT_EPISODE, OBS_EPISODE] {
        let r = npy::read::<f32>(&fixtures().join(format!("reference/{stem}_chunks.npy"))).unwrap();
        let per = r.shape[1] * r.shape[2];
        for i in 0..r.shape[0] {
            expected.push((i, r.data[i * per..(i + 1) * per].to_vec()));
        }
    }
    let mut n = 0;
    loop {
        match source.next_frame(&mut frame) {
            Ok(()) => {}
            Err(CaptureError::Ended) => break,
            Err(e) => panic!("{e}"),
        }
        // Frames are one step apart on the (virtual) clock.
        assert_eq!(
            frame.capture_time,
            Timestamp(1_000_000_000).plus(step * n as u32)
        );
        let out = stage.process(&frame, clock.now(), &clock);
        let InferenceEvent::Chunk(chunk) = out.event else {
            panic!("frame {n}: {:?}", out.error)
        };
        let (index_in_episode, reference) = &expected[n];
        assert_eq!(frame.starts_episode, *index_in_episode == 0);
        assert_eq!(chunk.t0, frame.capture_time);
        assert_eq!(chunk.step, step);
        assert_eq!(
            chunk.history_steps,
            (index_in_episode + 1).min(8),
            "history restarts per episode"
        );
        for (j, a) in chunk.actions.iter().enumerate() {
            for d in 0..2 {
                let want = if *index_in_episode == 0 {
                    0.0 // the first call after a reset commands zero
                } else {
                    (reference[j * 2 + d] * 1.15).clamp(-1.5, 1.5)
                };
                assert!(
                    (a[d] - want).abs() <= 1e-4,
                    "frame {n} step {j} dim {d}: {} vs {want}",
                    a[d]
                );
            }
        }
        assert!((chunk.raw_first[0] - reference[0]).abs() <= 1e-4);
        n += 1;
    }
    assert_eq!(n, expected.len(), "every frame of both episodes");
}

/// A source that plays a script of results, then blocks like a stalled camera.
struct Scripted {
    script: Vec<Result<(), CaptureError>>,
    next: usize,
    clock: Arc<dyn Clock>,
    valid: Frame,
    corrupt: Frame,
}

impl Scripted {
    fn new(script: Vec<Result<(), CaptureError>>) -> Self {
        let ep =
            mvla::record::Episode::open(&episodes_dir().join(format!("{OBS_EPISODE}.h5"))).unwrap();
        let mut valid = Frame {
            width: ep.width,
            height: ep.height,
            order: ChannelOrder::Rgb,
            ..Default::default()
        };
        ep.read_frame(0, &mut valid.data).unwrap();
        // Wrong size for its stated dimensions: what a torn buffer looks like.
        let mut corrupt = valid.clone();
        corrupt.data.truncate(100);
        Self {
            script,
            next: 0,
            clock: Arc::new(MonotonicClock),
            valid,
            corrupt,
        }
    }
}

const CORRUPT_MARK: &str = "deliver-size-mismatch";

impl FrameSource for Scripted {
    fn describe(&self) -> String {
        "scripted".into()
    }
    fn pending_rotation(&self) -> Rotation {
        Rotation::None
    }
    fn next_frame(&mut self, frame: &mut Frame) -> Result<(), CaptureError> {
        std::thread::sleep(Duration::from_millis(20));
        let Some(item) = self.script.get(self.next) else {
            // Stalled: block until the test stops us.
            std::thread::sleep(Duration::from_millis(50));
            return Err(CaptureError::Stalled(Duration::from_millis(50)));
        };
        self.next += 1;
        let template = match item {
            Ok(()) => &self.valid,
            Err(CaptureError::Corrupt(m)) if m == CORRUPT_MARK => &self.corrupt,
            Err(CaptureError::Ended) => return Err(CaptureError::Ended),
            Err(CaptureError::Corrupt(m)) => return Err(CaptureError::Corrupt(m.clone())),
            Err(_) => return Err(CaptureError::Stalled(Duration::from_millis(50))),
        };
        frame.clone_from(template);
        frame.seq = self.next as u64;
        frame.capture_time = self.clock.now();
        frame.starts_episode = self.next == 1;
        Ok(())
    }
}

/// Run capture + inference threads on `source`; collect events until `until`
/// returns true or 5 s pass; then stop and join (a panic fails the test).
fn run_threads(
    source: Scripted,
    no_frame: Duration,
    until: impl Fn(&[InferenceEvent]) -> bool,
) -> Vec<InferenceEvent> {
    let (stage, _) = stage(64);
    let clock: Arc<dyn Clock> = Arc::new(MonotonicClock);
    let settings = InferenceSettings {
        no_frame_timeout: no_frame,
        budget: Duration::from_secs(1),
    };
    let stages = spawn_stages(Box::new(source), stage, settings, clock, Box::new(())).unwrap();
    let erx = stages.events;
    let mut events = Vec::new();
    let started = std::time::Instant::now();
    while !until(&events) && started.elapsed() < Duration::from_secs(5) {
        if let Ok(e) = erx.recv_timeout(Duration::from_millis(10)) {
            events.push(e);
        }
    }
    stages.stop.store(true, Ordering::Relaxed);
    stages
        .capture
        .join()
        .expect("capture thread must not panic");
    stages
        .inference
        .join()
        .expect("inference thread must not panic");
    while let Ok(e) = erx.try_recv() {
        events.push(e);
    }
    events
}

fn has_fault(events: &[InferenceEvent], kind: FaultKind) -> bool {
    events
        .iter()
        .any(|e| matches!(e, InferenceEvent::Fault { kind: k, .. } if *k == kind))
}

fn has_chunk(events: &[InferenceEvent]) -> bool {
    events.iter().any(|e| matches!(e, InferenceEvent::Chunk(_)))
}

#[test]
fn a_stalled_source_raises_no_frame() {
    let events = run_threads(
        Scripted::new(vec![Ok(()), Ok(())]),
        Duration::from_millis(200),
        |ev| has_chunk(ev) && has_fault(ev, FaultKind::NoFrame),
    );
    assert!(has_chunk(&events), "frames before the stall are used");
    assert!(has_fault(&events, FaultKind::NoFrame), "{events:?}");
}

#[test]
fn an_ended_source_raises_source_ended() {
    let events = run_threads(
        Scripted::new(vec![Ok(()), Err(CaptureError::Ended)]),
        Duration::from_secs(2),
        |ev| has_fault(ev, FaultKind::SourceEnded),
    );
    assert!(has_fault(&events, FaultKind::SourceEnded), "{events:?}");
}

#[test]
fn a_corrupt_frame_raises_frame_corrupt_and_later_frames_recover() {
    let script = vec![
        Ok(()),
        Err(CaptureError::Corrupt(CORRUPT_MARK.into())), // delivered, wrong size
        Err(CaptureError::Corrupt("jpeg decode failed".into())), // reported by the source
        Ok(()),
    ];
    let events = run_threads(Scripted::new(script), Duration::from_secs(2), |ev| {
        ev.iter()
            .filter(|e| matches!(e, InferenceEvent::Chunk(_)))
            .count()
            >= 2
    });
    let kinds: Vec<String> = events
        .iter()
        .map(|e| match e {
            InferenceEvent::Chunk(_) => "chunk".to_string(),
            InferenceEvent::Fault { kind, .. } => kind.to_string(),
        })
        .collect();
    let corrupt = kinds.iter().filter(|k| *k == "frame_corrupt").count();
    assert!(corrupt >= 1, "{kinds:?}");
    // A chunk after the corrupt frames: the pipeline carries on (history restarted).
    let last_corrupt = kinds.iter().rposition(|k| k == "frame_corrupt").unwrap();
    assert!(
        kinds[last_corrupt..].iter().any(|k| k == "chunk"),
        "{kinds:?}"
    );
}

#[test]
fn raw_yuyv_and_nv12_frames_give_the_chunks_of_their_opencv_conversion() {
    // The camera hands YUYV/NV12 through untouched (the GPU chain decodes them
    // itself); the CPU chain must then see exactly the BGR frame OpenCV's
    // conversion gives, so the policy's output is identical.
    use mvla::action::InferenceEvent;
    use mvla::capture::Frame;
    use mvla::preprocess::InputFormat;
    let (w, h) = (320usize, 240usize);
    let clock = ManualClock::new(Timestamp(1_000_000_000));
    // The BGR frames OpenCV's cvtColor made of these exact raw patterns
    // (engines/make_fixtures.py), not the crate's own converter.
    let opencv = |name: &str| {
        let a = mvla::npy::read::<u8>(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/capture")
                .join(name),
        )
        .unwrap();
        assert_eq!(a.shape, vec![h, w, 3]);
        a.data
    };
    for (format, raw, bgr) in [
        (
            InputFormat::Yuyv,
            yuyv_pattern(w, h),
            opencv("yuyv_320x240_opencv_bgr.npy"),
        ),
        (
            InputFormat::Nv12,
            nv12_pattern(w, h),
            opencv("nv12_320x240_opencv_bgr.npy"),
        ),
    ] {
        let make = |format, data: &Vec<u8>| Frame {
            seq: 1,
            capture_time: Timestamp(1_000_000_000),
            width: w,
            height: h,
            order: ChannelOrder::Bgr,
            format,
            data: data.clone(),
            starts_episode: true,
            replay_position: None,
        };
        let chunk = |frame: &Frame| {
            let (mut stage, _) = stage(8);
            match stage.process(frame, clock.now(), &clock).event {
                InferenceEvent::Chunk(c) => (c.raw_first, c.actions.clone()),
                other => panic!("{other:?}"),
            }
        };
        let from_raw = chunk(&make(format, &raw));
        let from_bgr = chunk(&make(InputFormat::Packed3, &bgr));
        assert_eq!(from_raw, from_bgr, "{format:?}");
        // And a short raw frame is a corrupt-frame fault, not a crash.
        let (mut stage, _) = stage(8);
        let short = make(format, &raw[..raw.len() / 2].to_vec());
        match stage.process(&short, clock.now(), &clock).event {
            InferenceEvent::Fault { kind, .. } => {
                assert_eq!(kind, mvla::fault::FaultKind::FrameCorrupt)
            }
            other => panic!("{other:?}"),
        }
    }
}
