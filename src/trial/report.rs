//! `mvla trial report`: success rates per scenario, per model and overall
//! (n, successes, rate, 95 % Wilson interval, colour band, failure-code
//! histogram), a comparison of two models (difference in rate with its
//! interval, Fisher's exact p), as a terminal table, JSON, CSV or one
//! self-contained HTML page with inline SVG plots (plotters).
//!
//! Counted: trials that ended `success` or `failure`. `aborted` and
//! `running` trials are listed and counted apart, never in a rate.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::stats::{band, compare, wilson_interval, Comparison};
use super::store::TrialRow;
use super::{FailureCode, Status};

/// One group's tally.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Tally {
    pub key: String,
    /// Completed trials (success + failure).
    pub n: u64,
    pub successes: u64,
    pub rate: f64,
    pub wilson_95: (f64, f64),
    pub band: &'static str,
    pub aborted: u64,
    pub running: u64,
    /// FAILURE_CODE → count (failures only), every code listed.
    pub failure_codes: BTreeMap<String, u64>,
}

impl Tally {
    fn of<'a>(key: String, rows: impl Iterator<Item = &'a TrialRow>) -> Tally {
        let mut t = Tally {
            key,
            failure_codes: FailureCode::ALL
                .iter()
                .map(|c| (c.name().to_string(), 0))
                .collect(),
            ..Default::default()
        };
        for r in rows {
            match r.status() {
                Some(Status::Success) => {
                    t.n += 1;
                    t.successes += 1;
                }
                Some(Status::Failure) => {
                    t.n += 1;
                    let code = r.failure_code.clone().unwrap_or_else(|| "OTHER".into());
                    *t.failure_codes.entry(code).or_default() += 1;
                }
                Some(Status::Aborted) => t.aborted += 1,
                Some(Status::Running) | None => t.running += 1,
            }
        }
        t.rate = if t.n == 0 {
            0.0
        } else {
            t.successes as f64 / t.n as f64
        };
        t.wilson_95 = wilson_interval(t.successes, t.n);
        t.band = if t.n == 0 { "none" } else { band(t.rate) };
        t
    }
}

/// Model A against model B.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelComparison {
    pub a: Tally,
    pub b: Tally,
    /// rate(A) − rate(B), its 95 % interval, Fisher's exact two-sided p.
    pub comparison: Comparison,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub store: String,
    pub generated_utc: String,
    /// The filters as given ("" = none).
    pub filters: String,
    pub overall: Tally,
    pub per_scenario: Vec<Tally>,
    /// Keyed by model digest (first 12 hex digits).
    pub per_model: Vec<Tally>,
    pub comparison: Option<ModelComparison>,
    pub trials: Vec<TrialRow>,
}

/// Model digests are keyed by their first 12 hex digits.
pub fn model_key(digest: &str) -> String {
    digest.chars().take(12).collect()
}

/// Why a report cannot be made as asked.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("--compare {given}: {why}")]
    Compare { given: String, why: String },
    #[error("the trials are {field} field and {simulated} simulated ones; a rate over both means nothing: choose --field or --simulated")]
    MixedWorlds { field: usize, simulated: usize },
}

