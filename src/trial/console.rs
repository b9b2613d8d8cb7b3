//! The operator console (`mvla trial`): the controller of `mvla run`
//! ([`crate::run::Controller`], same config, threads and failsafe) started
//! disarmed, a trial plan, the trial store, and a terminal UI (ratatui +
//! crossterm; 80×24, keys only, works over SSH).
//!
//! [`Session`] is the console without the screen: every key maps to one of
//! its methods, so the trial logic is tested without a terminal; [`run_tui`]
//! draws it and reads keys.
//!
//! A trial: start (the link must be up and a frame fresh) → a `running` row
//! is written, a recording starts, the history is reset, the policy is armed
//! → it ends by a mark (success / failure with a code / abort), by Space
//! (e-stop: stop frames on the next motor tick, then the operator marks it),
//! by the plan's time limit (failure OTHER unless marked otherwise), or, in
//! the simulator, by the judge's verdict → the policy is disarmed first,
//! then the recording is closed, digested and the row completed.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::action::{InferenceEvent, InferenceObserver};
use crate::clock::Timestamp;
use crate::config::Config;
use crate::control::failsafe::Level;
use crate::frame::Frame;
use crate::record::session::{spawn_recorder, RecordOutcome, RecordSettings, Recorder};
use crate::record::writer::utc_stamp;
use crate::run::{Controller, Ended, Live, RunError, RunSummary, StartOptions};
use crate::telemetry::LatencyHistogram;

use super::plan::Plan;
use super::store::{Access, PlanRow, SessionRow, StoreError, TrialRow, TrialStore};
use super::{FailureCode, ScenarioParts, Status};

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("controller")]
    Controller(#[from] RunError),
    #[error("{0}")]
    Invalid(String),
    #[error("terminal")]
    Terminal(#[source] std::io::Error),
}

impl ConsoleError {
    /// Bad input (exit 2) rather than a failure (exit 1).
    pub fn is_bad_input(&self) -> bool {
        match self {
            Self::Store(e) => e.is_bad_input(),
            Self::Invalid(_) => true,
            Self::Controller(e) => e.is_bad_input(),
            Self::Terminal(_) => false,
        }
    }
}

pub struct ConsoleSettings {
    pub config: Config,
    pub plan: Plan,
    pub db: PathBuf,
    /// Recordings of every trial (HDF5 episode + session log) go here.
    pub record_dir: PathBuf,
    pub operator: Option<String>,
    pub robot_id: Option<String>,
}

/// What the inference thread shares with the console: the current trial's
/// recorder and its latency histogram (the inference thread is not the motor
/// thread: a mutex here is fine).
#[derive(Default)]
struct Tap {
    recorder: Option<Recorder>,
    reset_history: bool,
    latency: LatencyHistogram,
    last_frame: Option<Timestamp>,
    frames: u64,
}

struct TapObserver(Arc<Mutex<Tap>>);

impl InferenceObserver for TapObserver {
    fn on_event(&mut self, frame: Option<&Frame>, event: &InferenceEvent, error: Option<&str>) {
        let mut tap = self.0.lock().expect("tap");
        if let Some(f) = frame {
            tap.last_frame = Some(f.capture_time);
            tap.frames += 1;
        }
        if let InferenceEvent::Chunk(c) = event {
            tap.latency.record(c.timings.total);
        }
        if let Some(r) = tap.recorder.as_mut() {
            r.on_event(frame, event, error);
        }
    }

    fn take_history_reset(&mut self) -> bool {
        std::mem::take(&mut self.0.lock().expect("tap").reset_history)
    }
}

/// A trial this session stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Done {
    pub id: i64,
    pub scenario: String,
    pub status: Status,
    pub code: Option<FailureCode>,
}

/// The figures a trial's summary is the difference of.
#[derive(Debug, Clone, Copy)]
struct Marks {
    live_frames: u64,
    inferences: u64,
    ticks: [u64; 5],
    deadline_misses: u64,
    link_errors: u64,
}

impl Marks {
    fn of(live: &Live) -> Self {
        Self {
            live_frames: live.counters.frames_captured,
            inferences: live.counters.inferences,
            ticks: live.motor.ticks_by_level,
            deadline_misses: live.motor.deadline_misses,
            link_errors: live.link_errors,
        }
    }
}

struct Running {
    row: TrialRow,
    started: Instant,
    marks: Marks,
    recorder: std::thread::JoinHandle<RecordOutcome>,
    chunk_age: LatencyHistogram,
    trajectory: Vec<[f64; 4]>,
    last_pose_at: Option<Instant>,
}

/// A trial that has stopped and waits for the operator's mark.
struct Awaiting {
    row: TrialRow,
    /// What Enter (or starting the next trial) records: the time limit's
    /// failure OTHER. None after an e-stop: the operator must say.
    default: Option<(Status, Option<FailureCode>)>,
    why: String,
}

enum Phase {
    Idle,
    Running(Box<Running>),
    Awaiting(Box<Awaiting>),
}

/// While a trial runs, the console's loop must come round at least this
/// often (it does every ≤ 100 ms plus a screen draw); if it does not (a
/// terminal write that blocks, a hang) the motor loop disarms on its own.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// Trajectory samples are taken at most this often (the console's refresh).
const POSE_SAMPLE: Duration = Duration::from_millis(100);
/// Lines of the on-screen log.
const LOG_LINES: usize = 64;

pub struct Session {
    controller: Option<Controller>,
    store: TrialStore,
    tap: Arc<Mutex<Tap>>,
    settings: ConsoleSettings,
    session_id: String,
    plan_id: String,
    cursor: usize,
    phase: Phase,
    log: VecDeque<String>,
    done: Vec<Done>,
    last_trial: Option<i64>,
    fps: (Instant, u64, f64),
    started: Instant,
    /// How a trial in progress at quit time is stored as ended (`ended_by`).
    quit_reason: &'static str,
}

