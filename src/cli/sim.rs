//! `mvla sim ...`: command-line glue for the simulator (list, trials, collect).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};

// `writeln!` to a locked stdout and `let _ =` throughout: output to a closed
// pipe is dropped, the batch goes on.

use super::BadInput;
use crate::{SimCommand, SimTrialsArgs};
use mvla::sim::lockstep::TrialRecord;
use mvla::sim::trials::{self, TrialsError, TrialsOptions};
use mvla::sim::world::Catalogue;

fn catalogue(files: &[PathBuf]) -> Result<Catalogue> {
    Catalogue::with_files(files).map_err(|e| BadInput::of(e).into())
}

fn bad(e: TrialsError) -> anyhow::Error {
    match e {
        TrialsError::Scenario(_) | TrialsError::Model { .. } | TrialsError::Invalid(_) => {
            BadInput::of(e).into()
        }
    }
}

pub fn run(action: SimCommand) -> Result<u8> {
    match action {
        SimCommand::List { scenario_file } => {
            let c = catalogue(&scenario_file)?;
            let mut out = std::io::stdout().lock();
            for f in &c.files {
                let _ = writeln!(out, "# {} ({})", f.name, f.path);
                for n in f.names() {
                    let _ = writeln!(out, "{n}");
                }
            }
            Ok(0)
        }
        SimCommand::Trials(a) => trials_cmd(a),
        SimCommand::Collect {
            scenario,
            episodes,
            out,
            seed,
            frames,
            width,
            height,
            scenario_file,
            perturb,
            dagger_model,
            dagger_gate_m,
        } => {
            let c = catalogue(&scenario_file)?;
            let config = mvla::config::Config::builtin_default();
            let opts = mvla::sim::collect::CollectOptions {
                catalogue: c,
                scenario_glob: scenario,
                episodes,
                out,
                seed,
                frames,
                width,
                height,
                motor: config.motor,
                calib: config.calib,
                perturb,
                dagger: dagger_model.map(|dir| {
                    let mut config = mvla::config::Config::builtin_default();
                    config.model_dir = dir;
                    mvla::sim::collect::DaggerOptions {
                        config,
                        gate_m: dagger_gate_m,
                    }
                }),
            };
            let dagger = opts.dagger.is_some();
            let summary = mvla::sim::collect::collect(&opts, |e| {
                // `let _ =`: a closed stdout (`| head`) must not stop the collection.
                let _ = writeln!(
                    std::io::stdout(),
                    "{} {}: {} rows, {} {}{}",
                    if e.kept { "wrote" } else { "discarded" },
                    e.path.display(),
                    e.rows,
                    if dagger {
                        "trial (policy + expert)"
                    } else {
                        "expert"
                    },
                    e.verdict,
                    match e.dagger {
                        Some(d) => format!(
                            "; the expert drove {} of {} intervals",
                            d.expert_driven, d.intervals
                        ),
                        None => String::new(),
                    }
                );
            })
            .map_err(|e| match e {
                mvla::sim::collect::CollectError::Scenario(_)
                | mvla::sim::collect::CollectError::Invalid(_)
                | mvla::sim::collect::CollectError::Policy(_) => BadInput::of(e).into(),
                other => anyhow::Error::from(other),
            })?;
            let _ = writeln!(
                std::io::stdout(),
                "collected {} episodes ({} discarded: {}) into {}",
                summary.written,
                summary.discarded,
                if dagger {
                    "short, or a collision the expert did not prevent"
                } else {
                    "the expert failed"
                },
                opts.out.display()
            );
            // The kept episodes' shares, summed from the summary's records.
            let (intervals, expert_driven) = summary
                .episodes
                .iter()
                .filter(|e| e.kept)
                .filter_map(|e| e.dagger)
                .fold((0, 0), |(i, x), d| (i + d.intervals, x + d.expert_driven));
            if intervals > 0 {
                let _ = writeln!(
                    std::io::stdout(),
                    "the expert drove {} of {} key-press intervals in the kept episodes ({:.0} %)",
                    expert_driven,
                    intervals,
                    100.0 * expert_driven as f64 / intervals as f64
                );
            }
            Ok(if summary.written > 0 { 0 } else { 1 })
        }
    }
}

/// A step-length flag (ms), range-checked like `model.step_ms`, the key it
/// stands in for; the error names the flag.
fn step_flag(flag: &str, ms: u64) -> Result<std::time::Duration> {
    mvla::bounds::check_u64("model.step_ms", ms)
        .map_err(|e| BadInput::msg(format!("{flag}: {e}")))?;
    Ok(std::time::Duration::from_millis(ms))
}

