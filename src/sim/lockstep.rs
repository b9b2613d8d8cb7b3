//! Lock-step trials: one simulated clock steps the camera, the inference
//! stage, the motor ticks, the wheel link and the base, deterministically and
//! faster than real time.
//!
//! Nothing of the runtime is re-implemented here: frames go through the same
//! [`InferenceStage`] (preprocessing, history, policy, chunk), events through
//! the same [`MotorLoop::on_event`] / [`MotorLoop::tick`] (failsafe, chunk
//! execution by age, drive mode, limits, calibration), wheel bytes through the
//! same SLCAN encoding ([`wheel_command`]) and board protocol
//! ([`BoardProtocol`]) as the real-time path. What lock-step adds is only the
//! schedule: a frame is captured every camera period; the inference stage
//! picks up the newest frame when it is free; its event reaches the motor loop
//! `latency` later (the measured compute time of that step, or a fixed figure);
//! newest event wins at each tick, like the capacity-1 channels.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::action::InferenceEvent;
use crate::clock::{Clock, ManualClock, Timestamp};
use crate::control::failsafe::Level;
use crate::control::motor::{MotorConfig, MotorLoop};
use crate::drive::emulator::BoardProtocol;
use crate::drive::slcan::{open_sequence, wheel_command};
use crate::frame::Frame;
use crate::pipeline::InferenceStage;
use crate::preprocess::{ChannelOrder, InputFormat};
use crate::robot::calib::Calibration;

use super::base::{Sample, SimBase};
use super::expert::{press_event, Expert, Press, KEYS};
use super::judge::{FailureCode, Judge, Outcome, Verdict};
use super::render::{PixelLayout, Renderer};
use super::rng::SimRng;
use super::world::{Pose, World};

/// Simulated time of the trial's first tick (non-zero, like a monotonic clock).
pub const START: Timestamp = Timestamp(1_000_000_000);

/// How long inference takes in simulated time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Latency {
    /// The wall-clock compute time of each step on this machine (not deterministic).
    Measured,
    /// A fixed figure (deterministic), e.g. the robot's expected GPU latency.
    Fixed(Duration),
}

#[derive(Debug, Clone)]
pub struct LockstepSettings {
    pub motor: MotorConfig,
    pub calib: Calibration,
    pub camera_fps: f64,
    pub width: usize,
    pub height: usize,
    pub layout: PixelLayout,
    pub latency: Latency,
    /// Keep a downscaled copy of every consumed frame (for `--video`), this wide.
    pub keep_frames_width: Option<usize>,
    /// Render each frame on two cores (byte-identical; faster batches).
    pub two_core_render: bool,
    /// Probability that the expert's key is replaced by a random one when
    /// executed (demonstrations record the expert's choice; 0 = none).
    pub expert_perturb: f64,
}

/// Who drives.
pub enum Driver<'a> {
    /// The policy through the runtime's inference stage.
    Model(&'a mut InferenceStage),
    /// The expert operator's key pulses (no camera, no policy).
    Expert,
    /// A test's script: at each tick, given the time and the true pose, maybe an event.
    Scripted(&'a mut dyn FnMut(Timestamp, Pose) -> Option<InferenceEvent>),
    /// The expert, recording a demonstration: the episode_start frame, then
    /// one frame [`CAPTURE_DELAY`] after each key press, until `rows` rows.
    Demonstration {
        sink: &'a mut dyn DemoSink,
        rows: usize,
    },
    /// Human-gated DAgger: the policy drives through the inference stage
    /// and the expert labels, recording rows like [`Driver::Demonstration`]
    /// (a frame [`CAPTURE_DELAY`] after each of the expert's key times, the
    /// expert's key at that pose as the label). When the robot's clearance
    /// falls below `gate_m` the expert takes over with its key pulses (the
    /// policy's chunks are dropped) until a key time finds it clear again;
    /// the labels stay the expert's throughout.
    Dagger {
        stage: &'a mut InferenceStage,
        sink: &'a mut dyn DemoSink,
        rows: usize,
        gate_m: f64,
    },
}

impl Driver<'_> {
    fn stage(&mut self) -> Option<&mut InferenceStage> {
        match self {
            Driver::Model(s) | Driver::Dagger { stage: s, .. } => Some(&mut **s),
            _ => None,
        }
    }
    fn sink(&mut self) -> Option<&mut dyn DemoSink> {
        match self {
            Driver::Demonstration { sink, .. } | Driver::Dagger { sink, .. } => Some(&mut **sink),
            _ => None,
        }
    }
    fn records_rows(&self) -> bool {
        matches!(self, Driver::Demonstration { .. } | Driver::Dagger { .. })
    }
}

