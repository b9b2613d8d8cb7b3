//! `mvla doctor`: the on-robot acceptance checks a field engineer runs after
//! installing (and after any change to the robot). Each check reports pass,
//! fail or skip with the reason; the report (table or JSON) carries the
//! versions and figures measured. On a machine without the hardware the
//! hardware checks are skipped, saying what is missing; `--require` turns the
//! named skips into failures so the robot can demand that they ran.
//!
//! Every check reuses the runtime's own code (the V4L2 source, the CUDA
//! kernels and the CPU twin, the engine naming and parity record, the SLCAN
//! link, the chain benchmark); nothing here is a second implementation.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

use crate::capture::{Frame, FrameSource};
use crate::config::{CaptureConfig, Config, LinkConfig, PolicyBackend};
use crate::drive::MotorLink;
use crate::policy::engine::TrtVersion;
use crate::preprocess::cuda::{self, CudaPreprocessor, OutputPrecision};
use crate::preprocess::{ChannelOrder, CpuPreprocessor, InputFormat, Preprocessor, Rotation};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Skip,
}

impl Status {
    /// Pass when `ok`, else fail.
    pub fn pass_if(ok: bool) -> Self {
        if ok {
            Self::Pass
        } else {
            Self::Fail
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Stable name (`--require` takes these).
    pub name: &'static str,
    pub status: Status,
    /// What was found, or why it was skipped / failed.
    pub detail: String,
    /// Measured figures and versions.
    pub figures: Value,
}

impl Check {
    fn new(name: &'static str, status: Status, detail: impl Into<String>) -> Self {
        Self {
            name,
            status,
            detail: detail.into(),
            figures: Value::Null,
        }
    }

    fn with(mut self, figures: Value) -> Self {
        self.figures = figures;
        self
    }
}

/// The names of every check, in the order they run.
pub const CHECKS: &[&str] = &[
    "systemd",
    "disk",
    "realtime",
    "camera",
    "cuda",
    "nvrtc",
    "kernels",
    "tensorrt",
    "engines",
    "gpu_chain",
    "link",
];

/// Names `--require` accepts besides the checks themselves.
pub const REQUIRE_GROUPS: &[(&str, &[&str])] = &[
    ("gpu", &["cuda", "nvrtc", "kernels"]),
    (
        "hardware",
        &[
            "camera",
            "cuda",
            "nvrtc",
            "kernels",
            "tensorrt",
            "engines",
            "gpu_chain",
            "link",
        ],
    ),
    ("all", CHECKS),
];

/// Expand `--require` names (checks or groups) into check names, in check
/// order, without repeats; an unknown name is an error naming what exists.
pub fn expand_require(names: &[String]) -> Result<Vec<&'static str>, String> {
    let mut wanted = Vec::new();
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        if let Some(check) = CHECKS.iter().find(|c| **c == name) {
            wanted.push(*check);
        } else if let Some((_, members)) = REQUIRE_GROUPS.iter().find(|(g, _)| *g == name) {
            wanted.extend_from_slice(members);
        } else {
            return Err(format!(
                "--require {name}: no such check or group (checks: {}; groups: {})",
                CHECKS.join(", "),
                REQUIRE_GROUPS
                    .iter()
                    .map(|(g, _)| *g)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    Ok(CHECKS
        .iter()
        .copied()
        .filter(|c| wanted.contains(c))
        .collect())
}

/// Below this much free space the disk check fails by default. An 18-step
/// episode at 720p is ~50 MB (UPSTREAM §1), so 2 GiB holds ~40 episodes, a
/// day of field trials with margin.
pub const DEFAULT_MIN_FREE_GIB: f64 = 2.0;

/// The largest |GPU − CPU twin| the kernels check accepts. The kernels are
/// written to be bit-exact (0 is expected and has been measured on an H100);
/// 1e-6 is far below one 8-bit pixel step after normalisation (~1/255/0.27),
/// so anything above it is a real divergence, not rounding.
pub const KERNEL_MAX_ABS_DIFF: f64 = 1e-6;

#[derive(Debug, Clone)]
pub struct DoctorOptions {
    /// The `--config` file; None: the built-in default.
    pub config_path: Option<PathBuf>,
    /// Checks whose skip counts as a failure (see [`expand_require`]).
    pub require: Vec<String>,
    /// Free space the recordings directory must have.
    pub min_free_gib: f64,
    /// Frames to grab from the camera.
    pub camera_frames: usize,
    /// Steps of the GPU chain benchmark.
    pub chain_steps: usize,
    /// `--report-dir`: where the report goes (default: the config's
    /// `[record] dir`); also the disk check's directory when the config
    /// records nowhere.
    pub report_dir: Option<PathBuf>,
    /// Build (or reuse) and gate the engines first, like `mvla engine build`.
    pub build: bool,
}

impl Default for DoctorOptions {
    fn default() -> Self {
        Self {
            config_path: None,
            require: Vec::new(),
            min_free_gib: DEFAULT_MIN_FREE_GIB,
            // 2 s at 30 fps: enough to see a rate and a dropped frame.
            camera_frames: 60,
            // Few steps: a latency figure, not a benchmark (`mvla bench` is).
            chain_steps: 30,
            report_dir: None,
            build: false,
        }
    }
}

impl DoctorOptions {
    /// Where the JSON report goes: `--report-dir`, else the recordings.
    pub fn report_dir(&self, config: &Config) -> Option<PathBuf> {
        self.report_dir
            .clone()
            .or_else(|| config.record.as_ref().map(|r| r.dir.clone()))
    }
}

/// Versions found on this machine (None: not present / not compiled in).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Versions {
    pub mvla: &'static str,
    /// The commit the binary was built from (build.rs), when built in a checkout.
    pub git_commit: Option<&'static str>,
    /// `uname -r`.
    pub kernel: Option<String>,
    /// Jetson Linux release (`/etc/nv_tegra_release`, first line).
    pub l4t: Option<String>,
    pub gpu: Option<String>,
    pub compute_capability: Option<String>,
    /// The CUDA version the driver supports.
    pub cuda_driver: Option<String>,
    pub nvrtc: Option<String>,
    pub tensorrt: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub mvla_version: &'static str,
    pub git_commit: &'static str,
    pub arch: &'static str,
    pub hostname: String,
    pub unix_time_s: u64,
    /// ISO-8601 UTC.
    pub utc: String,
    pub config: String,
    pub features: Vec<&'static str>,
    pub versions: Versions,
    pub checks: Vec<Check>,
    pub ok: bool,
    /// The hardware-only tests of the repository and how to run them.
    pub hardware_tests: Vec<HardwareTest>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HardwareTest {
    pub needs: &'static str,
    pub command: &'static str,
}

/// The `#[ignore]`d tests of the repository (they need hardware), with the
/// command that runs each on a machine that has it (`tests/doctor.rs` checks
/// that every test file with an ignored test is listed here).
pub const HARDWARE_TESTS: &[HardwareTest] = &[
    HardwareTest {
        needs: "a V4L2 camera at /dev/video0",
        command: "cargo test --release --test camera_v4l2 -- --ignored",
    },
    HardwareTest {
        needs: "an NVIDIA GPU + NVRTC (kernels vs CPU twin, 50 cases)",
        command: "cargo test --release --features cuda --test cuda_kernels -- --include-ignored",
    },
];

/// Table layout: `  pass  gpu_chain  detail…`, details wrapped to 80 columns.
const TABLE_WIDTH: usize = 80;
const TABLE_INDENT: usize = 19;

/// Greedy word wrap of `text` into lines of at most `width` characters (a
/// single longer word, e.g. a path, stays whole on its own line).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    lines.push(line);
    lines
}

impl Report {
    /// Exit status of `mvla doctor`: 0 when nothing failed.
    pub fn exit_code(&self) -> u8 {
        u8::from(!self.ok)
    }

    /// The pass/fail/skip table, wrapped to 80 columns.
    pub fn table(&self) -> String {
        let commit: String = self.git_commit.chars().take(12).collect();
        let mut out = format!(
            "mvla {} ({commit}) doctor on {} ({}), {}\n",
            self.mvla_version, self.hostname, self.arch, self.utc
        );
        for line in wrap(&format!("config: {}", self.config), TABLE_WIDTH) {
            out.push_str(&line);
            out.push('\n');
        }
        for c in &self.checks {
            let mark = match c.status {
                Status::Pass => "pass",
                Status::Fail => "FAIL",
                Status::Skip => "skip",
            };
            let lines = wrap(&c.detail, TABLE_WIDTH - TABLE_INDENT);
            for (i, line) in lines.iter().enumerate() {
                if i == 0 {
                    out.push_str(&format!("  {mark}  {:<10} {line}\n", c.name));
                } else {
                    out.push_str(&format!("{:TABLE_INDENT$}{line}\n", ""));
                }
            }
        }
        let count = |s: Status| self.checks.iter().filter(|c| c.status == s).count();
        let (pass, fail, skip) = (
            count(Status::Pass),
            count(Status::Fail),
            count(Status::Skip),
        );
        out.push_str(&if self.ok {
            format!("result: ok ({pass} pass, {skip} skip, 0 failed)\n")
        } else {
            format!("result: FAILED ({fail} failed, {pass} pass, {skip} skip)\n")
        });
        out
    }
}

/// Run every check against `config`.
pub fn run(config: &Config, options: &DoctorOptions) -> Report {
    let mut checks = Vec::new();
    let service = check_systemd(config, options.config_path.as_deref());
    let service_running = service.figures.get("active").and_then(Value::as_str) == Some("active");
    checks.push(service);
    let report_dir = options.report_dir(config);
    checks.push(check_disk(
        config,
        report_dir.as_deref(),
        options.min_free_gib,
    ));
    checks.push(check_realtime(config));
    let (camera, frames) = check_camera(config, options.camera_frames, service_running);
    checks.push(camera);
    let (cuda_check, gpu) = check_cuda();
    checks.push(cuda_check);
    let (nvrtc_check, nvrtc) = check_nvrtc(gpu.as_ref());
    checks.push(nvrtc_check);
    checks.push(check_kernels(config, gpu.as_ref(), &frames));
    let (trt_check, trt) = check_tensorrt(config);
    checks.push(trt_check);
    let engines = check_engines(config, trt, gpu.as_ref(), options.build);
    let engines_ok = engines.status == Status::Pass;
    checks.push(engines);
    checks.push(check_gpu_chain(config, engines_ok, options.chain_steps));
    checks.push(check_link(config, service_running));
    for c in &mut checks {
        if c.status == Status::Skip && options.require.iter().any(|r| r == c.name) {
            c.status = Status::Fail;
            c.detail = format!("required but skipped: {}", c.detail);
        }
    }
    let ok = checks.iter().all(|c| c.status != Status::Fail);
    let mut features = Vec::new();
    if cfg!(feature = "cuda") {
        features.push("cuda");
    }
    if cfg!(feature = "tensorrt") {
        features.push("tensorrt");
    }
    let now = std::time::SystemTime::now();
    let read_line = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.lines().next().map(|l| l.trim().to_string()))
            .filter(|l| !l.is_empty())
    };
    let git_commit = option_env!("MVLA_GIT_COMMIT");
    let versions = Versions {
        mvla: env!("CARGO_PKG_VERSION"),
        git_commit,
        kernel: read_line("/proc/sys/kernel/osrelease"),
        l4t: read_line("/etc/nv_tegra_release"),
        gpu: gpu.as_ref().map(|g| g.name.clone()),
        compute_capability: gpu
            .as_ref()
            .map(|g| format!("{}.{}", g.compute_capability.0, g.compute_capability.1)),
        cuda_driver: gpu.as_ref().map(|g| g.driver_cuda_version.clone()),
        nvrtc,
        tensorrt: trt.map(|v| v.to_string()),
    };
    Report {
        mvla_version: env!("CARGO_PKG_VERSION"),
        git_commit: git_commit.unwrap_or("unknown"),
        arch: std::env::consts::ARCH,
        hostname: read_line("/proc/sys/kernel/hostname").unwrap_or_default(),
        unix_time_s: now
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        utc: crate::record::writer::utc_stamp(now).0,
        config: options
            .config_path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "built-in default".into()),
        features,
        versions,
        checks,
        ok,
        hardware_tests: HARDWARE_TESTS.to_vec(),
    }
}