/// Build the report. `compare`: two model digest prefixes (A, B); without it,
/// the two models are compared when exactly two are present.
pub fn build(
    store: String,
    filters: String,
    rows: Vec<TrialRow>,
    compare_models: Option<(String, String)>,
) -> Result<Report, ReportError> {
    let simulated = rows.iter().filter(|r| r.simulated).count();
    if simulated > 0 && simulated < rows.len() {
        return Err(ReportError::MixedWorlds {
            field: rows.len() - simulated,
            simulated,
        });
    }
    let mut by_scenario: BTreeMap<&str, Vec<&TrialRow>> = BTreeMap::new();
    let mut by_model: BTreeMap<String, Vec<&TrialRow>> = BTreeMap::new();
    for r in &rows {
        by_scenario.entry(&r.scenario).or_default().push(r);
        by_model
            .entry(model_key(&r.model_digest))
            .or_default()
            .push(r);
    }
    let per_scenario = by_scenario
        .iter()
        .map(|(k, v)| Tally::of(k.to_string(), v.iter().copied()))
        .collect();
    let per_model: Vec<Tally> = by_model
        .iter()
        .map(|(k, v)| Tally::of(k.clone(), v.iter().copied()))
        .collect();
    let pick = |prefix: &str, given: &str| -> Result<Tally, ReportError> {
        let found: Vec<&Tally> = per_model
            .iter()
            .filter(|t| t.key.starts_with(&model_key(prefix)))
            .collect();
        match found.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(ReportError::Compare {
                given: given.into(),
                why: format!("no trials of a model {prefix}… (after the filters)"),
            }),
            _ => Err(ReportError::Compare {
                given: given.into(),
                why: format!("{prefix} matches several models; give more digits"),
            }),
        }
    };
    let comparison = match compare_models {
        Some((a, b)) => {
            let given = format!("{a},{b}");
            Some((pick(&a, &given)?, pick(&b, &given)?))
        }
        None if per_model.len() == 2 && per_model.iter().all(|t| t.n > 0) => {
            Some((per_model[0].clone(), per_model[1].clone()))
        }
        None => None,
    }
    .map(|(a, b)| ModelComparison {
        comparison: compare(a.successes, a.n, b.successes, b.n),
        a,
        b,
    });
    Ok(Report {
        store,
        generated_utc: crate::record::writer::utc_stamp(std::time::SystemTime::now()).0,
        filters,
        overall: Tally::of("overall".into(), rows.iter()),
        per_scenario,
        per_model,
        comparison,
        trials: rows,
    })
}

fn pct(v: f64) -> String {
    format!("{:.0}%", v * 100.0)
}

fn codes_text(t: &Tally) -> String {
    let parts: Vec<String> = t
        .failure_codes
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(c, n)| format!("{c}×{n}"))
        .collect();
    parts.join(" ")
}

/// One sentence: the two tallies, the difference with its interval, Fisher's p.
pub fn comparison_text(c: &ModelComparison) -> String {
    format!(
        "model {} vs {}: {}/{} vs {}/{}; difference {:+.1} percentage points (95% Newcombe interval {:+.1} to {:+.1}), Fisher's exact two-sided p = {:.4}",
        c.a.key,
        c.b.key,
        c.a.successes,
        c.a.n,
        c.b.successes,
        c.b.n,
        c.comparison.difference * 100.0,
        c.comparison.difference_95.0 * 100.0,
        c.comparison.difference_95.1 * 100.0,
        c.comparison.fisher_p
    )
}

/// The terminal table (80 columns for the usual scenario names).
pub fn table(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "trial store {}  ({} trials{})",
        r.store,
        r.trials.len(),
        if r.filters.is_empty() {
            String::new()
        } else {
            format!("; {}", r.filters)
        }
    );
    let line = |out: &mut String, t: &Tally| {
        let _ = writeln!(
            out,
            "{:<30} {:>4} {:>4} {:>5}  {:>4}–{:<4} {:<6} {:>3}  {}",
            t.key,
            t.n,
            t.successes,
            pct(t.rate),
            pct(t.wilson_95.0),
            pct(t.wilson_95.1),
            t.band,
            t.aborted,
            codes_text(t)
        );
    };
    let header = |out: &mut String, first: &str| {
        let _ = writeln!(
            out,
            "{first:<30} {:>4} {:>4} {:>5}  {:<9} {:<6} {:>3}  failure codes",
            "n", "ok", "rate", "95% CI", "band", "abt"
        );
    };
    header(&mut out, "scenario");
    for t in &r.per_scenario {
        line(&mut out, t);
    }
    line(&mut out, &r.overall);
    if r.per_model.len() > 1 {
        out.push('\n');
        header(&mut out, "model");
        for t in &r.per_model {
            line(&mut out, t);
        }
    }
    if let Some(c) = &r.comparison {
        let _ = writeln!(out, "\n{}", comparison_text(c));
    }
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// CSV of the tallies: scope (scenario / overall / model), key, n,
/// successes, rate, Wilson bounds, band, aborted, one column per failure code.
pub fn csv(r: &Report) -> String {
    let mut out =
        String::from("scope,key,n,successes,rate,wilson_lo,wilson_hi,band,aborted,running");
    for c in FailureCode::ALL {
        out += &format!(",{}", c.name());
    }
    out.push('\n');
    let mut row = |scope: &str, t: &Tally| {
        out += &format!(
            "{scope},{},{},{},{:.6},{:.6},{:.6},{},{},{}",
            csv_field(&t.key),
            t.n,
            t.successes,
            t.rate,
            t.wilson_95.0,
            t.wilson_95.1,
            t.band,
            t.aborted,
            t.running
        );
        for c in FailureCode::ALL {
            out += &format!(",{}", t.failure_codes.get(c.name()).copied().unwrap_or(0));
        }
        out.push('\n');
    };
    for t in &r.per_scenario {
        row("scenario", t);
    }
    row("overall", &r.overall);
    for t in &r.per_model {
        row("model", t);
    }
    out
}

pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out += "&amp;",
            '<' => out += "&lt;",
            '>' => out += "&gt;",
            '"' => out += "&quot;",
            '\'' => out += "&#39;",
            c => out.push(c),
        }
    }
    out
}

fn band_color(band: &str) -> plotters::style::RGBColor {
    use plotters::style::RGBColor;
    match band {
        "green" => RGBColor(26, 152, 80),
        "yellow" => RGBColor(230, 171, 2),
        "red" => RGBColor(215, 48, 39),
        _ => RGBColor(150, 150, 150),
    }
}

/// Success rate per scenario (and overall) with 95 % Wilson whiskers.
fn rate_plot(r: &Report) -> Result<String, String> {
    use plotters::prelude::*;
    let groups: Vec<&Tally> = r.per_scenario.iter().chain([&r.overall]).collect();
    let height = 60 + 28 * groups.len() as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let n = groups.len() as i32;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(250)
            .build_cartesian_2d(0.0f64..100.0, (0..n).into_segmented())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("success rate % (95% Wilson interval)")
            .y_labels(groups.len())
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => groups
                    .get(*i as usize)
                    .map(|t| format!("{} ({}/{})", t.key, t.successes, t.n))
                    .unwrap_or_default(),
                SegmentValue::Last => String::new(),
            })
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, t) in groups.iter().enumerate() {
            if t.n == 0 {
                continue;
            }
            let y = SegmentValue::CenterOf(i as i32);
            let color = band_color(t.band);
            chart
                .draw_series(std::iter::once(ErrorBar::new_horizontal(
                    y,
                    t.wilson_95.0 * 100.0,
                    t.rate * 100.0,
                    t.wilson_95.1 * 100.0,
                    color.filled(),
                    10,
                )))
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// Failure codes over all failures.
fn codes_plot(r: &Report) -> Result<String, String> {
    use plotters::prelude::*;
    let codes: Vec<(&str, u64)> = FailureCode::ALL
        .iter()
        .map(|c| {
            (
                c.name(),
                r.overall.failure_codes.get(c.name()).copied().unwrap_or(0),
            )
        })
        .collect();
    let top = codes.iter().map(|c| c.1).max().unwrap_or(0).max(1) as f64 * 1.15;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 300)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d((0..codes.len() as i32).into_segmented(), 0.0..top)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_desc("failures")
            .x_labels(codes.len())
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => codes
                    .get(*i as usize)
                    .map(|c| c.0.to_string())
                    .unwrap_or_default(),
                SegmentValue::Last => String::new(),
            })
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(codes.iter().enumerate().map(|(i, (_, n))| {
                let i = i as i32;
                Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.0),
                        (SegmentValue::Exact(i + 1), *n as f64),
                    ],
                    RGBColor(215, 48, 39).mix(0.8).filled(),
                )
            }))
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// Capture → chunk latency per trial (p50 and p99), in trial order.
fn latency_plot(r: &Report) -> Result<Option<String>, String> {
    use plotters::prelude::*;
    let points: Vec<(usize, f64, f64)> = r
        .trials
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            let p50 = t.latency_p50_ms?;
            Some((i + 1, p50, t.latency_p99_ms.unwrap_or(p50)))
        })
        .collect();
    if points.is_empty() {
        return Ok(None);
    }
    let top = points.iter().map(|p| p.2.max(p.1)).fold(1.0, f64::max) * 1.15;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 300)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(0.5f64..(r.trials.len() as f64 + 0.5), 0.0..top)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("trial")
            .y_desc("capture → chunk ms")
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(
                points
                    .iter()
                    .map(|p| ErrorBar::new_vertical(p.0 as f64, p.1, p.1, p.2, BLUE.filled(), 6)),
            )
            .map_err(|e| e.to_string())?
            .label("p50 (dot) to p99 (bar end, where measured)")
            .legend(|(x, y)| Circle::new((x + 10, y), 3, BLUE.filled()));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(Some(svg))
}

