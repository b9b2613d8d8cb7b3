//! Offline evaluation on recorded episodes through the runtime's own path
//! (episode reader → CPU preprocessing → policy runner), the seeds'
//! "velocity validation" check.
//!
//! Each episode is fed frame by frame as consecutive training steps (frame i
//! at `i · step`), after a reset. Chunk step j predicted at frame i is
//! compared with the recorded `actions[i + j, :2]` clamped to [−1, 1] (the
//! training labels' range) when that row exists. Metrics use the head's raw
//! tanh output, the space the labels live in; the runtime's scaling and its
//! forced-zero first step are not applied here.

use serde::Serialize;

use crate::clock::Timestamp;
use crate::policy::{Policy, PolicyError, PolicyRunner};
use crate::preprocess::{CpuPreprocessor, FrameRef, PreprocessError, Preprocessor};
use crate::record::{Episode, EpisodeError};

/// Threshold for the direction classes (UPSTREAM / seeds: 0.3).
pub const DIRECTION_THRESHOLD: f32 = 0.3;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Episode(#[from] EpisodeError),
    #[error("{path}: frame {index}")]
    Preprocess {
        path: String,
        index: usize,
        source: PreprocessError,
    },
    #[error("{path}: frame {index}")]
    Policy {
        path: String,
        index: usize,
        source: PolicyError,
    },
}

/// One of 9 classes: sign of x and of y, each −1 / 0 / +1 with a dead band.
pub fn direction_class(x: f32, y: f32) -> (i8, i8) {
    let q = |v: f32| {
        if v > DIRECTION_THRESHOLD {
            1
        } else if v < -DIRECTION_THRESHOLD {
            -1
        } else {
            0
        }
    };
    (q(x), q(y))
}

/// Running squared-error sums over (x, y) pairs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ErrorSums {
    pub count: u64,
    pub sq_x: f64,
    pub sq_y: f64,
    pub direction_agree: u64,
}

impl ErrorSums {
    pub fn add(&mut self, pred: [f32; 2], truth: [f32; 2]) {
        let dx = f64::from(pred[0] - truth[0]);
        let dy = f64::from(pred[1] - truth[1]);
        self.count += 1;
        self.sq_x += dx * dx;
        self.sq_y += dy * dy;
        if direction_class(pred[0], pred[1]) == direction_class(truth[0], truth[1]) {
            self.direction_agree += 1;
        }
    }

    pub fn merge(&mut self, other: &ErrorSums) {
        self.count += other.count;
        self.sq_x += other.sq_x;
        self.sq_y += other.sq_y;
        self.direction_agree += other.direction_agree;
    }

