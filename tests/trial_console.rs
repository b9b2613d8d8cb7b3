//! `mvla trial` end to end: the console driven in tmux (send-keys /
//! capture-pane) against the built-in hardware-free config, the trial store
//! read back with plain SQL, crash recovery after SIGKILL, refused stores,
//! `mvla trial report` (its Wilson interval checked against statsmodels'
//! value in the committed fixture), and the HTML page in headless Chromium
//! where Chromium is installed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// One tmux server per test (its own socket), killed on drop.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    /// Start `command` in an 80×24 window.
    fn start(dir: &Path, command: &str) -> Tmux {
        // A socket of its own per server (a second server in the same test
        // must not meet the first one's socket while it goes away).
        static SERVERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = SERVERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = Tmux {
            socket: dir.join(format!("tmux-{n}.sock")),
        };
        let ok = t
            .cmd()
            .args(["new-session", "-d", "-s", "console", "-x", "80", "-y", "24"])
            .arg(command)
            .status()
            .expect("tmux must be installed (.ci/setup-system test installs it)");
        assert!(ok.success());
        t
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&self.socket);
        c
    }

    fn screen(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "console"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        assert!(self
            .cmd()
            .args(["send-keys", "-t", "console"])
            .args(keys)
            .status()
            .unwrap()
            .success());
    }

    fn text(&self, text: &str) {
        assert!(self
            .cmd()
            .args(["send-keys", "-t", "console", "-l", text])
            .status()
            .unwrap()
            .success());
    }

    /// Wait until the screen shows `what` (the model loads, frames come at
    /// the replay's 0.8 s step: generous limits, the test is about behaviour).
    fn wait_for(&self, what: &str) -> String {
        self.wait_until(what, |s| s.contains(what))
    }

    fn wait_until(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "screen never showed {what:?}; it shows:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The running trial has a measured capture → chunk latency on screen.
    fn wait_for_inference(&self) {
        self.wait_until("a latency figure", |s| {
            s.split("capture→chunk p50 ")
                .nth(1)
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        });
    }

    fn pane_pid(&self) -> i32 {
        let out = self
            .cmd()
            .args(["list-panes", "-t", "console", "-F", "#{pane_pid}"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

fn console_command(dir: &Path, exit_file: &Path) -> String {
    console_command_with(dir, exit_file, "")
}

fn console_command_with(dir: &Path, exit_file: &Path, extra: &str) -> String {
    format!(
        "cd {} && {} trial --scenario 1box_hori_left_core_medium,1box_hori_right_core_medium \
         --repetitions 1 --seed 3 --record {} --operator tester --config {} {extra}; echo $? > {}",
        env!("CARGO_MANIFEST_DIR"),
        mvla_bin().display(),
        dir.display(),
        fixtures().join("replay.toml").display(),
        exit_file.display()
    )
}

fn wait_for_file(path: &Path) -> String {
    let start = Instant::now();
    while !path.exists() || std::fs::read_to_string(path).unwrap().trim().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{} never written",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::read_to_string(path).unwrap()
}

fn sha256sum(path: &str) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[derive(Debug)]
struct Row {
    scenario: String,
    status: String,
    code: Option<String>,
    ended_by: Option<String>,
    note: Option<String>,
    operator: Option<String>,
    episodes: Option<String>,
    session_log: Option<String>,
    session_log_sha256: Option<String>,
    inferences: Option<i64>,
    simulated: i64,
}

/// The trials as plain SQL sees them (not through the crate's store).
fn rows(db: &Path) -> Vec<Row> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT scenario, status, failure_code, ended_by, note, operator, episodes,
                    session_log_path, session_log_sha256, inferences, simulated
             FROM trials ORDER BY id",
        )
        .unwrap();
    stmt.query_map([], |r| {
        Ok(Row {
            scenario: r.get(0)?,
            status: r.get(1)?,
            code: r.get(2)?,
            ended_by: r.get(3)?,
            note: r.get(4)?,
            operator: r.get(5)?,
            episodes: r.get(6)?,
            session_log: r.get(7)?,
            session_log_sha256: r.get(8)?,
            inferences: r.get(9)?,
            simulated: r.get(10)?,
        })
    })
    .unwrap()
    .collect::<Result<Vec<_>, _>>()
    .unwrap()
}

fn report_json(db: &Path) -> serde_json::Value {
    let out = mvla()
        .args(["trial", "report", "--json", "--db"])
        .arg(db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// statsmodels' Wilson interval for k of n, from the committed fixture.
fn reference_wilson(k: u64, n: u64) -> (f64, f64) {
    let text = std::fs::read_to_string(fixtures().join("trial/stats_reference.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let c = v["wilson_95"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["k"] == k && c["n"] == n)
        .expect("case in the fixture");
    (c["lo"].as_f64().unwrap(), c["hi"].as_f64().unwrap())
}

#[test]
fn an_operator_runs_two_trials_and_the_store_and_report_hold_exactly_them() {
    let dir = tempfile::tempdir().unwrap();
    let exit_file = dir.path().join("exit");
    let tmux = Tmux::start(dir.path(), &console_command(dir.path(), &exit_file));
    let s = tmux.wait_for("Enter starts the trial");
    assert!(
        s.contains("DISARMED") && s.contains("failsafe estop (disarmed)"),
        "starts disarmed (as the motor loop applies it):\n{s}"
    );
    // The seeded order puts the right scenario first (seed 3).
    assert!(s.contains("trial 1/2"), "{s}");
    // Trial 1: start, e-stop, mark failure EARLY_STOP (code 3 of the list).
    tmux.keys(&["Enter"]);
    tmux.wait_for("RUNNING");
    tmux.wait_until("ARMED as the motor loop applies it", |s| {
        s.contains("ARMED") && !s.contains("DISARMED")
    });
    // The policy runs: a measured latency on screen, the loop nominal.
    tmux.wait_for_inference();
    tmux.wait_for("failsafe nominal");
    tmux.keys(&["Space"]);
    tmux.wait_for("STOPPED");
    tmux.wait_for("DISARMED");
    tmux.wait_for("failsafe estop (disarmed)");
    tmux.keys(&["f"]);
    tmux.wait_for("GROUNDING_FAIL");
    tmux.keys(&["3"]);
    tmux.wait_for("#1 failure EARLY_STOP");
    // Trial 2: start, a note, mark success.
    tmux.wait_for("Enter starts the trial");
    tmux.keys(&["Enter"]);
    tmux.wait_for("trial #2 started");
    tmux.wait_for("RUNNING");
    // No note while the wheels may move (Space must stay the e-stop).
    tmux.keys(&["t"]);
    tmux.wait_for("stop the trial first");
    tmux.wait_for_inference();
    tmux.keys(&["y"]);
    tmux.wait_for("#2 success");
    // Between trials a note goes to the last trial.
    tmux.keys(&["t"]);
    tmux.wait_for("note (Enter saves");
    tmux.text("box nudged by hand");
    tmux.keys(&["Enter"]);
    tmux.wait_for("note: box nudged by hand");
    let s = tmux.wait_for("#2 success");
    assert!(
        s.contains("PLAN COMPLETE") && s.contains("tally 1/2 ok"),
        "{s}"
    );
    tmux.keys(&["q"]);
    assert_eq!(wait_for_file(&exit_file).trim(), "0");

    let db = dir.path().join("trials.sqlite");
    let rows = rows(&db);
    assert_eq!(rows.len(), 2, "{rows:?}");
    let (a, b) = (&rows[0], &rows[1]);
    assert_eq!(
        (a.status.as_str(), a.code.as_deref(), a.ended_by.as_deref()),
        ("failure", Some("EARLY_STOP"), Some("operator"))
    );
    assert_eq!((b.status.as_str(), b.code.as_deref()), ("success", None));
    assert_eq!(b.note.as_deref(), Some("box nudged by hand"));
    assert_eq!(a.scenario, "1box_hori_right_core_medium");
    assert_eq!(b.scenario, "1box_hori_left_core_medium");
    for r in &rows {
        assert_eq!(r.operator.as_deref(), Some("tester"));
        assert_eq!(r.simulated, 0);
        assert!(r.inferences.unwrap() >= 1, "{r:?}");
        // The recordings exist and their digests are what sha256sum says.
        let log = r.session_log.as_deref().unwrap();
        assert_eq!(
            r.session_log_sha256.as_deref(),
            Some(sha256sum(log).as_str())
        );
        let episodes: serde_json::Value =
            serde_json::from_str(r.episodes.as_deref().unwrap()).unwrap();
        let episodes = episodes.as_array().unwrap();
        assert!(!episodes.is_empty(), "{r:?}");
        for e in episodes {
            let path = e["path"].as_str().unwrap();
            assert!(Path::new(path).starts_with(dir.path()), "{path}");
            assert_eq!(e["sha256"].as_str().unwrap(), sha256sum(path), "{path}");
            assert!(e["rows"].as_u64().unwrap() >= 1);
        }
    }
    // The report: 1 of 2 with statsmodels' Wilson interval for 1/2.
    let r = report_json(&db);
    let o = &r["overall"];
    assert_eq!(
        (o["n"].as_u64(), o["successes"].as_u64()),
        (Some(2), Some(1))
    );
    let (lo, hi) = reference_wilson(1, 2);
    assert!((o["wilson_95"][0].as_f64().unwrap() - lo).abs() < 1e-12);
    assert!((o["wilson_95"][1].as_f64().unwrap() - hi).abs() < 1e-12);
    assert_eq!(o["failure_codes"]["EARLY_STOP"], 1);
    assert_eq!(r["per_scenario"].as_array().unwrap().len(), 2);
}

#[test]
fn a_trial_killed_mid_run_is_recorded_as_aborted_never_lost_or_counted() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("trials.sqlite");
    let exit_file = dir.path().join("exit");
    // `exec`: the pane's process is mvla itself, so SIGKILL reaches it.
    let command = console_command(dir.path(), &exit_file).replace(" && ", " && exec ");
    let tmux = Tmux::start(dir.path(), &command);
    tmux.wait_for("Enter starts the trial");
    tmux.keys(&["Enter"]);
    tmux.wait_for("RUNNING");
    let pid = tmux.pane_pid();
    // SAFETY: kill(2) on the console's pid (the pane's exec'd process).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    std::thread::sleep(Duration::from_millis(300));
    let before = rows(&db);
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].status, "running", "written when it started");
    // The report never counts it as a success, before or after recovery.
    let r = report_json(&db);
    assert_eq!(r["overall"]["n"], 0);
    assert_eq!(r["overall"]["running"], 1);
    // The next console session recovers it as aborted.
    drop(tmux);
    let exit2 = dir.path().join("exit2");
    let tmux = Tmux::start(dir.path(), &console_command(dir.path(), &exit2));
    let s = tmux.wait_for("Enter starts the trial");
    assert!(s.contains("recorded as aborted"), "{s}");
    tmux.keys(&["q"]);
    assert_eq!(wait_for_file(&exit2).trim(), "0");
    let after = rows(&db);
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].status, "aborted");
    assert_eq!(after[0].ended_by.as_deref(), Some("recovered"));
    let r = report_json(&db);
    assert_eq!(
        (r["overall"]["n"].as_u64(), r["overall"]["aborted"].as_u64()),
        (Some(0), Some(1))
    );
}

/// The pids of `mvla` processes whose command line mentions `needle`.
fn processes_with(needle: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c);
                let mut args = c.split('\0');
                args.next() == Some(mvla_bin().to_str().unwrap()) && c.contains(needle)
            })
        })
        .collect()
}

