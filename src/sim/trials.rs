//! Batches of lock-step trials (`mvla sim trials`): scenarios × trials with
//! per-trial seeds, the runtime's inference stage built exactly as `mvla run`
//! builds it, and the tally (success rate with its 95 % Wilson interval and
//! the failure codes) per scenario and overall.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::config::Config;
use crate::frame::ChannelOrder;
use crate::pipeline::InferenceStage;
use crate::policy::PolicyError;
use crate::preprocess::Rotation;

use super::judge::FailureCode;
use super::lockstep::{run_trial, Driver, Latency, LockstepSettings, TrialRecord};
use super::render::{frame_dim_ok, PixelLayout};
use super::world::{Catalogue, ScenarioError};

#[derive(Debug, thiserror::Error)]
pub enum TrialsError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("model {path}")]
    Model {
        path: String,
        #[source]
        source: PolicyError,
    },
    #[error("{0}")]
    Invalid(String),
}

/// Who drives a batch (`mvla sim trials --policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PolicyChoice {
    /// The model (--model or the config's) through the runtime's inference stage.
    Model,
    /// The expert operator: plans round the obstacles, presses teleop keys
    /// (validates the world, the judge and the motor path).
    Expert,
}

#[derive(Debug, Clone)]
pub struct TrialsOptions {
    /// Motor loop, calibration, model dir, inference backend (`--config` or the built-in default).
    pub config: Config,
    pub catalogue: Catalogue,
    pub scenario_glob: String,
    pub trials: usize,
    /// Trial i of every scenario uses seed `seed + i`; the draws also depend
    /// on the scenario's name (`SimRng::for_scenario`), so each trial is its
    /// own world.
    pub seed: u64,
    pub policy: PolicyChoice,
    pub latency: Latency,
    pub camera_fps: f64,
    pub width: usize,
    pub height: usize,
    pub layout: PixelLayout,
    /// The rotation the runtime applies; None = the model's camera_rotation_deg.
    pub rotation_override: Option<Rotation>,
    /// The channel order the runtime feeds the model; None = the model's
    /// (a deliberately wrong one is a sensitivity row).
    pub channel_order_override: Option<ChannelOrder>,
    /// History spacing; None = one policy step (a camera-frame spacing is
    /// the sensitivity row for the 30-fps-history mistake).
    pub history_step_override: Option<Duration>,
    /// Keep downscaled frames for videos (width); they reach `each`, not the result.
    pub keep_frames_width: Option<usize>,
    /// Return each record's trajectory too (it always reaches `each`).
    pub keep_trajectories: bool,
}

/// Most trials per scenario in one batch.
pub const MAX_TRIALS: usize = 100_000;

impl TrialsOptions {
    /// Defaults of `mvla sim trials` on a config.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            catalogue: Catalogue::builtin(),
            scenario_glob: "*".into(),
            trials: 1,
            seed: 0,
            policy: PolicyChoice::Model,
            latency: Latency::Measured,
            camera_fps: 10.0,
            width: 1280,
            height: 720,
            layout: PixelLayout::Bgr,
            rotation_override: None,
            channel_order_override: None,
            history_step_override: None,
            keep_frames_width: None,
            keep_trajectories: false,
        }
    }
}

