//! `mvla trial` (the operator console) and `mvla trial report`.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{Context, Result};

use mvla::trial::console::{ConsoleSettings, Session};
use mvla::trial::plan::Plan;
use mvla::trial::report;
use mvla::trial::store::{Access, Filter, TrialStore};

use super::BadInput;

/// Where the console records and keeps its store when neither `--record`
/// nor the config's `[record] dir` says (relative to the working directory).
pub const DEFAULT_TRIAL_DIR: &str = "mvla-trials";
/// The store's file name inside the recordings folder.
pub const DB_NAME: &str = "trials.sqlite";

pub struct ConsoleArgs {
    pub config: Option<PathBuf>,
    pub plan: Option<PathBuf>,
    pub scenario: Vec<String>,
    pub repetitions: u64,
    pub time_limit_s: f64,
    pub seed: Option<u64>,
    pub db: Option<PathBuf>,
    pub record: Option<PathBuf>,
    pub operator: Option<String>,
    pub robot_id: Option<String>,
}

pub fn console(a: ConsoleArgs) -> Result<u8> {
    let config = match &a.config {
        Some(path) => mvla::config::Config::load(path).map_err(BadInput::of)?,
        None => mvla::config::Config::builtin_default(),
    };
    let plan = match (&a.plan, a.scenario.is_empty()) {
        (Some(_), false) => {
            return Err(BadInput::msg("--plan and --scenario exclude each other").into())
        }
        (Some(p), true) => Plan::load(p, a.seed).map_err(BadInput::of)?,
        (None, _) => {
            // Without either: the scenario the config records under (the
            // simulator's world), else one the operator must name.
            let scenarios = if a.scenario.is_empty() {
                let from_config = match &config.capture {
                    mvla::config::CaptureConfig::Sim(s) => Some(s.scenario.clone()),
                    _ => config.record.as_ref().map(|r| r.scenario.clone()),
                };
                vec![from_config.ok_or_else(|| {
                    BadInput::msg(
                        "name the trials: --plan FILE or --scenario NAME[,NAME…] (or [record] scenario in the config)",
                    )
                })?]
            } else {
                a.scenario.clone()
            };
            Plan::from_args(&scenarios, a.repetitions, a.time_limit_s, a.seed)
                .map_err(BadInput::of)?
        }
    };
    let record_dir = a
        .record
        .clone()
        .or_else(|| config.record.as_ref().map(|r| r.dir.clone()))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_TRIAL_DIR));
    let db = a.db.clone().unwrap_or_else(|| record_dir.join(DB_NAME));
    if let Some(parent) = db.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            BadInput::context(e, format!("trial store folder {}", parent.display()))
        })?;
    }
    let robot_id = a.robot_id.clone().or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
    });
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(signal, stop.clone()).context("installing signal handlers")?;
    }
    let seed = plan.seed;
    let settings = ConsoleSettings {
        config,
        plan,
        db: db.clone(),
        record_dir: record_dir.clone(),
        operator: a.operator.clone(),
        robot_id,
    };
    // The store before the screen: a bad, locked or foreign file is refused
    // (exit 2) with nothing started.
    let store = Session::open_store(&settings).map_err(super::classified)?;
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return Err(BadInput::msg(
            "the trial console needs a terminal (run it in a terminal or over ssh -t)",
        )
        .into());
    }
    // Everything written to stderr while the screen is up (our logs, and
    // libraries that print, such as libhdf5) goes to a log file beside the
    // recordings instead of through the UI.
    std::fs::create_dir_all(&record_dir)
        .map_err(|e| BadInput::context(e, format!("recording folder {}", record_dir.display())))?;
    let stamp = mvla::record::writer::utc_stamp(std::time::SystemTime::now()).1;
    let log_path = record_dir.join(format!("console_{stamp}_{}.log", std::process::id()));
    let stderr =
        StderrTo::file(&log_path).with_context(|| format!("process log {}", log_path.display()))?;
    let result = Session::open(settings, store).and_then(|mut session| {
        session.say(format!("process log {}", log_path.display()));
        mvla::trial::console::run_tui(session, stop)
    });
    drop(stderr);
    let (summary, done) = result.map_err(super::classified)?;
    let ok = done
        .iter()
        .filter(|d| d.status == mvla::trial::Status::Success)
        .count();
    let counted = done
        .iter()
        .filter(|d| {
            matches!(
                d.status,
                mvla::trial::Status::Success | mvla::trial::Status::Failure
            )
        })
        .count();
    out!(
        "trial console: {} trials recorded ({ok}/{counted} success, plan seed {seed}), store {}",
        done.len(),
        db.display()
    );
    for d in &done {
        out!(
            "  #{} {}: {}{}",
            d.id,
            d.scenario,
            d.status.name(),
            d.code.map(|c| format!(" {c}")).unwrap_or_default()
        );
    }
    out!(
        "controller: {:.0} s, {} frames, {} inferences, stop: {}",
        summary.ran_s,
        summary.counters.frames_captured,
        summary.counters.inferences,
        summary.stop_reason
    );
    out!("report: mvla trial report --db {}", db.display());
    Ok(0)
}

