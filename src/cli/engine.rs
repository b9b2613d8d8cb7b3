//! `mvla engine build`: TensorRT engines and their parity gate.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::Result;

use super::BadInput;
use mvla::policy::tract::TractPolicy;
use mvla::policy::Policy;

#[allow(clippy::too_many_arguments)]
pub fn build(
    model: &Path,
    engine_dir: Option<&Path>,
    precision: mvla::policy::engine::Precision,
    workspace_mib: u64,
    fp32_pixels: bool,
    parity_frames: usize,
    force: bool,
    json: bool,
) -> Result<u8> {
    use mvla::policy::engine::{BuildEvent, BuildOptions};
    use mvla::policy::tensorrt;
    let meta = mvla::policy::ModelMeta::load(model)
        .map_err(|e| BadInput::context(e, format!("model {}", model.display())))?;
    meta.verify_files()
        .map_err(|e| BadInput::context(e, format!("model {}", model.display())))?;
    let dir = engine_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| mvla::policy::engine::default_engine_dir(model));
    let options = BuildOptions {
        precision,
        workspace_bytes: workspace_mib << 20,
        half_pixel_input: !fp32_pixels,
        force,
        parity_frames,
        ..BuildOptions::default()
    };
    // Fail fast (before the reference loads) where TensorRT cannot run.
    let version = tensorrt::open()?;
    eprintln!("TensorRT {version}");
    // The parity reference: the same graphs through tract (fp32, CPU),
    // loaded only when engines are built, and freed before the build.
    let mut make_reference = || -> Result<Box<dyn Policy>, mvla::policy::PolicyError> {
        Ok(Box::new(TractPolicy::load(model)?))
    };
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new_spinner()
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let started = std::time::Instant::now();
    let mut progress = |event: BuildEvent<'_>| match event {
        BuildEvent::Message(m) => {
            bar.suspend(|| eprintln!("[{:>6.1} s] {m}", started.elapsed().as_secs_f64()))
        }
        BuildEvent::Phase {
            role, name, steps, ..
        } => {
            bar.set_message(format!("{}: {name} (0/{steps})", role.name()));
            tracing::info!("{}: phase {name} ({steps} steps)", role.name());
        }
        BuildEvent::Step { role, name, step } => {
            bar.set_message(format!("{}: {name} (step {})", role.name(), step + 1))
        }
        BuildEvent::PhaseDone { role, name } => {
            tracing::info!("{}: phase {name} done", role.name())
        }
    };
    let outcome =
        tensorrt::build_engines(&meta, &dir, &options, &mut make_reference, &mut progress);
    bar.finish_and_clear();
    let outcome = outcome?;
    let r = &outcome.record;
    if json {
        out!("{}", serde_json::to_string_pretty(r)?);
    } else {
        out!(
            "{} engines for TensorRT {} on sm_{}{} ({})",
            if outcome.reused { "reused" } else { "built" },
            r.tensorrt,
            r.compute_capability.0,
            r.compute_capability.1,
            r.precision.name()
        );
        out!("  backbone: {}", outcome.paths.backbone.display());
        out!("  head:     {}", outcome.paths.head.display());
        out!(
            "  parity ({} frames vs tract): feature cosine min {:.6} (>= {}), feature max abs {:.3e}, head chunk max abs {:.3e}, chain chunk max abs {:.3e} (<= {})",
            r.report.inputs,
            r.report.feature_cosine_min,
            r.report.thresholds.feature_cosine_min,
            r.report.feature_max_abs,
            r.report.head_chunk_max_abs,
            r.report.chain_chunk_max_abs,
            r.report.thresholds.chunk_max_abs
        );
        out!("  record:   {}", outcome.paths.parity.display());
    }
    for p in &outcome.stale {
        eprintln!("note: {} belongs to another model/TensorRT/GPU/precision and is never loaded; delete it to free space", p.display());
    }
    Ok(0)
}