/// Run every (scenario, trial) in order; `each` sees each record as it ends.
pub fn run_trials(
    o: &TrialsOptions,
    mut each: impl FnMut(&TrialRecord),
) -> Result<Vec<TrialRecord>, TrialsError> {
    if !(1..=MAX_TRIALS).contains(&o.trials) {
        return Err(TrialsError::Invalid(format!(
            "--trials {} (1..={MAX_TRIALS} per scenario)",
            o.trials
        )));
    }
    if !(o.camera_fps.is_finite() && (1.0..=120.0).contains(&o.camera_fps)) {
        return Err(TrialsError::Invalid(format!(
            "camera fps {} (1..=120)",
            o.camera_fps
        )));
    }
    if !(frame_dim_ok(o.width) && frame_dim_ok(o.height)) {
        return Err(TrialsError::Invalid(format!(
            "--width/--height {}x{}: even, 16..=4096",
            o.width, o.height
        )));
    }
    let names = o.catalogue.matching(&o.scenario_glob)?;
    let settings = LockstepSettings {
        motor: o.config.motor,
        calib: o.config.calib.clone(),
        camera_fps: o.camera_fps,
        width: o.width,
        height: o.height,
        layout: o.layout,
        latency: o.latency,
        keep_frames_width: o.keep_frames_width,
        two_core_render: true,
        expert_perturb: 0.0,
    };
    let mut stage = None;
    let mut policy_name = "expert".to_string();
    if o.policy == PolicyChoice::Model {
        let (s, id) = policy_stage(
            &o.config,
            o.rotation_override,
            o.channel_order_override,
            o.history_step_override,
        )?;
        policy_name = id;
        stage = Some(s);
    }
    let mut out = Vec::new();
    for name in &names {
        for i in 0..o.trials {
            let seed = o.seed.wrapping_add(i as u64);
            let world = o.catalogue.world(name, seed)?;
            let driver = match stage.as_mut() {
                Some(s) => Driver::Model(s),
                None => Driver::Expert,
            };
            let mut r = run_trial(&world, seed, driver, &policy_name, &settings);
            each(&r);
            // What the summary needs stays; frames and (unless asked) the
            // trajectory go, so a long batch does not grow without bound.
            r.kept_frames = Vec::new();
            if !o.keep_trajectories {
                r.trajectory = Vec::new();
            }
            out.push(r);
        }
    }
    Ok(out)
}

/// The runtime's inference stage on `config`'s model (with the trials'
/// overrides) and the model's id.
pub fn policy_stage(
    config: &Config,
    rotation_override: Option<Rotation>,
    channel_order_override: Option<ChannelOrder>,
    history_step_override: Option<Duration>,
) -> Result<(InferenceStage, String), TrialsError> {
    let model_err = |source| TrialsError::Model {
        path: config.model_dir.display().to_string(),
        source,
    };
    let mut meta = crate::run::load_model(config).map_err(model_err)?;
    meta.history_step_override = history_step_override;
    let rotation = rotation_override.unwrap_or_else(|| meta.camera_rotation());
    let mut spec = meta.preprocess_spec(rotation);
    if let Some(order) = channel_order_override {
        spec.model_order = order;
    }
    let id = meta.model_id.clone();
    let (s, _) = crate::run::build_stage(config, meta, spec).map_err(model_err)?;
    Ok((s, id))
}

pub use crate::trial::stats::{band, wilson_interval};

#[derive(Debug, Clone, Default, Serialize)]
pub struct Tally {
    pub n: u64,
    pub successes: u64,
    pub rate: f64,
    pub wilson_95: (f64, f64),
    pub band: &'static str,
    pub failure_codes: BTreeMap<FailureCode, u64>,
    pub mean_time_s: f64,
}

impl Tally {
    fn of<'a>(records: impl Iterator<Item = &'a TrialRecord>) -> Tally {
        let mut t = Tally::default();
        let mut time = 0.0;
        for r in records {
            t.n += 1;
            time += r.time_s;
            if r.success() {
                t.successes += 1;
            } else if let Some(c) = r.failure_code {
                *t.failure_codes.entry(c).or_default() += 1;
            }
        }
        t.rate = if t.n > 0 {
            t.successes as f64 / t.n as f64
        } else {
            0.0
        };
        t.wilson_95 = wilson_interval(t.successes, t.n);
        t.band = band(t.rate);
        t.mean_time_s = if t.n > 0 { time / t.n as f64 } else { 0.0 };
        t
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BatchSummary {
    pub policy: String,
    pub trials: u64,
    pub overall: Tally,
    pub per_scenario: BTreeMap<String, Tally>,
    /// Simulated seconds per wall-clock second.
    pub speed_vs_real_time: f64,
    /// How inference latency was modelled ("measured" or "fixed N ms").
    pub latency: String,
}

pub fn summarize(records: &[TrialRecord]) -> BatchSummary {
    let mut per_scenario = BTreeMap::new();
    let mut names: Vec<&str> = records.iter().map(|r| r.scenario.as_str()).collect();
    names.sort();
    names.dedup();
    for n in names {
        per_scenario.insert(
            n.to_string(),
            Tally::of(records.iter().filter(|r| r.scenario == n)),
        );
    }
    let sim_s: f64 = records.iter().map(|r| r.time_s).sum();
    let wall_s: f64 = records.iter().map(|r| r.wall_s).sum();
    BatchSummary {
        policy: records
            .first()
            .map(|r| r.policy.clone())
            .unwrap_or_default(),
        trials: records.len() as u64,
        overall: Tally::of(records.iter()),
        per_scenario,
        speed_vs_real_time: if wall_s > 0.0 { sim_s / wall_s } else { 0.0 },
        latency: String::new(),
    }
}

/// A fixed modelled latency from the command line (ms), or measured.
pub fn latency_from_ms(ms: Option<f64>) -> Result<Latency, TrialsError> {
    match ms {
        None => Ok(Latency::Measured),
        Some(v) if v.is_finite() && (0.0..=10_000.0).contains(&v) => {
            Ok(Latency::Fixed(Duration::from_secs_f64(v / 1e3)))
        }
        Some(v) => Err(TrialsError::Invalid(format!(
            "--latency-ms {v}: must be in [0, 10000]"
        ))),
    }
}

/// Where plots and videos of a trial go:
/// `<dir>/<scenario>_seed<seed>_<mode>_<policy>.<ext>` (scenario names and
/// model ids are checked to be plain names; anything else in the policy name
/// becomes `_`).
pub fn artefact_path(dir: &std::path::Path, r: &TrialRecord, ext: &str) -> PathBuf {
    let policy: String = r
        .policy
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!(
        "{}_seed{}_{}_{policy}.{ext}",
        r.scenario, r.seed, r.mode
    ))
}

