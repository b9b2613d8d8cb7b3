//! `mvla run`: wires capture → inference → motor side (+ recorder) on their
//! own threads and returns a summary when asked to stop.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::capture::replay::{Pacing, ReplaySource};
use crate::capture::v4l2::V4l2Source;
use crate::capture::{CaptureError, FrameSource};
use crate::clock::{Clock, MonotonicClock};
use crate::config::LinkConfig;
use crate::config::{CaptureConfig, Config, ReplayPacing};
use crate::control::motor::MotorLoop;
use crate::control::{MotorFlags, MotorSummary, MotorThread};
use crate::drive::emulator::BoardEmulator;
use crate::drive::slcan::{Slcan, SlcanConfig};
use crate::drive::{LinkError, LinkOptions, LinkWorker};
use crate::pipeline::{
    spawn_stages_into, CountersSnapshot, InferenceSettings, InferenceStage, InferenceStatsSummary,
    Stages,
};
use crate::policy::tract::TractPolicy;
use crate::policy::{ModelMeta, PolicyError, PolicyRunner};
use crate::preprocess::SelectedPreprocessor;
use crate::record::collect_episode_paths;
use crate::record::session::{spawn_recorder, RecordOutcome, RecordSettings};
use crate::systemd::Notifier;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("model {path}")]
    Model {
        path: String,
        #[source]
        source: PolicyError,
    },
    #[error("capture")]
    Capture(#[from] CaptureError),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("wheel link")]
    Link(#[from] LinkError),
    #[error("simulated capture")]
    Scenario(#[source] Box<crate::sim::world::ScenarioError>),
    #[error("a stage thread panicked: {0}")]
    Panic(&'static str),
}

impl RunError {
    /// The configuration, model or input is wrong (exit 2: do not restart),
    /// rather than something failing at run time.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Self::Model { .. }
                | Self::Scenario(_)
                | Self::Capture(CaptureError::Config(_) | CaptureError::EpisodeOpen(_))
        )
    }
}

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub duration: Option<Duration>,
    /// Overrides / enables `[record] dir`.
    pub record_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub config: String,
    pub model_dir: String,
    pub model_id: String,
    pub backend: String,
    pub source: String,
    pub ran_s: f64,
    pub stop_reason: String,
    pub counters: CountersSnapshot,
    pub inference: InferenceStatsSummary,
    pub motor: MotorSummary,
    pub record: Option<RecordOutcome>,
    /// With the emulated board: where the simulated base ended up (x m, y m, heading rad).
    pub emulator_pose: Option<(f64, f64, f64)>,
    pub emulator_wheel_frames: Option<usize>,
    /// With `[capture] source = "sim"`: the judge's verdict and the trial's record.
    pub sim: Option<crate::sim::lockstep::TrialRecord>,
}

/// The simulated world of a `source = "sim"` run: the camera renders it from
/// the base the emulated board drives; the judge watches the base.
struct SimParts {
    world: crate::sim::world::World,
    base: Arc<std::sync::Mutex<crate::sim::base::SimBase>>,
    /// `[capture.sim] policy = "expert"`: the expert drives, no camera thread.
    expert: bool,
}

fn build_source(
    config: &Config,
    meta: &ModelMeta,
    clock: Arc<dyn Clock>,
) -> Result<(Box<dyn FrameSource>, Option<SimParts>), RunError> {
    if let CaptureConfig::Sim(c) = &config.capture {
        let world = c
            .catalogue
            .world(&c.scenario, c.seed)
            .map_err(|e| RunError::Scenario(Box::new(e)))?;
        let base = Arc::new(std::sync::Mutex::new(crate::sim::base::SimBase::new(
            config.calib.clone(),
            &world,
            c.seed,
            clock.now(),
        )));
        let camera = crate::capture::sim::SimCamera::new(
            world.clone(),
            base.clone(),
            c.width,
            c.height,
            c.fps,
            c.layout,
            c.rotation_override
                .unwrap_or_else(|| meta.camera_rotation()),
            clock,
        );
        let expert = c.expert;
        return Ok((
            Box::new(camera),
            Some(SimParts {
                world,
                base,
                expert,
            }),
        ));
    }
    let source: Box<dyn FrameSource> = match &config.capture {
        CaptureConfig::Replay {
            episodes,
            pacing,
            looped,
        } => {
            let paths = collect_episode_paths(episodes).map_err(|source| RunError::Io {
                what: format!("listing episodes {episodes:?}"),
                source,
            })?;
            let pacing = match pacing {
                ReplayPacing::ModelStep => Pacing::Interval(meta.step()),
                ReplayPacing::Interval(d) => Pacing::Interval(*d),
                ReplayPacing::AsFastAsPossible => Pacing::AsFastAsPossible,
            };
            Box::new(ReplaySource::new(paths, pacing, clock, *looped)?)
        }
        CaptureConfig::V4l2 {
            config: v,
            rotation_override,
        } => {
            let mut v = v.clone();
            v.rotation = rotation_override.unwrap_or_else(|| meta.camera_rotation());
            Box::new(V4l2Source::open(v, clock)?)
        }
        CaptureConfig::Sim(_) => unreachable!("handled above"),
    };
    Ok((source, None))
}