/// What the screen shows.
pub struct View<'a> {
    pub plan_name: &'a str,
    pub seed: u64,
    pub trial_k: usize,
    pub trial_n: usize,
    pub scenario: Option<&'a str>,
    pub phase: &'static str,
    pub phase_detail: String,
    pub live: Live,
    pub fps: f64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub recording: Option<&'a str>,
    pub pose: Option<(f64, f64, f64)>,
    pub log: &'a VecDeque<String>,
    pub successes: usize,
    pub completed: usize,
    pub db: String,
    pub backend: &'a str,
    pub simulated: bool,
    pub elapsed_s: f64,
}

fn now_utc() -> String {
    utc_stamp(std::time::SystemTime::now()).0
}

fn mono_ns(t: Timestamp) -> i64 {
    t.0 as i64
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl Session {
    /// Open the store for a console (its lock; checks), before anything else
    /// starts: a bad store is refused first.
    pub fn open_store(settings: &ConsoleSettings) -> Result<TrialStore, ConsoleError> {
        Ok(TrialStore::open(&settings.db, Access::Console)?)
    }

    /// Start the controller disarmed on a store from [`Session::open_store`];
    /// unfinished trials of an earlier session become `aborted`.
    pub fn open(settings: ConsoleSettings, store: TrialStore) -> Result<Session, ConsoleError> {
        std::fs::create_dir_all(&settings.record_dir).map_err(|e| {
            ConsoleError::Invalid(format!(
                "recording folder {}: {}",
                settings.record_dir.display(),
                crate::error::Report(&e)
            ))
        })?;
        let tap = Arc::new(Mutex::new(Tap::default()));
        let controller = Controller::start(
            &settings.config,
            StartOptions {
                record_dir: None,
                console_observer: Some(Box::new(TapObserver(tap.clone()))),
            },
        )?;
        let started_utc = now_utc();
        let recovered = store.recover_unfinished(&started_utc)?;
        let plan = &settings.plan;
        let plan_id = plan.id();
        store.insert_plan(&PlanRow {
            id: plan_id.clone(),
            name: plan.name.clone(),
            file: plan.file.clone(),
            seed: plan.seed,
            created_utc: started_utc.clone(),
            body: plan.body.clone(),
        })?;
        let session_id = format!(
            "{}-{}",
            utc_stamp(std::time::SystemTime::now()).1,
            std::process::id()
        );
        store.begin_session(&SessionRow {
            id: session_id.clone(),
            kind: "console",
            started_utc,
            host: settings.robot_id.clone(),
            config_path: Some(settings.config.source.clone()),
            plan_id: Some(plan_id.clone()),
        })?;
        let mut s = Session {
            controller: Some(controller),
            store,
            tap,
            session_id,
            plan_id,
            cursor: 0,
            phase: Phase::Idle,
            log: VecDeque::new(),
            done: Vec::new(),
            last_trial: None,
            fps: (Instant::now(), 0, 0.0),
            started: Instant::now(),
            quit_reason: "quit",
            settings,
        };
        s.say(format!(
            "plan {} seed {}: {} trials; store {}",
            s.settings.plan.name,
            s.settings.plan.seed,
            s.settings.plan.order.len(),
            s.settings.db.display()
        ));
        if recovered > 0 {
            s.say(format!(
                "{recovered} trial(s) left running by an earlier session recorded as aborted"
            ));
        }
        Ok(s)
    }

    fn controller(&self) -> &Controller {
        self.controller.as_ref().expect("controller until quit")
    }

    /// Add a line to the on-screen log (and the process log).
    pub fn say(&mut self, line: String) {
        tracing::info!("trial console: {line}");
        if self.log.len() == LOG_LINES {
            self.log.pop_front();
        }
        self.log.push_back(line);
    }

    pub fn log(&self) -> &VecDeque<String> {
        &self.log
    }

    /// The scenario of the plan entry up next (None: the plan is done).
    pub fn scenario(&self) -> Option<&str> {
        self.settings
            .plan
            .order
            .get(self.cursor)
            .map(String::as_str)
    }

    pub fn is_running(&self) -> bool {
        matches!(self.phase, Phase::Running(_))
    }

    pub fn is_awaiting_mark(&self) -> bool {
        matches!(self.phase, Phase::Awaiting(_))
    }

    /// Why the policy cannot be armed now (None: it can): the link must be
    /// up and the newest frame younger than `no_frame_timeout_ms`.
    fn arm_blocker(&self) -> Option<String> {
        if !self.controller().live().link_up {
            return Some("the wheel link is down".into());
        }
        let now = self.controller().clock().now();
        let fresh = self.settings.config.no_frame_timeout;
        match self.tap.lock().expect("tap").last_frame {
            Some(t) if now.saturating_since(t) <= fresh => None,
            Some(t) => Some(format!(
                "the newest frame is {:.1} s old (limit {} ms)",
                now.saturating_since(t).as_secs_f64(),
                fresh.as_millis()
            )),
            None => Some("no frame yet".into()),
        }
    }

    /// Start the next trial of the plan. Refused (with the reason) unless
    /// idle with a plan entry left, the link up and a frame fresh.
    pub fn start_trial(&mut self) -> Result<(), String> {
        if let Phase::Awaiting(a) = &self.phase {
            if a.default.is_none() {
                return Err("mark the stopped trial first (y success, f failure, a abort)".into());
            }
            self.accept_default();
        }
        if !matches!(self.phase, Phase::Idle) {
            return Err("a trial is running".into());
        }
        let Some(scenario) = self.scenario().map(String::from) else {
            return Err("the plan is complete".into());
        };
        if let Some(why) = self.arm_blocker() {
            return Err(format!("cannot arm: {why}"));
        }
        let now = self.controller().clock().now();
        let parts = ScenarioParts::parse(&scenario);
        let c = self.controller();
        let meta = c.meta();
        let mut row = TrialRow {
            session_id: self.session_id.clone(),
            plan_id: Some(self.plan_id.clone()),
            plan_index: Some(self.cursor as i64 + 1),
            plan_total: Some(self.settings.plan.order.len() as i64),
            scenario: scenario.clone(),
            boxes: parts.boxes.map(i64::from),
            side: parts.side,
            pattern: parts.pattern,
            distance: parts.distance,
            simulated: c.simulated(),
            started_utc: now_utc(),
            started_mono_ns: mono_ns(now),
            status: Status::Running.name().into(),
            operator: self.settings.operator.clone(),
            robot_id: self.settings.robot_id.clone(),
            model_digest: meta.model_id.clone(),
            model_dir: self.settings.config.model_dir.display().to_string(),
            backend: c.backend().to_string(),
            config_digest: Some(self.settings.config.digest.clone()),
            mvla_version: env!("CARGO_PKG_VERSION").into(),
            git_commit: option_env!("MVLA_GIT_COMMIT").map(String::from),
            ..Default::default()
        };
        // Written before anything records or moves: a crash from here on
        // leaves a `running` row the next session records as aborted.
        match self.store.insert_trial(&row) {
            Ok(id) => row.id = id,
            Err(e) => return Err(format!("not started: {}", crate::error::Report(&e))),
        }
        let meta = self.controller().meta();
        let recorded = spawn_recorder(RecordSettings {
            dir: self.settings.record_dir.clone(),
            episode: true,
            session_log: true,
            scenario: scenario.clone(),
            instruction: meta.raw.prompt.instruction.clone(),
            model_id: meta.model_id.clone(),
            chunk_size: meta.raw.chunk,
            step: meta.step(),
        });
        let (recorder, handle) = match recorded {
            Ok(r) => r,
            Err(e) => {
                let why = format!(
                    "cannot record in {}: {}",
                    self.settings.record_dir.display(),
                    crate::error::Report(&e)
                );
                row.status = Status::Aborted.name().into();
                row.ended_by = Some("not_started".into());
                row.ended_utc = Some(now_utc());
                row.ended_mono_ns = Some(mono_ns(self.controller().clock().now()));
                row.note = Some(why.clone());
                self.last_trial = Some(row.id);
                if let Err(e) = self.store.end_trial(&row) {
                    return Err(format!(
                        "{why}; and not stored: {}",
                        crate::error::Report(&e)
                    ));
                }
                return Err(why);
            }
        };

        {
            let mut tap = self.tap.lock().expect("tap");
            tap.recorder = Some(recorder);
            tap.reset_history = true;
            tap.latency = LatencyHistogram::new();
        }
        let controller = self.controller.as_mut().expect("controller until quit");
        controller.begin_trial();
        // The trial's clock starts at the arm (the row's start is re-stamped
        // when the trial ends; the time limit counts from here too).
        row.started_mono_ns = mono_ns(controller.clock().now());
        controller.set_armed(true, HEARTBEAT);
        let marks = Marks::of(&controller.live());
        self.say(format!(
            "trial #{} started: {} ({}/{})",
            row.id,
            scenario,
            self.cursor + 1,
            self.settings.plan.order.len()
        ));
        self.last_trial = Some(row.id);
        self.phase = Phase::Running(Box::new(Running {
            row,
            started: Instant::now(),
            marks,
            recorder: handle,
            chunk_age: LatencyHistogram::new(),
            trajectory: Vec::new(),
            last_pose_at: None,
        }));
        Ok(())
    }

    /// Disarm (stop frames on the next tick), close the recording, fill the
    /// row's end figures; the trial then waits for its mark.
    fn stop_running(&mut self, why: String, default: Option<(Status, Option<FailureCode>)>) {
        let controller = self.controller.as_ref().expect("controller until quit");
        controller.set_armed(false, HEARTBEAT);
        let Phase::Running(mut r) = std::mem::replace(&mut self.phase, Phase::Idle) else {
            return;
        };
        sample_pose(&mut r, controller, true);
        let end = controller.clock().now();
        let live = controller.live();
        let recorder = {
            let mut tap = self.tap.lock().expect("tap");
            let p = |q: f64| (tap.latency.count() > 0).then(|| ms(tap.latency.quantile(q)));
            r.row.latency_p50_ms = p(0.5);
            r.row.latency_p99_ms = p(0.99);
            tap.recorder.take()
        };
        drop(recorder); // the recorder thread finishes the files
        let outcome = r.recorder.join().unwrap_or_else(|_| RecordOutcome {
            errors: vec!["the recorder thread panicked".into()],
            ..Default::default()
        });
        let row = &mut r.row;
        row.ended_utc = Some(now_utc());
        row.ended_mono_ns = Some(mono_ns(end));
        row.duration_s = Some(
            end.saturating_since(Timestamp(row.started_mono_ns as u64))
                .as_secs_f64(),
        );
        let digest = |p: &str| crate::policy::meta::sha256_file(std::path::Path::new(p)).ok();
        if !outcome.episodes.is_empty() {
            let list: Vec<serde_json::Value> = outcome
                .episodes
                .iter()
                .map(|(path, rows)| {
                    serde_json::json!({"path": path, "sha256": digest(path), "rows": rows})
                })
                .collect();
            row.episodes = Some(serde_json::Value::from(list).to_string());
        }
        if let Some(path) = &outcome.session_log_path {
            row.session_log_path = Some(path.clone());
            row.session_log_sha256 = digest(path);
        }
        let m = r.marks;
        let now = Marks::of(&live);
        row.frames = Some((now.live_frames - m.live_frames) as i64);
        row.inferences = Some((now.inferences - m.inferences) as i64);
        let ticks: [i64; 5] = std::array::from_fn(|i| (now.ticks[i] - m.ticks[i]) as i64);
        row.ticks_nominal = Some(ticks[Level::Nominal as usize]);
        row.ticks_degraded = Some(ticks[Level::Degraded as usize]);
        row.ticks_hold = Some(ticks[Level::Hold as usize]);
        row.ticks_stop = Some(ticks[Level::Stop as usize]);
        row.ticks_estop = Some(ticks[Level::EStop as usize]);
        row.deadline_misses = Some((now.deadline_misses - m.deadline_misses) as i64);
        row.link_errors = Some((now.link_errors - m.link_errors) as i64);
        if r.chunk_age.count() > 0 {
            row.chunk_age_p50_ms = Some(ms(r.chunk_age.quantile(0.5)));
            row.chunk_age_p99_ms = Some(ms(r.chunk_age.quantile(0.99)));
        }
        if let Some(last) = r.trajectory.last() {
            row.final_x_m = Some(last[1]);
            row.final_y_m = Some(last[2]);
            row.final_yaw_rad = Some(last[3]);
            row.trajectory = serde_json::to_string(&r.trajectory).ok();
        }
        let mut problems = outcome.errors.clone();
        if outcome.dropped_items > 0 {
            problems.push(format!(
                "{} frames or log lines dropped (the recorder fell behind)",
                outcome.dropped_items
            ));
        }
        if !problems.is_empty() {
            // Kept with the trial: its recording is incomplete.
            let text = format!("[recording incomplete: {}]", problems.join("; "));
            row.note = Some(match row.note.take() {
                Some(n) => format!("{n}; {text}"),
                None => text,
            });
        }
        for e in &outcome.errors {
            let line = format!("trial #{} recording: {e}", row.id);
            self.say(line);
        }
        let id = row.id;
        self.say(format!("trial #{id} stopped: {why}"));
        self.phase = Phase::Awaiting(Box::new(Awaiting {
            row: r.row,
            default,
            why,
        }));
    }

    /// Space: stop now; the trial waits for its mark.
    pub fn estop(&mut self) {
        if self.is_running() {
            self.stop_running("e-stop (Space)".into(), None);
        } else {
            // Between trials it is stopped already; say so and make sure.
            self.controller().set_armed(false, HEARTBEAT);
            self.say("e-stop: wheels stopped (no trial running)".into());
        }
    }

    /// Mark the current trial (running or stopped): success, failure with a
    /// code, or aborted; it is stored and the plan moves on (an aborted
    /// trial's entry is run again).
    pub fn mark(&mut self, status: Status, code: Option<FailureCode>) -> Result<(), String> {
        self.finish_trial(status, code, "operator")
    }

    fn finish_trial(
        &mut self,
        status: Status,
        code: Option<FailureCode>,
        ended_by: &str,
    ) -> Result<(), String> {
        if self.is_running() {
            self.stop_running(format!("marked {} by the operator", status.name()), None);
        }
        let Phase::Awaiting(mut a) = std::mem::replace(&mut self.phase, Phase::Idle) else {
            return Err("no trial to mark (Enter starts one)".into());
        };
        a.row.status = status.name().into();
        a.row.failure_code = match status {
            Status::Failure => Some(code.unwrap_or(FailureCode::Other).name().into()),
            _ => None,
        };
        a.row.ended_by = Some(ended_by.into());
        if let Err(e) = self.store.end_trial(&a.row) {
            let text = crate::error::Report(&e).to_string();
            self.say(format!("NOT STORED: {text}"));
            self.phase = Phase::Awaiting(a);
            return Err(text);
        }
        let id = a.row.id;
        self.done.push(Done {
            id,
            scenario: a.row.scenario.clone(),
            status,
            code,
        });
        if status != Status::Aborted {
            self.cursor += 1;
        }
        self.say(format!(
            "trial #{id} {}{} ({ended_by}; {})",
            status.name(),
            code.map(|c| format!(" {c}")).unwrap_or_default(),
            a.why
        ));
        Ok(())
    }

    /// Enter on a stopped trial: its default (the time limit's failure).
    pub fn accept_default(&mut self) {
        if let Phase::Awaiting(a) = &self.phase {
            if let Some((status, code)) = a.default {
                let _ = self.finish_trial(status, code, "time_limit");
            }
        }
    }

    /// A free-text note on the current trial, or the last one stored.
    pub fn note(&mut self, text: &str) {
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        let add = |row: &mut TrialRow| {
            row.note = Some(match &row.note {
                Some(n) => format!("{n}; {text}"),
                None => text.to_string(),
            })
        };
        match &mut self.phase {
            Phase::Running(r) => add(&mut r.row),
            Phase::Awaiting(a) => add(&mut a.row),
            Phase::Idle => match self.last_trial {
                Some(id) => {
                    if let Err(e) = self.store.append_note(id, text) {
                        self.say(format!("note not stored: {}", crate::error::Report(&e)));
                        return;
                    }
                }
                None => {
                    self.say("no trial to note yet".into());
                    return;
                }
            },
        }
        self.say(format!("note: {text}"));
    }

    /// Skip the plan entry up next (idle only); nothing is recorded.
    pub fn next_scenario(&mut self) {
        if !matches!(self.phase, Phase::Idle) {
            self.say("finish the trial first".into());
            return;
        }
        if let Some(s) = self.scenario().map(String::from) {
            self.cursor += 1;
            self.say(format!("skipped {s}"));
        }
    }

    /// Called a few times a second: trajectory samples, the time limit, the
    /// simulator's judge, a source that ended.
    pub fn tick(&mut self) {
        let controller = self.controller.as_mut().expect("controller until quit");
        controller.heartbeat(HEARTBEAT);
        let motor_disarmed = controller.disarmed_by_motor();
        let ended = controller.poll();
        let live = controller.live();
        let (t, n, fps) = &mut self.fps;
        if t.elapsed() >= Duration::from_secs(1) {
            let frames = live.counters.frames_captured;
            *fps = frames.saturating_sub(*n) as f64 / t.elapsed().as_secs_f64();
            *t = Instant::now();
            *n = frames;
        }
        let limit = self.settings.plan.time_limit;
        enum Next {
            Judged(Status, Option<FailureCode>, String),
            SourceEnded,
            TimeLimit,
            MotorDisarmed,
        }
        let next = match &mut self.phase {
            Phase::Running(r) => {
                if let Some(age) = live.motor.chunk_age {
                    r.chunk_age.record(age);
                }
                sample_pose(r, self.controller.as_ref().expect("controller"), false);
                match ended {
                    Some(Ended::Judged(v)) => Some(match v.outcome {
                        crate::sim::judge::Outcome::Success => {
                            Next::Judged(Status::Success, None, v.line())
                        }
                        crate::sim::judge::Outcome::Failure => {
                            Next::Judged(Status::Failure, v.failure_code, v.line())
                        }
                    }),
                    Some(Ended::SourceEnded) => Some(Next::SourceEnded),
                    _ if motor_disarmed => Some(Next::MotorDisarmed),
                    None if r.started.elapsed() >= limit => Some(Next::TimeLimit),
                    None => None,
                }
            }
            _ => None,
        };
        match next {
            Some(Next::Judged(status, code, line)) => {
                self.stop_running(format!("sim judge: {line}"), None);
                let _ = self.finish_trial(status, code, "judge");
            }
            Some(Next::SourceEnded) => self.stop_running("the frame source ended".into(), None),
            Some(Next::MotorDisarmed) => self.stop_running(
                format!(
                    "the motor loop disarmed: the console missed its {} s heartbeat",
                    HEARTBEAT.as_secs_f64()
                ),
                None,
            ),
            Some(Next::TimeLimit) => {
                let why = format!(
                    "time limit {:.0} s: failure OTHER unless marked otherwise (Enter accepts)",
                    limit.as_secs_f64()
                );
                self.stop_running(why, Some((Status::Failure, Some(FailureCode::Other))));
            }
            None => {}
        }
    }

    pub fn view(&self) -> View<'_> {
        let c = self.controller();
        // Before taking the tap's lock (arm_blocker takes it too).
        let blocker = self.arm_blocker();
        let tap = self.tap.lock().expect("tap");
        let has = tap.latency.count() > 0 && self.is_running();
        let q = |v: f64| has.then(|| ms(tap.latency.quantile(v)));
        let (phase, detail, recording) = match &self.phase {
            Phase::Idle if self.scenario().is_none() => {
                ("PLAN COMPLETE", "q quits".to_string(), None)
            }
            Phase::Idle => match blocker {
                None => ("READY", "Enter starts the trial".to_string(), None),
                Some(why) => ("NOT READY", format!("cannot arm: {why}"), None),
            },
            Phase::Running(r) => (
                "RUNNING",
                format!(
                    "{:.1} s of {:.0} s",
                    r.started.elapsed().as_secs_f64(),
                    self.settings.plan.time_limit.as_secs_f64()
                ),
                Some(self.settings.record_dir.to_str().unwrap_or("")),
            ),
            Phase::Awaiting(a) => (
                "STOPPED",
                format!(
                    "{} — mark it: y success, f failure, a abort{}",
                    a.why,
                    if a.default.is_some() {
                        ", Enter accepts"
                    } else {
                        ""
                    }
                ),
                a.row.session_log_path.as_deref(),
            ),
        };
        View {
            plan_name: &self.settings.plan.name,
            seed: self.settings.plan.seed,
            trial_k: (self.cursor + 1).min(self.settings.plan.order.len()),
            trial_n: self.settings.plan.order.len(),
            scenario: self.scenario(),
            phase,
            phase_detail: detail,
            live: c.live(),
            fps: self.fps.2,
            latency_p50_ms: q(0.5),
            latency_p99_ms: q(0.99),
            recording,
            pose: c.pose(),
            log: &self.log,
            successes: self
                .done
                .iter()
                .filter(|d| d.status == Status::Success)
                .count(),
            completed: self
                .done
                .iter()
                .filter(|d| matches!(d.status, Status::Success | Status::Failure))
                .count(),
            db: self.settings.db.display().to_string(),
            backend: c.backend(),
            simulated: c.simulated(),
            elapsed_s: self.started.elapsed().as_secs_f64(),
        }
    }

    /// Quit: a trial still running or unmarked is stored as aborted, the
    /// controller stops (wheels first), the session is closed.
    pub fn quit(mut self) -> Result<(RunSummary, Vec<Done>), ConsoleError> {
        if self.is_running() || self.is_awaiting_mark() {
            if let Phase::Awaiting(a) = &self.phase {
                if let Some((status, code)) = a.default {
                    let _ = self.finish_trial(status, code, "time_limit");
                }
            }
            if self.is_running() || self.is_awaiting_mark() {
                let reason = self.quit_reason;
                let _ = self.finish_trial(Status::Aborted, None, reason);
            }
        }
        let controller = self.controller.take().expect("controller until quit");
        let summary = controller.finish("operator quit the console".into())?;
        self.store.end_session(&self.session_id, &now_utc())?;
        Ok((summary, std::mem::take(&mut self.done)))
    }
}

