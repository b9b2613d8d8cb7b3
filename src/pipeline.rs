//! The capture and inference stages: their thread loops, the synchronous
//! [`InferenceStage`] core (frame → [`InferenceEvent`]) that the threads, the
//! lock-step simulator and the golden tests share, and their counters.
//!
//! ```text
//! [capture] --Latest<Frame>--> [inference] --Latest<InferenceEvent>--> [motor side]
//! ```
//! The channels are [`crate::channel::latest`] (newest wins); frame buffers go
//! back to the capture thread through a recycle channel. What flows to the
//! motor side is defined in [`crate::action`], so the motor loop does not
//! depend on this module.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use serde::Serialize;

use crate::action::{ActionChunk, InferenceEvent, InferenceObserver, StageTimings, MAX_CHUNK};
use crate::capture::{CaptureError, FrameSource};
use crate::channel::{latest, Latest};
use crate::clock::{Clock, Timestamp};
use crate::fault::FaultKind;
use crate::frame::Frame;
use crate::policy::{Policy, PolicyError, PolicyRunner, StepOutput};
use crate::preprocess::{PreprocessError, Preprocessor};
use crate::telemetry::{LatencyHistogram, LatencySummary, RateLimit};

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
            .map_err(PreprocessError::Convert)?;
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

    /// Forget the history (the next frame starts a new episode).
    pub fn reset_history(&mut self) {
        self.step.reset();
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
                error: Some(format!(
                    "frame {}: {e}",
                    frame.seq,
                    e = crate::error::Report(&e)
                )),
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
                let kind = e.fault();
                self.step.reset();
                Processed {
                    event: InferenceEvent::Fault { kind, at: t_done },
                    error: Some(format!(
                        "frame {}: {e}",
                        frame.seq,
                        e = crate::error::Report(&e)
                    )),
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
    source.set_stop(stop.clone());
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
            Err(_) if stop.load(Ordering::Relaxed) => break, // shutting down
            Err(e) => {
                counters.capture_errors.fetch_add(1, Ordering::Relaxed);
                let kind = e.fault();
                if let Some(suppressed) = limit.allow() {
                    tracing::warn!(fault = %kind, suppressed, "capture: {e}", e = crate::error::Report(&e));
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
    spawn_stages_into(source, stage, settings, clock, observer, latest())
}

/// [`spawn_stages`] emitting into an event channel made beforehand (`mvla run`
/// starts the motor thread on its receiving end before the model is loaded).
pub fn spawn_stages_into(
    source: Box<dyn FrameSource>,
    stage: InferenceStage,
    settings: InferenceSettings,
    clock: Arc<dyn Clock>,
    observer: Box<dyn InferenceObserver>,
    (event_tx, events): (Latest<InferenceEvent>, Receiver<InferenceEvent>),
) -> std::io::Result<Stages> {
    let counters = Arc::new(Counters::default());
    let stats = Arc::new(Mutex::new(InferenceStats::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let (frame_tx, frame_rx) = latest();
    // Two spare frames travel back to the capture thread for reuse.
    let (recycle_tx, recycle_rx) = bounded(2);
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
    // Waits are sliced (STOP_POLL) so a stop is seen within 20 ms whatever
    // `no_frame_timeout` is; the no-frame fault still fires after that long
    // without any message from the capture thread.
    let poll = crate::clock::STOP_POLL.min(settings.no_frame_timeout);
    let mut quiet_since = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let msg = frames.recv_timeout(poll);
        match &msg {
            Err(RecvTimeoutError::Timeout) if quiet_since.elapsed() < settings.no_frame_timeout => {
                continue
            }
            _ => quiet_since = std::time::Instant::now(),
        }
        match msg {
            Ok(CaptureMsg::Frame(frame)) => {
                if observer.take_history_reset() {
                    stage.reset_history();
                }
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