/// The inference chain the config asks for: tract on the CPU (with CPU or
/// CUDA preprocessing), or the TensorRT engines fed by the CUDA kernels.
/// `auto` takes TensorRT when this build, this machine and the engine
/// directory allow it, and says why not otherwise.
pub fn build_stage(
    config: &Config,
    meta: ModelMeta,
    spec: crate::preprocess::PreprocessSpec,
) -> Result<(InferenceStage, String), PolicyError> {
    use crate::config::PolicyBackend;
    use crate::policy::tensorrt::GpuChain;
    let tensorrt = || {
        GpuChain::load(
            meta.clone(),
            &config.engine_dir,
            config.precision,
            &crate::policy::engine::ParityThresholds::default(),
            config.history_capacity,
            spec,
            config.ptx_cache_dir.clone(),
        )
    };
    let mut fallback_reason = None;
    match config.backend {
        PolicyBackend::Tract => {}
        PolicyBackend::TensorRt => {
            let mut chain = tensorrt().map_err(|e| PolicyError::Load {
                path: config.engine_dir.display().to_string(),
                what: "TensorRT engines",
                source: Box::new(e),
            })?;
            prepare_for_camera(&mut chain, config)?;
            let text = chain.describe();
            return Ok((InferenceStage::with_step(chain), text));
        }
        PolicyBackend::Auto => match tensorrt() {
            Ok(mut chain) => {
                prepare_for_camera(&mut chain, config)?;
                let text = chain.describe();
                return Ok((InferenceStage::with_step(chain), text));
            }
            Err(e) => {
                let why = crate::error::report(&e);
                tracing::warn!("TensorRT unavailable ({why}); using tract on the CPU");
                fallback_reason = Some(why);
            }
        },
    }
    let policy = TractPolicy::from_meta(meta)?;
    let pre = SelectedPreprocessor::new(spec, config.preprocess, config.ptx_cache_dir.clone());
    let mut text = "tract (CPU)".to_string();
    if let Some(why) = fallback_reason {
        text += &format!(" [tensorrt unavailable: {why}]");
    }
    let stage = InferenceStage::new(PolicyRunner::new(policy, config.history_capacity), pre);
    Ok((stage, text))
}

/// With a live camera the frame size and layout are known up front: compile
/// (or load from the PTX cache) the preprocessing kernels now, so the first
/// frame is not late by an NVRTC compile.
fn prepare_for_camera(
    chain: &mut crate::policy::tensorrt::GpuChain,
    config: &Config,
) -> Result<(), PolicyError> {
    use crate::capture::v4l2::PixelFormat;
    use crate::preprocess::InputFormat;
    if let crate::config::CaptureConfig::V4l2 { config: v, .. } = &config.capture {
        let format = match v.format {
            PixelFormat::Yuyv => InputFormat::Yuyv,
            PixelFormat::Nv12 => InputFormat::Nv12,
            PixelFormat::Mjpeg => InputFormat::Packed3,
        };
        chain
            .prepare(v.width as usize, v.height as usize, format)
            .map_err(|e| PolicyError::Backend {
                stage: "cuda preprocessing",
                source: Box::new(e),
            })?;
    }
    Ok(())
}

