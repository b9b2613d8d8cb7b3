//! The trained policy: backbone (one frame → feature) and head (window of
//! features → action chunk), the history window at training-step spacing, and
//! the checks and scaling applied to every output.
//!
//! Backends: [`tract`] (CPU, ONNX; always built) and [`tensorrt`] (GPU
//! engines; the real one with `--features tensorrt`, a stand-in that says so
//! otherwise). [`engine`] holds the engine naming and parity-gate rules,
//! built everywhere.

pub mod engine;
pub mod history;
pub mod meta;
pub mod tract;

#[cfg(feature = "tensorrt")]
pub mod tensorrt;
#[cfg(not(feature = "tensorrt"))]
#[path = "tensorrt_disabled.rs"]
pub mod tensorrt;

use std::time::Duration;

pub use history::History;
pub use meta::{MetaError, ModelMeta};

use crate::clock::Timestamp;
use crate::fault::FaultKind;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("{path}: cannot load {what}")]
    Load {
        path: String,
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{stage} failed")]
    Backend {
        stage: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{what}: got {actual} values, expected {expected}")]
    Shape {
        what: &'static str,
        expected: usize,
        actual: usize,
    },
    #[error("head output step {step} dim {dim} is not finite ({value})")]
    NonFinite { step: usize, dim: usize, value: f32 },
    #[error("head output step {step} dim {dim} = {value} is outside the tanh range [-1, 1]")]
    OutOfRange { step: usize, dim: usize, value: f32 },
    #[error("feature {index} is not finite ({value})")]
    NonFiniteFeature { index: usize, value: f32 },
}

impl PolicyError {
    /// The failsafe condition this error is.
    pub fn fault(&self) -> FaultKind {
        match self {
            Self::NonFinite { .. } | Self::NonFiniteFeature { .. } => FaultKind::NonFiniteOutput,
            Self::OutOfRange { .. } => FaultKind::OutOfRangeOutput,
            _ => FaultKind::InferenceError,
        }
    }
}

/// A policy backend: the two exported graphs.
pub trait Policy {
    fn meta(&self) -> &ModelMeta;
    /// Backbone: one preprocessed frame (`3·H·W` CHW floats) → feature (`feature_dim` floats).
    fn encode(&mut self, pixels: &[f32], feature: &mut [f32]) -> Result<(), PolicyError>;
    /// Head: `steps` features, oldest first, contiguous (`steps · feature_dim`)
    /// → raw chunk (`chunk · action_dim`, tanh range). `1 ≤ steps ≤ window`.
    fn decode(
        &mut self,
        features: &[f32],
        steps: usize,
        chunk: &mut [f32],
    ) -> Result<(), PolicyError>;
}

/// What every backend's `encode` checks first: one model-sized frame.
pub fn check_pixels(meta: &ModelMeta, pixels: &[f32]) -> Result<(), PolicyError> {
    if pixels.len() != meta.pixel_count() {
        return Err(PolicyError::Shape {
            what: "backbone input pixels",
            expected: meta.pixel_count(),
            actual: pixels.len(),
        });
    }
    Ok(())
}

/// `1 ≤ steps ≤ window`.
pub fn check_window_len(meta: &ModelMeta, steps: usize) -> Result<(), PolicyError> {
    if steps == 0 || steps > meta.raw.window {
        return Err(PolicyError::Shape {
            what: "head window length",
            expected: meta.raw.window,
            actual: steps,
        });
    }
    Ok(())
}

/// What every backend's `decode` checks first: a valid window length and
/// `steps · feature_dim` features.
pub fn check_head_input(
    meta: &ModelMeta,
    features: &[f32],
    steps: usize,
) -> Result<(), PolicyError> {
    check_window_len(meta, steps)?;
    if features.len() != steps * meta.feature_dim() {
        return Err(PolicyError::Shape {
            what: "head input features",
            expected: steps * meta.feature_dim(),
            actual: features.len(),
        });
    }
    Ok(())
}

/// Reject non-finite or out-of-tanh-range outputs: a wrong graph or a
/// numerical fault must never become a wheel command.
pub fn check_raw_chunk(raw: &[f32], action_dim: usize) -> Result<(), PolicyError> {
    // tanh cannot leave [-1, 1]; allow float rounding only.
    const TANH_SLACK: f32 = 1e-5;
    for (i, &v) in raw.iter().enumerate() {
        let (step, dim) = (i / action_dim, i % action_dim);
        if !v.is_finite() {
            return Err(PolicyError::NonFinite {
                step,
                dim,
                value: v,
            });
        }
        if v.abs() > 1.0 + TANH_SLACK {
            return Err(PolicyError::OutOfRange {
                step,
                dim,
                value: v,
            });
        }
    }
    Ok(())
}

/// `clip(scale · raw, ±clip)`: the research server's mapping from the tanh
/// output to the action labels' units (UPSTREAM §3: ×1.15, clip ±1.5).
pub fn scale_chunk(raw: &[f32], scale: f32, clip: f32, out: &mut [f32]) {
    for (o, &r) in out.iter_mut().zip(raw) {
        *o = (r * scale).clamp(-clip, clip);
    }
}

/// The output of one policy step, borrowed from the runner's buffers.
#[derive(Debug, Clone, Copy)]
pub struct StepOutput<'a> {
    /// Head output, tanh range, `chunk × action_dim` row-major.
    pub raw: &'a [f32],
    /// Scaled and clipped commands, same layout (zero when `forced_zero`).
    pub actions: &'a [f32],
    /// History steps the head saw (≤ window).
    pub steps: usize,
    /// First call after a reset with `zero_first_step_after_reset`.
    pub forced_zero: bool,
}