/// The team's collector takes the image just after the move command started
/// (UPSTREAM §1); 50 ms is one camera frame and a bit at 30 fps.
pub const CAPTURE_DELAY: Duration = Duration::from_millis(50);

/// Where a demonstration's rows go (the HDF5 episode writer in `collect`).
pub trait DemoSink {
    /// One row: the frame as the capture pipeline delivers it (upright BGR,
    /// the 180° mount already undone), the key's action, its event type.
    fn row(
        &mut self,
        upright_bgr: &[u8],
        width: usize,
        height: usize,
        action: [f32; 3],
        event: &str,
        t_s: f64,
    ) -> Result<(), String>;
}

/// One point of the trajectory with the failsafe level of the tick that commanded it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TrajectoryPoint {
    pub t_s: f64,
    pub x: f64,
    pub y: f64,
    pub yaw: f64,
    pub wheels: [u8; 3],
    pub level: Option<Level>,
}

/// A consumed frame, downscaled, with the chunk it produced (for videos).
#[derive(Debug, Clone)]
pub struct KeptFrame {
    pub t_s: f64,
    pub width: usize,
    pub height: usize,
    /// Upright packed RGB.
    pub rgb: Vec<u8>,
    pub actions: Vec<[f32; 2]>,
    pub level: Level,
}

/// Everything a trial leaves behind, the same for lock-step and real time.
#[derive(Debug, Clone, Serialize)]
pub struct TrialRecord {
    pub scenario: String,
    pub seed: u64,
    /// `lockstep` or `realtime`.
    pub mode: String,
    /// `expert` or the model id.
    pub policy: String,
    pub outcome: Outcome,
    pub failure_code: Option<FailureCode>,
    pub reason: String,
    pub time_s: f64,
    pub path_length_m: f64,
    pub final_pose: Pose,
    pub min_goal_distance_m: f64,
    pub frames: u64,
    pub inferences: u64,
    pub inference_faults: u64,
    pub chunks_superseded: u64,
    /// Modelled capture → chunk latency, median and max (ms).
    pub latency_p50_ms: f64,
    pub latency_max_ms: f64,
    pub ticks: u64,
    pub ticks_moving: u64,
    pub level_ticks: std::collections::BTreeMap<String, u64>,
    /// Wall-clock seconds the trial took to simulate.
    pub wall_s: f64,
    pub world: World,
    pub trajectory: Vec<TrajectoryPoint>,
    #[serde(skip)]
    pub kept_frames: Vec<KeptFrame>,
    /// A demonstration row that could not be written (the trial stopped there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// DAgger only: how much of the trial the expert drove.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dagger: Option<DaggerShare>,
}

/// The DART perturbation's stream for a trial: drawn per (seed, scenario),
/// like the world, so the scenarios of a batch do not perturb in step.
fn perturbation_stream(seed: u64, scenario: &str) -> SimRng {
    SimRng::for_scenario(seed, scenario, 0x4441_5254) // "DART"
}

/// DAgger: the trial's key-press intervals (one per labelled row, the first
/// from the start to the first press) and how many of them the expert drove,
/// all or part (the policy's chunks were dropped from its takeover to the
/// interval's end). `expert_driven / intervals` is the expert's share of the
/// driving; near 1, the data is mostly the expert's own states.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DaggerShare {
    pub intervals: u64,
    pub expert_driven: u64,
}

impl TrialRecord {
    pub fn success(&self) -> bool {
        self.outcome == Outcome::Success
    }

