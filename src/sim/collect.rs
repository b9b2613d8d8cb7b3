//! `mvla sim collect`: expert demonstrations in the training format.
//!
//! Each episode is one lock-step trial driven by the expert operator through
//! the runtime's motor path, recorded the way the team's collector records
//! (UPSTREAM §1): row 0 `episode_start` with a zero action, then one row per
//! key press with the frame taken just after the move started and the key's
//! action (±1.15 components, `start_action`), `stop_action` rows (zero) once
//! the expert is at the goal; frames stored upright BGR, as the capture
//! pipeline delivered them; the training file layout and naming through the
//! same [`EpisodeWriter`] the recorder uses. An episode whose expert failed is
//! deleted and counted, never kept as a demonstration.

use std::path::PathBuf;

use crate::control::motor::MotorConfig;
use crate::frame::ChannelOrder;
use crate::record::writer::{utc_stamp, EpisodeHeader, EpisodeWriter, WriteError};
use crate::robot::calib::Calibration;

use super::lockstep::{run_trial, DemoSink, Driver, Latency, LockstepSettings};
use super::render::{frame_dim_ok, PixelLayout};
use super::world::{Catalogue, ScenarioError};

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("{0}")]
    Invalid(String),
    #[error("output folder {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Policy(#[from] super::trials::TrialsError),
}

#[derive(Debug, Clone)]
pub struct CollectOptions {
    pub catalogue: Catalogue,
    pub scenario_glob: String,
    pub episodes: usize,
    pub out: PathBuf,
    pub seed: u64,
    /// Rows per episode (1 episode_start + key presses).
    pub frames: usize,
    pub width: usize,
    pub height: usize,
    pub motor: MotorConfig,
    pub calib: Calibration,
    /// Probability of executing a random key instead of the expert's (the label stays the expert's).
    pub perturb: f64,
    /// DAgger: this config's model drives, the expert labels (and takes over below the gate).
    pub dagger: Option<DaggerOptions>,
}

/// Human-gated DAgger collection ([`Driver::Dagger`]): the policy of
/// `config` drives in lock-step at the trials' defaults (camera 10 fps,
/// inference latency 60 ms); the expert labels every row and drives while
/// the clearance is under `gate_m`.
#[derive(Debug, Clone)]
pub struct DaggerOptions {
    pub config: crate::config::Config,
    pub gate_m: f64,
}

/// Fewest rows a DAgger episode keeps: one training window (8) plus a chunk (5).
pub const DAGGER_MIN_ROWS: usize = 13;

#[derive(Debug, Clone)]
pub struct CollectedEpisode {
    pub path: PathBuf,
    pub scenario: String,
    pub seed: u64,
    pub rows: usize,
    pub kept: bool,
    /// The judge's verdict on the expert's run, one line.
    pub verdict: String,
    /// DAgger: how much of the episode the expert drove.
    pub dagger: Option<super::lockstep::DaggerShare>,
}

#[derive(Debug, Clone, Default)]
pub struct CollectSummary {
    pub written: usize,
    pub discarded: usize,
    pub episodes: Vec<CollectedEpisode>,
}

/// Synthetic collection times: 2026-01-01T00:00:00Z plus one minute per
/// episode, so names are unique, sortable and the same for the same arguments.
const COLLECTION_EPOCH_S: u64 = 1_767_225_600;
/// Names stay four-digit years (before 9999-01-01).
const MAX_COLLECTION_S: u64 = 253_370_764_800;

struct WriterSink<'a> {
    writer: &'a mut EpisodeWriter,
}

impl DemoSink for WriterSink<'_> {
    fn row(
        &mut self,
        upright_bgr: &[u8],
        _width: usize,
        _height: usize,
        action: [f32; 3],
        event: &str,
        t_s: f64,
    ) -> Result<(), String> {
        self.writer
            .append(upright_bgr, action, event, t_s)
            .map_err(|e| crate::error::report(&e))
    }
}