/// Write the JSON report as `doctor_<YYYYmmdd_HHMMSS UTC>.json` in `dir`
/// (written to a temporary name, then renamed: a reader never sees half a
/// report). A second report in the same second gets `_2`, `_3`, … instead of
/// replacing the first.
pub fn write_report(report: &Report, dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let t = std::time::UNIX_EPOCH + Duration::from_secs(report.unix_time_s);
    let stamp = crate::record::writer::utc_stamp(t).1;
    let mut path = dir.join(format!("doctor_{stamp}.json"));
    let mut n = 1;
    while path.exists() {
        n += 1;
        path = dir.join(format!("doctor_{stamp}_{n}.json"));
    }
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(report).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, text + "\n")?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// The `--config` path in a unit's `ExecStart` as `systemctl show` prints it
/// (`{ path=/usr/local/bin/mvla ; argv[]=/usr/local/bin/mvla run --config
/// /etc/mvla/robot.toml ; ignore_errors=no ; … }`).
pub fn exec_start_config(exec_start: &str) -> Option<String> {
    let argv = exec_start.split("argv[]=").nth(1)?;
    let argv = argv.split(" ;").next()?;
    let mut words = argv.split_whitespace();
    while let Some(w) = words.next() {
        if w == "--config" {
            return words.next().map(str::to_string);
        }
        if let Some(v) = w.strip_prefix("--config=") {
            return Some(v.to_string());
        }
    }
    None
}