/// The head's raw chunk and what the runtime makes of it: the range checks,
/// the scaling and the forced-zero first step after a reset. Shared by the
/// host runner ([`PolicyRunner`]) and the GPU chain (`tensorrt::GpuChain`),
/// so both apply exactly the same rules. Allocates only in `new`.
#[derive(Debug, Clone)]
pub struct ChunkOutput {
    raw: Vec<f32>,
    actions: Vec<f32>,
    calls_since_reset: u64,
}

impl ChunkOutput {
    pub fn new(meta: &ModelMeta) -> Self {
        let n = meta.raw.chunk * meta.raw.action_dim;
        Self {
            raw: vec![0.0; n],
            actions: vec![0.0; n],
            calls_since_reset: 0,
        }
    }

    /// The next call is the first after a reset.
    pub fn reset(&mut self) {
        self.calls_since_reset = 0;
    }

    /// Where the backend writes the head's output (`chunk × action_dim`).
    pub fn raw_mut(&mut self) -> &mut [f32] {
        &mut self.raw
    }

    /// Check and scale the raw chunk just written; `steps`: history steps the head saw.
    pub fn finish(
        &mut self,
        meta: &ModelMeta,
        steps: usize,
    ) -> Result<StepOutput<'_>, PolicyError> {
        check_raw_chunk(&self.raw, meta.raw.action_dim)?;
        let forced_zero = meta.raw.zero_first_step_after_reset && self.calls_since_reset == 0;
        if forced_zero {
            self.actions.fill(0.0);
        } else {
            scale_chunk(
                &self.raw,
                meta.raw.action_scale,
                meta.raw.action_clip,
                &mut self.actions,
            );
        }
        self.calls_since_reset += 1;
        Ok(StepOutput {
            raw: &self.raw,
            actions: &self.actions,
            steps,
            forced_zero,
        })
    }
}

/// Runs a [`Policy`] step by step with the training-time history semantics.
/// Allocates only in `new`.
pub struct PolicyRunner<P: Policy> {
    policy: P,
    history: History,
    feature: Vec<f32>,
    output: ChunkOutput,
}

impl<P: Policy> PolicyRunner<P> {
    /// `history_capacity`: features kept for picking one-step-spaced slots;
    /// at least `window`; more when frames arrive faster than one per step
    /// (e.g. `window · step / frame_interval`).
    pub fn new(policy: P, history_capacity: usize) -> Self {
        let meta = policy.meta();
        let (dim, window) = (meta.feature_dim(), meta.raw.window);
        let step = meta.history_step();
        Self {
            history: History::new(dim, window, step, history_capacity.max(window)),
            feature: vec![0.0; dim],
            output: ChunkOutput::new(meta),
            policy,
        }
    }

    pub fn meta(&self) -> &ModelMeta {
        self.policy.meta()
    }

    pub fn policy_mut(&mut self) -> &mut P {
        &mut self.policy
    }

    pub fn step_length(&self) -> Duration {
        self.policy.meta().step()
    }

    /// Forget the history (new episode, or after a fault).
    pub fn reset(&mut self) {
        self.history.clear();
        self.output.reset();
    }

    /// One frame captured at `t`, already preprocessed: encode it, add it to
    /// the history, run the head over the one-step-spaced window ending at it.
    pub fn step(&mut self, t: Timestamp, pixels: &[f32]) -> Result<StepOutput<'_>, PolicyError> {
        self.policy.encode(pixels, &mut self.feature)?;
        if let Some((index, &value)) = self
            .feature
            .iter()
            .enumerate()
            .find(|(_, v)| !v.is_finite())
        {
            return Err(PolicyError::NonFiniteFeature { index, value });
        }
        self.history.push(t, &self.feature);
        let (features, steps) = self.history.window();
        self.policy.decode(features, steps, self.output.raw_mut())?;
        self.output.finish(self.policy.meta(), steps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_and_out_of_range_outputs_are_errors() {
        assert!(check_raw_chunk(&[0.5, -1.0, 1.0, 0.0], 2).is_ok());
        match check_raw_chunk(&[0.0, 0.1, f32::NAN, 0.0], 2) {
            Err(PolicyError::NonFinite {
                step: 1, dim: 0, ..
            }) => {}
            other => panic!("{other:?}"),
        }
        match check_raw_chunk(&[0.0, -4.7], 2) {
            Err(PolicyError::OutOfRange {
                step: 0,
                dim: 1,
                value,
            }) => assert_eq!(value, -4.7),
            other => panic!("{other:?}"),
        }
        assert!(check_raw_chunk(&[f32::INFINITY], 1).is_err());
    }

    #[test]
    fn scaling_matches_the_research_server() {
        let mut out = [0.0; 4];
        scale_chunk(&[1.0, -1.0, 0.5, 0.0], 1.15, 1.5, &mut out);
        assert_eq!(out, [1.15, -1.15, 0.575, 0.0]);
        scale_chunk(&[1.0, -1.0, 0.5, 0.0], 2.0, 1.5, &mut out);
        assert_eq!(out, [1.5, -1.5, 1.0, 0.0]);
    }
}