/// Append the base's pose to the trial's trajectory (at most every
/// [`POSE_SAMPLE`], or now when `force`).
fn sample_pose(r: &mut Running, c: &Controller, force: bool) {
    if !force && r.last_pose_at.is_some_and(|t| t.elapsed() < POSE_SAMPLE) {
        return;
    }
    if let Some((x, y, yaw)) = c.pose() {
        r.trajectory
            .push([r.started.elapsed().as_secs_f64(), x, y, yaw]);
        r.last_pose_at = Some(Instant::now());
    }
}

// ---------------------------------------------------------------------------
// The terminal UI

/// What the keys are doing.
enum Input {
    Normal,
    /// Picking a failure code (index into FailureCode::ALL).
    Code(usize),
    Note(String),
    ConfirmQuit,
}

/// The key help line (also the README's table).
pub const KEYS: &str =
    "Enter start  Space E-STOP  y success  f failure  a abort  t note  n next  q quit";

/// Draw the console and read keys until the operator quits.
pub fn run_tui(
    mut session: Session,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Result<(RunSummary, Vec<Done>), ConsoleError> {
    let mut terminal = ratatui::try_init().map_err(ConsoleError::Terminal)?;
    let mut input = Input::Normal;
    let result = (|| -> Result<(), ConsoleError> {
        'screen: loop {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                session.say("SIGTERM/SIGINT/SIGHUP: quitting".into());
                session.quit_reason = "signal";
                break;
            }
            session.tick();
            terminal
                .draw(|f| draw(f, &session, &input))
                .map_err(ConsoleError::Terminal)?;
            let keys = match read_keys(0, Duration::from_millis(100)) {
                Ok(keys) => keys,
                Err(e) => {
                    // The operator's terminal went away (ssh dropped, tmux
                    // killed): nobody can press Space any more, so stop and
                    // quit. A shell in between need not pass SIGHUP on; the
                    // terminal itself says so (read gives 0 bytes or EIO).
                    session.say(format!(
                        "the terminal hung up ({e}): stopping the wheels and quitting"
                    ));
                    session.quit_reason = "hangup";
                    break;
                }
            };
            for key in keys {
                // Space is the e-stop in every mode but typing a note (only
                // possible while stopped); Ctrl-C e-stops in every mode, then asks.
                if key == Key::Space && !matches!(input, Input::Note(_)) {
                    session.estop();
                    input = Input::Normal;
                    continue;
                }
                if key == Key::CtrlC {
                    if matches!(input, Input::ConfirmQuit) {
                        break 'screen;
                    }
                    session.estop();
                    input = Input::ConfirmQuit;
                    continue;
                }
                input = match std::mem::replace(&mut input, Input::Normal) {
                    Input::Normal => match key {
                        Key::Enter | Key::Char('s') => {
                            if session.is_awaiting_mark() {
                                session.accept_default();
                                if session.is_awaiting_mark() {
                                    session.say("mark the stopped trial: y, f or a".into());
                                }
                            } else if let Err(why) = session.start_trial() {
                                session.say(why);
                            }
                            Input::Normal
                        }
                        Key::Char('y') => {
                            if let Err(why) = session.mark(Status::Success, None) {
                                session.say(why);
                            }
                            Input::Normal
                        }
                        Key::Char('f') if session.is_running() || session.is_awaiting_mark() => {
                            Input::Code(0)
                        }
                        Key::Char('a') => {
                            if let Err(why) = session.mark(Status::Aborted, None) {
                                session.say(why);
                            }
                            Input::Normal
                        }
                        // Notes are typed while the wheels are stopped, so
                        // Space is never a typed space while driving.
                        Key::Char('t') if session.is_running() => {
                            session.say(
                                "stop the trial first (Space, or mark it), then t adds the note"
                                    .into(),
                            );
                            Input::Normal
                        }
                        Key::Char('t') => Input::Note(String::new()),
                        Key::Char('n') => {
                            session.next_scenario();
                            Input::Normal
                        }
                        Key::Char('q') => {
                            if session.is_running() || session.is_awaiting_mark() {
                                Input::ConfirmQuit
                            } else {
                                break 'screen;
                            }
                        }
                        _ => Input::Normal,
                    },
                    Input::Code(i) => match key {
                        Key::Esc => Input::Normal,
                        Key::Up => Input::Code(i.saturating_sub(1)),
                        Key::Down => Input::Code((i + 1).min(FailureCode::ALL.len() - 1)),
                        Key::Char('1'..='7') | Key::Enter => {
                            let pick = match key {
                                Key::Char(c) => (c as u8 - b'1') as usize,
                                _ => i,
                            };
                            if let Err(why) =
                                session.mark(Status::Failure, Some(FailureCode::ALL[pick]))
                            {
                                session.say(why);
                            }
                            Input::Normal
                        }
                        _ => Input::Code(i),
                    },
                    Input::Note(mut text) => match key {
                        Key::Esc => Input::Normal,
                        Key::Enter => {
                            session.note(&text);
                            Input::Normal
                        }
                        Key::Backspace => {
                            text.pop();
                            Input::Note(text)
                        }
                        Key::Space if text.len() < 500 => {
                            text.push(' ');
                            Input::Note(text)
                        }
                        Key::Char(c) if text.len() < 500 => {
                            text.push(c);
                            Input::Note(text)
                        }
                        _ => Input::Note(text),
                    },
                    Input::ConfirmQuit => match key {
                        Key::Char('q') | Key::Char('y') => break 'screen,
                        _ => Input::Normal,
                    },
                };
            }
        }
        Ok(())
    })();
    // Stop first: restoring the screen writes to a terminal that may block.
    if let Some(c) = session.controller.as_ref() {
        c.set_armed(false, HEARTBEAT);
    }
    ratatui::restore();
    // Whatever ended the loop, the wheels stop and the trial in progress is
    // stored (aborted) before an error is reported.
    let quit = session.quit();
    result?;
    quit
}