    /// The verdict as one line (see [`super::judge::verdict_text`]).
    pub fn verdict_line(&self) -> String {
        super::judge::verdict_text(
            self.outcome,
            self.failure_code,
            &self.reason,
            self.time_s,
            self.path_length_m,
        )
    }

    /// The record of a real-time trial (`mvla run` with the sim camera):
    /// the same fields, from the run's counters and the base's trajectory.
    #[allow(clippy::too_many_arguments)]
    pub fn realtime(
        world: &World,
        policy: &str,
        v: &Verdict,
        trajectory: &[Sample],
        counters: &crate::pipeline::CountersSnapshot,
        inference: &crate::pipeline::InferenceStatsSummary,
        motor: &crate::control::MotorSummary,
        wall_s: f64,
    ) -> Self {
        let level_ticks = level_ticks_map([
            motor.ticks_nominal,
            motor.ticks_degraded,
            motor.ticks_hold,
            motor.ticks_stop,
            motor.ticks_estop,
        ]);
        TrialRecord {
            scenario: world.scenario.clone(),
            seed: world.seed,
            mode: "realtime".into(),
            policy: policy.to_string(),
            outcome: v.outcome,
            failure_code: v.failure_code,
            reason: v.reason.clone(),
            time_s: v.time_s,
            path_length_m: v.path_length_m,
            final_pose: v.pose,
            min_goal_distance_m: v.min_goal_distance_m,
            frames: counters.frames_captured,
            inferences: counters.inferences,
            inference_faults: counters.inference_faults,
            chunks_superseded: counters.chunks_superseded_unread,
            latency_p50_ms: inference.capture_to_chunk.p50_ms,
            latency_max_ms: inference.capture_to_chunk.max_ms,
            ticks: motor.ticks,
            ticks_moving: motor.ticks_moving,
            level_ticks,
            wall_s,
            world: world.clone(),
            trajectory: trajectory
                .iter()
                .take_while(|s| s.t_s <= v.time_s)
                .map(|s| point(s, None))
                .collect(),
            kept_frames: Vec::new(),
            error: None,
            dagger: None,
        }
    }
}

/// The clock the inference stage reads while it processes one frame: the
/// pick-up time plus the wall time spent since (measured latency), so the
/// chunk's stage timings are in simulated time.
struct StepClock {
    at: Timestamp,
    wall: Instant,
    measured: bool,
}

impl Clock for StepClock {
    fn now(&self) -> Timestamp {
        if self.measured {
            self.at.plus(self.wall.elapsed())
        } else {
            self.at
        }
    }
    fn sleep_until(&self, _deadline: Timestamp) {}
}

struct PendingFrame {
    seq: u64,
    at: Timestamp,
    pose: Pose,
}