/// A trial's stored trajectory: `[[t, x, y, yaw], …]`.
pub fn trajectory_points(t: &TrialRow) -> Option<Vec<[f64; 4]>> {
    let text = t.trajectory.as_deref()?;
    let points: Vec<[f64; 4]> = serde_json::from_str(text).ok()?;
    (!points.is_empty()).then_some(points)
}

/// The most trajectories drawn on one page (the rest are listed only).
const MAX_TRAJECTORY_PLOTS: usize = 200;

/// Top-down path of one trial (x forward, y left, metres; equal scales).
fn trajectory_plot(t: &TrialRow, points: &[[f64; 4]]) -> Result<String, String> {
    use plotters::prelude::*;
    let (mut x0, mut x1, mut y0, mut y1) = (0.0f64, 0.5f64, -0.25f64, 0.25f64);
    for p in points {
        x0 = x0.min(p[1]);
        x1 = x1.max(p[1]);
        y0 = y0.min(p[2]);
        y1 = y1.max(p[2]);
    }
    let span = (x1 - x0).max(y1 - y0) * 1.1 + 0.2;
    let (cx, cy) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
    let color = match t.status() {
        Some(Status::Success) => RGBColor(26, 152, 80),
        Some(Status::Failure) => RGBColor(215, 48, 39),
        _ => RGBColor(120, 120, 120),
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (240, 260)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        // y (left) is drawn to the left: the x axis of the plot is −y.
        let mut chart = ChartBuilder::on(&root)
            .margin(6)
            .caption(format!("#{} {}", t.id, t.status), ("sans-serif", 13))
            .x_label_area_size(20)
            .y_label_area_size(30)
            .build_cartesian_2d(
                (-cy - span / 2.0)..(-cy + span / 2.0),
                (cx - span / 2.0)..(cx + span / 2.0),
            )
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_labels(4)
            .y_labels(4)
            .x_label_formatter(&|v| format!("{:.1}", -v))
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|p| (-p[2], p[1])),
                color.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?;
        if let Some(last) = points.last() {
            chart
                .draw_series(std::iter::once(Circle::new(
                    (-last[2], last[1]),
                    4,
                    color.filled(),
                )))
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// The trial's recording files (episodes, session log), one per line.
pub fn recordings(t: &TrialRow) -> String {
    let mut files: Vec<String> = t
        .episodes
        .as_deref()
        .and_then(|e| serde_json::from_str::<Vec<serde_json::Value>>(e).ok())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e["path"].as_str().map(String::from))
        .collect();
    files.extend(t.session_log_path.clone());
    files.join(" ")
}

fn tally_rows(out: &mut String, ts: &[&Tally]) {
    for t in ts {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}–{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td></tr>",
            html_escape(&t.key),
            t.n,
            t.successes,
            pct(t.rate),
            pct(t.wilson_95.0),
            pct(t.wilson_95.1),
            t.band,
            t.band,
            t.aborted,
            html_escape(&codes_text(t))
        );
    }
}

const TALLY_HEAD: &str = "<tr><th>{}</th><th>n</th><th>successes</th><th>rate</th><th>95% Wilson</th><th>band</th><th>aborted</th><th>failure codes</th></tr>";