/// A key the console acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Enter,
    Space,
    Esc,
    Backspace,
    Up,
    Down,
    CtrlC,
    Char(char),
}

/// The keys in bytes read from a terminal in raw mode (what a VT100-style
/// terminal, tmux or an ssh client sends): CR/LF, space, ESC alone, DEL/BS,
/// ESC [ A / ESC [ B (or ESC O A/B), Ctrl-C, UTF-8 text; other escape
/// sequences and control bytes are skipped.
pub fn parse_keys(bytes: &[u8]) -> Vec<Key> {
    let mut keys = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        i += 1;
        match b {
            b'\r' | b'\n' => keys.push(Key::Enter),
            b' ' => keys.push(Key::Space),
            0x03 => keys.push(Key::CtrlC),
            0x7f | 0x08 => keys.push(Key::Backspace),
            // Escape sequences never swallow a Space (the e-stop): a
            // sequence broken by one is an Esc, and parsing goes on after it.
            // Ctrl+Space sends NUL: still the e-stop.
            0x00 => keys.push(Key::Space),
            0x1b => match bytes.get(i) {
                None => keys.push(Key::Esc),
                Some(b'O') if bytes.get(i + 1).is_some_and(|b| (0x40..=0x7e).contains(b)) => {
                    // SS3: one final byte.
                    match bytes[i + 1] {
                        b'A' => keys.push(Key::Up),
                        b'B' => keys.push(Key::Down),
                        _ => {}
                    }
                    i += 2;
                }
                Some(b'[') => {
                    // CSI: parameter bytes 0x30..=0x3f, intermediates
                    // 0x21..=0x2f, one final byte 0x40..=0x7e.
                    let mut j = i + 1;
                    while j < bytes.len() && (0x21..=0x3f).contains(&bytes[j]) {
                        j += 1;
                    }
                    // A modified Space in the extended-keys encodings
                    // (`CSI 32;m u`, `CSI 27;m;32 ~`) is still the e-stop.
                    let params: Vec<&[u8]> = bytes[i + 1..j].split(|b| *b == b';').collect();
                    match bytes.get(j) {
                        Some(b'A') => keys.push(Key::Up),
                        Some(b'B') => keys.push(Key::Down),
                        Some(b'u') if params.first() == Some(&&b"32"[..]) => keys.push(Key::Space),
                        Some(b'~')
                            if params.first() == Some(&&b"27"[..])
                                && params.get(2) == Some(&&b"32"[..]) =>
                        {
                            keys.push(Key::Space)
                        }
                        Some(f) if (0x40..=0x7e).contains(f) => {}
                        _ => {
                            keys.push(Key::Esc);
                            continue;
                        }
                    }
                    i = j + 1;
                }
                Some(_) => keys.push(Key::Esc),
            },
            0x01..=0x1f => {}
            _ => {
                // One UTF-8 character (a lone or broken byte is skipped).
                let len = match b {
                    0xc0..=0xdf => 2,
                    0xe0..=0xef => 3,
                    0xf0..=0xf7 => 4,
                    _ => 1,
                };
                let end = (i - 1 + len).min(bytes.len());
                if let Ok(text) = std::str::from_utf8(&bytes[i - 1..end]) {
                    keys.extend(text.chars().map(Key::Char));
                    i = end;
                }
            }
        }
    }
    keys
}