/// stderr pointed at a file until dropped (then back where it was).
struct StderrTo {
    saved: libc::c_int,
}

impl StderrTo {
    fn file(path: &Path) -> std::io::Result<Self> {
        use std::os::fd::AsRawFd;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        // SAFETY: dup/dup2 on descriptors this process owns (2 and the new
        // file's); the file's own descriptor closes when `f` drops, fd 2
        // keeps the file open.
        let saved = unsafe { libc::dup(2) };
        if saved < 0 || unsafe { libc::dup2(f.as_raw_fd(), 2) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self { saved })
    }
}

impl Drop for StderrTo {
    fn drop(&mut self) {
        // SAFETY: `saved` is the duplicate made in `file`, closed only here.
        unsafe {
            libc::dup2(self.saved, 2);
            libc::close(self.saved);
        }
    }
}

pub struct ReportArgs {
    pub db: PathBuf,
    pub json: bool,
    pub csv: bool,
    pub html: Option<PathBuf>,
    pub filter: Filter,
    pub compare: Option<String>,
}

pub fn report_cmd(a: ReportArgs) -> Result<u8> {
    let store = TrialStore::open(&a.db, Access::Read).map_err(super::classified)?;
    let rows = store.trials(&a.filter).map_err(super::classified)?;
    let compare = match &a.compare {
        None => None,
        Some(s) => match s.split_once(',') {
            Some((x, y)) if !x.is_empty() && !y.is_empty() => {
                Some((x.trim().to_string(), y.trim().to_string()))
            }
            _ => {
                return Err(BadInput::msg(format!(
                    "--compare {s}: two model digests (prefixes), A,B"
                ))
                .into())
            }
        },
    };
    let filters = describe(&a.filter);
    let r =
        report::build(a.db.display().to_string(), filters, rows, compare).map_err(BadInput::of)?;
    if let Some(path) = &a.html {
        let page = report::html(&r).map_err(|e| anyhow::anyhow!("drawing the plots: {e}"))?;
        // A report is evidence: never written over an existing file.
        super::write_new(path, page.as_bytes()).map_err(|e| {
            let what = format!("--html {}", path.display());
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                anyhow::Error::from(BadInput::context(e, what))
            } else {
                anyhow::Error::new(e).context(what)
            }
        })?;
        eprintln!("wrote {}", path.display());
    }
    if a.json {
        out!("{}", serde_json::to_string_pretty(&r)?);
    } else if a.csv {
        print!("{}", report::csv(&r));
    } else {
        print!("{}", report::table(&r));
    }
    Ok(0)
}

fn describe(f: &Filter) -> String {
    let mut parts = Vec::new();
    if let Some(s) = &f.since {
        parts.push(format!("since {s}"));
    }
    if let Some(s) = &f.until {
        parts.push(format!("until {s}"));
    }
    if let Some(s) = &f.scenario_glob {
        parts.push(format!("scenario {s}"));
    }
    if let Some(s) = &f.model {
        parts.push(format!("model {s}"));
    }
    if let Some(s) = &f.plan_id {
        parts.push(format!("plan {s}"));
    }
    if let Some(s) = f.simulated {
        parts.push(if s { "simulated" } else { "field" }.to_string());
    }
    parts.join(", ")
}
