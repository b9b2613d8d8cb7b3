//! Configuration: `RawConfig` mirrors the TOML file (unknown keys are
//! errors), `Config` is the validated form the program runs on. Units are in
//! key names. Relative paths are resolved against the config file's folder
//! (the built-in default: against the working directory).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::capture::v4l2::{PixelFormat, V4l2Config};
use crate::preprocess::Rotation;

/// `mvla run` without `--config`: the trained sim policy in a real-time
/// closed loop with the simulator; no hardware needed. Paths are relative to
/// the repository root.
pub const DEFAULT_CONFIG: &str = include_str!("default_config.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// toml's message carries the line, column and key.
    #[error("{path}: not a valid config")]
    Parse {
        path: String,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("{path}: key `{key}`: {message}")]
    Invalid {
        path: String,
        key: &'static str,
        message: String,
    },
    /// A file the key names (calibration, scenarios) is wrong.
    #[error("{path}: key `{key}`")]
    File {
        path: String,
        key: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub model: RawModel,
    pub capture: RawCapture,
    #[serde(default)]
    pub inference: RawInference,
    #[serde(default)]
    pub motor: RawMotor,
    pub record: Option<RawRecord>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub dir: PathBuf,
    /// Override of model.json's step_ms (measure the robot's teleop spacing first).
    pub step_ms: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCapture {
    /// "replay", "v4l2" or "sim".
    pub source: String,
    pub replay: Option<RawReplay>,
    pub v4l2: Option<RawV4l2>,
    pub sim: Option<RawSim>,
}

/// `[capture.sim]`: the simulator's camera on a simulated base (needs `[motor] link = "emulator"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSim {
    /// Scenario name, e.g. "1box_hori_left_core_medium" (`mvla sim list`).
    pub scenario: String,
    #[serde(default)]
    pub seed: u64,
    /// Extra scenario family files (TOML) besides the built-in ones.
    #[serde(default)]
    pub scenario_files: Vec<PathBuf>,
    #[serde(default = "default_sim_fps")]
    pub fps: f64,
    #[serde(default = "default_sim_width")]
    pub width: u32,
    #[serde(default = "default_sim_height")]
    pub height: u32,
    /// "BGR", "YUYV" or "NV12".
    #[serde(default = "default_sim_format")]
    pub pixel_format: String,
    /// Rotation the runtime applies to the frames; default: the model's camera_rotation_deg.
    pub rotation_deg: Option<u32>,
    /// "model" (the policy drives) or "expert" (the expert operator drives
    /// instead of the camera and inference threads).
    #[serde(default = "default_sim_policy")]
    pub policy: String,
}

fn default_sim_policy() -> String {
    "model".into()
}

fn default_sim_fps() -> f64 {
    10.0
}
fn default_sim_width() -> u32 {
    1280
}
fn default_sim_height() -> u32 {
    720
}
fn default_sim_format() -> String {
    "BGR".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReplay {
    /// Episode files or folders of them.
    pub episodes: Vec<PathBuf>,
    /// Frame interval; default the model's step; 0 = as fast as possible.
    pub interval_ms: Option<u64>,
    #[serde(default = "yes", rename = "loop")]
    pub looped: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawV4l2 {
    pub device: PathBuf,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// "YUYV", "MJPG" or "NV12".
    pub pixel_format: String,
    #[serde(default = "default_buffers")]
    pub buffers: u32,
    /// Rotation to apply to frames; default: the model's camera_rotation_deg.
    pub rotation_deg: Option<u32>,
    #[serde(default = "default_stall_ms")]
    pub stall_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInference {
    #[serde(default = "default_no_frame_ms")]
    pub no_frame_timeout_ms: u64,
    #[serde(default = "default_history")]
    pub history_capacity: usize,
    #[serde(default = "default_budget_ms")]
    pub budget_ms: u64,
    /// "cpu", "cuda" (GPU required) or "auto" (GPU if available).
    #[serde(default = "default_preprocess")]
    pub preprocess: String,
    /// Where compiled CUDA kernels (PTX) are cached between starts.
    pub ptx_cache_dir: Option<PathBuf>,
    /// "tract" (CPU, ONNX), "tensorrt" (engines required) or "auto"
    /// (TensorRT when this build, machine and engine directory allow it).
    #[serde(default = "default_backend")]
    pub backend: String,
    /// TensorRT engines (`mvla engine build` output); default `<model dir>/engines`.
    pub engine_dir: Option<PathBuf>,
    /// Engine precision to load: "fp16" or "fp32".
    #[serde(default = "default_precision")]
    pub precision: String,
}

fn default_backend() -> String {
    "tract".into()
}

fn default_precision() -> String {
    "fp16".into()
}

/// Which policy backend `mvla run` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyBackend {
    Tract,
    TensorRt,
    Auto,
}

fn default_preprocess() -> String {
    "cpu".into()
}

impl Default for RawInference {
    fn default() -> Self {
        Self {
            no_frame_timeout_ms: default_no_frame_ms(),
            history_capacity: default_history(),
            budget_ms: default_budget_ms(),
            preprocess: default_preprocess(),
            ptx_cache_dir: None,
            backend: default_backend(),
            engine_dir: None,
            precision: default_precision(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMotor {
    pub loop_hz: u32,
    pub max_action_age_ms: u64,
    /// "direction_throttle" (the trained robot's behaviour) or "velocity".
    pub mode: String,
    /// "emulator" (in-process board on a pty) or "slcan" (the robot).
    pub link: String,
    /// Calibration file; default: the shipped calib/serbot.toml.
    pub calib: Option<PathBuf>,
    pub throttle_pct: f64,
    pub deadzone: f64,
    pub offset_slew_per_s: f64,
    pub velocity_scale_m_s: f64,
    pub max_linear_m_s: f64,
    pub max_angular_rad_s: f64,
    pub max_wheel_rad_s: f64,
    pub max_linear_accel_m_s2: f64,
    pub max_angular_accel_rad_s2: f64,
    pub max_linear_jerk_m_s3: f64,
    pub stop_decel_m_s2: f64,
    pub crossfade_ms: u64,
    /// Execute chunk step i during [t0 + i·step, t0 + (i+1)·step) (true, the
    /// model's semantics); false always executes step 0 (a diagnostic: the
    /// sensitivity row that shows what execution by age is worth).
    pub chunk_by_age: bool,
    /// SCHED_FIFO priority for the motor thread (0 = normal scheduling, 1..=99).
    pub realtime_priority: u8,
    /// SCHED_FIFO priority for the wheel link thread, which sends the stop
    /// frames (0..=99; default: the motor thread's).
    pub link_realtime_priority: Option<u8>,
    /// Lock the memory the motor and link threads use (everything mapped
    /// before the model is loaded; not the model) so they never page-fault.
    pub lock_memory: bool,
    pub slcan: Option<RawSlcan>,
}

impl Default for RawMotor {
    fn default() -> Self {
        Self {
            loop_hz: 100,
            max_action_age_ms: 1000,
            mode: "direction_throttle".into(),
            link: "emulator".into(),
            calib: None,
            // The vendor move() at 50 % throttle (UPSTREAM §2).
            throttle_pct: 50.0,
            // Actions are ±1.15 nominal; below 0.3 is the direction classes' dead band.
            deadzone: 0.3,
            // 0 -> 68 offsets (full vendor throttle) in 85 ms.
            offset_slew_per_s: 800.0,
            // 1.15 action ≈ 0.30 m/s, what the vendor throttle drove (UPSTREAM §2 table).
            velocity_scale_m_s: 0.26,
            max_linear_m_s: 0.35,
            max_angular_rad_s: 1.5,
            // Offset 80 in the measured table.
            max_wheel_rad_s: 10.27,
            max_linear_accel_m_s2: 1.0,
            max_angular_accel_rad_s2: 4.0,
            max_linear_jerk_m_s3: 20.0,
            stop_decel_m_s2: 3.0,
            crossfade_ms: 100,
            chunk_by_age: true,
            realtime_priority: 0,
            link_realtime_priority: None,
            lock_memory: false,
            slcan: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSlcan {
    pub port: String,
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// SLCAN bitrate code; "6" = 500 kbit/s, the Serbot bus.
    #[serde(default = "default_bitrate")]
    pub bitrate_code: String,
    #[serde(default = "default_reply_ms")]
    pub reply_timeout_ms: u64,
}

fn default_baud() -> u32 {
    crate::drive::slcan::DEFAULT_BAUD
}
fn default_bitrate() -> String {
    crate::drive::slcan::DEFAULT_BITRATE_CODE.to_string()
}
fn default_reply_ms() -> u64 {
    crate::drive::slcan::DEFAULT_REPLY_TIMEOUT.as_millis() as u64
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecord {
    pub dir: PathBuf,
    #[serde(default = "yes")]
    pub episode: bool,
    #[serde(default = "yes")]
    pub session_log: bool,
    /// Goes into the episode file name and its `scenario` attribute.
    #[serde(default = "default_scenario")]
    pub scenario: String,
}

fn yes() -> bool {
    true
}
fn default_buffers() -> u32 {
    4
}
fn default_stall_ms() -> u64 {
    // UVC cameras deliver at ≥ 15 fps; 500 ms without a frame is a stall.
    500
}
fn default_no_frame_ms() -> u64 {
    1000
}
fn default_history() -> usize {
    // 8 steps × 0.8 s at up to 40 inferences/s, with margin.
    256
}
fn default_budget_ms() -> u64 {
    // The research team's target: inference < 200 ms (UPSTREAM §4).
    200
}
fn default_scenario() -> String {
    "mvla_session".into()
}

#[derive(Debug, Clone)]
pub enum CaptureConfig {
    Replay {
        episodes: Vec<PathBuf>,
        pacing: ReplayPacing,
        looped: bool,
    },
    V4l2 {
        config: V4l2Config,
        /// None: use the model's camera rotation.
        rotation_override: Option<Rotation>,
    },
    Sim(SimCaptureConfig),
}

/// The validated `[capture.sim]`.
#[derive(Debug, Clone)]
pub struct SimCaptureConfig {
    pub scenario: String,
    pub seed: u64,
    pub catalogue: crate::sim::world::Catalogue,
    pub fps: f64,
    pub width: usize,
    pub height: usize,
    pub layout: crate::sim::render::PixelLayout,
    /// None: use the model's camera rotation.
    pub rotation_override: Option<Rotation>,
    /// The expert operator drives instead of the model.
    pub expert: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReplayPacing {
    /// One frame per training step (how the episodes were recorded).
    ModelStep,
    Interval(Duration),
    AsFastAsPossible,
}

#[derive(Debug, Clone)]
pub enum LinkConfig {
    Emulator,
    Slcan(crate::drive::slcan::SlcanConfig),
}

#[derive(Debug, Clone)]
pub struct RecordConfig {
    pub dir: PathBuf,
    pub episode: bool,
    pub session_log: bool,
    pub scenario: String,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: String,
    /// sha256 of the config text (hex), so a trial names the exact settings.
    pub digest: String,
    pub model_dir: PathBuf,
    pub step_override: Option<Duration>,
    pub capture: CaptureConfig,
    pub no_frame_timeout: Duration,
    pub history_capacity: usize,
    pub budget: Duration,
    pub preprocess: crate::preprocess::Backend,
    pub ptx_cache_dir: Option<PathBuf>,
    pub backend: PolicyBackend,
    pub engine_dir: PathBuf,
    pub precision: crate::policy::engine::Precision,
    pub motor: crate::control::motor::MotorConfig,
    pub link: LinkConfig,
    pub calib: crate::robot::calib::Calibration,
    pub realtime_priority: u8,
    pub link_realtime_priority: u8,
    pub lock_memory: bool,
    pub record: Option<RecordConfig>,
}

impl Config {
    /// Parse and validate TOML text; `source` names it in errors, `base`
    /// resolves relative paths.
    pub fn from_toml(text: &str, source: &str, base: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: source.to_string(),
            source: Box::new(e),
        })?;
        let file_err =
            |key: &'static str, e: Box<dyn std::error::Error + Send + Sync>| ConfigError::File {
                path: source.to_string(),
                key,
                source: e,
            };
        let invalid = |key: &'static str, message: String| ConfigError::Invalid {
            path: source.to_string(),
            key,
            message,
        };
        // Every numeric key has a documented range (crate::bounds): outside
        // it the key is refused, never clamped.
        let bounded = |key: &'static str, v: f64| -> Result<(), ConfigError> {
            crate::bounds::check(key, v).map_err(|m| invalid(key, m))
        };
        let bounded_u = |key: &'static str, v: u64| -> Result<(), ConfigError> {
            crate::bounds::check_u64(key, v).map_err(|m| invalid(key, m))
        };
        if let Some(ms) = raw.model.step_ms {
            bounded_u("model.step_ms", ms)?;
        }
        bounded_u(
            "inference.no_frame_timeout_ms",
            raw.inference.no_frame_timeout_ms,
        )?;
        bounded_u(
            "inference.history_capacity",
            raw.inference.history_capacity as u64,
        )?;
        bounded_u("inference.budget_ms", raw.inference.budget_ms)?;
        let m = &raw.motor;
        bounded_u("motor.loop_hz", u64::from(m.loop_hz))?;
        bounded_u("motor.max_action_age_ms", m.max_action_age_ms)?;
        bounded_u("motor.crossfade_ms", m.crossfade_ms)?;
        bounded_u("motor.realtime_priority", u64::from(m.realtime_priority))?;
        // The link thread's priority defaults to the motor thread's.
        let link_realtime_priority = m.link_realtime_priority.unwrap_or(m.realtime_priority);
        bounded_u(
            "motor.link_realtime_priority",
            u64::from(link_realtime_priority),
        )?;
        for (key, v) in [
            ("motor.throttle_pct", m.throttle_pct),
            ("motor.deadzone", m.deadzone),
            ("motor.offset_slew_per_s", m.offset_slew_per_s),
            ("motor.velocity_scale_m_s", m.velocity_scale_m_s),
            ("motor.max_linear_m_s", m.max_linear_m_s),
            ("motor.max_angular_rad_s", m.max_angular_rad_s),
            ("motor.max_wheel_rad_s", m.max_wheel_rad_s),
            ("motor.max_linear_accel_m_s2", m.max_linear_accel_m_s2),
            ("motor.max_angular_accel_rad_s2", m.max_angular_accel_rad_s2),
            ("motor.max_linear_jerk_m_s3", m.max_linear_jerk_m_s3),
            ("motor.stop_decel_m_s2", m.stop_decel_m_s2),
        ] {
            bounded(key, v)?;
        }
        if let Some(sl) = &m.slcan {
            bounded_u("motor.slcan.baud", u64::from(sl.baud))?;
            bounded_u("motor.slcan.reply_timeout_ms", sl.reply_timeout_ms)?;
        }
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let capture = match raw.capture.source.as_str() {
            "replay" => {
                let r = raw.capture.replay.ok_or_else(|| {
                    invalid(
                        "capture.replay",
                        "source = \"replay\" needs a [capture.replay] table".into(),
                    )
                })?;
                if r.episodes.is_empty() {
                    return Err(invalid("capture.replay.episodes", "empty".into()));
                }
                if let Some(ms) = r.interval_ms {
                    bounded_u("capture.replay.interval_ms", ms)?;
                }
                CaptureConfig::Replay {
                    episodes: r.episodes.iter().map(|p| resolve(p)).collect(),
                    pacing: match r.interval_ms {
                        None => ReplayPacing::ModelStep,
                        Some(0) => ReplayPacing::AsFastAsPossible,
                        Some(ms) => ReplayPacing::Interval(Duration::from_millis(ms)),
                    },
                    looped: r.looped,
                }
            }
            "v4l2" => {
                let v = raw.capture.v4l2.ok_or_else(|| {
                    invalid(
                        "capture.v4l2",
                        "source = \"v4l2\" needs a [capture.v4l2] table".into(),
                    )
                })?;
                let format = PixelFormat::parse(&v.pixel_format).ok_or_else(|| {
                    invalid(
                        "capture.v4l2.pixel_format",
                        format!("{:?} (supported: YUYV, MJPG, NV12)", v.pixel_format),
                    )
                })?;
                bounded_u("capture.v4l2.width", u64::from(v.width))?;
                bounded_u("capture.v4l2.height", u64::from(v.height))?;
                bounded_u("capture.v4l2.fps", u64::from(v.fps))?;
                bounded_u("capture.v4l2.buffers", u64::from(v.buffers))?;
                bounded_u("capture.v4l2.stall_timeout_ms", v.stall_timeout_ms)?;
                if v.width % 2 != 0 {
                    return Err(invalid(
                        "capture.v4l2.width",
                        format!("{} (even: YUYV pixels come in pairs)", v.width),
                    ));
                }
                let rotation_override = match v.rotation_deg {
                    None => None,
                    Some(d) => Some(Rotation::from_degrees(d).ok_or_else(|| {
                        invalid(
                            "capture.v4l2.rotation_deg",
                            format!("{d} (supported: 0, 180)"),
                        )
                    })?),
                };
                CaptureConfig::V4l2 {
                    config: V4l2Config {
                        device: v.device,
                        width: v.width,
                        height: v.height,
                        fps: v.fps,
                        format,
                        buffers: v.buffers,
                        rotation: rotation_override.unwrap_or(Rotation::None),
                        stall_timeout: Duration::from_millis(v.stall_timeout_ms),
                    },
                    rotation_override,
                }
            }
            "sim" => {
                let v = raw.capture.sim.ok_or_else(|| {
                    invalid(
                        "capture.sim",
                        "source = \"sim\" needs a [capture.sim] table".into(),
                    )
                })?;
                let files: Vec<PathBuf> = v.scenario_files.iter().map(|p| resolve(p)).collect();
                let catalogue = crate::sim::world::Catalogue::with_files(&files)
                    .map_err(|e| file_err("capture.sim.scenario_files", Box::new(e)))?;
                if !catalogue.names().contains(&v.scenario) {
                    return Err(invalid(
                        "capture.sim.scenario",
                        format!("{:?} is not a known scenario (`mvla sim list`)", v.scenario),
                    ));
                }
                // At least 5 fps: the camera thread sleeps one period between
                // frames, and shutdown must not wait longer than 200 ms for it.
                bounded("capture.sim.fps", v.fps)?;
                for (key, n) in [
                    ("capture.sim.width", v.width),
                    ("capture.sim.height", v.height),
                ] {
                    bounded_u(key, u64::from(n))?;
                    if !crate::sim::render::frame_dim_ok(n as usize) {
                        return Err(invalid(key, format!("{n} (even, 16..=4096)")));
                    }
                }
                let layout =
                    crate::sim::render::PixelLayout::parse(&v.pixel_format).ok_or_else(|| {
                        invalid(
                            "capture.sim.pixel_format",
                            format!("{:?} (supported: BGR, YUYV, NV12)", v.pixel_format),
                        )
                    })?;
                let rotation_override = match v.rotation_deg {
                    None => None,
                    Some(d) => Some(Rotation::from_degrees(d).ok_or_else(|| {
                        invalid(
                            "capture.sim.rotation_deg",
                            format!("{d} (supported: 0, 180)"),
                        )
                    })?),
                };
                let expert = match v.policy.as_str() {
                    "model" => false,
                    "expert" => true,
                    other => {
                        return Err(invalid(
                            "capture.sim.policy",
                            format!("{other:?} (supported: \"model\", \"expert\")"),
                        ))
                    }
                };
                CaptureConfig::Sim(SimCaptureConfig {
                    expert,
                    scenario: v.scenario,
                    seed: v.seed,
                    catalogue,
                    fps: v.fps,
                    width: v.width as usize,
                    height: v.height as usize,
                    layout,
                    rotation_override,
                })
            }
            other => {
                return Err(invalid(
                    "capture.source",
                    format!("{other:?} (supported: \"replay\", \"v4l2\", \"sim\")"),
                ))
            }
        };

        let mode = match m.mode.as_str() {
            "direction_throttle" => crate::control::motor::DriveMode::DirectionThrottle,
            "velocity" => crate::control::motor::DriveMode::Velocity,
            other => {
                return Err(invalid(
                    "motor.mode",
                    format!("{other:?} (supported: \"direction_throttle\", \"velocity\")"),
                ))
            }
        };
        let link = match m.link.as_str() {
            "emulator" => LinkConfig::Emulator,
            "slcan" => {
                let sl = m.slcan.as_ref().ok_or_else(|| {
                    invalid(
                        "motor.slcan",
                        "link = \"slcan\" needs a [motor.slcan] table".into(),
                    )
                })?;
                let code = sl
                    .bitrate_code
                    .chars()
                    .next()
                    .filter(|c| ('0'..='8').contains(c) && sl.bitrate_code.len() == 1);
                let code = code.ok_or_else(|| {
                    invalid(
                        "motor.slcan.bitrate_code",
                        format!("{:?} (0..8; 6 = 500 kbit/s)", sl.bitrate_code),
                    )
                })?;
                LinkConfig::Slcan(crate::drive::slcan::SlcanConfig {
                    port: sl.port.clone(),
                    baud: sl.baud,
                    bitrate_code: code,
                    reply_timeout: Duration::from_millis(sl.reply_timeout_ms),
                })
            }
            other => {
                return Err(invalid(
                    "motor.link",
                    format!("{other:?} (supported: \"emulator\", \"slcan\")"),
                ))
            }
        };
        let calib = match &m.calib {
            None => crate::robot::calib::Calibration::serbot(),
            Some(p) => crate::robot::calib::Calibration::load(&resolve(p))
                .map_err(|e| file_err("motor.calib", Box::new(e)))?,
        };
        let motor = crate::control::motor::MotorConfig {
            loop_hz: m.loop_hz,
            max_action_age: Duration::from_millis(m.max_action_age_ms),
            mode,
            limits: crate::control::limits::MotionLimits {
                max_linear_m_s: m.max_linear_m_s,
                max_angular_rad_s: m.max_angular_rad_s,
                max_wheel_rad_s: m.max_wheel_rad_s,
                max_linear_accel_m_s2: m.max_linear_accel_m_s2,
                max_angular_accel_rad_s2: m.max_angular_accel_rad_s2,
                max_linear_jerk_m_s3: m.max_linear_jerk_m_s3,
            },
            stop_decel_m_s2: m.stop_decel_m_s2,
            velocity_scale_m_s: [m.velocity_scale_m_s; 2],
            throttle_pct: m.throttle_pct,
            deadzone: m.deadzone,
            offset_slew_per_s: m.offset_slew_per_s,
            crossfade: Duration::from_millis(m.crossfade_ms),
            chunk_by_age: m.chunk_by_age,
        };
        if let Some(r) = &raw.record {
            if r.dir.as_os_str().is_empty() {
                return Err(invalid("record.dir", "empty path".into()));
            }
            // The scenario becomes part of file names: a `/` would put the
            // episode elsewhere (or nowhere) without a word.
            if !crate::record::is_plain_name(&r.scenario, 128) {
                return Err(invalid(
                    "record.scenario",
                    format!("{:?} (1-128 characters of A-Z a-z 0-9 _ -)", r.scenario),
                ));
            }
        }
        // The simulated camera sits on the simulated base, which lives behind
        // the board emulator: a real adapter would drive a robot the camera
        // does not see.
        if matches!(capture, CaptureConfig::Sim(_)) && !matches!(link, LinkConfig::Emulator) {
            return Err(invalid(
                "motor.link",
                "capture.source = \"sim\" needs link = \"emulator\" (the simulated base is behind the emulated board)".into(),
            ));
        }
        Ok(Self {
            source: source.to_string(),
            digest: {
                use sha2::Digest;
                crate::hex::encode(&sha2::Sha256::digest(text.as_bytes()))
            },
            model_dir: resolve(&raw.model.dir),
            step_override: raw.model.step_ms.map(Duration::from_millis),
            capture,
            no_frame_timeout: Duration::from_millis(raw.inference.no_frame_timeout_ms),
            history_capacity: raw.inference.history_capacity,
            budget: Duration::from_millis(raw.inference.budget_ms),
            preprocess: match raw.inference.preprocess.as_str() {
                "cpu" => crate::preprocess::Backend::Cpu,
                "cuda" => crate::preprocess::Backend::Cuda,
                "auto" => crate::preprocess::Backend::Auto,
                other => {
                    return Err(invalid(
                        "inference.preprocess",
                        format!("{other:?} (supported: \"cpu\", \"cuda\", \"auto\")"),
                    ))
                }
            },
            ptx_cache_dir: raw.inference.ptx_cache_dir.as_deref().map(&resolve),
            backend: match raw.inference.backend.as_str() {
                "tract" => PolicyBackend::Tract,
                "tensorrt" => PolicyBackend::TensorRt,
                "auto" => PolicyBackend::Auto,
                other => {
                    return Err(invalid(
                        "inference.backend",
                        format!("{other:?} (supported: \"tract\", \"tensorrt\", \"auto\")"),
                    ))
                }
            },
            engine_dir: raw
                .inference
                .engine_dir
                .as_deref()
                .map(&resolve)
                .unwrap_or_else(|| {
                    crate::policy::engine::default_engine_dir(&resolve(&raw.model.dir))
                }),
            precision: crate::policy::engine::Precision::parse(&raw.inference.precision)
                .ok_or_else(|| {
                    invalid(
                        "inference.precision",
                        format!(
                            "{:?} (supported: \"fp16\", \"fp32\")",
                            raw.inference.precision
                        ),
                    )
                })?,
            motor,
            link,
            calib,
            realtime_priority: raw.motor.realtime_priority,
            link_realtime_priority,
            lock_memory: raw.motor.lock_memory,
            record: raw.record.map(|r| RecordConfig {
                dir: resolve(&r.dir),
                episode: r.episode,
                session_log: r.session_log,
                scenario: r.scenario,
            }),
        })
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = crate::textfile::read(path).map_err(|source| ConfigError::Io {
            path: shown.clone(),
            source,
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::from_toml(&text, &shown, &base)
    }

    pub fn builtin_default() -> Self {
        Self::from_toml(DEFAULT_CONFIG, "built-in default config", Path::new(""))
            .expect("the built-in default config is valid (tested)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_default_is_valid_and_hardware_free() {
        // The trained sim policy on the simulator, the model driving.
        let c = Config::builtin_default();
        match &c.capture {
            CaptureConfig::Sim(s) => {
                assert_eq!(s.scenario, "1box_hori_left_core_medium");
                assert!(!s.expert);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.model_dir, Path::new("models/mobile_vla_sim"));
        assert!(c.motor.chunk_by_age);
        assert!(c.record.is_none());
        assert_eq!(c.motor.loop_hz, 100);
        assert!(matches!(c.link, LinkConfig::Emulator));
    }

    #[test]
    fn shipped_robot_config_is_valid() {
        // The calib path is absolute on the robot; point it at the repo copy.
        let text = include_str!("../systemd/robot.toml")
            .replace("/etc/mvla/serbot.toml", "calib/serbot.toml");
        let c = Config::from_toml(&text, "systemd/robot.toml", Path::new("")).unwrap();
        assert!(matches!(c.link, LinkConfig::Slcan(_)));
        assert!(matches!(c.capture, CaptureConfig::V4l2 { .. }));
        assert_eq!(c.realtime_priority, 60);
        assert!(c.lock_memory);
        assert!(c.record.is_some());
        assert_eq!(c.backend, PolicyBackend::TensorRt);
        assert_eq!(c.engine_dir, Path::new("/var/lib/mvla/engines"));
        assert_eq!(c.precision, crate::policy::engine::Precision::Fp16);
    }

    #[test]
    fn engine_dir_defaults_to_the_model_directory() {
        let text = "[model]\ndir = \"m\"\n[capture]\nsource = \"replay\"\n[capture.replay]\nepisodes = [\"e\"]\n[inference]\nprecision = \"fp32\"\n";
        let c = Config::from_toml(text, "robot.toml", Path::new("/cfg")).unwrap();
        assert_eq!(c.backend, PolicyBackend::Tract);
        assert_eq!(c.engine_dir, Path::new("/cfg/m/engines"));
        assert_eq!(c.precision, crate::policy::engine::Precision::Fp32);
        let bad = text.replace("fp32", "int8");
        let err = Config::from_toml(&bad, "robot.toml", Path::new("/cfg"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("inference.precision"), "{err}");
    }

    #[test]
    fn unknown_keys_are_errors_with_line_and_key() {
        let text = "[model]\ndir = \"m\"\n[capture]\nsource = \"replay\"\nfoo_ms = 3\n";
        let err = crate::error::report(
            &Config::from_toml(text, "robot.toml", Path::new("")).unwrap_err(),
        );
        assert!(err.starts_with("robot.toml:"), "{err}");
        assert!(err.contains("foo_ms") && err.contains("line 5"), "{err}");
    }

    #[test]
    fn invalid_values_name_the_key() {
        let text = "[model]\ndir = \"m\"\n[capture]\nsource = \"v4l2\"\n[capture.v4l2]\ndevice = \"/dev/video0\"\nwidth = 1280\nheight = 720\nfps = 30\npixel_format = \"H264\"\n";
        let err = Config::from_toml(text, "robot.toml", Path::new(""))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("capture.v4l2.pixel_format") && err.contains("H264"),
            "{err}"
        );
        let text = "[model]\ndir = \"m\"\n[capture]\nsource = \"usb\"\n";
        let err = Config::from_toml(text, "robot.toml", Path::new(""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("capture.source"), "{err}");
    }

    #[test]
    fn relative_paths_resolve_against_the_config_folder() {
        let text = "[model]\ndir = \"models/m1\"\n[capture]\nsource = \"replay\"\n[capture.replay]\nepisodes = [\"eps\"]\ninterval_ms = 0\n";
        let c = Config::from_toml(text, "x", Path::new("/etc/mvla")).unwrap();
        assert_eq!(c.model_dir, PathBuf::from("/etc/mvla/models/m1"));
        match c.capture {
            CaptureConfig::Replay {
                episodes, pacing, ..
            } => {
                assert_eq!(episodes, vec![PathBuf::from("/etc/mvla/eps")]);
                assert_eq!(pacing, ReplayPacing::AsFastAsPossible);
            }
            _ => panic!(),
        }
    }

    #[test]
    fn record_settings_that_would_lose_the_episode_are_refused() {
        // Used to be accepted: a `/` in the scenario wrote no episode, an empty dir recorded nowhere.
        for (table, key) in [
            ("dir = \"\"\nscenario = \"x\"", "record.dir"),
            ("dir = \"rec\"\nscenario = \"a/b\"", "record.scenario"),
            ("dir = \"rec\"\nscenario = \"\"", "record.scenario"),
        ] {
            let text = format!(
                "[model]\ndir = \"m\"\n[capture]\nsource = \"replay\"\n[capture.replay]\nepisodes = [\"e\"]\n[record]\n{table}\n"
            );
            let e = Config::from_toml(&text, "t.toml", Path::new("")).unwrap_err();
            assert!(e.to_string().contains(key), "{e}");
        }
    }

    #[test]
    fn the_link_thread_priority_defaults_to_the_motor_threads_and_is_bounded() {
        let base = "[model]\ndir = \"m\"\n[capture]\nsource = \"replay\"\n[capture.replay]\nepisodes = [\"e\"]\n[motor]\n";
        let load =
            |extra: &str| Config::from_toml(&format!("{base}{extra}"), "t.toml", Path::new("/"));
        let c = load("realtime_priority = 60\n").unwrap();
        assert_eq!((c.realtime_priority, c.link_realtime_priority), (60, 60));
        let c = load("realtime_priority = 60\nlink_realtime_priority = 70\n").unwrap();
        assert_eq!((c.realtime_priority, c.link_realtime_priority), (60, 70));
        for bad in [
            "realtime_priority = 100\n",
            "link_realtime_priority = 255\n",
        ] {
            let e = load(bad).unwrap_err().to_string();
            assert!(e.contains("priority") && e.contains("0..=99"), "{e}");
        }
    }

    /// Every bounded key of the run config: its bounds pass, one step past
    /// either bound is refused naming the key (never clamped). Regression:
    /// `max_action_age_ms = 2^63`, `deadzone = 1e9` and
    /// `velocity_scale_m_s = 1e308` were accepted (that run moved).
    #[test]
    fn every_numeric_key_is_refused_outside_its_documented_range() {
        // The table a key lives in, with what that table needs besides it.
        fn config_with(key: &str, value: &str) -> String {
            let (table, leaf) = key.rsplit_once('.').unwrap();
            let model = "[model]\ndir = \"m\"\n";
            let replay = "[capture]\nsource = \"replay\"\n[capture.replay]\nepisodes = [\"e\"]\n";
            let v4l2 = "[capture]\nsource = \"v4l2\"\n[capture.v4l2]\ndevice = \"/dev/video0\"\nwidth = 640\nheight = 480\nfps = 30\npixel_format = \"YUYV\"\n";
            let sim = "[capture]\nsource = \"sim\"\n[capture.sim]\nscenario = \"1box_hori_left_core_medium\"\n";
            let set = |text: &str, header: &str| {
                // Put `leaf = value` right under its table header, replacing a default.
                let mut out = String::new();
                let mut in_table = false;
                for line in text.lines() {
                    if line.starts_with('[') {
                        if in_table {
                            in_table = false;
                        }
                        if line == header {
                            out.push_str(line);
                            out.push('\n');
                            out.push_str(&format!("{leaf} = {value}\n"));
                            in_table = true;
                            continue;
                        }
                    } else if in_table && line.split('=').next().unwrap().trim() == leaf {
                        continue;
                    }
                    out.push_str(line);
                    out.push('\n');
                }
                out
            };
            match table {
                "model" => set(&format!("{model}{replay}"), "[model]"),
                "capture.replay" => set(&format!("{model}{replay}"), "[capture.replay]"),
                "capture.v4l2" => set(&format!("{model}{v4l2}"), "[capture.v4l2]"),
                "capture.sim" => set(&format!("{model}{sim}"), "[capture.sim]"),
                "inference" => set(&format!("{model}{replay}[inference]\n"), "[inference]"),
                "motor" => set(&format!("{model}{replay}[motor]\n"), "[motor]"),
                "motor.slcan" => set(
                    &format!("{model}{replay}[motor]\nlink = \"slcan\"\n[motor.slcan]\nport = \"/dev/null\"\n"),
                    "[motor.slcan]",
                ),
                other => panic!("no base config for table {other}"),
            }
        }
        // Integer keys (TOML integers); the motor's physical limits are floats.
        let integer = |key: &str| {
            key != "capture.sim.fps"
                && (!key.starts_with("motor.")
                    || key.ends_with("_hz")
                    || key.ends_with("_ms")
                    || key.ends_with("_priority")
                    || key.starts_with("motor.slcan."))
        };
        let mut checked = 0;
        for r in crate::bounds::RANGES
            .iter()
            .filter(|r| !r.key.contains(':'))
        // model.json: and plan: keys are tested where they are read
        {
            let int = integer(r.key);
            let show = |v: f64| {
                if int {
                    format!("{}", v as u64)
                } else {
                    format!("{v:?}")
                }
            };
            let step = if int { 1.0 } else { r.hi.abs().max(1.0) * 1e-6 };
            // Width/height keys also need even values: test with even ones.
            let even = r.key.ends_with("width") || r.key.ends_with("height");
            let (lo, hi) = (r.lo, r.hi);
            for ok in [lo, hi] {
                let text = config_with(r.key, &show(ok));
                if let Err(e) = Config::from_toml(&text, "t.toml", Path::new("/")) {
                    let e = crate::error::report(&e);
                    // Only the key's own range may be what is wrong.
                    assert!(
                        !e.contains(r.key),
                        "{} = {} refused: {e}\n{text}",
                        r.key,
                        show(ok)
                    );
                }
            }
            let mut outside = vec![hi + if even { 2.0 } else { step }];
            if lo - step >= 0.0 || !int {
                outside.push(lo - if even && lo >= 2.0 { 2.0 } else { step });
            }
            if !int {
                outside.push(1e308);
            }
            for bad in outside {
                if int && bad < 0.0 {
                    continue;
                }
                let text = config_with(r.key, &show(bad));
                let e = Config::from_toml(&text, "t.toml", Path::new("/"))
                    .map(|_| ())
                    .unwrap_err();
                let e = crate::error::report(&e);
                assert!(e.contains(r.key), "{} = {}: {e}\n{text}", r.key, show(bad));
                checked += 1;
            }
        }
        assert!(checked > 50, "{checked}");
    }
}
