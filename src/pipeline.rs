//! The capture and inference stages and what flows between them.
//!
//! ```text
//! [capture] --Latest<Frame>--> [inference] --Latest<InferenceEvent>--> [motor side]
//! ```
//! Channels hold one item; a new item replaces an unread one (newest wins),
//! so a slow consumer never works through a queue of stale data. Frame
//! buffers go back to the capture thread through a recycle channel.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TryRecvError};
use serde::Serialize;

use crate::capture::{CaptureError, Frame, FrameSource};
use crate::clock::{Clock, Timestamp};
use crate::fault::FaultKind;
use crate::policy::{Policy, PolicyError, PolicyRunner, StepOutput};
use crate::preprocess::{PreprocessError, Preprocessor};
use crate::telemetry::{LatencyHistogram, LatencySummary, RateLimit};

/// Longest chunk the runtime carries without allocating (models use 1, 5 or 10).
pub const MAX_CHUNK: usize = 16;

// ---------------------------------------------------------------------------
// Newest-wins channel

/// Sending half of a capacity-1 channel where a new item replaces an unread one.
pub struct Latest<T> {
    tx: Sender<T>,
    rx: Receiver<T>,
}

impl<T> Clone for Latest<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            rx: self.rx.clone(),
        }
    }
}

pub fn latest<T>() -> (Latest<T>, Receiver<T>) {
    let (tx, rx) = bounded(1);
    (Latest { tx, rx: rx.clone() }, rx)
}

impl<T> Latest<T> {
    /// Send `item`; returns the unread item it replaced, if any.
    pub fn send(&self, mut item: T) -> Option<T> {
        let mut replaced = None;
        loop {
            match self.tx.try_send(item) {
                Ok(()) => return replaced,
                Err(crossbeam_channel::TrySendError::Full(back)) => {
                    item = back;
                    if let Ok(old) = self.rx.try_recv() {
                        replaced = Some(old);
                    }
                }
                // We hold a receiver ourselves, so the channel cannot disconnect.
                Err(crossbeam_channel::TrySendError::Disconnected(_)) => return replaced,
            }
        }
    }
}

// ---------------------------------------------------------------------------
// What the inference stage emits

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

/// Map policy errors to fault kinds.
pub fn policy_fault(e: &PolicyError) -> FaultKind {
    match e {
        PolicyError::NonFinite { .. } | PolicyError::NonFiniteFeature { .. } => {
            FaultKind::NonFiniteOutput
        }
        PolicyError::OutOfRange { .. } => FaultKind::OutOfRangeOutput,
        _ => FaultKind::InferenceError,
    }
}

// ---------------------------------------------------------------------------
// Inference stage (synchronous core, also used directly by golden tests)

/// Frame → action chunk, in two calls so the stage can time them: the CPU
/// chain (a [`Preprocessor`] into host memory, then a [`PolicyRunner`]) or
/// the GPU chain (CUDA kernels into the TensorRT engine's input, features
/// kept on the GPU; `policy::tensorrt::GpuChain`).
pub trait FrameStep: Send {
    /// Turn the frame into the model input (the GPU chain only enqueues).
    fn preprocess(&mut self, frame: &Frame) -> Result<(), PreprocessError>;
    /// Policy step for the frame last given to `preprocess`.
    fn infer(&mut self, frame: &Frame) -> Result<StepOutput<'_>, PolicyError>;
    /// Forget the history.
    fn reset(&mut self);
    fn step_length(&self) -> Duration;
}

/// The CPU (or host-memory) chain: preprocess into a host buffer, then run
/// the policy with the history on the host.
pub struct HostChain<P: Policy> {
    runner: PolicyRunner<P>,
    pre: Box<dyn Preprocessor + Send>,
    pixels: Vec<f32>,
    /// Raw YUYV/NV12 frames converted to BGR (allocated on the first such frame).
    packed: Vec<u8>,
}

impl<P: Policy> HostChain<P> {
    pub fn new(runner: PolicyRunner<P>, pre: impl Preprocessor + Send + 'static) -> Self {
        let n = pre.spec().output_len();
        Self {
            runner,
            pre: Box::new(pre),
            pixels: vec![0.0; n],
            packed: Vec::new(),
        }
    }
}

impl<P: Policy + Send> FrameStep for HostChain<P> {
    fn preprocess(&mut self, frame: &Frame) -> Result<(), PreprocessError> {
        let view = frame
            .packed(&mut self.packed)
            .map_err(|e| PreprocessError::Convert(e.to_string()))?;
        self.pre.run(view, &mut self.pixels)
    }