/// The trial store's row for a lock-step trial (`mvla sim trials --db`):
/// marked simulated, ended by the judge, with the trajectory every 0.1 s.
pub fn trial_row(
    r: &TrialRecord,
    session_id: &str,
    config: &Config,
    backend: &str,
) -> crate::trial::store::TrialRow {
    use crate::trial::{ScenarioParts, Status};
    let parts = ScenarioParts::parse(&r.scenario);
    let tick = |name: &str| Some(r.level_ticks.get(name).copied().unwrap_or(0) as i64);
    let mut trajectory: Vec<[f64; 4]> = Vec::new();
    for p in &r.trajectory {
        if trajectory.last().is_none_or(|l| p.t_s - l[0] >= 0.1) {
            trajectory.push([p.t_s, p.x, p.y, p.yaw]);
        }
    }
    crate::trial::store::TrialRow {
        session_id: session_id.into(),
        scenario: r.scenario.clone(),
        boxes: parts.boxes.map(i64::from),
        side: parts.side,
        pattern: parts.pattern,
        distance: parts.distance,
        simulated: true,
        started_utc: crate::record::writer::utc_stamp(std::time::SystemTime::now()).0,
        started_mono_ns: crate::clock::Clock::now(&crate::clock::MonotonicClock).0 as i64,
        duration_s: Some(r.time_s),
        status: if r.success() {
            Status::Success
        } else {
            Status::Failure
        }
        .name()
        .into(),
        failure_code: (!r.success()).then(|| {
            r.failure_code
                .unwrap_or(FailureCode::Other)
                .name()
                .to_string()
        }),
        ended_by: Some("judge".into()),
        note: Some(format!("seed {}, {}: {}", r.seed, r.mode, r.reason)),
        model_digest: r.policy.clone(),
        model_dir: config.model_dir.display().to_string(),
        backend: backend.into(),
        config_digest: Some(config.digest.clone()),
        mvla_version: env!("CARGO_PKG_VERSION").into(),
        git_commit: option_env!("MVLA_GIT_COMMIT").map(String::from),
        frames: Some(r.frames as i64),
        inferences: Some(r.inferences as i64),
        latency_p50_ms: Some(r.latency_p50_ms),
        ticks_nominal: tick("nominal"),
        ticks_degraded: tick("degraded"),
        ticks_hold: tick("hold"),
        ticks_stop: tick("stop"),
        ticks_estop: tick("estop"),
        final_x_m: Some(r.final_pose.x),
        final_y_m: Some(r.final_pose.y),
        final_yaw_rad: Some(r.final_pose.yaw),
        trajectory: (!trajectory.is_empty())
            .then(|| serde_json::to_string(&trajectory).ok())
            .flatten(),
        ..Default::default()
    }
}