/// How [`Controller::start`] sets the controller up.
#[derive(Default)]
pub struct StartOptions {
    /// Overrides / enables `[record] dir` (a session recorder for the whole run).
    pub record_dir: Option<PathBuf>,
    /// The operator console: the policy starts disarmed (wheels stopped until
    /// [`Controller::set_armed`]), and this observer sees every inference in
    /// place of a session recorder (it records per trial).
    pub console_observer: Option<Box<dyn crate::action::InferenceObserver>>,
}

/// Why [`Controller::poll`] says the run (or, in the console, the trial) is over.
#[derive(Debug, Clone)]
pub enum Ended {
    /// A non-looping source ran out of frames.
    SourceEnded,
    /// The simulator's judge gave its verdict.
    Judged(crate::sim::judge::Verdict),
}

/// What the console shows, read without stopping anything.
#[derive(Debug, Clone)]
pub struct Live {
    pub motor: crate::control::MotorStatusSnapshot,
    /// Armed as the motor loop applies it (what the wheels see).
    pub armed: bool,
    /// Armed as the console asked (differs from `armed` for up to a tick).
    pub arm_requested: bool,
    pub link_up: bool,
    pub link_frames_sent: u64,
    pub link_errors: u64,
    pub counters: CountersSnapshot,
}

/// The controller of `mvla run`, up and running: link, motor thread, model,
/// capture and inference threads (and the simulated world when the source is
/// `sim`). `mvla run` starts one, waits, and finishes it; the operator console
/// (`mvla trial`) starts the same one disarmed and arms it per trial.
pub struct Controller {
    config_source: String,
    model_dir: String,
    meta: ModelMeta,
    backend_text: String,
    source_text: String,
    sim: Option<SimParts>,
    judge: Option<crate::sim::judge::Judge>,
    judged: usize,
    emulator: Option<BoardEmulator>,
    motor: MotorSide,
    link_status: Arc<crate::drive::LinkStatus>,
    capture: std::thread::JoinHandle<()>,
    inference: std::thread::JoinHandle<()>,
    counters: Arc<crate::pipeline::Counters>,
    stats: Arc<std::sync::Mutex<crate::pipeline::InferenceStats>>,
    stage_stop: Arc<AtomicBool>,
    logger: crate::rtlog::Logger,
    recorder_handle: Option<std::thread::JoinHandle<RecordOutcome>>,
    notifier: Notifier,
    clock: Arc<dyn Clock>,
    started: Instant,
    console: bool,
}