fn trials_cmd(a: SimTrialsArgs) -> Result<u8> {
    let mut config = match &a.config {
        Some(path) => mvla::config::Config::load(path).map_err(BadInput::of)?,
        None => mvla::config::Config::builtin_default(),
    };
    if let Some(m) = &a.model {
        config.model_dir = m.clone();
    }
    if let Some(ms) = a.step_ms {
        config.step_override = Some(step_flag("--step-ms", ms)?);
    }
    if let Some(by_age) = a.chunk_by_age {
        config.motor.chunk_by_age = by_age;
    }
    let mut o = TrialsOptions::new(config);
    o.channel_order_override = a.channel_order;
    if let Some(ms) = a.history_step_ms {
        o.history_step_override = Some(step_flag("--history-step-ms", ms)?);
    }
    o.catalogue = catalogue(&a.scenario_file)?;
    o.scenario_glob = a.scenario.clone();
    o.trials = a.trials;
    o.seed = a.seed;
    o.policy = a.policy;
    o.latency = trials::latency_from_ms(a.latency_ms).map_err(bad)?;
    o.camera_fps = a.fps;
    o.width = a.width;
    o.height = a.height;
    o.layout = a.pixel_format;
    o.rotation_override = match a.rotation_deg {
        None => None,
        Some(d) => Some(
            mvla::preprocess::Rotation::from_degrees(d)
                .ok_or_else(|| BadInput::msg(format!("--rotation-deg {d}: 0 or 180")))?,
        ),
    };
    if a.video_dir.is_some() {
        o.keep_frames_width = Some(320);
    }
    for dir in [&a.plot_dir, &a.video_dir].into_iter().flatten() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // The store first: a bad file is refused before any trial runs.
    let store = match &a.db {
        Some(path) => {
            let store =
                mvla::trial::store::TrialStore::open(path, mvla::trial::store::Access::Writer)
                    .map_err(super::classified)?;
            let now = mvla::record::writer::utc_stamp(std::time::SystemTime::now());
            let session_id = format!("{}-{}-sim", now.1, std::process::id());
            store.begin_session(&mvla::trial::store::SessionRow {
                id: session_id.clone(),
                kind: "sim",
                started_utc: now.0,
                config_path: Some(o.config.source.clone()),
                ..Default::default()
            })?;
            Some((store, session_id))
        }
        None => None,
    };
    let backend = format!(
        "lock-step simulator, latency {}",
        match o.latency {
            mvla::sim::lockstep::Latency::Measured => "measured".to_string(),
            mvla::sim::lockstep::Latency::Fixed(d) => format!("{:.0} ms", d.as_secs_f64() * 1e3),
        }
    );
    let mut stored = 0usize;
    let mut store_errors: Vec<String> = Vec::new();
    let mut write_errors: Vec<String> = Vec::new();
    let records = trials::run_trials(&o, |r: &TrialRecord| {
        if let Some((store, session)) = &store {
            let row = trials::trial_row(r, session, &o.config, &backend);
            match store.insert_trial(&row) {
                Ok(_) => stored += 1,
                Err(e) => store_errors.push(mvla::error::report(&e)),
            }
        }
        let mut out = std::io::stdout().lock();
        if a.json {
            if let Ok(line) = serde_json::to_string(r) {
                let _ = writeln!(out, "{line}");
            }
        } else {
            let _ = writeln!(
                out,
                "{:<32} seed {:<5} {:<8} {:<11} t {:>5.1} s  path {:>4.2} m  {}",
                r.scenario,
                r.seed,
                if r.success() { "success" } else { "failure" },
                r.failure_code.map(|c| c.name()).unwrap_or("-"),
                r.time_s,
                r.path_length_m,
                r.reason
            );
        }
        if let Some(dir) = &a.plot_dir {
            let path = trials::artefact_path(dir, r, "svg");
            if let Err(e) = super::write_new(&path, mvla::sim::plot::trajectory_svg(r).as_bytes()) {
                write_errors.push(format!(
                    "{}: {e}",
                    path.display(),
                    e = mvla::error::Report(&e)
                ));
            }
        }
        if let Some(dir) = &a.video_dir {
            let path = trials::artefact_path(dir, r, "gif");
            if let Err(e) = mvla::sim::plot::write_video(&path, r) {
                write_errors.push(format!(
                    "{}: {e}",
                    path.display(),
                    e = mvla::error::Report(&e)
                ));
            }
        }
    })
    .map_err(bad)?;
    let mut summary = trials::summarize(&records);
    summary.latency = match o.latency {
        mvla::sim::lockstep::Latency::Measured => "measured compute time per step".into(),
        mvla::sim::lockstep::Latency::Fixed(d) => format!("fixed {:.1} ms", d.as_secs_f64() * 1e3),
    };
    let mut out = std::io::stdout().lock();
    if a.json {
        let _ = writeln!(out, "{}", serde_json::to_string(&summary)?);
    } else {
        let _ = writeln!(
            out,
            "\n{:<32} {:>4} {:>4} {:>6}  {:<15} {:<6} failure codes",
            "scenario", "n", "ok", "rate", "95% Wilson", "band"
        );
        let row = |out: &mut std::io::StdoutLock, name: &str, t: &trials::Tally| {
            let codes: Vec<String> = t
                .failure_codes
                .iter()
                .map(|(c, n)| format!("{c} x{n}"))
                .collect();
            let _ = writeln!(
                out,
                "{:<32} {:>4} {:>4} {:>5.1}%  [{:>4.1}, {:>5.1}]%  {:<6} {}",
                name,
                t.n,
                t.successes,
                t.rate * 100.0,
                t.wilson_95.0 * 100.0,
                t.wilson_95.1 * 100.0,
                t.band,
                codes.join(", ")
            );
        };
        for (name, t) in &summary.per_scenario {
            row(&mut out, name, t);
        }
        row(&mut out, "overall", &summary.overall);
        let _ = writeln!(
            out,
            "policy {}; latency {}; simulated {:.2}x real time",
            summary.policy, summary.latency, summary.speed_vs_real_time
        );
    }
    if let Some((store, session)) = &store {
        let ended = mvla::record::writer::utc_stamp(std::time::SystemTime::now()).0;
        store.end_session(session, &ended)?;
        eprintln!("stored {stored} trials in {}", store.path().display());
    }
    // Trials and pictures that could not be written: after the summary, never instead of it.
    if !store_errors.is_empty() {
        for e in &store_errors {
            eprintln!("error: {e}");
        }
        anyhow::bail!("{} trial(s) not stored", store_errors.len());
    }
    if !write_errors.is_empty() {
        for e in &write_errors {
            eprintln!("error: {e}");
        }
        anyhow::bail!("{} plot/video file(s) not written", write_errors.len());
    }
    Ok(0)
}