pub fn collect(
    o: &CollectOptions,
    mut each: impl FnMut(&CollectedEpisode),
) -> Result<CollectSummary, CollectError> {
    if o.episodes == 0 {
        return Err(CollectError::Invalid(
            "--episodes must be at least 1".into(),
        ));
    }
    if !(2..=1000).contains(&o.frames) {
        return Err(CollectError::Invalid(format!(
            "--frames {} (2..=1000)",
            o.frames
        )));
    }
    if !(frame_dim_ok(o.width) && frame_dim_ok(o.height)) {
        return Err(CollectError::Invalid(format!(
            "--width/--height {}x{} (even, 16..=4096)",
            o.width, o.height
        )));
    }
    if !(o.perturb.is_finite() && (0.0..=1.0).contains(&o.perturb)) {
        return Err(CollectError::Invalid(format!(
            "--perturb {} (0..=1)",
            o.perturb
        )));
    }
    if let Some(d) = &o.dagger {
        if !(d.gate_m.is_finite() && (0.0..=1.0).contains(&d.gate_m)) {
            return Err(CollectError::Invalid(format!(
                "--dagger-gate-m {} (0..=1)",
                d.gate_m
            )));
        }
        if o.frames < DAGGER_MIN_ROWS {
            return Err(CollectError::Invalid(format!(
                "--frames {}: a DAgger episode needs at least {DAGGER_MIN_ROWS} rows",
                o.frames
            )));
        }
    }
    let names = o.catalogue.matching(&o.scenario_glob)?;
    let mut stage = match &o.dagger {
        Some(d) => Some(super::trials::policy_stage(&d.config, None, None, None)?),
        None => None,
    };
    std::fs::create_dir_all(&o.out).map_err(|source| CollectError::Io {
        path: o.out.display().to_string(),
        source,
    })?;
    let dagger = o.dagger.is_some();
    let settings = LockstepSettings {
        motor: match &o.dagger {
            Some(d) => d.config.motor,
            None => o.motor,
        },
        calib: match &o.dagger {
            Some(d) => d.config.calib.clone(),
            None => o.calib.clone(),
        },
        camera_fps: if dagger { 10.0 } else { 30.0 },
        width: o.width,
        height: o.height,
        layout: PixelLayout::Bgr,
        latency: Latency::Fixed(std::time::Duration::from_millis(if dagger {
            60
        } else {
            0
        })),
        keep_frames_width: None,
        two_core_render: true,
        expert_perturb: o.perturb,
    };
    let mut summary = CollectSummary::default();
    let mut counter = 0u64;
    for name in &names {
        for i in 0..o.episodes {
            let seed = o.seed.wrapping_add(i as u64);
            let world = o.catalogue.world(name, seed)?;
            // Checked: a seed far out would wrap (or overflow SystemTime).
            let when = o
                .seed
                .checked_add(counter)
                .and_then(|m| m.checked_mul(60))
                .and_then(|s| s.checked_add(COLLECTION_EPOCH_S))
                .filter(|&s| s < MAX_COLLECTION_S)
                .map(|s| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s))
                .ok_or_else(|| {
                    CollectError::Invalid(format!(
                        "--seed {}: too large for the synthetic collection time (at most {})",
                        o.seed,
                        (MAX_COLLECTION_S - COLLECTION_EPOCH_S) / 60 - counter - 1
                    ))
                })?;
            counter += 1;
            let (iso, stamp, hour, minute) = utc_stamp(when);
            let episode_name = format!("episode_{stamp}_{name}");
            let path = o.out.join(format!("{episode_name}.h5"));
            // Written under a temporary name, renamed when complete: a killed
            // collection never leaves a short episode that looks whole.
            let partial = o.out.join(format!("{episode_name}.h5.partial"));
            if path.exists() {
                return Err(CollectError::Io {
                    path: path.display().to_string(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        "exists (episodes are never overwritten)",
                    ),
                });
            }
            let header = EpisodeHeader {
                episode_name: episode_name.clone(),
                instruction: world.instruction.clone(),
                // The team's collector wrote 8 here (UPSTREAM §1).
                action_chunk_size: 8,
                time_period: Some(world.time_period.clone()),
                scenario: name.clone(),
                collection_datetime: iso,
                collection_hour: hour,
                collection_minute: minute,
                model_id: match &stage {
                    Some((_, id)) => format!("sim_dagger {id} seed {seed}"),
                    None => format!("sim_expert seed {seed}"),
                },
            };
            let mut writer =
                EpisodeWriter::create(&partial, o.width, o.height, ChannelOrder::Bgr, &header)?;
            let record = {
                let mut sink = WriterSink {
                    writer: &mut writer,
                };
                match (stage.as_mut(), &o.dagger) {
                    (Some((stage, id)), Some(d)) => run_trial(
                        &world,
                        seed,
                        Driver::Dagger {
                            stage,
                            sink: &mut sink,
                            rows: o.frames,
                            gate_m: d.gate_m,
                        },
                        id,
                        &settings,
                    ),
                    _ => run_trial(
                        &world,
                        seed,
                        Driver::Demonstration {
                            sink: &mut sink,
                            rows: o.frames,
                        },
                        "expert",
                        &settings,
                    ),
                }
            };
            let rows = writer.rows();
            drop(writer);
            if let Some(e) = &record.error {
                let _ = std::fs::remove_file(&partial);
                return Err(CollectError::Io {
                    path: partial.display().to_string(),
                    source: std::io::Error::other(e.clone()),
                });
            }
            // Kept unless the expert failed (collision, drift, wrong side, stop):
            // a demonstration that ran out of rows short of the goal is kept and said so.
            use super::judge::FailureCode;
            // DAgger keeps the policy's failures (their labels are the point),
            // except a collision the expert did not prevent, if they hold a window.
            let kept = if dagger {
                rows >= DAGGER_MIN_ROWS && record.failure_code != Some(FailureCode::Collision)
            } else {
                rows == o.frames
            } && (dagger
                || !matches!(
                    record.failure_code,
                    Some(
                        FailureCode::Collision
                            | FailureCode::Drift
                            | FailureCode::WrongDir
                            | FailureCode::EarlyStop
                    )
                ));
            if !kept {
                let _ = std::fs::remove_file(&partial);
                summary.discarded += 1;
            } else {
                super::publish_new(&partial, &path).map_err(|source| CollectError::Io {
                    path: path.display().to_string(),
                    source,
                })?;
                summary.written += 1;
            }
            let verdict = match record.failure_code {
                None => format!("reached the goal ({})", record.reason),
                Some(c) => format!("{c}: {}", record.reason),
            };
            let e = CollectedEpisode {
                path,
                scenario: name.clone(),
                seed,
                rows,
                kept,
                verdict,
                dagger: record.dagger,
            };
            each(&e);
            summary.episodes.push(e);
        }
    }
    Ok(summary)
}