#[test]
fn a_console_whose_terminal_goes_away_stops_and_stores_the_trial_as_aborted() {
    // The ssh connection drops mid-trial: here the tmux server is killed,
    // with a shell between it and mvla that does not pass SIGHUP on.
    let dir = tempfile::tempdir().unwrap();
    let exit_file = dir.path().join("exit");
    let tmux = Tmux::start(dir.path(), &console_command(dir.path(), &exit_file));
    tmux.wait_for("Enter starts the trial");
    tmux.keys(&["Enter"]);
    tmux.wait_for("RUNNING");
    tmux.wait_until("ARMED as the motor loop applies it", |s| {
        s.contains("ARMED") && !s.contains("DISARMED")
    });
    let needle = dir.path().display().to_string();
    assert_eq!(processes_with(&needle).len(), 1);
    drop(tmux);
    let start = Instant::now();
    while !processes_with(&needle).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the console outlived its terminal"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let rows = rows(&dir.path().join("trials.sqlite"));
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].status.as_str(), rows[0].ended_by.as_deref()),
        ("aborted", Some("hangup"))
    );
}

/// Run `mvla trial` on a store that must be refused: exit 2, the store's
/// message, the file byte for byte as it was.
fn refused(db: &Path, want: &str) {
    let before = std::fs::read(db).unwrap();
    let out = mvla()
        .args(["trial", "--scenario", "x", "--db"])
        .arg(db)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&db.display().to_string()) && err.contains(want),
        "{err}"
    );
    assert_eq!(std::fs::read(db).unwrap(), before, "left as it was");
    // The report refuses it the same way.
    let out = mvla()
        .args(["trial", "report", "--db"])
        .arg(db)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn corrupt_foreign_newer_and_locked_stores_are_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    // Not a database at all.
    let junk = dir.path().join("junk.sqlite");
    std::fs::write(
        &junk,
        b"these are not the pages of an SQLite file, really not\n".repeat(100),
    )
    .unwrap();
    refused(&junk, "not a readable SQLite database");
    // Another application's database.
    let foreign = dir.path().join("foreign.sqlite");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    refused(&foreign, "another application");
    // A newer schema of ours.
    let newer = dir.path().join("newer.sqlite");
    rusqlite::Connection::open(&newer)
        .unwrap()
        .execute_batch(&format!(
            "PRAGMA application_id = {}; PRAGMA user_version = 99; CREATE TABLE trials(x);",
            mvla::trial::store::APPLICATION_ID
        ))
        .unwrap();
    refused(&newer, "schema version 99 is newer");
    // Locked by another process's write transaction (held for the whole check).
    let locked = dir.path().join("locked.sqlite");
    mvla::trial::store::TrialStore::open(&locked, mvla::trial::store::Access::Writer).unwrap();
    let holder = rusqlite::Connection::open(&locked).unwrap();
    holder
        .execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE;")
        .unwrap();
    let out = mvla()
        .args(["trial", "report", "--db"])
        .arg(&locked)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("locked by another process"), "{err}");
    drop(holder);
    // A missing store for a report.
    let out = mvla()
        .args(["trial", "report", "--db"])
        .arg(dir.path().join("none.sqlite"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        !dir.path().join("none.sqlite").exists(),
        "a report creates nothing"
    );
}