/// The installed unit: enabled and not failed, started with the config this
/// run checks, and granted the real-time priority and memory locking that
/// config asks for (the service runs as its own user, so the `realtime`
/// check, which tests the user running doctor, cannot vouch for it).
fn check_systemd(config: &Config, config_path: Option<&Path>) -> Check {
    const NAME: &str = "systemd";
    if !Path::new("/run/systemd/system").is_dir() {
        return Check::new(NAME, Status::Skip, "systemd is not running on this machine");
    }
    let systemctl = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("systemctl")
            .args(args)
            .output()
            .ok()?;
        Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let (Some(enabled), Some(active)) = (
        systemctl(&["is-enabled", "mvla.service"]),
        systemctl(&["is-active", "mvla.service"]),
    ) else {
        return Check::new(NAME, Status::Skip, "systemctl not found");
    };
    if enabled.is_empty() || enabled == "not-found" {
        return Check::new(
            NAME,
            Status::Skip,
            "mvla.service is not installed (sudo bash systemd/install.sh)",
        )
        .with(json!({ "enabled": enabled, "active": active }));
    }
    let show = systemctl(&[
        "show",
        "mvla.service",
        "--property=ExecStart,User,LimitRTPRIO,LimitMEMLOCK,AmbientCapabilities",
    ])
    .unwrap_or_default();
    let property = |key: &str| {
        show.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or("")
            .to_string()
    };
    let unit_config = exec_start_config(&property("ExecStart"));
    let (user, rtprio, memlock, caps) = (
        property("User"),
        property("LimitRTPRIO"),
        property("LimitMEMLOCK"),
        property("AmbientCapabilities"),
    );
    let figures = json!({ "enabled": enabled, "active": active, "exec_start_config": unit_config,
        "user": user, "limit_rtprio": rtprio, "limit_memlock": memlock,
        "ambient_capabilities": caps });
    let mut problems = Vec::new();
    if enabled != "enabled" {
        problems.push(format!("mvla.service is {enabled}, not enabled"));
    }
    if !matches!(active.as_str(), "active" | "inactive") {
        problems.push(format!("mvla.service is {active} (journalctl -u mvla -b)"));
    }
    // The verdict only applies to the service if it checked the service's config.
    let same_file = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    if let Some(unit) = &unit_config {
        let checked = config_path.map(|p| same_file(p, Path::new(unit)));
        if checked != Some(true) {
            problems.push(format!(
                "mvla.service runs --config {unit} but doctor checked {}: run mvla doctor --config {unit}",
                config_path.map_or("the built-in default".into(), |p| p.display().to_string())
            ));
        }
    }
    let root = user.is_empty() || user == "root";
    let has_cap = |cap: &str| caps.split_whitespace().any(|c| c == cap);
    let priority = config.realtime_priority.max(config.link_realtime_priority);
    if priority > 0
        && !root
        && !has_cap("cap_sys_nice")
        && rtprio
            .parse::<u64>()
            .map_or(true, |l| l < u64::from(priority))
    {
        problems.push(format!(
            "the unit gives {user} neither CAP_SYS_NICE nor LimitRTPRIO >= {priority} (has {rtprio}): SCHED_FIFO will be refused"
        ));
    }
    // mlockall locks the whole process: only an unlimited limit or the capability will do.
    if config.lock_memory && !root && !has_cap("cap_ipc_lock") && memlock != "infinity" {
        problems.push(format!(
            "the unit gives {user} neither CAP_IPC_LOCK nor LimitMEMLOCK=infinity (has {memlock}): mlockall will fail"
        ));
    }
    if problems.is_empty() {
        Check::new(
            NAME,
            Status::Pass,
            format!(
                "mvla.service {enabled}, {active}, --config {}",
                unit_config.as_deref().unwrap_or("(none)")
            ),
        )
        .with(figures)
    } else {
        Check::new(NAME, Status::Fail, problems.join("; ")).with(figures)
    }
}

/// Free space for recordings: the `[record] dir` filesystem, else (a config
/// that records nowhere) the `--report-dir` one.
fn check_disk(config: &Config, report_dir: Option<&Path>, min_free_gib: f64) -> Check {
    const NAME: &str = "disk";
    let (target, what) = match (&config.record, report_dir) {
        (Some(record), _) => (record.dir.as_path(), "recordings"),
        (None, Some(dir)) => (dir, "the report (no [record] dir in the config)"),
        (None, None) => {
            return Check::new(
                NAME,
                Status::Skip,
                "no [record] dir in the config and no --report-dir",
            )
        }
    };
    // The directory may not exist yet: measure the filesystem it will be on.
    let mut dir = target;
    while !dir.exists() {
        match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => dir = p,
            _ => {
                dir = Path::new(".");
                break;
            }
        }
    }
    match nix::sys::statvfs::statvfs(dir) {
        Ok(s) => {
            let free = s.blocks_available() as f64 * s.fragment_size() as f64;
            let free_gib = free / f64::from(1u32 << 30);
            let figures =
                json!({ "dir": target, "free_gib": free_gib, "min_free_gib": min_free_gib });
            let status = Status::pass_if(free_gib >= min_free_gib);
            Check::new(
                NAME,
                status,
                format!(
                    "{free_gib:.1} GiB free for {what} in {} (minimum {min_free_gib} GiB)",
                    target.display()
                ),
            )
            .with(figures)
        }
        Err(e) => Check::new(
            NAME,
            Status::Fail,
            format!("statvfs {}: {e}", dir.display()),
        ),
    }
}