/// Run until `stop` is set, the duration passes, or a non-looping source ends.
pub fn run(
    config: &Config,
    options: &RunOptions,
    stop: Arc<AtomicBool>,
) -> Result<RunSummary, RunError> {
    let mut controller = Controller::start(
        config,
        StartOptions {
            record_dir: options.record_dir.clone(),
            console_observer: None,
        },
    )?;
    let started = Instant::now();
    let stop_reason = loop {
        if stop.load(Ordering::Relaxed) {
            break "stop requested (signal)".to_string();
        }
        if options.duration.is_some_and(|d| started.elapsed() >= d) {
            break format!(
                "duration {:.1} s reached",
                options.duration.unwrap_or_default().as_secs_f64()
            );
        }
        match controller.poll() {
            Some(Ended::SourceEnded) => break "frame source ended".to_string(),
            Some(Ended::Judged(v)) => break format!("sim judge: {}", v.line()),
            None => {}
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    controller.finish(stop_reason)
}

/// The config's model: its metadata, the files it names verified, and the
/// config's step override (`mvla sim trials --step-ms`) applied. The one
/// place both the controller and the lock-step trials load a model.
pub fn load_model(config: &Config) -> Result<ModelMeta, PolicyError> {
    let mut meta = ModelMeta::load(&config.model_dir)?;
    meta.verify_files()?;
    if let Some(step) = config.step_override {
        meta.raw.step_ms = u64::try_from(step.as_millis()).unwrap_or(u64::MAX);
    }
    Ok(meta)
}

impl Controller {
    pub fn start(config: &Config, options: StartOptions) -> Result<Self, RunError> {
        let clock: Arc<dyn Clock> = Arc::new(MonotonicClock);
        let model_err = |source| RunError::Model {
            path: config.model_dir.display().to_string(),
            source,
        };
        let meta = load_model(config).map_err(model_err)?;
        let (source, sim) = build_source(config, &meta, clock.clone())?;
        let source_text = source.describe();
        let spec = meta.preprocess_spec(source.pending_rotation());
        let console = options.console_observer.is_some();

        let record_cfg = options
            .record_dir
            .as_ref()
            .map(|dir| crate::config::RecordConfig {
                dir: dir.clone(),
                episode: true,
                session_log: true,
                scenario: config
                    .record
                    .as_ref()
                    .map(|r| r.scenario.clone())
                    .unwrap_or_else(|| "mvla_session".into()),
            })
            .or_else(|| config.record.clone())
            .filter(|_| !console) // the console records per trial
            .map(|mut r| {
                // A simulated session is named after its scenario, never mistaken for the field.
                if let Some(s) = &sim {
                    if r.scenario == "mvla_session" {
                        r.scenario = format!("sim_{}", s.world.scenario);
                    }
                }
                r
            });
        if sim.as_ref().is_some_and(|s| s.expert) && (record_cfg.is_some() || console) {
            // The expert replaces the camera and inference threads: there is
            // nothing to record here (`mvla sim collect` records its demonstrations).
            return Err(RunError::Capture(CaptureError::Config(
                "recording and trials need the camera and the policy; with [capture.sim] policy = \"expert\" use `mvla sim collect` for demonstrations".into(),
            )));
        }
        let (observer, recorder_handle): (Box<dyn crate::action::InferenceObserver>, _) =
            match (options.console_observer, &record_cfg) {
                (Some(o), _) => (o, None),
                (None, Some(r)) => {
                    let (recorder, handle) = spawn_recorder(RecordSettings {
                        dir: r.dir.clone(),
                        episode: r.episode,
                        session_log: r.session_log,
                        scenario: r.scenario.clone(),
                        instruction: meta.raw.prompt.instruction.clone(),
                        model_id: meta.model_id.clone(),
                        chunk_size: meta.raw.chunk,
                        step: meta.step(),
                    })
                    .map_err(|source| RunError::Io {
                        what: format!("recording folder {}", r.dir.display()),
                        source,
                    })?;
                    (Box::new(recorder), Some(handle))
                }
                (None, None) => (Box::new(()), None),
            };

        // The wheel link: open it before anything can move (an emulated board for the default config).
        let notifier = Notifier::from_env();
        let (emulator, link_cfg) = match &config.link {
            LinkConfig::Emulator => {
                let emu = match &sim {
                    Some(s) => BoardEmulator::start_with_base(s.base.clone()),
                    None => BoardEmulator::start(config.calib.clone()),
                }
                .map_err(|source| RunError::Io {
                    what: "starting the board emulator".into(),
                    source,
                })?;
                let cfg = SlcanConfig::new(
                    emu.port_path().display().to_string(),
                    crate::drive::slcan::DEFAULT_BAUD,
                );
                (Some(emu), cfg)
            }
            LinkConfig::Slcan(cfg) => (None, cfg.clone()),
        };
        let slcan = Slcan::open(link_cfg)?;
        // State changes of the real-time threads are logged by this thread.
        let logger = crate::rtlog::Logger::start().map_err(|source| RunError::Io {
            what: "spawning the logger thread".into(),
            source,
        })?;
        let link = LinkWorker::spawn_with(
            Box::new(slcan),
            LinkOptions {
                realtime_priority: config.link_realtime_priority,
                log: logger.queue(crate::rtlog::DEFAULT_CAPACITY),
            },
        )
        .map_err(|source| RunError::Io {
            what: "spawning the link thread".into(),
            source,
        })?;
        // The motor side runs from here on, commanding stop (no chunk yet) while
        // the model loads; any early return below stops it (`MotorSide::drop`).
        let events = crate::channel::latest();
        let mut flags = MotorFlags::default();
        if console {
            // The console's trials start disarmed: stop until the operator arms.
            flags.arm = Arc::new(crate::control::ArmSwitch::disarmed());
        }
        let link_status = link.status.clone();
        let motor = MotorSide::spawn(
            MotorThread::new(
                MotorLoop::new(config.motor, config.calib.clone()),
                events.1.clone(),
                link,
                clock.clone(),
                flags.clone(),
                Notifier::from_env(),
                logger.queue(crate::rtlog::DEFAULT_CAPACITY),
            ),
            flags,
            config.realtime_priority,
            config.motor.period(),
        )?;
        // Lock what the motor and link threads use (their stacks, the code, the
        // heap so far) before the model brings its weights: those stay pageable.
        // Both threads first finish their start-up allocations (the link thread
        // has tried its first send, so the motor thread has ticked).
        if config.lock_memory {
            let waited = Instant::now();
            while link_status.frames_sent.load(Ordering::Relaxed)
                + link_status.errors.load(Ordering::Relaxed)
                == 0
                && waited.elapsed() < Duration::from_secs(1)
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            match crate::realtime::lock_current_memory() {
                Ok(()) => tracing::info!(
                    locked_kib = crate::realtime::locked_kib(),
                    "memory locked (model not included)"
                ),
                Err(e) => tracing::error!("mlockall failed ({e}); the motor loop may page-fault"),
            }
        }
        let (stage, backend_text) = build_stage(config, meta.clone(), spec).map_err(model_err)?;
        tracing::info!("policy backend: {backend_text}");
        tracing::info!(
            "model {} ({}), source: {source_text}",
            config.model_dir.display(),
            meta.model_id
        );
        // The trial starts now that the controller is up (model loaded, link
        // open); the console starts each of its trials itself.
        let judge = sim.as_ref().filter(|_| !console).map(|s| {
            s.base.lock().expect("sim base").restart(clock.now());
            crate::sim::judge::Judge::new(&s.world)
        });
        let Stages {
            events: _,
            capture,
            inference,
            counters,
            stats,
            stop: stage_stop,
        } = match &sim {
            Some(s) if s.expert => {
                drop(observer); // no recorder with the expert (refused above): nothing waits on it
                spawn_expert(&s.world, s.base.clone(), clock.clone(), events)
            }
            _ => spawn_stages_into(
                source,
                stage,
                InferenceSettings {
                    no_frame_timeout: config.no_frame_timeout,
                    budget: config.budget,
                },
                clock.clone(),
                observer,
                events,
            ),
        }
        .map_err(|source| RunError::Io {
            what: "spawning the capture and inference threads".into(),
            source,
        })?;
        motor.flags.ready.store(true, Ordering::Relaxed);
        notifier.notify("READY=1");
        tracing::info!(source = %source_text, backend = %backend_text, "READY");
        Ok(Self {
            config_source: config.source.clone(),
            model_dir: config.model_dir.display().to_string(),
            meta,
            backend_text,
            source_text,
            sim,
            judge,
            judged: 0,
            emulator,
            motor,
            link_status,
            capture,
            inference,
            counters,
            stats,
            stage_stop,
            logger,
            recorder_handle,
            notifier,
            clock,
            started: Instant::now(),
            console,
        })
    }

    pub fn meta(&self) -> &ModelMeta {
        &self.meta
    }

    /// The policy backend, as the summary prints it.
    pub fn backend(&self) -> &str {
        &self.backend_text
    }

    pub fn source(&self) -> &str {
        &self.source_text
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The world is the simulator's.
    pub fn simulated(&self) -> bool {
        self.sim.is_some()
    }

    /// The simulated world's scenario, when there is one.
    pub fn sim_scenario(&self) -> Option<&str> {
        self.sim.as_ref().map(|s| s.world.scenario.as_str())
    }

    /// Whether the run is over: the source ended, or (simulator) the judge
    /// decided. In the console a verdict ends the trial; the next
    /// [`Controller::begin_trial`] starts a fresh judge.
    pub fn poll(&mut self) -> Option<Ended> {
        if self.inference.is_finished() {
            return Some(Ended::SourceEnded);
        }
        let (s, j) = (self.sim.as_ref()?, self.judge.as_mut()?);
        let mut b = s.base.lock().expect("sim base");
        b.advance_to(self.clock.now());
        let mut verdict = None;
        for sample in &b.trajectory()[self.judged..] {
            if let Some(v) = j.observe(sample) {
                verdict = Some(v.clone());
                break;
            }
        }
        self.judged = b.trajectory().len();
        drop(b);
        if self.console && verdict.is_some() {
            self.judge = None;
        }
        verdict.map(Ended::Judged)
    }

    /// Arm (the policy drives, from frames captured after now, until
    /// `heartbeat` from now unless [`Controller::heartbeat`] moves it on) or
    /// disarm (stop frames on the motor loop's next tick).
    pub fn set_armed(&self, armed: bool, heartbeat: Duration) {
        let deadline = self.clock.now().plus(heartbeat);
        self.motor.flags.arm.set(armed, deadline);
    }

    /// The console is still running its loop: keep an armed policy armed
    /// for `heartbeat` more.
    pub fn heartbeat(&self, heartbeat: Duration) {
        self.motor
            .flags
            .arm
            .extend(self.clock.now().plus(heartbeat));
    }

    /// The motor loop disarmed on its own since the last arm (the
    /// heartbeat's deadline passed).
    pub fn disarmed_by_motor(&self) -> bool {
        let word = self.motor.flags.arm.word();
        let applied = self.motor.flags.status.snapshot().applied_arm;
        word & 1 == 1 && applied == word & !1
    }

    pub fn live(&self) -> Live {
        Live {
            motor: self.motor.flags.status.snapshot(),
            armed: self.motor.flags.status.snapshot().applied_arm & 1 == 1,
            arm_requested: self.motor.flags.arm.word() & 1 == 1,
            link_up: self.link_status.up.load(Ordering::Relaxed),
            link_frames_sent: self.link_status.frames_sent.load(Ordering::Relaxed),
            link_errors: self.link_status.errors.load(Ordering::Relaxed),
            counters: self.counters.snapshot(),
        }
    }

    /// Where the base is (x m, y m, heading rad): the simulator's base, or
    /// the emulated board's; None with a real robot (no odometry here).
    pub fn pose(&self) -> Option<(f64, f64, f64)> {
        let base = match (&self.sim, &self.emulator) {
            (Some(s), _) => s.base.clone(),
            (None, Some(e)) => e.base().clone(),
            (None, None) => return None,
        };
        let mut b = base.lock().expect("base");
        b.advance_to(self.clock.now());
        let p = b.pose();
        Some((p.x, p.y, p.yaw))
    }

    /// A trial begins (console): in the simulator the base is put back at
    /// the world's start pose and a fresh judge watches it.
    pub fn begin_trial(&mut self) {
        if let Some(s) = &self.sim {
            s.base
                .lock()
                .expect("sim base")
                .place(s.world.start, self.clock.now());
            self.judge = Some(crate::sim::judge::Judge::new(&s.world));
            self.judged = 0;
        }
    }

    /// Stop the wheels and every thread; the summary of the run.
    pub fn finish(mut self, stop_reason: String) -> Result<RunSummary, RunError> {
        // Stop the wheels first (the motor loop e-stops on its next tick), then
        // the stages; the motor loop keeps commanding stop until they are down.
        self.notifier.notify("STOPPING=1");
        self.motor.estop();
        self.stage_stop.store(true, Ordering::Relaxed);
        let capture_joined = self.capture.join();
        let inference_joined = self.inference.join();
        let motor = self.motor.finish()?;
        self.logger.shutdown();
        capture_joined.map_err(|_| RunError::Panic("capture"))?;
        inference_joined.map_err(|_| RunError::Panic("inference"))?;
        let record = match self.recorder_handle {
            Some(h) => Some(h.join().map_err(|_| RunError::Panic("recorder"))?),
            None => None,
        };
        let inference_stats = self.stats.lock().expect("stats lock").summary();
        let counters = self.counters.snapshot();
        let sim_record = match (&self.sim, self.judge.as_mut()) {
            (Some(s), Some(j)) if !self.console => {
                let b = s.base.lock().expect("sim base");
                let last = *b
                    .trajectory()
                    .last()
                    .expect("the trajectory starts with a sample");
                // The judge's verdict, or (stopped first) the early end.
                let v = j.ended_early(&last, &stop_reason).clone();
                let policy = if s.expert {
                    "expert"
                } else {
                    self.meta.model_id.as_str()
                };
                Some(crate::sim::lockstep::TrialRecord::realtime(
                    &s.world,
                    policy,
                    &v,
                    b.trajectory(),
                    &counters,
                    &inference_stats,
                    &motor,
                    self.started.elapsed().as_secs_f64(),
                ))
            }
            _ => None,
        };
        Ok(RunSummary {
            config: self.config_source,
            model_dir: self.model_dir,
            model_id: self.meta.model_id.clone(),
            backend: self.backend_text,
            source: self.source_text,
            ran_s: self.started.elapsed().as_secs_f64(),
            stop_reason,
            counters,
            inference: inference_stats,
            motor,
            record,
            emulator_pose: self.emulator.as_ref().map(|e| e.snapshot().pose),
            emulator_wheel_frames: self
                .emulator
                .as_ref()
                .map(|e| e.snapshot().wheel_frames.len()),
            sim: sim_record,
        })
    }
}

/// The expert operator in place of the camera and inference threads
/// (`[capture.sim] policy = "expert"`): its key presses reach the motor loop
/// through the same newest-wins event channel.
fn spawn_expert(
    world: &crate::sim::world::World,
    base: Arc<std::sync::Mutex<crate::sim::base::SimBase>>,
    clock: Arc<dyn Clock>,
    (tx, events): (
        crate::channel::Latest<crate::action::InferenceEvent>,
        crossbeam_channel::Receiver<crate::action::InferenceEvent>,
    ),
) -> std::io::Result<Stages> {
    let stop = Arc::new(AtomicBool::new(false));
    let expert = crate::sim::expert::Expert::new(world, world.seed);
    let inference = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("mvla-expert".into())
            .spawn(move || crate::sim::expert::expert_thread(expert, base, tx, clock, stop))?
    };
    let capture = std::thread::Builder::new()
        .name("mvla-capture".into())
        .spawn(|| {})?;
    Ok(Stages {
        events,
        capture,
        inference,
        counters: Default::default(),
        stats: Default::default(),
        stop,
    })
}

/// The running motor thread. Dropping it (an early error return) e-stops the
/// robot and joins the thread, whose link worker sends the final stop frames.
struct MotorSide {
    flags: MotorFlags,
    period: Duration,
    handle: Option<std::thread::JoinHandle<MotorSummary>>,
}

impl MotorSide {
    fn spawn(
        motor: MotorThread,
        flags: MotorFlags,
        realtime_priority: u8,
        period: Duration,
    ) -> Result<Self, RunError> {
        let handle = std::thread::Builder::new()
            .name("mvla-motor".into())
            .spawn(move || motor.run(realtime_priority))
            .map_err(|source| RunError::Io {
                what: "spawning the motor thread".into(),
                source,
            })?;
        Ok(Self {
            flags,
            period,
            handle: Some(handle),
        })
    }

    /// Stop the wheels now: the motor loop e-stops on its next tick and keeps
    /// commanding stop until [`MotorSide::finish`].
    fn estop(&self) {
        self.flags.shutdown.store(true, Ordering::Relaxed);
    }

    /// A few more stop ticks, then leave the loop; the link worker commands
    /// stop once more and exits.
    fn finish(mut self) -> Result<MotorSummary, RunError> {
        self.stop_and_join()
            .ok_or(RunError::Panic("motor"))?
            .map_err(|_| RunError::Panic("motor"))
    }

    /// The one stop sequence, for `finish` and for an early return (drop).
    fn stop_and_join(&mut self) -> Option<std::thread::Result<MotorSummary>> {
        let h = self.handle.take()?;
        self.estop();
        std::thread::sleep(self.period * 3);
        self.flags.exit.store(true, Ordering::Relaxed);
        Some(h.join())
    }
}

impl Drop for MotorSide {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_model_applies_the_configs_step_override() {
        let mut config = Config::builtin_default();
        let trained = load_model(&config).unwrap().raw.step_ms;
        assert_eq!(trained, 780, "the built-in model's step");
        config.step_override = Some(Duration::from_millis(400));
        assert_eq!(load_model(&config).unwrap().raw.step_ms, 400);
        config.model_dir = config.model_dir.join("no_such_model");
        assert!(load_model(&config).is_err());
    }
}
