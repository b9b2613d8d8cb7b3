//! `mvla bench`: per-step latency and peak memory (CPU path, or the GPU chain).

use std::path::Path;

use anyhow::Result;

use super::BadInput;
use mvla::policy::engine::Precision;
use mvla::preprocess::{InputFormat, Rotation};

/// `mvla bench --backend tensorrt`: the whole GPU chain per frame.
pub fn tensorrt(
    model: &Path,
    engine_dir: Option<&Path>,
    precision: Precision,
    format: InputFormat,
    steps: usize,
    warmup: usize,
    json: bool,
) -> Result<u8> {
    let meta = mvla::policy::ModelMeta::load(model)
        .map_err(|e| BadInput::context(e, format!("model {}", model.display())))?;
    let dir = engine_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| mvla::policy::engine::default_engine_dir(model));
    let spec = meta.preprocess_spec(Rotation::Rotate180);
    let window = meta.raw.window;
    let t_load = std::time::Instant::now();
    let mut chain = mvla::policy::tensorrt::GpuChain::load(
        meta,
        &dir,
        precision,
        &mvla::policy::engine::ParityThresholds::default(),
        window,
        spec,
        None,
    )?;
    let load_s = t_load.elapsed().as_secs_f64();
    let describe = chain.describe();
    let r =
        mvla::bench::bench_chain(&mut chain, format, steps, warmup).map_err(anyhow::Error::msg)?;
    if json {
        out!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "backend": describe, "load_s": load_s, "bench": r
            }))?
        );
        return Ok(0);
    }
    out!(
        "{describe}; engines loaded in {load_s:.2} s; frame {}",
        r.frame
    );
    print_stage_table(&[
        ("upload + enqueue", r.preprocess),
        ("engines until chunk", r.infer),
        ("step total", r.step_total),
    ]);
    out!("peak RSS {:.0} MiB", r.peak_rss_mib);
    Ok(0)
}

/// The `mvla bench` table: one row per stage, milliseconds.
fn print_stage_table(rows: &[(&str, mvla::bench::Summary)]) {
    let width = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0).max(10) + 4;
    out!(
        "{:<width$} {:>9} {:>9} {:>9} {:>8}",
        "stage (ms)",
        "p50",
        "p99",
        "max",
        "samples"
    );
    for (name, s) in rows {
        out!(
            "{:<width$} {:>9.3} {:>9.3} {:>9.3} {:>8}",
            name,
            s.p50_ms,
            s.p99_ms,
            s.max_ms,
            s.samples
        );
    }
}

pub fn cpu(model: &Path, steps: usize, warmup: usize, json: bool) -> Result<u8> {
    let report = mvla::bench::bench_policy(model, steps, warmup)
        .map_err(|e| BadInput::context(e, format!("model {}", model.display())))?;
    if json {
        out!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(0);
    }
    out!(
        "model {} ({}, backbone {:.1} M parameters), loaded in {:.2} s; frame {}",
        model.display(),
        report.model_id,
        report.backbone_parameters as f64 / 1e6,
        report.load_s,
        report.frame
    );
    print_stage_table(&[
        ("preprocess (CPU)", report.preprocess),
        ("backbone (tract)", report.backbone),
        ("head, full window", report.head_full_window),
        ("step total", report.step_total),
    ]);
    out!("peak RSS {:.0} MiB", report.peak_rss_mib);
    Ok(0)
}