/// Wait up to `timeout` for keys on `fd` (the terminal). An error means the
/// terminal is gone: read(2) gave 0 bytes (hang-up) or failed, or poll(2)
/// reported an error on it.
fn read_keys(fd: libc::c_int, timeout: Duration) -> std::io::Result<Vec<Key>> {
    let mut fds = [libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: poll(2) on one pollfd we own, for at most `timeout`.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, timeout.as_millis() as libc::c_int) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return if e.kind() == std::io::ErrorKind::Interrupted {
            Ok(Vec::new())
        } else {
            Err(e)
        };
    }
    if n == 0 {
        return Ok(Vec::new());
    }
    if fds[0].revents & libc::POLLNVAL != 0 {
        return Err(std::io::Error::other("the terminal descriptor is not open"));
    }
    let mut buf = [0u8; 256];
    // SAFETY: read(2) into a buffer we own, at most its length.
    let got = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    match got {
        0 => Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
        n if n < 0 => {
            let e = std::io::Error::last_os_error();
            match e.kind() {
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock => Ok(Vec::new()),
                _ => Err(e),
            }
        }
        n => Ok(parse_keys(&buf[..n as usize])),
    }
}

fn level_style(level: Level) -> ratatui::style::Style {
    use ratatui::style::{Color, Style};
    let c = match level {
        Level::Nominal => Color::Green,
        Level::Degraded => Color::LightGreen,
        Level::Hold => Color::Yellow,
        Level::Stop => Color::LightRed,
        Level::EStop => Color::Red,
    };
    Style::default().fg(c)
}