/// SCHED_FIFO at `priority` on a short-lived thread (the caller keeps its own
/// scheduling).
fn try_sched_fifo(priority: u8) -> std::io::Result<()> {
    std::thread::spawn(move || crate::realtime::try_sched_fifo(priority))
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("probe thread panicked")))
}

/// `mlock` of a 1 MiB buffer (a probe: the service locks everything it has
/// mapped before the model loads, `realtime::lock_current_memory`).
fn try_mlock() -> std::io::Result<()> {
    let buf = vec![0u8; 1 << 20];
    // SAFETY: locks pages of a live buffer we own.
    if unsafe { libc::mlock(buf.as_ptr().cast(), buf.len()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above; unlocked before the buffer is freed.
    unsafe { libc::munlock(buf.as_ptr().cast(), buf.len()) };
    Ok(())
}

/// Real-time scheduling and memory locking for the user running doctor.
/// Probed even when the config asks for neither, so the report says what
/// this user could get; only what the config asks for can fail.
fn check_realtime(config: &Config) -> Check {
    const NAME: &str = "realtime";
    let limit = |resource| {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the struct we own.
        if unsafe { libc::getrlimit(resource, &mut r) } == 0 {
            Some(r.rlim_cur)
        } else {
            None
        }
    };
    let show = |v: Option<u64>| match v {
        Some(libc::RLIM_INFINITY) => "unlimited".to_string(),
        Some(v) => v.to_string(),
        None => "unknown".to_string(),
    };
    let (rtprio, memlock) = (limit(libc::RLIMIT_RTPRIO), limit(libc::RLIMIT_MEMLOCK));
    // The motor and link threads may ask for different priorities: probe the
    // higher one (RLIMIT_RTPRIO caps from the top); 1 (the lowest) when the
    // config asks for none.
    let priority = config.realtime_priority.max(config.link_realtime_priority);
    let probe_priority = priority.max(1);
    let fifo = try_sched_fifo(probe_priority);
    let mlock = try_mlock();
    let outcome = |r: &std::io::Result<()>| match r {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("refused ({e})"),
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let fifo_text = format!("SCHED_FIFO {probe_priority} {}", outcome(&fifo));
    let mlock_text = format!("mlock {}", outcome(&mlock));
    if priority == 0 {
        notes.push(format!(
            "realtime_priority = link_realtime_priority = 0 (not used): {fifo_text}"
        ));
    } else if fifo.is_err() {
        let hint = if euid == 0 {
            "refused even to root: the kernel or this cgroup allows no real-time time (cpu.rt_runtime_us)"
        } else {
            "the unit grants CAP_SYS_NICE: run as root, and see the systemd check"
        };
        problems.push(format!(
            "{fifo_text}; RLIMIT_RTPRIO {} ({hint})",
            show(rtprio)
        ));
    } else {
        notes.push(fifo_text);
    }
    if !config.lock_memory {
        notes.push(format!("lock_memory = false (not used): {mlock_text}"));
    } else if mlock.is_err() {
        problems.push(format!(
            "{mlock_text}; RLIMIT_MEMLOCK {} bytes",
            show(memlock)
        ));
    } else {
        notes.push(mlock_text);
    }
    let figures = json!({ "realtime_priority": config.realtime_priority,
        "link_realtime_priority": config.link_realtime_priority, "lock_memory": config.lock_memory,
        "sched_fifo_probe_priority": probe_priority, "sched_fifo_ok": fifo.is_ok(),
        "mlock_ok": mlock.is_ok(), "rlimit_rtprio": show(rtprio),
        "rlimit_memlock_bytes": show(memlock),
        "euid": euid });
    let status = Status::pass_if(problems.is_empty());
    problems.extend(notes);
    Check::new(NAME, status, problems.join("; ")).with(figures)
}

/// Grab frames from the configured camera: formats, fps, timestamp monotonicity.
fn check_camera(config: &Config, frames: usize, service_running: bool) -> (Check, Vec<Frame>) {
    const NAME: &str = "camera";
    let CaptureConfig::V4l2 { config: v4l2, .. } = &config.capture else {
        return (
            Check::new(
                NAME,
                Status::Skip,
                "capture source is not a camera (replay or sim)",
            ),
            Vec::new(),
        );
    };
    if service_running {
        return (
            Check::new(
                NAME,
                Status::Skip,
                "mvla.service is running and holds the camera (systemctl stop mvla first)",
            ),
            Vec::new(),
        );
    }
    if !v4l2.device.exists() {
        return (
            Check::new(
                NAME,
                Status::Skip,
                format!("no camera: {} does not exist", v4l2.device.display()),
            ),
            Vec::new(),
        );
    }
    // What the device offers, for the report (and the reason when the
    // configured format is not among it: `open` names both).
    let offers = crate::capture::v4l2::list_offers(&v4l2.device)
        .map(|o| crate::capture::v4l2::describe_offers(&o))
        .unwrap_or_else(|e| format!("cannot list formats: {e}"));
    let clock: Arc<dyn crate::clock::Clock> = Arc::new(crate::clock::MonotonicClock);
    let opened = Instant::now();
    let mut source = match crate::capture::v4l2::V4l2Source::open(v4l2.clone(), clock) {
        Ok(s) => s,
        Err(e) => {
            return (
                Check::new(NAME, Status::Fail, crate::error::report(&e))
                    .with(json!({ "offers": offers })),
                Vec::new(),
            )
        }
    };
    let describe = source.describe();
    let mut kept = Vec::new();
    let mut times = Vec::new();
    let mut seqs = Vec::new();
    let mut frame = Frame::default();
    let mut first_frame_ms = 0.0;
    let n = frames.max(2);
    for i in 0..n {
        if let Err(e) = source.next_frame(&mut frame) {
            return (
                Check::new(
                    NAME,
                    Status::Fail,
                    format!("{describe}: frame {i}: {e}", e = crate::error::Report(&e)),
                )
                .with(json!({ "offers": offers })),
                kept,
            );
        }
        if i == 0 {
            first_frame_ms = opened.elapsed().as_secs_f64() * 1000.0;
        }
        times.push(frame.capture_time);
        seqs.push(frame.seq);
        // Keep a few frames for the kernel check (first, middle, last).
        if i == 0 || i == n / 2 || i + 1 == n {
            kept.push(frame.clone());
        }
    }
    let monotonic = times.windows(2).all(|w| w[1] > w[0]);
    let span = times
        .last()
        .zip(times.first())
        .map(|(l, f)| l.saturating_since(*f))
        .unwrap_or_default();
    let fps = if span.is_zero() {
        0.0
    } else {
        (times.len() - 1) as f64 / span.as_secs_f64()
    };
    let dropped: u64 = seqs
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]).saturating_sub(1))
        .sum();
    let figures = json!({ "source": describe, "offers": offers, "frames": times.len(), "fps": fps,
        "timestamps_monotonic": monotonic, "dropped": dropped, "configured_fps": v4l2.fps,
        "first_frame_ms": first_frame_ms });
    // Below 80 % of the configured rate the camera is not delivering what
    // the service was configured for (USB bandwidth, exposure too long).
    let slow = fps < 0.8 * f64::from(v4l2.fps);
    let status = Status::pass_if(monotonic && !slow);
    let mut detail = format!(
        "{describe}: {:.1} fps over {} frames, {dropped} dropped",
        fps,
        times.len()
    );
    if !monotonic {
        detail.push_str(", timestamps NOT monotonic");
    }
    if slow {
        detail.push_str(&format!(", below 80 % of the configured {} fps", v4l2.fps));
    }
    (Check::new(NAME, status, detail).with(figures), kept)
}