    fn infer(&mut self, frame: &Frame) -> Result<StepOutput<'_>, PolicyError> {
        self.runner.step(frame.capture_time, &self.pixels)
    }

    fn reset(&mut self) {
        self.runner.reset();
    }

    fn step_length(&self) -> Duration {
        self.runner.step_length()
    }
}

pub struct InferenceStage {
    step: Box<dyn FrameStep>,
    seq: u64,
    last_frame_time: Option<Timestamp>,
}

/// One processed frame: the event, and the error text when it is a fault.
pub struct Processed {
    pub event: InferenceEvent,
    pub error: Option<String>,
}

impl InferenceStage {
    pub fn new<P: Policy + Send + 'static>(
        runner: PolicyRunner<P>,
        pre: impl Preprocessor + Send + 'static,
    ) -> Self {
        Self::with_step(HostChain::new(runner, pre))
    }

    pub fn with_step(step: impl FrameStep + 'static) -> Self {
        Self {
            step: Box::new(step),
            seq: 0,
            last_frame_time: None,
        }
    }

    /// Preprocess + policy step for one frame. `picked_up`: when the stage got the frame.
    pub fn process(&mut self, frame: &Frame, picked_up: Timestamp, clock: &dyn Clock) -> Processed {
        if frame.starts_episode || self.last_frame_time.is_some_and(|t| frame.capture_time < t) {
            self.step.reset();
        }
        self.last_frame_time = Some(frame.capture_time);
        let _frame_span = tracing::debug_span!("inference", frame = frame.seq).entered();
        let t_start = clock.now();
        let preprocessed = {
            let _span = tracing::debug_span!("preprocess").entered();
            self.step.preprocess(frame)
        };
        if let Err(e) = preprocessed {
            self.step.reset(); // a hole in the history: do not bridge it
            return Processed {
                event: InferenceEvent::Fault {
                    kind: FaultKind::FrameCorrupt,
                    at: clock.now(),
                },
                error: Some(format!("frame {}: {e}", frame.seq)),
            };
        }
        let t_pre = clock.now();
        let step = self.step.step_length();
        let result = {
            let _span = tracing::debug_span!("policy").entered();
            self.step.infer(frame)
        };
        let t_done = clock.now();
        match result {
            Ok(out) => {
                self.seq += 1;
                let mut actions = heapless::Vec::new();
                for a in out.actions.chunks_exact(2).take(MAX_CHUNK) {
                    let _ = actions.push([a[0], a[1]]);
                }
                Processed {
                    event: InferenceEvent::Chunk(ActionChunk {
                        seq: self.seq,
                        frame_seq: frame.seq,
                        t0: frame.capture_time,
                        step,
                        actions,
                        raw_first: [out.raw[0], out.raw[1]],
                        forced_zero: out.forced_zero,
                        history_steps: out.steps,
                        timings: StageTimings {
                            queue: picked_up.saturating_since(frame.capture_time),
                            preprocess: t_pre.saturating_since(t_start),
                            infer: t_done.saturating_since(t_pre),
                            total: t_done.saturating_since(frame.capture_time),
                        },
                    }),
                    error: None,
                }
            }
            Err(e) => {
                let kind = policy_fault(&e);
                self.step.reset();
                Processed {
                    event: InferenceEvent::Fault { kind, at: t_done },
                    error: Some(format!("frame {}: {e}", frame.seq)),
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Threads

/// Counters shared by the stage threads (atomics; no locks on hot paths).
#[derive(Debug, Default)]
pub struct Counters {
    pub frames_captured: AtomicU64,
    pub frames_replaced: AtomicU64,
    pub capture_errors: AtomicU64,
    pub inferences: AtomicU64,
    pub inference_faults: AtomicU64,
    pub events_replaced: AtomicU64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CountersSnapshot {
    pub frames_captured: u64,
    pub frames_dropped: u64,
    pub capture_errors: u64,
    pub inferences: u64,
    pub inference_faults: u64,
    pub chunks_superseded_unread: u64,
}

impl Counters {
    pub fn snapshot(&self) -> CountersSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CountersSnapshot {
            frames_captured: g(&self.frames_captured),
            frames_dropped: g(&self.frames_replaced),
            capture_errors: g(&self.capture_errors),
            inferences: g(&self.inferences),
            inference_faults: g(&self.inference_faults),
            chunks_superseded_unread: g(&self.events_replaced),
        }
    }
}

/// What the capture thread hands the inference thread.
pub enum CaptureMsg {
    Frame(Frame),
    Fault { kind: FaultKind, at: Timestamp },
}

/// Capture loop: until `stop`, read frames and publish the newest. Errors
/// become fault messages; a source that ended stops the loop.
pub fn capture_loop(
    mut source: Box<dyn FrameSource>,
    out: Latest<CaptureMsg>,
    recycle: Receiver<Frame>,
    clock: Arc<dyn Clock>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
) {
    let _stage_span = tracing::info_span!("capture_stage", source = %source.describe()).entered();
    let mut limit = RateLimit::new(Duration::from_secs(1));
    let mut spare: Option<Frame> = None;
    while !stop.load(Ordering::Relaxed) {
        // Reuse a buffer: one we replaced unread, one the consumer returned, or a new one.
        let mut frame = spare
            .take()
            .or_else(|| recycle.try_recv().ok())
            .unwrap_or_default();
        match source.next_frame(&mut frame) {
            Ok(()) => {
                counters.frames_captured.fetch_add(1, Ordering::Relaxed);
                if let Some(old) = out.send(CaptureMsg::Frame(frame)) {
                    counters.frames_replaced.fetch_add(1, Ordering::Relaxed);
                    if let CaptureMsg::Frame(f) = old {
                        spare = Some(f);
                    }
                }
            }
            Err(e) => {
                counters.capture_errors.fetch_add(1, Ordering::Relaxed);
                let kind = e.fault();
                if let Some(suppressed) = limit.allow() {
                    tracing::warn!(fault = %kind, suppressed, "capture: {e}");
                }
                out.send(CaptureMsg::Fault {
                    kind,
                    at: clock.now(),
                });
                if matches!(e, CaptureError::Ended) {
                    break;
                }
            }
        }
    }
}

/// Inference loop settings.
#[derive(Debug, Clone, Copy)]
pub struct InferenceSettings {
    /// No frame for this long raises `NoFrame` (and again every period after).
    pub no_frame_timeout: Duration,
    /// Capture→chunk above this logs a rate-limited warning.
    pub budget: Duration,
}

/// Latency histograms of the inference stage (read at the end of a run).
#[derive(Debug, Default, Clone)]
pub struct InferenceStats {
    pub queue: LatencyHistogram,
    pub preprocess: LatencyHistogram,
    pub infer: LatencyHistogram,
    pub total: LatencyHistogram,
    pub faults: std::collections::BTreeMap<FaultKind, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InferenceStatsSummary {
    pub capture_to_pickup: LatencySummary,
    pub preprocess: LatencySummary,
    pub infer: LatencySummary,
    pub capture_to_chunk: LatencySummary,
    pub faults: std::collections::BTreeMap<FaultKind, u64>,
}

impl InferenceStats {
    pub fn summary(&self) -> InferenceStatsSummary {
        InferenceStatsSummary {
            capture_to_pickup: self.queue.summary(),
            preprocess: self.preprocess.summary(),
            infer: self.infer.summary(),
            capture_to_chunk: self.total.summary(),
            faults: self.faults.clone(),
        }
    }
}

/// The capture and inference threads of one run, wired with newest-wins
/// channels; the motor side reads `events`.
pub struct Stages {
    pub events: Receiver<InferenceEvent>,
    pub capture: std::thread::JoinHandle<()>,
    pub inference: std::thread::JoinHandle<()>,
    pub counters: Arc<Counters>,
    pub stats: Arc<Mutex<InferenceStats>>,
    /// Set to stop both threads.
    pub stop: Arc<AtomicBool>,
}

/// Spawn `mvla-capture` (source → newest frame) and `mvla-inference`
/// (frame → stage → newest event, observer sees every result).
pub fn spawn_stages(
    source: Box<dyn FrameSource>,
    stage: InferenceStage,
    settings: InferenceSettings,
    clock: Arc<dyn Clock>,
    observer: Box<dyn InferenceObserver>,
) -> std::io::Result<Stages> {
    let counters = Arc::new(Counters::default());
    let stats = Arc::new(Mutex::new(InferenceStats::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let (frame_tx, frame_rx) = latest();
    // Two spare frames travel back to the capture thread for reuse.
    let (recycle_tx, recycle_rx) = bounded(2);
    let (event_tx, events) = latest();
    let capture = {
        let (clock, counters, stop) = (clock.clone(), counters.clone(), stop.clone());
        std::thread::Builder::new()
            .name("mvla-capture".into())
            .spawn(move || capture_loop(source, frame_tx, recycle_rx, clock, counters, stop))?
    };
    let inference = {
        let (counters, stats, stop) = (counters.clone(), stats.clone(), stop.clone());
        std::thread::Builder::new()
            .name("mvla-inference".into())
            .spawn(move || {
                inference_loop(
                    stage, frame_rx, recycle_tx, event_tx, settings, clock, counters, stats,
                    observer, stop,
                )
            })?
    };
    Ok(Stages {
        events,
        capture,
        inference,
        counters,
        stats,
        stop,
    })
}

/// Observer of every inference result (recording, session log); must not block.
pub trait InferenceObserver: Send {
    fn on_event(&mut self, frame: Option<&Frame>, event: &InferenceEvent, error: Option<&str>);
}

impl InferenceObserver for () {
    fn on_event(&mut self, _: Option<&Frame>, _: &InferenceEvent, _: Option<&str>) {}
}

#[allow(clippy::too_many_arguments)]
pub fn inference_loop(
    mut stage: InferenceStage,
    frames: Receiver<CaptureMsg>,
    recycle: Sender<Frame>,
    out: Latest<InferenceEvent>,
    settings: InferenceSettings,
    clock: Arc<dyn Clock>,
    counters: Arc<Counters>,
    stats: Arc<Mutex<InferenceStats>>,
    mut observer: Box<dyn InferenceObserver>,
    stop: Arc<AtomicBool>,
) {
    let _stage_span = tracing::info_span!("inference_stage").entered();
    let mut local = InferenceStats::default();
    let mut fault_log = RateLimit::new(Duration::from_secs(1));
    let mut budget_log = RateLimit::new(Duration::from_secs(5));
    let mut publish = |event: InferenceEvent,
                       frame: Option<&Frame>,
                       error: Option<String>,
                       local: &mut InferenceStats,
                       observer: &mut Box<dyn InferenceObserver>| {
        if let InferenceEvent::Fault { kind, .. } = &event {
            *local.faults.entry(*kind).or_default() += 1;
            counters.inference_faults.fetch_add(1, Ordering::Relaxed);
            if let Some(suppressed) = fault_log.allow() {
                tracing::warn!(fault = %kind, suppressed, "inference: {}", error.as_deref().unwrap_or(""));
            }
        }
        observer.on_event(frame, &event, error.as_deref());
        if out.send(event).is_some() {
            counters.events_replaced.fetch_add(1, Ordering::Relaxed);
        }
    };
    while !stop.load(Ordering::Relaxed) {
        match frames.recv_timeout(settings.no_frame_timeout) {
            Ok(CaptureMsg::Frame(frame)) => {
                let picked_up = clock.now();
                let processed = stage.process(&frame, picked_up, clock.as_ref());
                if let InferenceEvent::Chunk(c) = &processed.event {
                    counters.inferences.fetch_add(1, Ordering::Relaxed);
                    local.queue.record(c.timings.queue);
                    local.preprocess.record(c.timings.preprocess);
                    local.infer.record(c.timings.infer);
                    local.total.record(c.timings.total);
                    if c.timings.total > settings.budget {
                        if let Some(suppressed) = budget_log.allow() {
                            tracing::warn!(
                                suppressed,
                                "inference over budget: capture→chunk {:.1} ms > {} ms",
                                c.timings.total.as_secs_f64() * 1e3,
                                settings.budget.as_millis()
                            );
                        }
                    }
                }
                publish(
                    processed.event,
                    Some(&frame),
                    processed.error,
                    &mut local,
                    &mut observer,
                );
                let _ = recycle.try_send(frame);
            }
            Ok(CaptureMsg::Fault { kind, at }) => {
                publish(
                    InferenceEvent::Fault { kind, at },
                    None,
                    None,
                    &mut local,
                    &mut observer,
                );
                if kind == FaultKind::SourceEnded {
                    break;
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                let at = clock.now();
                publish(
                    InferenceEvent::Fault {
                        kind: FaultKind::NoFrame,
                        at,
                    },
                    None,
                    Some(format!(
                        "no frame for {} ms",
                        settings.no_frame_timeout.as_millis()
                    )),
                    &mut local,
                    &mut observer,
                );
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    *stats.lock().expect("stats lock") = local;
}

/// Drain a receiver without blocking, keeping the newest item.
pub fn try_newest<T>(rx: &Receiver<T>) -> Option<T> {
    let mut newest = None;
    loop {
        match rx.try_recv() {
            Ok(v) => newest = Some(v),
            Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => return newest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_replaces_unread_items() {
        let (tx, rx) = latest();
        assert_eq!(tx.send(1), None);
        assert_eq!(tx.send(2), Some(1));
        assert_eq!(rx.try_recv().ok(), Some(2));
        assert!(rx.try_recv().is_err());
        assert_eq!(tx.send(3), None);
        assert_eq!(try_newest(&rx), Some(3));
    }

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