fn draw(f: &mut ratatui::Frame, s: &Session, input: &Input) {
    use ratatui::layout::{Constraint, Layout};
    use ratatui::style::{Color, Modifier, Style};
    use ratatui::text::{Line, Span};
    use ratatui::widgets::{Block, Borders, Clear, List, ListItem, Paragraph, Wrap};
    let v = s.view();
    let area = f.area();
    let rows = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(11),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .split(area);
    let header = vec![
        Line::from(vec![
            Span::styled("mvla trial ", Style::default().add_modifier(Modifier::BOLD)),
            Span::raw(format!(
                "plan {} (seed {})  trial {}/{}  {}",
                v.plan_name,
                v.seed,
                v.trial_k,
                v.trial_n,
                if v.simulated {
                    "[SIMULATOR]"
                } else {
                    "[FIELD]"
                }
            )),
        ]),
        Line::from(format!(
            "scenario {}   tally {}/{} ok",
            v.scenario.unwrap_or("—"),
            v.successes,
            v.completed
        )),
    ];
    f.render_widget(Paragraph::new(header), rows[0]);
    let cols =
        Layout::horizontal([Constraint::Percentage(52), Constraint::Percentage(48)]).split(rows[1]);
    let m = &v.live.motor;
    let armed = if v.live.armed && !v.live.arm_requested {
        Span::styled(
            "STOPPING",
            Style::default()
                .fg(Color::White)
                .bg(Color::Red)
                .add_modifier(Modifier::BOLD),
        )
    } else if v.live.armed {
        Span::styled(
            "ARMED",
            Style::default()
                .fg(Color::Black)
                .bg(Color::Green)
                .add_modifier(Modifier::BOLD),
        )
    } else {
        Span::styled(
            "DISARMED",
            Style::default()
                .fg(Color::White)
                .bg(Color::Red)
                .add_modifier(Modifier::BOLD),
        )
    };
    let opt_ms = |v: Option<f64>| v.map(|x| format!("{x:.0}")).unwrap_or_else(|| "—".into());
    let controller = vec![
        Line::from(vec![armed]),
        Line::from(vec![
            Span::raw("failsafe "),
            Span::styled(m.level.name(), level_style(m.level)),
            Span::raw(format!(
                " ({})",
                m.cause.map(|c| c.name()).unwrap_or_else(|| "—".into())
            )),
        ]),
        Line::from(format!("camera {:.1} fps", v.fps)),
        Line::from(format!(
            "capture→chunk p50 {} p99 {} ms",
            opt_ms(v.latency_p50_ms),
            opt_ms(v.latency_p99_ms)
        )),
        Line::from(format!(
            "chunk age {} ms",
            opt_ms(m.chunk_age.map(|d| d.as_secs_f64() * 1e3))
        )),
        Line::from(format!(
            "wheels {}",
            m.wheels
                .map(|w| format!("{} {} {}", w[0], w[1], w[2]))
                .unwrap_or_else(|| "—".into())
        )),
        Line::from(format!(
            "link {} ({} frames, {} errors)",
            if v.live.link_up { "up" } else { "DOWN" },
            v.live.link_frames_sent,
            v.live.link_errors
        )),
        Line::from(
            v.pose
                .map(|(x, y, yaw)| format!("pose x {x:.2} y {y:.2} m, {:.0}°", yaw.to_degrees()))
                .unwrap_or_else(|| "pose — (no odometry)".into()),
        ),
        Line::from(format!("backend {}", v.backend)),
    ];
    f.render_widget(
        Paragraph::new(controller)
            .block(Block::default().borders(Borders::ALL).title("controller")),
        cols[0],
    );
    let phase_style = match v.phase {
        "RUNNING" => Style::default().fg(Color::Black).bg(Color::Yellow),
        "STOPPED" => Style::default().fg(Color::White).bg(Color::Red),
        _ => Style::default().add_modifier(Modifier::BOLD),
    };
    let trial = vec![
        Line::from(Span::styled(v.phase, phase_style)),
        Line::from(v.phase_detail.clone()),
        Line::from(format!("recording {}", v.recording.unwrap_or("—"))),
        Line::from(format!("store {}", v.db)),
        Line::from(format!("elapsed {:.0} s", v.elapsed_s)),
    ];
    f.render_widget(
        Paragraph::new(trial)
            .wrap(Wrap { trim: true })
            .block(Block::default().borders(Borders::ALL).title("trial")),
        cols[1],
    );
    let height = rows[2].height.saturating_sub(2) as usize;
    let items: Vec<ListItem> = v
        .log
        .iter()
        .skip(v.log.len().saturating_sub(height))
        .map(|l| ListItem::new(l.clone()))
        .collect();
    f.render_widget(
        List::new(items).block(Block::default().borders(Borders::ALL).title("log")),
        rows[2],
    );
    f.render_widget(
        Paragraph::new(KEYS).style(Style::default().add_modifier(Modifier::REVERSED)),
        rows[3],
    );
    // Pop-ups over the log.
    let popup = |title: &str, lines: Vec<Line<'static>>, f: &mut ratatui::Frame| {
        let h = (lines.len() as u16 + 2).min(area.height);
        let r = ratatui::layout::Rect {
            x: area.x + 2,
            y: area.y + area.height.saturating_sub(h + 1),
            width: area.width.saturating_sub(4).min(60),
            height: h,
        };
        f.render_widget(Clear, r);
        f.render_widget(
            Paragraph::new(lines).block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(title.to_string()),
            ),
            r,
        );
    };
    match input {
        Input::Normal => {}
        Input::Code(sel) => {
            let mut lines: Vec<Line<'static>> = FailureCode::ALL
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let text = format!("{} {}", i + 1, c.name());
                    if i == *sel {
                        Line::from(Span::styled(
                            text,
                            Style::default().add_modifier(Modifier::REVERSED),
                        ))
                    } else {
                        Line::from(text)
                    }
                })
                .collect();
            lines.push(Line::from("1-7 or ↑↓ Enter; Esc cancels"));
            popup("failure code", lines, f);
        }
        Input::Note(text) => popup(
            "note (Enter saves, Esc cancels)",
            vec![Line::from(format!("{text}_"))],
            f,
        ),
        Input::ConfirmQuit => popup(
            "quit?",
            vec![Line::from(
                "q again: the trial in progress is stored as aborted (one stopped at its time limit: as its failure) and the console quits; any other key: back",
            )],
            f,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_bytes_become_keys() {
        assert_eq!(
            parse_keys(b"\r \x1b[A\x1b[Bq\x7f\x03\x1b"),
            [
                Key::Enter,
                Key::Space,
                Key::Up,
                Key::Down,
                Key::Char('q'),
                Key::Backspace,
                Key::CtrlC,
                Key::Esc
            ]
        );
        // SS3 arrows, an unknown CSI sequence skipped, UTF-8 text kept.
        assert_eq!(parse_keys(b"\x1bOA\x1b[15~x"), [Key::Up, Key::Char('x')]);
        // A Space inside a would-be escape sequence is still the e-stop.
        assert_eq!(
            parse_keys(b"\x1bO "),
            [Key::Esc, Key::Char('O'), Key::Space]
        );
        assert_eq!(
            parse_keys(b"\x1b[1 "),
            [Key::Esc, Key::Char('['), Key::Char('1'), Key::Space]
        );
        assert_eq!(parse_keys(b"\x1bOx "), [Key::Space]);
        // Ctrl+Space (NUL) and modified Spaces in extended-keys encodings.
        assert_eq!(parse_keys(b"\x00"), [Key::Space]);
        assert_eq!(parse_keys(b"\x1b[32;2u"), [Key::Space]);
        assert_eq!(parse_keys(b"\x1b[27;5;32~"), [Key::Space]);
        assert_eq!(parse_keys(b"\x1b[33;2u"), []);
        assert_eq!(
            parse_keys("né".as_bytes()),
            [Key::Char('n'), Key::Char('é')]
        );
        // A broken UTF-8 byte or a stray control byte is skipped, never a panic.
        assert_eq!(parse_keys(&[0xc3, b'a', 0x01]), [Key::Char('a')]);
        assert_eq!(parse_keys(&[0xff, 0xe2, 0x82]), []);
    }

    #[test]
    fn a_hung_up_terminal_is_an_error_not_a_spin() {
        // A pty whose other end is closed, as after an ssh drop.
        let pty = nix::pty::openpty(None, None).unwrap();
        drop(pty.master);
        use std::os::fd::AsRawFd;
        let started = Instant::now();
        assert!(read_keys(pty.slave.as_raw_fd(), Duration::from_millis(500)).is_err());
        assert!(started.elapsed() < Duration::from_millis(400), "at once");
    }
}