/// Run one trial of `world` with `seed` until the judge decides.
pub fn run_trial(
    world: &World,
    seed: u64,
    mut driver: Driver<'_>,
    policy_name: &str,
    s: &LockstepSettings,
) -> TrialRecord {
    let wall = Instant::now();
    let clock = ManualClock::new(START);
    let mut motor = MotorLoop::new(s.motor, s.calib.clone());
    let period = s.motor.period();
    let mut base = SimBase::new(s.calib.clone(), world, seed, START);
    let mut judge = Judge::new(world);
    let mut protocol = BoardProtocol::default();
    for cmd in open_sequence(crate::drive::slcan::DEFAULT_BITRATE_CODE) {
        protocol.command(cmd.as_bytes());
    }
    let mut renderer = match driver {
        Driver::Model(_) | Driver::Demonstration { .. } | Driver::Dagger { .. } => {
            Some(Renderer::new(s.width, s.height, &world.camera))
        }
        // No camera in the loop; one only to film the trial for `--video`.
        Driver::Expert | Driver::Scripted(_) => s
            .keep_frames_width
            .map(|_| Renderer::new(s.width, s.height, &world.camera)),
    };
    // The second core renders half of each frame (lock-step is otherwise single-threaded).
    let mut helper = renderer.clone().filter(|_| s.two_core_render);
    let mut expert = match driver {
        Driver::Expert | Driver::Demonstration { .. } | Driver::Dagger { .. } => {
            Some(Expert::new(world, seed))
        }
        Driver::Model(_) | Driver::Scripted(_) => None,
    };
    let rows_wanted = match &driver {
        Driver::Demonstration { rows, .. } | Driver::Dagger { rows, .. } => *rows,
        _ => 0,
    };
    // DAgger: the expert drives (policy chunks dropped) while now < this.
    let gate_m = match &driver {
        Driver::Dagger { gate_m, .. } => Some(*gate_m),
        _ => None,
    };
    let mut expert_until = START;
    let mut demo_rows = 0usize;
    let mut demo_error: Option<String> = None;
    // Demonstration frames to take: (time, action, event type).
    let mut demo_due: VecDeque<(Timestamp, [f32; 3], &'static str)> = VecDeque::new();
    demo_due.push_back((START, [0.0; 3], "episode_start"));
    let mut upright: Vec<u8> = Vec::new();
    let mut first_verdict: Option<Verdict> = None;
    // The stage's history restarts with the trial's first frame (`starts_episode`).
    let camera_period = Duration::from_secs_f64(1.0 / s.camera_fps.max(0.1));
    let mut next_camera = START;
    let mut next_press = match expert.as_mut() {
        Some(e) => START.plus(e.next_interval()),
        None => START,
    };
    let mut frame = Frame {
        width: s.width,
        height: s.height,
        order: ChannelOrder::Bgr,
        format: s.layout.input_format(),
        ..Default::default()
    };
    let mut frame_seq = 0u64;
    let mut pending: Option<PendingFrame> = None;
    let mut busy_until = START;
    // Events on their way to the motor loop: (delivery time, event, from the expert).
    let mut mailbox: VecDeque<(Timestamp, InferenceEvent, bool)> = VecDeque::new();
    let mut record = TrialRecord {
        scenario: world.scenario.clone(),
        seed,
        mode: "lockstep".into(),
        policy: policy_name.to_string(),
        outcome: Outcome::Failure,
        failure_code: None,
        reason: String::new(),
        time_s: 0.0,
        path_length_m: 0.0,
        final_pose: world.start,
        min_goal_distance_m: f64::INFINITY,
        frames: 0,
        inferences: 0,
        inference_faults: 0,
        chunks_superseded: 0,
        latency_p50_ms: 0.0,
        latency_max_ms: 0.0,
        ticks: 0,
        ticks_moving: 0,
        level_ticks: Default::default(),
        wall_s: 0.0,
        world: world.clone(),
        trajectory: Vec::new(),
        kept_frames: Vec::new(),
        error: None,
        dagger: gate_m.map(|_| DaggerShare {
            intervals: 1,
            expert_driven: 0,
        }),
    };
    let mut latencies: Vec<Duration> = Vec::new();
    // Ticks per failsafe level, in `Level` order (no allocation per tick).
    let mut level_counts = [0u64; 5];
    let mut judged = 0usize;
    let mut expert_seq = 0u64;
    let mut level: Level;
    let mut last_actions: Vec<[f32; 2]> = Vec::new();
    // Run the inference stage on one captured frame picked up at `pick`.
    let infer = |stage: &mut InferenceStage,
                 renderer: &mut Renderer,
                 helper: &mut Option<Renderer>,
                 frame: &mut Frame,
                 p: PendingFrame,
                 pick: Timestamp,
                 record: &mut TrialRecord,
                 mailbox: &mut VecDeque<(Timestamp, InferenceEvent, bool)>,
                 latencies: &mut Vec<Duration>|
     -> Timestamp {
        let noise_seed = seed ^ p.seq.wrapping_mul(0x9E37_79B9);
        match (s.layout, helper.as_mut()) {
            (PixelLayout::Bgr, Some(h)) => {
                renderer.render_bgr_on_two_cores(h, world, p.pose, noise_seed, &mut frame.data)
            }
            _ => renderer.render(world, p.pose, noise_seed, s.layout, &mut frame.data),
        }
        frame.seq = p.seq;
        frame.capture_time = p.at;
        frame.starts_episode = p.seq == 1;
        let step_clock = StepClock {
            at: pick,
            wall: Instant::now(),
            measured: s.latency == Latency::Measured,
        };
        let t = Instant::now();
        let mut processed = stage.process(frame, pick, &step_clock);
        let took = match s.latency {
            Latency::Measured => t.elapsed(),
            Latency::Fixed(d) => d,
        };
        let done = pick.plus(took);
        match &mut processed.event {
            InferenceEvent::Chunk(c) => {
                record.inferences += 1;
                c.timings.total = done.saturating_since(p.at);
                latencies.push(c.timings.total);
            }
            InferenceEvent::Fault { at, .. } => {
                record.inference_faults += 1;
                *at = done;
            }
        }
        mailbox.push_back((done, processed.event, false));
        done
    };
    let mut perturb_rng = perturbation_stream(seed, &world.scenario);
    let mut now = START;
    let verdict: Verdict = loop {
        // The expert presses a key: a pulse chunk, straight to the motor loop.
        if let Some(e) = expert.as_mut() {
            // DAgger's gate: too close to something mid-interval, the expert takes over now.
            if let Some(g) = gate_m {
                if now >= expert_until && now < next_press && e.clearance_at(base.pose()) < g {
                    expert_seq += 1;
                    let event = press_event(e.choose(base.pose()), now, expert_seq);
                    mailbox.push_back((now, event, true));
                    expert_until = next_press;
                    if let Some(d) = record.dagger.as_mut() {
                        d.expert_driven += 1;
                    }
                }
            }
            if now >= next_press {
                let press = e.choose(base.pose());
                let a = press.action();
                expert_seq += 1;
                // DART-style noise for demonstrations: now and then another
                // key is executed, the expert's own choice is still the label,
                // so the data shows how to recover from off-route states.
                let executed = match press {
                    Press::Key(..) if perturb_rng.unit() < s.expert_perturb => {
                        let (k, ka) = KEYS[perturb_rng.index(KEYS.len())];
                        Press::Key(k, ka)
                    }
                    other => other,
                };
                let interval = e.next_interval();
                let drives = match gate_m {
                    None => true,
                    // DAgger: the expert drives this interval only if not clear.
                    Some(g) => e.clearance_at(base.pose()) < g,
                };
                if drives {
                    let event = press_event(executed, now, expert_seq);
                    mailbox.push_back((now, event, true));
                    if gate_m.is_some() {
                        expert_until = now.plus(interval);
                    }
                }
                if let Some(d) = record.dagger.as_mut() {
                    d.intervals += 1;
                    d.expert_driven += u64::from(drives);
                }
                next_press = now.plus(interval);
                demo_due.push_back((now.plus(CAPTURE_DELAY), a, press.event_type()));
            }
        }
        if let Driver::Scripted(script) = &mut driver {
            if let Some(event) = script(now, base.pose()) {
                mailbox.push_back((now, event, false));
            }
        }
        // A frame waiting for the stage, which is free now.
        if let (Some(stage), Some(r)) = (driver.stage(), renderer.as_mut()) {
            if busy_until <= now {
                if let Some(p) = pending.take() {
                    let pick = busy_until.max(p.at);
                    busy_until = infer(
                        stage,
                        r,
                        &mut helper,
                        &mut frame,
                        p,
                        pick,
                        &mut record,
                        &mut mailbox,
                        &mut latencies,
                    );
                }
            }
        }
        // Newest delivered event wins.
        let mut newest = None;
        while mailbox.front().is_some_and(|(at, ..)| *at <= now) {
            let Some((_, e, from_expert)) = mailbox.pop_front() else {
                break;
            };
            if gate_m.is_some() && !from_expert && now < expert_until {
                continue; // DAgger: the expert is driving; the policy's chunk is not executed
            }
            if newest.is_some() {
                record.chunks_superseded += 1;
            }
            newest = Some(e);
        }
        if let Some(event) = newest {
            if let InferenceEvent::Chunk(c) = &event {
                last_actions.clear();
                last_actions.extend(c.actions.iter().copied());
            }
            motor.on_event(event, now);
        }
        let out = motor.tick(now, true, false);
        level = out.level;
        record.ticks += 1;
        if out.wheels != crate::drive::STOP_WHEELS {
            record.ticks_moving += 1;
        }
        level_counts[out.level as usize] += 1;
        // The wheel command through the SLCAN encoding and the board's protocol.
        let cmd = wheel_command(out.wheels);
        let line = cmd.strip_suffix(b"\r").unwrap_or(&cmd);
        if let (_, Some(wheels)) = protocol.command(line) {
            base.command(wheels, now);
        }
        // Move the world through this tick, capturing frames on the way.
        let next = now.plus(period);
        if let (true, Some(r)) = (driver.records_rows(), renderer.as_mut()) {
            while demo_due.front().is_some_and(|(t, ..)| *t < next) && demo_rows < rows_wanted {
                let (t, action, event) = demo_due.pop_front().expect("checked");
                base.advance_to(t);
                r.render(
                    world,
                    base.pose(),
                    seed ^ (demo_rows as u64).wrapping_mul(0x9E37_79B9),
                    PixelLayout::Bgr,
                    &mut frame.data,
                );
                upright_bgr(&frame.data, world.camera.upside_down, &mut upright);
                let t_s = t.saturating_since(START).as_secs_f64();
                if let Some(sink) = driver.sink() {
                    if let Err(e) = sink.row(&upright, s.width, s.height, action, event, t_s) {
                        demo_error.get_or_insert(e);
                    }
                }
                demo_rows += 1;
            }
        }
        while next_camera < next {
            base.advance_to(next_camera);
            let mut filmed = false;
            if let (Some(stage), Some(r)) = (driver.stage(), renderer.as_mut()) {
                frame_seq += 1;
                record.frames += 1;
                let p = PendingFrame {
                    seq: frame_seq,
                    at: next_camera,
                    pose: base.pose(),
                };
                if busy_until <= next_camera {
                    busy_until = infer(
                        stage,
                        r,
                        &mut helper,
                        &mut frame,
                        p,
                        next_camera,
                        &mut record,
                        &mut mailbox,
                        &mut latencies,
                    );
                    filmed = true;
                } else {
                    pending = Some(p); // newest wins: an unread frame is replaced
                }
            } else if let (Some(r), Some(_)) = (renderer.as_mut(), s.keep_frames_width) {
                if !driver.records_rows() {
                    // Filming a camera-less driver: what the camera would have seen.
                    r.render(world, base.pose(), seed, PixelLayout::Bgr, &mut frame.data);
                    frame.format = InputFormat::Packed3;
                    filmed = true;
                }
            }
            if let (true, Some(w)) = (filmed, s.keep_frames_width) {
                record.kept_frames.push(keep_frame(
                    &frame,
                    w,
                    world,
                    next_camera,
                    &last_actions,
                    level,
                ));
            }
            next_camera = next_camera.plus(camera_period);
        }
        base.advance_to(next);
        clock.set(next);
        let samples = base.trajectory();
        let mut decided = None;
        for sample in &samples[judged..] {
            record.trajectory.push(point(sample, Some(level)));
            if let Some(v) = judge.observe(sample) {
                decided = Some(v.clone());
                break;
            }
        }
        judged = samples.len();
        if rows_wanted > 0 {
            // A demonstration runs its rows out (stop_action rows at the goal)
            // unless it fails; the first verdict stands.
            if first_verdict.is_none() {
                first_verdict = decided.clone();
            }
            let failed = first_verdict
                .as_ref()
                .is_some_and(|v| v.outcome == Outcome::Failure);
            if demo_rows >= rows_wanted || failed || demo_error.is_some() {
                let last = *base
                    .trajectory()
                    .last()
                    .expect("trajectory starts with a sample");
                break match first_verdict.take() {
                    Some(v) => v,
                    None => judge
                        .ended_early(&last, "the episode's rows were recorded")
                        .clone(),
                };
            }
        } else if let Some(v) = decided {
            break v;
        }
        now = next;
    };
    record.error = demo_error;
    record.level_ticks = level_ticks_map(level_counts);
    record.outcome = verdict.outcome;
    record.failure_code = verdict.failure_code;
    record.reason = verdict.reason.clone();
    record.time_s = verdict.time_s;
    record.path_length_m = verdict.path_length_m;
    record.final_pose = verdict.pose;
    record.min_goal_distance_m = verdict.min_goal_distance_m;
    latencies.sort();
    if let Some(m) = latencies.get(latencies.len() / 2) {
        record.latency_p50_ms = m.as_secs_f64() * 1e3;
    }
    if let Some(m) = latencies.last() {
        record.latency_max_ms = m.as_secs_f64() * 1e3;
    }
    record.wall_s = wall.elapsed().as_secs_f64();
    record
}

/// Undo the upside-down mounting (180° = reverse the pixel order), like the
/// team's capture pipeline did before storing frames.
fn upright_bgr(frame: &[u8], upside_down: bool, out: &mut Vec<u8>) {
    out.clear();
    if upside_down {
        out.extend(frame.chunks_exact(3).rev().flatten());
    } else {
        out.extend_from_slice(frame);
    }
}

/// Ticks per failsafe level (nominal, degraded, hold, stop, estop — `Level`
/// order), keyed by name, levels never reached left out.
fn level_ticks_map(counts: [u64; 5]) -> std::collections::BTreeMap<String, u64> {
    ["nominal", "degraded", "hold", "stop", "estop"]
        .into_iter()
        .zip(counts)
        .filter(|&(_, n)| n > 0)
        .map(|(name, n)| (name.to_string(), n))
        .collect()
}

fn point(s: &Sample, level: Option<Level>) -> TrajectoryPoint {
    TrajectoryPoint {
        t_s: s.t_s,
        x: s.pose.x,
        y: s.pose.y,
        yaw: s.pose.yaw,
        wheels: s.wheels,
        level,
    }
}

/// Downscale (nearest) the frame to `width`, upright RGB, for the video.
fn keep_frame(
    frame: &Frame,
    width: usize,
    world: &World,
    at: Timestamp,
    actions: &[[f32; 2]],
    level: Level,
) -> KeptFrame {
    let mut scratch = Vec::new();
    let view = match frame.packed(&mut scratch) {
        Ok(v) => v,
        Err(_) => frame.view(),
    };
    let w = width.clamp(16, view.width.max(16));
    let h = (view.height * w / view.width.max(1)).max(1);
    let mut rgb = vec![0u8; w * h * 3];
    for y in 0..h {
        for x in 0..w {
            let (mut sx, mut sy) = (x * view.width / w, y * view.height / h);
            if world.camera.upside_down {
                sx = view.width - 1 - sx;
                sy = view.height - 1 - sy;
            }
            let i = (sy * view.width + sx) * 3;
            let o = (y * w + x) * 3;
            if i + 2 < view.data.len() {
                // BGR → RGB
                rgb[o] = view.data[i + 2];
                rgb[o + 1] = view.data[i + 1];
                rgb[o + 2] = view.data[i];
            }
        }
    }
    KeptFrame {
        t_s: at.saturating_since(START).as_secs_f64(),
        width: w,
        height: h,
        rgb,
        actions: actions.to_vec(),
        level,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_scenario_draws_its_own_perturbation_stream_for_a_seed() {
        // Regression guard: the DART stream came from the seed alone, so every
        // scenario of a collection perturbed the same rows with the same keys.
        let first = |scenario: &str, seed: u64| perturbation_stream(seed, scenario).next_u64();
        let a = first("1box_hori_left_core_close", 7);
        assert_eq!(a, first("1box_hori_left_core_close", 7));
        assert_ne!(a, first("1box_hori_right_core_close", 7));
        assert_ne!(a, first("2box_hori_left_core_close", 7));
        assert_ne!(a, first("1box_hori_left_core_close", 8));
    }
}