/// One self-contained page (no scripts, no external resources).
pub fn html(r: &Report) -> Result<String, String> {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>mvla trial report</title>\n\
<style>body{{font-family:sans-serif;margin:24px;max-width:1100px}}table{{border-collapse:collapse;margin:8px 0 18px}}\
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:14px}}th{{background:#f0f0f0}}\
.green{{background:#c7e9c0}}.yellow{{background:#fee391}}.red{{background:#fcbba1}}.none{{background:#eee}}\
.traj{{display:inline-block;margin:2px}}h2{{margin-top:28px}}</style></head><body>\n\
<h1>Trial report</h1>\n<p>Store <code>{}</code>, generated {}. {} trials{}. Rates count trials that ended in success or failure; aborted trials are listed apart. Bands: green ≥ 80 %, yellow ≥ 60 %.</p>\n",
        html_escape(&r.store),
        html_escape(&r.generated_utc),
        r.trials.len(),
        if r.filters.is_empty() {
            String::new()
        } else {
            format!(" ({})", html_escape(&r.filters))
        }
    );
    out += "<h2 id=\"per-scenario\">Per scenario</h2>\n<table>";
    out += &TALLY_HEAD.replace("{}", "scenario");
    let mut all: Vec<&Tally> = r.per_scenario.iter().collect();
    all.push(&r.overall);
    tally_rows(&mut out, &all);
    out += "</table>\n";
    out += "<h2 id=\"per-model\">Per model</h2>\n<table>";
    out += &TALLY_HEAD.replace("{}", "model digest");
    tally_rows(&mut out, &r.per_model.iter().collect::<Vec<_>>());
    out += "</table>\n";
    if let Some(c) = &r.comparison {
        let _ = writeln!(
            out,
            "<h2 id=\"comparison\">Model {} vs {}</h2>\n<p>{}</p>",
            html_escape(&c.a.key),
            html_escape(&c.b.key),
            html_escape(&comparison_text(c))
        );
    }
    out += "<h2 id=\"rate-plot\">Success rate</h2>\n";
    out += &rate_plot(r)?;
    out += "\n<h2 id=\"codes-plot\">Failure codes</h2>\n";
    out += &codes_plot(r)?;
    if let Some(svg) = latency_plot(r)? {
        out += "\n<h2 id=\"latency-plot\">Latency</h2>\n";
        out += &svg;
    }
    let with_paths: Vec<(&TrialRow, Vec<[f64; 4]>)> = r
        .trials
        .iter()
        .filter_map(|t| Some((t, trajectory_points(t)?)))
        .collect();
    if !with_paths.is_empty() {
        let _ = write!(
            out,
            "\n<h2 id=\"trajectories\">Trajectories (top-down: forward up, left to the left; metres)</h2>\n{}",
            if with_paths.len() > MAX_TRAJECTORY_PLOTS {
                format!("<p>The first {MAX_TRAJECTORY_PLOTS} of {} are drawn.</p>\n", with_paths.len())
            } else {
                String::new()
            }
        );
        for (t, points) in with_paths.iter().take(MAX_TRAJECTORY_PLOTS) {
            out += "<div class=\"traj\">";
            out += &trajectory_plot(t, points)?;
            out += "</div>";
        }
        out += "\n";
    }
    out += "<h2 id=\"trials\">Trials</h2>\n<table><tr><th>id</th><th>started (UTC)</th><th>scenario</th><th>world</th><th>outcome</th><th>code</th><th>ended by</th><th>s</th><th>model</th><th>p50/p99 ms</th><th>note</th><th>recordings</th></tr>\n";
    for t in &r.trials {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            t.id,
            html_escape(&t.started_utc),
            html_escape(&t.scenario),
            if t.simulated { "sim" } else { "field" },
            html_escape(&t.status),
            html_escape(t.failure_code.as_deref().unwrap_or("")),
            html_escape(t.ended_by.as_deref().unwrap_or("")),
            t.duration_s.map(|d| format!("{d:.1}")).unwrap_or_default(),
            html_escape(&model_key(&t.model_digest)),
            match (t.latency_p50_ms, t.latency_p99_ms) {
                (Some(a), Some(b)) => format!("{a:.0}/{b:.0}"),
                _ => String::new(),
            },
            html_escape(t.note.as_deref().unwrap_or("")),
            html_escape(&recordings(t))
        );
    }
    out += "</table>\n</body></html>\n";
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, scenario: &str, status: &str, code: Option<&str>, model: &str) -> TrialRow {
        TrialRow {
            id,
            scenario: scenario.into(),
            status: status.into(),
            failure_code: code.map(String::from),
            model_digest: model.into(),
            started_utc: format!("2026-12-02T10:00:{id:02}Z"),
            ..Default::default()
        }
    }

    fn sample() -> Vec<TrialRow> {
        vec![
            row(1, "1box_hori_left_core_medium", "success", None, "aaaa"),
            row(
                2,
                "1box_hori_left_core_medium",
                "failure",
                Some("COLLISION"),
                "aaaa",
            ),
            row(3, "1box_hori_right_core_medium", "success", None, "bbbb"),
            row(4, "1box_hori_right_core_medium", "aborted", None, "bbbb"),
            row(5, "1box_hori_right_core_medium", "running", None, "bbbb"),
        ]
    }

    #[test]
    fn aborted_and_running_trials_are_never_in_a_rate() {
        let r = build("db".into(), String::new(), sample(), None).unwrap();
        assert_eq!((r.overall.n, r.overall.successes), (3, 2));
        assert_eq!((r.overall.aborted, r.overall.running), (1, 1));
        let right = &r.per_scenario[1];
        assert_eq!((right.n, right.successes, right.rate), (1, 1, 1.0));
        assert_eq!(r.overall.failure_codes["COLLISION"], 1);
        // Two models present: compared without being asked.
        let c = r.comparison.unwrap();
        assert_eq!((c.a.key.as_str(), c.b.key.as_str()), ("aaaa", "bbbb"));
        assert!((c.comparison.difference - (0.5 - 1.0)).abs() < 1e-12);
    }

    #[test]
    fn field_and_simulated_trials_are_never_pooled() {
        let mut rows = sample();
        rows[0].simulated = true;
        let e = build("db".into(), String::new(), rows, None).unwrap_err();
        assert!(e.to_string().contains("--field or --simulated"), "{e}");
    }

    #[test]
    fn an_unknown_model_to_compare_is_an_error() {
        let e = build(
            "db".into(),
            String::new(),
            sample(),
            Some(("aaaa".into(), "cccc".into())),
        )
        .unwrap_err();
        assert!(e.to_string().contains("cccc"), "{e}");
    }

    #[test]
    fn csv_and_table_carry_the_figures() {
        let r = build("db".into(), String::new(), sample(), None).unwrap();
        let c = csv(&r);
        assert!(
            c.lines()
                .any(|l| l.starts_with("overall,overall,3,2,0.666667")),
            "{c}"
        );
        let t = table(&r);
        assert!(t.contains("overall") && t.contains("67%"), "{t}");
    }

    #[test]
    fn the_page_escapes_free_text_and_draws_every_plot() {
        let mut rows = sample();
        rows[0].note = Some("<script>alert(1)</script> & more".into());
        rows[0].trajectory = Some("[[0,0,0,0],[1,0.5,0.1,0],[2,1.0,0.3,0.1]]".into());
        rows[0].latency_p50_ms = Some(40.0);
        rows[0].latency_p99_ms = Some(70.0);
        let r = build("db".into(), String::new(), rows, None).unwrap();
        let page = html(&r).unwrap();
        assert!(!page.contains("<script>"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; more"));
        for id in [
            "rate-plot",
            "codes-plot",
            "latency-plot",
            "trajectories",
            "comparison",
        ] {
            assert!(page.contains(&format!("id=\"{id}\"")), "{id}");
        }
        assert_eq!(
            page.matches("<svg").count(),
            4,
            "rate, codes, latency, one path"
        );
    }
}
