//! Measured figures (never asserted in tests): per-step latency of the CPU
//! path and memory. Used by `mvla bench` and `benches/`.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::capture::Frame;
use crate::clock::Timestamp;
use crate::pipeline::FrameStep;
use crate::policy::tract::TractPolicy;
use crate::policy::{Policy, PolicyError, PolicyRunner};
use crate::preprocess::{
    ChannelOrder, CpuPreprocessor, FrameRef, InputFormat, Preprocessor, Rotation,
};

/// Summary of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Summary {
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Summary {
    pub fn of(samples: &[Duration]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        Self {
            samples: ms.len(),
            p50_ms: crate::telemetry::percentile_of_sorted(&ms, 0.5),
            p99_ms: crate::telemetry::percentile_of_sorted(&ms, 0.99),
            max_ms: ms[ms.len() - 1],
            mean_ms: ms.iter().sum::<f64>() / ms.len() as f64,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PolicyBench {
    pub model_id: String,
    pub backbone_parameters: u64,
    pub frame: String,
    pub load_s: f64,
    pub preprocess: Summary,
    pub backbone: Summary,
    pub head_full_window: Summary,
    pub step_total: Summary,
    /// Peak resident memory of this process (VmHWM), MiB.
    pub peak_rss_mib: f64,
}

/// Peak resident set size of this process in bytes, from /proc (Linux).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A deterministic textured camera frame in `format` for the benchmarks
/// (content does not change the cost).
pub fn synthetic_frame(format: InputFormat, width: usize, height: usize) -> Vec<u8> {
    (0..format.frame_len(width, height))
        .map(|i| ((i * 2_654_435_761) >> 13) as u8)
        .collect()
}

/// Load the model, then run `steps` full policy steps (preprocess a 1280×720
/// frame, backbone, head over the growing window) after `warmup` unmeasured ones.
pub fn bench_policy(model: &Path, steps: usize, warmup: usize) -> Result<PolicyBench, PolicyError> {
    let t_load = Instant::now();
    let policy = TractPolicy::load(model)?;
    let load_s = t_load.elapsed().as_secs_f64();
    let meta = policy.meta().clone();
    let window = meta.raw.window;
    let step = meta.step();
    let mut runner = PolicyRunner::new(policy, window);
    let spec = meta.preprocess_spec(Rotation::Rotate180);
    let mut pre = CpuPreprocessor::new(spec);
    let (w, h) = (1280usize, 720usize);
    let frame = synthetic_frame(InputFormat::Packed3, w, h);
    let mut pixels = vec![0f32; spec.output_len()];
    let (mut t_pre, mut t_backbone, mut t_head, mut t_total) = (vec![], vec![], vec![], vec![]);
    let mut feature = vec![0f32; meta.feature_dim()];
    let window_features = vec![0.01f32; window * meta.feature_dim()];
    let mut chunk = vec![0f32; meta.raw.chunk * meta.raw.action_dim];
    for i in 0..warmup + steps {
        let measured = i >= warmup;
        let t0 = Instant::now();
        pre.run(
            FrameRef {
                width: w,
                height: h,
                order: ChannelOrder::Bgr,
                data: &frame,
            },
            &mut pixels,
        )
        .expect("frame matches its own size");
        let t1 = Instant::now();
        runner.step(Timestamp::from_duration(step * i as u32), &pixels)?;
        let t2 = Instant::now();
        if measured {
            t_pre.push(t1 - t0);
            t_total.push(t2 - t0);
        }
        // The two graphs separately, for the breakdown.
        let t3 = Instant::now();
        runner.policy_mut().encode(&pixels, &mut feature)?;
        let t4 = Instant::now();
        runner
            .policy_mut()
            .decode(&window_features, window, &mut chunk)?;
        let t5 = Instant::now();
        if measured {
            t_backbone.push(t4 - t3);
            t_head.push(t5 - t4);
        }
    }
    Ok(PolicyBench {
        model_id: meta.model_id.clone(),
        backbone_parameters: meta.raw.backbone.parameters,
        frame: format!("{w}x{h} BGR u8, rotation 180"),
        load_s,
        preprocess: Summary::of(&t_pre),
        backbone: Summary::of(&t_backbone),
        head_full_window: Summary::of(&t_head),
        step_total: Summary::of(&t_total),
        peak_rss_mib: peak_rss_bytes().unwrap_or(0) as f64 / (1024.0 * 1024.0),
    })
}

/// Per-frame timings of a whole inference chain ([`FrameStep`]): the same
/// calls `mvla run` makes, on a synthetic 1280×720 camera frame in `format`,
/// frames one model step apart.
#[derive(Debug, Clone, Serialize)]
pub struct ChainBench {
    pub frame: String,
    /// `FrameStep::preprocess` (for the GPU chain: upload + enqueue only).
    pub preprocess: Summary,
    /// `FrameStep::infer` (for the GPU chain: until the chunk is on the host).
    pub infer: Summary,
    pub step_total: Summary,
    pub peak_rss_mib: f64,
}

pub fn bench_chain(
    chain: &mut dyn FrameStep,
    format: InputFormat,
    steps: usize,
    warmup: usize,
) -> Result<ChainBench, String> {
    let (w, h) = (1280usize, 720usize);
    let mut frame = Frame {
        width: w,
        height: h,
        order: ChannelOrder::Bgr,
        format,
        data: synthetic_frame(format, w, h),
        ..Frame::default()
    };
    let step = chain.step_length();
    let (mut t_pre, mut t_infer, mut t_total) = (vec![], vec![], vec![]);
    for i in 0..warmup + steps {
        frame.seq = i as u64;
        frame.capture_time = Timestamp::from_duration(step * i as u32);
        frame.starts_episode = i == 0;
        if frame.starts_episode {
            chain.reset();
        }
        let t0 = Instant::now();
        chain
            .preprocess(&frame)
            .map_err(|e| format!("preprocess: {e}", e = crate::error::Report(&e)))?;
        let t1 = Instant::now();
        chain
            .infer(&frame)
            .map_err(|e| format!("policy: {e}", e = crate::error::Report(&e)))?;
        let t2 = Instant::now();
        if i >= warmup {
            t_pre.push(t1 - t0);
            t_infer.push(t2 - t1);
            t_total.push(t2 - t0);
        }
    }
    Ok(ChainBench {
        frame: format!("{w}x{h} {format:?}"),
        preprocess: Summary::of(&t_pre),
        infer: Summary::of(&t_infer),
        step_total: Summary::of(&t_total),
        peak_rss_mib: peak_rss_bytes().unwrap_or(0) as f64 / (1024.0 * 1024.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_bench_runs_the_cpu_chain_on_raw_frames() {
        let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_model");
        let policy = TractPolicy::load(&model).unwrap();
        let spec = policy.meta().preprocess_spec(Rotation::Rotate180);
        let mut chain = crate::pipeline::HostChain::new(
            PolicyRunner::new(policy, 8),
            CpuPreprocessor::new(spec),
        );
        let r = bench_chain(&mut chain, InputFormat::Yuyv, 3, 1).unwrap();
        assert_eq!(r.step_total.samples, 3);
        assert!(r.step_total.p50_ms >= r.infer.p50_ms);
        assert_eq!(r.frame, "1280x720 Yuyv");
    }

    #[test]
    fn summary_percentiles() {
        let d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let s = Summary::of(&d);
        assert_eq!(s.samples, 100);
        assert_eq!(s.p50_ms, 51.0); // index round(99 * 0.5) = 50 -> 51 ms
        assert_eq!(s.p99_ms, 99.0);
        assert_eq!(s.max_ms, 100.0);
        assert!((s.mean_ms - 50.5).abs() < 1e-9);
    }
}