    pub fn metrics(&self) -> Metrics {
        let n = self.count as f64;
        if self.count == 0 {
            return Metrics::default();
        }
        Metrics {
            count: self.count,
            rmse_x: (self.sq_x / n).sqrt(),
            rmse_y: (self.sq_y / n).sqrt(),
            // Over both components: sqrt(mean over 2n squared errors).
            rmse_all: ((self.sq_x + self.sq_y) / (2.0 * n)).sqrt(),
            direction_agreement: self.direction_agree as f64 / n,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Metrics {
    pub count: u64,
    pub rmse_x: f64,
    pub rmse_y: f64,
    pub rmse_all: f64,
    pub direction_agreement: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EpisodeReport {
    pub name: String,
    pub path: String,
    pub frames: usize,
    pub steps_evaluated: usize,
    /// Chunk step 0 vs the action recorded with the same frame.
    pub first: ErrorSums,
    /// Every chunk step that has a recorded action.
    pub chunk: ErrorSums,
    /// Raw head output per frame (`chunk × 2`), for golden tests and plots.
    #[serde(skip)]
    pub predictions: Vec<Vec<f32>>,
}

/// Pooled over every evaluated episode (the summary's OVERALL row).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct EvalTotals {
    pub first: ErrorSums,
    pub chunk: ErrorSums,
    pub steps_evaluated: usize,
}

impl EvalTotals {
    pub fn of(episodes: &[EpisodeReport]) -> Self {
        let mut totals = Self::default();
        for r in episodes {
            totals.first.merge(&r.first);
            totals.chunk.merge(&r.chunk);
            totals.steps_evaluated += r.steps_evaluated;
        }
        totals
    }
}

/// Evaluate one episode. The runner is reset first.
pub fn evaluate_episode<P: Policy>(
    runner: &mut PolicyRunner<P>,
    pre: &mut CpuPreprocessor,
    episode: &Episode,
    mut on_step: impl FnMut(),
) -> Result<EpisodeReport, EvalError> {
    let path = episode.path.display().to_string();
    let step = runner.step_length();
    let (chunk_len, action_dim) = (runner.meta().raw.chunk, runner.meta().raw.action_dim);
    let mut pixels = vec![0f32; pre.spec().output_len()];
    let mut frame = Vec::with_capacity(episode.frame_len());
    let mut report = EpisodeReport {
        name: episode.name(),
        path: path.clone(),
        frames: episode.frames,
        ..Default::default()
    };
    runner.reset();
    let clamp = |v: f32| v.clamp(-1.0, 1.0);
    for i in 0..episode.frames {
        episode.read_frame(i, &mut frame)?;
        let view = FrameRef {
            width: episode.width,
            height: episode.height,
            order: episode.channel_order,
            data: &frame,
        };
        pre.run(view, &mut pixels)
            .map_err(|source| EvalError::Preprocess {
                path: path.clone(),
                index: i,
                source,
            })?;
        let t = Timestamp::from_duration(step * i as u32);
        let out = runner
            .step(t, &pixels)
            .map_err(|source| EvalError::Policy {
                path: path.clone(),
                index: i,
                source,
            })?;
        for j in 0..chunk_len {
            let Some(truth) = episode.actions.get(i + j) else {
                break;
            };
            let pred = [out.raw[j * action_dim], out.raw[j * action_dim + 1]];
            let truth = [clamp(truth[0]), clamp(truth[1])];
            report.chunk.add(pred, truth);
            if j == 0 {
                report.first.add(pred, truth);
            }
        }
        report.predictions.push(out.raw.to_vec());
        report.steps_evaluated += 1;
        on_step();
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direction_classes_use_the_dead_band() {
        assert_eq!(direction_class(1.15, 0.0), (1, 0));
        assert_eq!(direction_class(0.3, -0.31), (0, -1));
        assert_eq!(direction_class(-1.0, 1.0), (-1, 1));
    }

    #[test]
    fn rmse_pools_components() {
        let mut s = ErrorSums::default();
        s.add([1.0, 0.0], [0.0, 0.0]); // dx 1
        s.add([0.0, 0.0], [0.0, 0.0]);
        let m = s.metrics();
        assert_eq!(m.count, 2);
        assert!((m.rmse_x - (0.5f64).sqrt()).abs() < 1e-12);
        assert_eq!(m.rmse_y, 0.0);
        assert!((m.rmse_all - 0.5).abs() < 1e-12);
        assert_eq!(m.direction_agreement, 0.5);
    }

    #[test]
    fn totals_pool_the_episodes_sums() {
        let mut a = EpisodeReport {
            steps_evaluated: 2,
            ..Default::default()
        };
        a.first.add([1.0, 0.0], [0.0, 0.0]);
        a.chunk.add([1.0, 0.0], [0.0, 0.0]);
        let mut b = EpisodeReport {
            steps_evaluated: 3,
            ..Default::default()
        };
        b.first.add([0.0, 0.0], [0.0, 0.0]);
        b.chunk.add([0.0, 0.0], [0.0, 0.0]);
        b.chunk.add([0.0, 1.0], [0.0, 0.0]);
        let t = EvalTotals::of(&[a.clone(), b.clone()]);
        assert_eq!(t.steps_evaluated, 5);
        let mut first = a.first;
        first.merge(&b.first);
        assert_eq!(t.first, first);
        assert_eq!(t.chunk.count, 3);
        assert_eq!(EvalTotals::of(&[]), EvalTotals::default());
    }
}