#[test]
fn a_second_console_is_refused_and_the_time_limit_ends_a_trial_as_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let exit_file = dir.path().join("exit");
    let tmux = Tmux::start(
        dir.path(),
        &console_command_with(dir.path(), &exit_file, "--time-limit-s 2"),
    );
    tmux.wait_for("Enter starts the trial");
    let out = mvla()
        .args(["trial", "--scenario", "x", "--record"])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("another `mvla trial` console has it open"),
        "{err}"
    );
    // A trial nobody marks: stopped at the limit, failure OTHER on Enter.
    tmux.keys(&["Enter"]);
    tmux.wait_for("RUNNING");
    let s = tmux.wait_for("time limit 2 s");
    assert!(s.contains("STOPPED"), "{s}");
    tmux.wait_for("DISARMED");
    tmux.keys(&["Enter"]);
    tmux.wait_for("#1 failure OTHER (time_limit");
    tmux.keys(&["q"]);
    assert_eq!(wait_for_file(&exit_file).trim(), "0");
    let rows = rows(&dir.path().join("trials.sqlite"));
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (
            rows[0].status.as_str(),
            rows[0].code.as_deref(),
            rows[0].ended_by.as_deref()
        ),
        ("failure", Some("OTHER"), Some("time_limit"))
    );
}