fn check_cuda() -> (Check, Option<cuda::GpuInfo>) {
    const NAME: &str = "cuda";
    match cuda::gpu_info() {
        Ok(info) => {
            let detail = format!(
                "{} (sm_{}{}), driver CUDA {}, {} MiB",
                info.name,
                info.compute_capability.0,
                info.compute_capability.1,
                info.driver_cuda_version,
                info.memory_mib
            );
            let figures = serde_json::to_value(&info).unwrap_or(Value::Null);
            (
                Check::new(NAME, Status::Pass, detail).with(figures),
                Some(info),
            )
        }
        Err(e) => (
            Check::new(NAME, Status::Skip, crate::error::report(&e)),
            None,
        ),
    }
}

fn check_nvrtc(gpu: Option<&cuda::GpuInfo>) -> (Check, Option<String>) {
    const NAME: &str = "nvrtc";
    let version = match cuda::nvrtc_version() {
        Ok(v) => v,
        Err(e) => {
            return (
                Check::new(NAME, Status::Skip, crate::error::report(&e)),
                None,
            )
        }
    };
    // The robot's architecture when no GPU is present (Orin: sm_87).
    // `compile` keeps the architecture for the process lifetime (&'static);
    // one small string per doctor run is leaked for it.
    let arch: &'static str = match gpu {
        Some(g) => Box::leak(
            format!(
                "compute_{}{}",
                g.compute_capability.0, g.compute_capability.1
            )
            .into_boxed_str(),
        ),
        None => "compute_87",
    };
    let mut problems = Vec::new();
    for k in crate::preprocess::kernels::KERNELS {
        match cuda::compile(k, arch) {
            Ok(ptx) => {
                let v = crate::preprocess::kernels::ptx_float_semantics_violations(&ptx);
                if !v.is_empty() {
                    problems.push(format!("{}: {}", k.file, v.join("; ")));
                }
            }
            Err(e) => problems.push(crate::error::report(&e)),
        }
    }
    let figures = json!({ "nvrtc_version": version, "arch": arch });
    let check = if problems.is_empty() {
        Check::new(
            NAME,
            Status::Pass,
            format!("NVRTC {version}: kernels compile for {arch}, float semantics as the CPU twin"),
        )
        .with(figures)
    } else {
        Check::new(NAME, Status::Fail, problems.join("; ")).with(figures)
    };
    (check, Some(version))
}

/// max |got − want| (NaN on either side counts as infinite) and how many
/// elements differ at all (bitwise).
fn difference(got: impl Iterator<Item = f32>, want: impl Iterator<Item = f32>) -> (f64, usize) {
    got.zip(want).fold((0.0f64, 0usize), |(max, n), (g, w)| {
        if g.to_bits() == w.to_bits() {
            return (max, n);
        }
        let d = f64::from((g - w).abs());
        (
            if d.is_nan() {
                f64::INFINITY
            } else {
                max.max(d)
            },
            n + 1,
        )
    })
}

