//! `mvla eval`: a model on recorded episodes, the table or JSON.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::{load_policy, BadInput};
use mvla::eval::{evaluate_episode, EpisodeReport, EvalTotals, Metrics};
use mvla::policy::{Policy, PolicyRunner};
use mvla::preprocess::{CpuPreprocessor, Rotation};
use mvla::record::{collect_episode_paths, Episode};

#[derive(serde::Serialize)]
struct EvalSummary<'a> {
    model_dir: String,
    model_id: &'a str,
    episodes: Vec<EpisodeJson<'a>>,
    skipped: Vec<Skipped>,
    overall_first: Metrics,
    overall_chunk: Metrics,
    steps_evaluated: usize,
}

#[derive(serde::Serialize)]
struct EpisodeJson<'a> {
    name: &'a str,
    path: &'a str,
    frames: usize,
    steps_evaluated: usize,
    first: Metrics,
    chunk: Metrics,
}

#[derive(serde::Serialize)]
struct Skipped {
    path: String,
    error: String,
}

pub fn run(model: &Path, inputs: &[PathBuf], json: bool) -> Result<u8> {
    let policy = load_policy(model)?;
    let model_id = policy.meta().model_id.clone();
    let window = policy.meta().raw.window;
    let paths = collect_episode_paths(inputs).context("listing episodes")?;
    if paths.is_empty() {
        bail!(BadInput::msg(format!("no episodes found in {inputs:?}")));
    }
    // Recorded frames were rotated by the capture pipeline before they were stored.
    let spec = policy.meta().preprocess_spec(Rotation::None);
    let mut pre = CpuPreprocessor::new(spec);
    let mut runner = PolicyRunner::new(policy, window);

    let mut episodes = Vec::new();
    let mut skipped = Vec::new();
    let mut opened = Vec::new();
    for path in &paths {
        match Episode::open(path) {
            Ok(ep) => opened.push(ep),
            Err(e) => skipped.push(Skipped {
                path: path.display().to_string(),
                error: mvla::error::report(&e),
            }),
        }
    }
    let total: u64 = opened.iter().map(|e| e.frames as u64).sum();
    let bar = if std::io::stderr().is_terminal() && !json {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} steps {elapsed} {msg}")
            .expect("static template"),
    );
    for ep in &opened {
        bar.set_message(ep.name());
        match evaluate_episode(&mut runner, &mut pre, ep, || bar.inc(1)) {
            Ok(r) => episodes.push(r),
            Err(e) => skipped.push(Skipped {
                path: ep.path.display().to_string(),
                error: mvla::error::report(&e),
            }),
        }
    }
    bar.finish_and_clear();
    // An episode with no frame evaluated has no metrics: reporting it as
    // rmse 0.0000 would be a false success. It is skipped, by name.
    let (evaluated, empty): (Vec<_>, Vec<_>) =
        episodes.into_iter().partition(|r| r.steps_evaluated > 0);
    let episodes = evaluated;
    skipped.extend(empty.into_iter().map(|r| Skipped {
        path: r.path.clone(),
        error: format!("{}: no frame to evaluate ({} frames)", r.path, r.frames),
    }));
    if episodes.is_empty() {
        let reasons: Vec<String> = skipped.iter().map(|s| s.error.clone()).collect();
        bail!(BadInput::msg(format!(
            "nothing to evaluate: {}",
            reasons.join("; ")
        )));
    }

    let overall = EvalTotals::of(&episodes);
    if json {
        let summary = EvalSummary {
            model_dir: model.display().to_string(),
            model_id: &model_id,
            episodes: episodes.iter().map(episode_json).collect(),
            skipped,
            overall_first: overall.first.metrics(),
            overall_chunk: overall.chunk.metrics(),
            steps_evaluated: overall.steps_evaluated,
        };
        out!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(if summary.skipped.is_empty() {
            0
        } else {
            crate::exit::PARTIAL
        });
    }
    print_eval_table(model, &model_id, &episodes, &overall);
    for s in &skipped {
        out!("SKIPPED {}: {}", s.path, s.error);
    }
    Ok(if skipped.is_empty() {
        0
    } else {
        crate::exit::PARTIAL
    })
}

fn episode_json(r: &EpisodeReport) -> EpisodeJson<'_> {
    EpisodeJson {
        name: &r.name,
        path: &r.path,
        frames: r.frames,
        steps_evaluated: r.steps_evaluated,
        first: r.first.metrics(),
        chunk: r.chunk.metrics(),
    }
}

fn print_eval_table(
    model: &Path,
    model_id: &str,
    episodes: &[EpisodeReport],
    overall: &EvalTotals,
) {
    out!("model {} ({model_id})", model.display());
    out!(
        "{:<48} {:>5} {:>8} {:>8} {:>8} {:>6} {:>10}",
        "episode",
        "steps",
        "rmse_x",
        "rmse_y",
        "rmse",
        "dir",
        "chunk_rmse"
    );
    let row = |name: &str, steps: usize, f: Metrics, c: Metrics| {
        out!(
            "{:<48} {:>5} {:>8.4} {:>8.4} {:>8.4} {:>5.1}% {:>10.4}",
            name,
            steps,
            f.rmse_x,
            f.rmse_y,
            f.rmse_all,
            100.0 * f.direction_agreement,
            c.rmse_all
        );
    };
    for r in episodes {
        row(
            &r.name,
            r.steps_evaluated,
            r.first.metrics(),
            r.chunk.metrics(),
        );
    }
    row(
        "OVERALL",
        overall.steps_evaluated,
        overall.first.metrics(),
        overall.chunk.metrics(),
    );
    out!("(rmse/dir: chunk step 0 vs the recorded action; chunk_rmse: every chunk step with a recorded action; target rmse < 0.12)");
}