#[test]
fn simulated_trials_join_the_store_and_the_html_page_renders() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("trials.sqlite");
    let out = mvla()
        .args([
            "sim",
            "trials",
            "--policy",
            "expert",
            "--scenario",
            "1box_hori_*_core_close",
            "--trials",
            "2",
            "--width",
            "160",
            "--height",
            "90",
            "--latency-ms",
            "60",
            "--db",
        ])
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = rows(&db);
    assert_eq!(rows.len(), 4);
    assert!(rows
        .iter()
        .all(|r| r.simulated == 1 && r.ended_by.as_deref() == Some("judge")));
    let r = report_json(&db);
    assert_eq!(r["overall"]["n"], 4);
    // Filters: one scenario, simulated only, field only.
    let n = |args: &[&str]| -> u64 {
        let out = mvla()
            .args(["trial", "report", "--json", "--db"])
            .arg(&db)
            .args(args)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["trials"].as_array().unwrap().len() as u64
    };
    assert_eq!(n(&["--scenario", "1box_hori_left_*"]), 2);
    assert_eq!(n(&["--simulated"]), 4);
    assert_eq!(n(&["--field"]), 0);
    // The page: every section, one trajectory plot per trial, no overwrite.
    let page = dir.path().join("report.html");
    let out = mvla()
        .args(["trial", "report", "--db"])
        .arg(&db)
        .arg("--html")
        .arg(&page)
        .output()
        .unwrap();
    assert!(out.status.success());
    let html = std::fs::read_to_string(&page).unwrap();
    for id in [
        "per-scenario",
        "rate-plot",
        "codes-plot",
        "latency-plot",
        "trajectories",
        "trials",
    ] {
        assert!(html.contains(&format!("id=\"{id}\"")), "{id}");
    }
    assert!(html.matches("<polyline").count() >= 4, "a path per trial");
    let again = mvla()
        .args(["trial", "report", "--db"])
        .arg(&db)
        .arg("--html")
        .arg(&page)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2), "never over an existing page");
    // Headless Chromium, where installed (.ci/setup-system test installs it).
    let chromium = Path::new("/usr/bin/chromium");
    if !chromium.exists() {
        eprintln!("skip: no /usr/bin/chromium; the page's content was checked above");
        return;
    }
    let shot = |url: &str, png: &Path| {
        let status = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1100,1600",
            ])
            .arg(format!(
                "--user-data-dir={}",
                dir.path().join("chrome").display()
            ))
            .arg(format!("--screenshot={}", png.display()))
            .arg(url)
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
        std::fs::metadata(png).unwrap().len()
    };
    let blank = dir.path().join("blank.html");
    std::fs::write(&blank, "<!DOCTYPE html><html><body></body></html>").unwrap();
    let blank_size = shot(
        &format!("file://{}", blank.display()),
        &dir.path().join("blank.png"),
    );
    let page_size = shot(
        &format!("file://{}", page.display()),
        &dir.path().join("page.png"),
    );
    eprintln!("screenshot: page {page_size} bytes, blank page {blank_size} bytes");
    assert!(
        page_size > 5 * blank_size,
        "the rendered report ({page_size} B) must carry far more than a blank page ({blank_size} B)"
    );
}