/// The CUDA kernels vs the CPU twin: on the camera's frames when there are
/// some, else on synthetic frames (the configured camera size, every raw
/// layout). fp32 is expected bit for bit the CPU twin and fp16 the correctly
/// rounded CPU twin value; the max abs diff is reported, and the check fails
/// above [`KERNEL_MAX_ABS_DIFF`].
fn check_kernels(config: &Config, gpu: Option<&cuda::GpuInfo>, live: &[Frame]) -> Check {
    const NAME: &str = "kernels";
    if gpu.is_none() {
        return Check::new(NAME, Status::Skip, "no GPU (see the cuda check)");
    }
    let meta = match crate::policy::ModelMeta::load(&config.model_dir) {
        Ok(m) => m,
        Err(e) => {
            return Check::new(
                NAME,
                Status::Fail,
                format!("model: {e}", e = crate::error::Report(&e)),
            )
        }
    };
    let rotation = frame_rotation(config, &meta);
    let spec = meta.preprocess_spec(rotation);
    let (w, h) = match &config.capture {
        CaptureConfig::V4l2 { config: v, .. } => (v.width as usize, v.height as usize),
        _ => (1280, 720),
    };
    let synthetic: Vec<Frame> = [InputFormat::Packed3, InputFormat::Yuyv, InputFormat::Nv12]
        .into_iter()
        .map(|format| Frame {
            width: w,
            height: h,
            format,
            order: ChannelOrder::Bgr,
            data: crate::bench::synthetic_frame(format, w, h),
            ..Frame::default()
        })
        .collect();
    let (frames, origin) = if live.is_empty() {
        (
            synthetic.as_slice(),
            format!("synthetic {w}x{h} packed/YUYV/NV12 frames"),
        )
    } else {
        (live, "live camera frames".to_string())
    };
    let mut compared = 0usize;
    let mut problems = Vec::new();
    let (mut fp32_max, mut fp16_max, mut fp32_differ, mut fp16_differ) = (0f64, 0f64, 0, 0);
    let mut scratch = Vec::new();
    for f in frames {
        let mut want = vec![0f32; spec.output_len()];
        let packed = match f.packed(&mut scratch) {
            Ok(p) => p,
            Err(e) => {
                problems.push(format!(
                    "frame {}: {e}",
                    f.seq,
                    e = crate::error::Report(&e)
                ));
                continue;
            }
        };
        if let Err(e) = CpuPreprocessor::new(spec).run(packed, &mut want) {
            problems.push(format!("CPU twin: {e}", e = crate::error::Report(&e)));
            continue;
        }
        let cache = config.ptx_cache_dir.as_deref();
        // fp32: the CPU twin's bits exactly.
        let mut got = vec![0f32; want.len()];
        match CudaPreprocessor::new(spec, f.width, f.height, f.format, cache)
            .and_then(|mut g| g.run_to_host(&f.data, f.order, &mut got))
        {
            Ok(()) => {
                let (max, n) = difference(got.iter().copied(), want.iter().copied());
                fp32_max = fp32_max.max(max);
                fp32_differ += n;
            }
            Err(e) => problems.push(format!(
                "{:?} fp32: {e}",
                f.format,
                e = crate::error::Report(&e)
            )),
        }
        // fp16: the correctly rounded CPU twin value.
        let mut bits = vec![0u16; want.len()];
        match CudaPreprocessor::with_precision(
            spec,
            f.width,
            f.height,
            f.format,
            cache,
            OutputPrecision::F16,
        )
        .and_then(|mut g| g.run_to_host_f16_bits(&f.data, f.order, &mut bits))
        {
            Ok(()) => {
                let (max, n) = difference(
                    bits.iter().map(|b| half::f16::from_bits(*b).to_f32()),
                    want.iter().map(|w| half::f16::from_f32(*w).to_f32()),
                );
                fp16_max = fp16_max.max(max);
                fp16_differ += n;
            }
            Err(e) => problems.push(format!(
                "{:?} fp16: {e}",
                f.format,
                e = crate::error::Report(&e)
            )),
        }
        compared += 1;
    }
    let figures = json!({ "frames": compared, "origin": origin,
        "rotation_deg": rotation.degrees(), "threshold_max_abs": KERNEL_MAX_ABS_DIFF,
        "fp32_max_abs_diff": fp32_max, "fp32_elements_differing": fp32_differ,
        "fp16_max_abs_diff": fp16_max, "fp16_elements_differing": fp16_differ });
    for (what, max, n) in [
        ("fp32 vs the CPU twin", fp32_max, fp32_differ),
        (
            "fp16 vs the correctly rounded CPU twin",
            fp16_max,
            fp16_differ,
        ),
    ] {
        if max > KERNEL_MAX_ABS_DIFF {
            problems.push(format!(
                "{what}: max abs diff {max:.3e} > {KERNEL_MAX_ABS_DIFF:e} ({n} elements differ)"
            ));
        }
    }
    if !problems.is_empty() || compared == 0 {
        return Check::new(NAME, Status::Fail, problems.join("; ")).with(figures);
    }
    let detail = if fp32_differ + fp16_differ == 0 {
        format!("GPU = CPU twin bit for bit (fp32; fp16 correctly rounded), max abs diff 0, on {compared} {origin}")
    } else {
        format!(
            "GPU within {KERNEL_MAX_ABS_DIFF:e} of the CPU twin but NOT bit for bit (expected): fp32 max abs diff {fp32_max:.3e} ({fp32_differ} elements), fp16 {fp16_max:.3e} ({fp16_differ}) on {compared} {origin}"
        )
    };
    Check::new(NAME, Status::Pass, detail).with(figures)
}

/// The rotation the runtime applies to camera frames: the configured one, or
/// the model's (what the synthetic frames stand in for too).
fn frame_rotation(config: &Config, meta: &crate::policy::ModelMeta) -> Rotation {
    match &config.capture {
        CaptureConfig::V4l2 {
            rotation_override: Some(r),
            ..
        } => *r,
        _ => meta.camera_rotation(),
    }
}

fn check_tensorrt(config: &Config) -> (Check, Option<crate::policy::engine::TrtVersion>) {
    const NAME: &str = "tensorrt";
    match crate::policy::tensorrt::open() {
        Ok(v) => (
            Check::new(NAME, Status::Pass, format!("TensorRT {v} loaded"))
                .with(json!({ "version": v.to_string() })),
            Some(v),
        ),
        Err(e) => {
            // The configured backend needs it: a failure, not a skip.
            let status = if config.backend == PolicyBackend::TensorRt {
                Status::Fail
            } else {
                Status::Skip
            };
            (Check::new(NAME, status, crate::error::report(&e)), None)
        }
    }
}

/// `--build`: the library call `mvla engine build` makes (build or reuse,
/// parity gate against tract), with the config's model, engine directory and
/// precision and the default build options; progress goes to stderr so
/// stdout stays the table or the JSON.
fn build_engines(
    config: &Config,
    meta: &crate::policy::ModelMeta,
) -> Result<Value, crate::policy::tensorrt::TrtError> {
    use crate::policy::engine::{BuildEvent, BuildOptions};
    let options = BuildOptions {
        precision: config.precision,
        ..BuildOptions::default()
    };
    let model_dir = config.model_dir.clone();
    let mut make_reference =
        || -> Result<Box<dyn crate::policy::Policy>, crate::policy::PolicyError> {
            Ok(Box::new(crate::policy::tract::TractPolicy::load(
                &model_dir,
            )?))
        };
    let started = Instant::now();
    let mut progress = |event: BuildEvent<'_>| {
        if let BuildEvent::Message(m) = event {
            eprintln!(
                "[{:>6.1} s] engine build: {m}",
                started.elapsed().as_secs_f64()
            );
        }
    };
    let outcome = crate::policy::tensorrt::build_engines(
        meta,
        &config.engine_dir,
        &options,
        &mut make_reference,
        &mut progress,
    )?;
    Ok(
        json!({ "reused": outcome.reused, "build_s": started.elapsed().as_secs_f64(),
        "stale_engines": outcome.stale }),
    )
}

fn check_engines(
    config: &Config,
    trt: Option<TrtVersion>,
    gpu: Option<&cuda::GpuInfo>,
    build: bool,
) -> Check {
    const NAME: &str = "engines";
    if config.backend == PolicyBackend::Tract && !build {
        return Check::new(NAME, Status::Skip, "backend = tract (CPU): no engines used");
    }
    let (Some(trt), Some(gpu)) = (trt, gpu) else {
        // The service needs them, or the engineer asked for a build.
        let status = if config.backend == PolicyBackend::TensorRt || build {
            Status::Fail
        } else {
            Status::Skip
        };
        let what = if build { "--build needs" } else { "needs" };
        return Check::new(
            NAME,
            status,
            format!("{what} TensorRT and a GPU (see the tensorrt and cuda checks)"),
        );
    };
    let meta = match crate::policy::ModelMeta::load(&config.model_dir) {
        Ok(m) => m,
        Err(e) => {
            return Check::new(
                NAME,
                Status::Fail,
                format!("model: {e}", e = crate::error::Report(&e)),
            )
        }
    };
    let (_, _, paths) = crate::policy::engine::engine_paths(
        &meta,
        &config.engine_dir,
        trt,
        gpu.compute_capability,
        config.precision,
    );
    let mut figures = json!({ "dir": config.engine_dir, "backbone": paths.backbone,
        "head": paths.head, "parity_record": paths.parity, "precision": config.precision.name() });
    let mut built = "";
    if build {
        if let Err(e) = meta.verify_files() {
            return Check::new(
                NAME,
                Status::Fail,
                format!("--build: model: {e}", e = crate::error::Report(&e)),
            )
            .with(figures);
        }
        match build_engines(config, &meta) {
            Ok(b) => {
                built = if b["reused"] == true {
                    "reused, "
                } else {
                    "built, "
                };
                figures["build"] = b;
            }
            Err(e) => {
                return Check::new(
                    NAME,
                    Status::Fail,
                    format!("--build: {e}", e = crate::error::Report(&e)),
                )
                .with(figures)
            }
        }
    }
    for p in [&paths.backbone, &paths.head] {
        if !p.is_file() {
            return Check::new(
                NAME,
                Status::Fail,
                format!(
                    "{} missing (mvla doctor --build, or mvla engine build --model {})",
                    p.display(),
                    config.model_dir.display()
                ),
            )
            .with(figures);
        }
    }
    // The same check `mvla run` makes before it loads an engine.
    match crate::policy::engine::ParityRecord::check(
        &paths,
        &crate::policy::engine::ParityThresholds::default(),
    ) {
        Ok(r) => {
            figures["parity"] = serde_json::to_value(&r.report).unwrap_or(Value::Null);
            Check::new(
                NAME,
                Status::Pass,
                format!(
                    "{built}{} engines for TensorRT {trt} sm_{}{}, parity record passes (feature cosine min {:.5}, chain chunk max abs {:.4})",
                    config.precision.name(),
                    gpu.compute_capability.0,
                    gpu.compute_capability.1,
                    r.report.feature_cosine_min,
                    r.report.chain_chunk_max_abs
                ),
            )
            .with(figures)
        }
        Err(e) => Check::new(NAME, Status::Fail, crate::error::report(&e)).with(figures),
    }
}

/// The whole GPU chain (upload, kernels, backbone, history, head) on a
/// synthetic frame in the camera's layout: the code `mvla bench --backend
/// tensorrt` runs, a few steps, p99 against the config's `budget_ms`.
fn check_gpu_chain(config: &Config, engines_ok: bool, steps: usize) -> Check {
    const NAME: &str = "gpu_chain";
    if !engines_ok {
        return Check::new(NAME, Status::Skip, "needs engines that pass (see engines)");
    }
    let meta = match crate::policy::ModelMeta::load(&config.model_dir) {
        Ok(m) => m,
        Err(e) => {
            return Check::new(
                NAME,
                Status::Fail,
                format!("model: {e}", e = crate::error::Report(&e)),
            )
        }
    };
    let spec = meta.preprocess_spec(frame_rotation(config, &meta));
    let window = meta.raw.window;
    let t = Instant::now();
    let mut chain = match crate::policy::tensorrt::GpuChain::load(
        meta,
        &config.engine_dir,
        config.precision,
        &crate::policy::engine::ParityThresholds::default(),
        window,
        spec,
        config.ptx_cache_dir.clone(),
    ) {
        Ok(c) => c,
        Err(e) => return Check::new(NAME, Status::Fail, crate::error::report(&e)),
    };
    let load_s = t.elapsed().as_secs_f64();
    let format = match &config.capture {
        CaptureConfig::V4l2 { config: v, .. } => match v.format {
            crate::capture::v4l2::PixelFormat::Yuyv => InputFormat::Yuyv,
            crate::capture::v4l2::PixelFormat::Nv12 => InputFormat::Nv12,
            _ => InputFormat::Packed3,
        },
        _ => InputFormat::Packed3,
    };
    // 5 warm-up steps: the first inferences include lazy CUDA/TensorRT set-up.
    match crate::bench::bench_chain(&mut chain, format, steps.max(1), 5) {
        Ok(r) => {
            // The team's target (UPSTREAM §4): inference < 200 ms.
            let budget_ms = config.budget.as_secs_f64() * 1000.0;
            let status = Status::pass_if(r.step_total.p99_ms <= budget_ms);
            let mut figures = serde_json::to_value(&r).unwrap_or(Value::Null);
            figures["load_s"] = json!(load_s);
            figures["budget_ms"] = json!(budget_ms);
            Check::new(
                NAME,
                status,
                format!(
                    "{}: step p50 {:.2} ms, p99 {:.2} ms (budget {budget_ms:.0} ms), engines loaded in {load_s:.1} s",
                    r.frame, r.step_total.p50_ms, r.step_total.p99_ms
                ),
            )
            .with(figures)
        }
        Err(e) => Check::new(NAME, Status::Fail, e),
    }
}

/// Open the SLCAN adapter with the runtime's open sequence and send stop
/// frames only (wheel byte 100): the robot never moves.
fn check_link(config: &Config, service_running: bool) -> Check {
    const NAME: &str = "link";
    let LinkConfig::Slcan(slcan) = &config.link else {
        return Check::new(NAME, Status::Skip, "link = emulator (no serial adapter)");
    };
    if service_running {
        return Check::new(
            NAME,
            Status::Skip,
            "mvla.service is running and holds the serial port (systemctl stop mvla first)",
        );
    }
    if !Path::new(&slcan.port).exists() {
        return Check::new(
            NAME,
            Status::Skip,
            format!("no adapter: {} does not exist", slcan.port),
        );
    }
    let t = Instant::now();
    let mut link = match crate::drive::slcan::Slcan::open(slcan.clone()) {
        Ok(l) => l,
        Err(e) => {
            return Check::new(
                NAME,
                Status::Fail,
                format!("{}: {e}", slcan.port, e = crate::error::Report(&e)),
            )
        }
    };
    let open_ms = t.elapsed().as_secs_f64() * 1000.0;
    let mut replies = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        match link.send(crate::drive::STOP_WHEELS) {
            Ok(()) => replies.push(t.elapsed()),
            Err(e) => {
                return Check::new(
                    NAME,
                    Status::Fail,
                    format!("stop frame: {e}", e = crate::error::Report(&e)),
                );
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let worst = replies.iter().max().copied().unwrap_or_default();
    Check::new(
        NAME,
        Status::Pass,
        format!(
            "{}: opened in {open_ms:.0} ms, 5 stop frames acknowledged (slowest {:.1} ms)",
            link.describe(),
            worst.as_secs_f64() * 1000.0
        ),
    )
    .with(json!({ "port": slcan.port, "open_ms": open_ms, "stop_reply_max_ms": worst.as_secs_f64() * 1000.0 }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_passes_with_hardware_checks_skipped() {
        let config = Config::builtin_default();
        let report = run(&config, &DoctorOptions::default());
        assert_eq!(
            report.checks.iter().map(|c| c.name).collect::<Vec<_>>(),
            CHECKS.to_vec()
        );
        for name in ["camera", "link", "engines", "gpu_chain"] {
            let c = report.checks.iter().find(|c| c.name == name).unwrap();
            assert_eq!(c.status, Status::Skip, "{name}: {}", c.detail);
            assert!(!c.detail.is_empty());
        }
    }

    #[test]
    fn the_realtime_probe_asks_for_the_higher_of_the_motor_and_link_priorities() {
        let mut config = Config::builtin_default();
        config.realtime_priority = 0;
        config.link_realtime_priority = 70;
        let check = check_realtime(&config);
        assert_eq!(check.figures["sched_fifo_probe_priority"], 70, "{check:?}");
        assert_eq!(check.figures["link_realtime_priority"], 70, "{check:?}");
        config.realtime_priority = 80;
        let check = check_realtime(&config);
        assert_eq!(check.figures["sched_fifo_probe_priority"], 80, "{check:?}");
    }

    #[test]
    fn a_required_skip_is_a_failure() {
        let config = Config::builtin_default();
        let options = DoctorOptions {
            require: vec!["camera".into()],
            ..DoctorOptions::default()
        };
        let report = run(&config, &options);
        let camera = report.checks.iter().find(|c| c.name == "camera").unwrap();
        assert_eq!(camera.status, Status::Fail);
        assert!(
            camera.detail.starts_with("required but skipped"),
            "{}",
            camera.detail
        );
        assert!(!report.ok);
        assert_eq!(report.exit_code(), 1);
    }
    #[test]
    fn require_groups_expand_in_check_order_and_unknown_names_are_errors() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            expand_require(&names(&["kernels", "gpu"])).unwrap(),
            ["cuda", "nvrtc", "kernels"]
        );
        assert_eq!(expand_require(&names(&["all"])).unwrap(), CHECKS);
        assert!(!expand_require(&names(&["hardware"]))
            .unwrap()
            .contains(&"disk"));
        let e = expand_require(&names(&["gpu", "warp"])).unwrap_err();
        assert!(e.contains("warp") && e.contains("groups: gpu"), "{e}");
    }

    #[test]
    fn the_units_config_path_is_read_from_systemctl_show() {
        let shown = "{ path=/usr/local/bin/mvla ; argv[]=/usr/local/bin/mvla run --config /etc/mvla/robot.toml ; ignore_errors=no ; start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }";
        assert_eq!(
            exec_start_config(shown).as_deref(),
            Some("/etc/mvla/robot.toml")
        );
        assert_eq!(
            exec_start_config("{ argv[]=/usr/bin/mvla run --config=/x.toml ; }").as_deref(),
            Some("/x.toml")
        );
        assert_eq!(exec_start_config("{ argv[]=/usr/bin/mvla run ; }"), None);
        assert_eq!(exec_start_config(""), None);
    }

    #[test]
    fn differences_count_bits_and_treat_nan_as_infinite() {
        let want = [0.0f32, 1.0, -0.5];
        assert_eq!(difference(want.into_iter(), want.into_iter()), (0.0, 0));
        let (max, n) = difference([0.0f32, 1.0 + 1e-7, -0.5].into_iter(), want.into_iter());
        assert!(max > 0.0 && max < 1e-6 && n == 1, "{max} {n}");
        // -0.0 vs 0.0: not bit for bit, but no distance.
        assert_eq!(
            difference([-0.0f32].into_iter(), [0.0f32].into_iter()),
            (0.0, 1)
        );
        let (max, _) = difference([f32::NAN].into_iter(), [0.0f32].into_iter());
        assert!(max > KERNEL_MAX_ABS_DIFF);
    }

    #[test]
    fn details_wrap_to_the_width_and_long_words_stay_whole() {
        let lines = wrap("aaa bbb ccc ddd", 7);
        assert_eq!(lines, ["aaa bbb", "ccc ddd"]);
        let lines = wrap("x /a/very/long/path/name y", 5);
        assert_eq!(lines, ["x", "/a/very/long/path/name", "y"]);
        assert_eq!(wrap("", 10), [""]);
    }

    #[test]
    fn a_second_report_in_the_same_second_does_not_replace_the_first() {
        let tmp = tempfile::tempdir().unwrap();
        let report = run(&Config::builtin_default(), &DoctorOptions::default());
        let a = write_report(&report, tmp.path()).unwrap();
        let b = write_report(&report, tmp.path()).unwrap();
        assert_ne!(a, b);
        let name = b.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with("doctor_") && name.ends_with("_2.json"),
            "{name}"
        );
        let back: Value = serde_json::from_str(&std::fs::read_to_string(&a).unwrap()).unwrap();
        assert_eq!(back["checks"].as_array().unwrap().len(), CHECKS.len());
    }
}
