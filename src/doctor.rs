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
use crate::preprocess::cuda::{self, CudaPreprocessor, OutputPrecision};
use crate::preprocess::{ChannelOrder, CpuPreprocessor, InputFormat, Preprocessor};

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

#[derive(Debug, Clone)]
pub struct DoctorOptions {
    /// Shown in the report (the `--config` path or "built-in default").
    pub config_source: String,
    /// Checks whose skip counts as a failure.
    pub require: Vec<String>,
    /// Free space the recordings directory must have.
    pub min_free_gib: f64,
    /// Frames to grab from the camera.
    pub camera_frames: usize,
    /// Steps of the GPU chain benchmark.
    pub chain_steps: usize,
}

impl Default for DoctorOptions {
    fn default() -> Self {
        Self {
            config_source: "built-in default".into(),
            require: Vec::new(),
            // An 18-step episode at 720p is ~50 MB (UPSTREAM §1); 2 GiB holds a
            // day of field trials with margin.
            min_free_gib: 2.0,
            camera_frames: 60,
            chain_steps: 30,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub mvla_version: &'static str,
    pub arch: &'static str,
    pub hostname: String,
    pub unix_time_s: u64,
    pub config: String,
    pub features: Vec<&'static str>,
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
/// command that runs each on a machine that has it.
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

impl Report {
    /// Exit status of `mvla doctor`: 0 when nothing failed.
    pub fn exit_code(&self) -> u8 {
        u8::from(!self.ok)
    }

    /// The pass/fail/skip table, at most ~80 columns per line before the detail wraps.
    pub fn table(&self) -> String {
        let mut out = format!(
            "mvla {} doctor on {} ({}), config: {}\n",
            self.mvla_version, self.hostname, self.arch, self.config
        );
        for c in &self.checks {
            let mark = match c.status {
                Status::Pass => "pass",
                Status::Fail => "FAIL",
                Status::Skip => "skip",
            };
            out.push_str(&format!("  {mark}  {:<10} {}\n", c.name, c.detail));
        }
        out.push_str(if self.ok {
            "result: ok (no check failed)\n"
        } else {
            "result: FAILED\n"
        });
        out
    }
}

/// Run every check against `config`.
pub fn run(config: &Config, options: &DoctorOptions) -> Report {
    let mut checks = Vec::new();
    let service = check_systemd();
    let service_running = service.figures.get("active").and_then(Value::as_str) == Some("active");
    checks.push(service);
    checks.push(check_disk(config, options.min_free_gib));
    checks.push(check_realtime(config));
    let (camera, frames) = check_camera(config, options.camera_frames, service_running);
    checks.push(camera);
    let (cuda_check, gpu) = check_cuda();
    checks.push(cuda_check);
    checks.push(check_nvrtc(gpu.as_ref()));
    checks.push(check_kernels(config, gpu.as_ref(), &frames));
    let (trt_check, trt) = check_tensorrt(config);
    checks.push(trt_check);
    let engines = check_engines(config, trt, gpu.as_ref());
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
    Report {
        mvla_version: env!("CARGO_PKG_VERSION"),
        arch: std::env::consts::ARCH,
        hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default(),
        unix_time_s: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        config: options.config_source.clone(),
        features,
        checks,
        ok,
        hardware_tests: HARDWARE_TESTS.to_vec(),
    }
}

/// Write the JSON report as `doctor_<unix seconds>.json` in `dir` (write, then rename).
pub fn write_report(report: &Report, dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("doctor_{}.json", report.unix_time_s));
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(report).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, text + "\n")?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

fn check_systemd() -> Check {
    const NAME: &str = "systemd";
    if !Path::new("/run/systemd/system").is_dir() {
        return Check::new(NAME, Status::Skip, "systemd is not running on this machine");
    }
    let query = |verb: &str| -> Option<String> {
        let out = std::process::Command::new("systemctl")
            .args([verb, "mvla.service"])
            .output()
            .ok()?;
        Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let (Some(enabled), Some(active)) = (query("is-enabled"), query("is-active")) else {
        return Check::new(NAME, Status::Skip, "systemctl not found");
    };
    let figures = json!({ "enabled": enabled, "active": active });
    if enabled.is_empty() || enabled == "not-found" {
        return Check::new(
            NAME,
            Status::Skip,
            "mvla.service is not installed (sudo bash systemd/install.sh)",
        )
        .with(figures);
    }
    let status =
        Status::pass_if(enabled == "enabled" && matches!(active.as_str(), "active" | "inactive"));
    Check::new(NAME, status, format!("mvla.service {enabled}, {active}")).with(figures)
}

fn check_disk(config: &Config, min_free_gib: f64) -> Check {
    const NAME: &str = "disk";
    let Some(record) = &config.record else {
        return Check::new(NAME, Status::Skip, "no [record] dir configured");
    };
    // The directory may not exist yet: measure the filesystem it will be on.
    let mut dir = record.dir.as_path();
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
                json!({ "dir": record.dir, "free_gib": free_gib, "min_free_gib": min_free_gib });
            let status = Status::pass_if(free_gib >= min_free_gib);
            Check::new(
                NAME,
                status,
                format!(
                    "{:.1} GiB free for recordings in {} (minimum {min_free_gib} GiB)",
                    free_gib,
                    record.dir.display()
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

fn check_realtime(config: &Config) -> Check {
    const NAME: &str = "realtime";
    let limit = |resource| {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the struct we own.
        if unsafe { libc::getrlimit(resource, &mut r) } == 0 {
            r.rlim_cur
        } else {
            0
        }
    };
    let rtprio = limit(libc::RLIMIT_RTPRIO);
    let memlock = limit(libc::RLIMIT_MEMLOCK);
    let priority = config.realtime_priority;
    let mut problems = Vec::new();
    let mut done = Vec::new();
    if priority > 0 {
        // On a short-lived thread: the caller keeps its own scheduling.
        let result = std::thread::spawn(move || {
            let param = libc::sched_param {
                sched_priority: i32::from(priority),
            };
            // SAFETY: plain syscall on the calling thread with a valid param.
            let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
            if rc == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("thread panicked")));
        match result {
            Ok(()) => done.push(format!("SCHED_FIFO {priority} ok")),
            Err(e) => problems.push(format!(
                "SCHED_FIFO {priority}: {e} (the unit grants CAP_SYS_NICE; run as the service user or root)"
            )),
        }
    }
    if config.lock_memory {
        let buf = vec![0u8; 1 << 20];
        // SAFETY: locks and unlocks pages of a live buffer.
        let rc = unsafe { libc::mlock(buf.as_ptr().cast(), buf.len()) };
        if rc == 0 {
            // SAFETY: as above.
            unsafe { libc::munlock(buf.as_ptr().cast(), buf.len()) };
            done.push("mlock ok".into());
        } else {
            problems.push(format!(
                "mlock: {} (RLIMIT_MEMLOCK {memlock} bytes)",
                std::io::Error::last_os_error()
            ));
        }
    }
    let figures = json!({ "realtime_priority": priority, "lock_memory": config.lock_memory,
        "rlimit_rtprio": rtprio, "rlimit_memlock_bytes": memlock });
    if priority == 0 && !config.lock_memory {
        return Check::new(
            NAME,
            Status::Skip,
            "realtime_priority = 0 and lock_memory = false in the config",
        )
        .with(figures);
    }
    if problems.is_empty() {
        Check::new(NAME, Status::Pass, done.join(", ")).with(figures)
    } else {
        Check::new(NAME, Status::Fail, problems.join("; ")).with(figures)
    }
}

/// Grab frames from the configured camera: formats, fps, timestamp monotonicity.
fn check_camera(config: &Config, frames: usize, service_running: bool) -> (Check, Vec<Frame>) {
    const NAME: &str = "camera";
    let CaptureConfig::V4l2 { config: v4l2, .. } = &config.capture else {
        return (
            Check::new(NAME, Status::Skip, "capture source is replay, not a camera"),
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
    let clock: Arc<dyn crate::clock::Clock> = Arc::new(crate::clock::MonotonicClock);
    let mut source = match crate::capture::v4l2::V4l2Source::open(v4l2.clone(), clock) {
        Ok(s) => s,
        Err(e) => return (Check::new(NAME, Status::Fail, e.to_string()), Vec::new()),
    };
    let describe = source.describe();
    let mut kept = Vec::new();
    let mut times = Vec::new();
    let mut seqs = Vec::new();
    let mut frame = Frame::default();
    for i in 0..frames.max(2) {
        if let Err(e) = source.next_frame(&mut frame) {
            return (
                Check::new(NAME, Status::Fail, format!("{describe}: frame {i}: {e}")),
                kept,
            );
        }
        times.push(frame.capture_time);
        seqs.push(frame.seq);
        // Keep a few frames for the kernel check (first, middle, last).
        if i == 0 || i == frames / 2 || i + 1 == frames {
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
    let figures = json!({ "source": describe, "frames": times.len(), "fps": fps,
        "timestamps_monotonic": monotonic, "dropped": dropped, "configured_fps": v4l2.fps });
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
        Err(e) => (Check::new(NAME, Status::Skip, e.to_string()), None),
    }
}

fn check_nvrtc(gpu: Option<&cuda::GpuInfo>) -> Check {
    const NAME: &str = "nvrtc";
    let version = match cuda::nvrtc_version() {
        Ok(v) => v,
        Err(e) => return Check::new(NAME, Status::Skip, e.to_string()),
    };
    // The robot's architecture when no GPU is present (Orin: sm_87).
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
            Err(e) => problems.push(e.to_string()),
        }
    }
    let figures = json!({ "nvrtc_version": version, "arch": arch });
    if problems.is_empty() {
        Check::new(
            NAME,
            Status::Pass,
            format!("NVRTC {version}: kernels compile for {arch}, float semantics as the CPU twin"),
        )
        .with(figures)
    } else {
        Check::new(NAME, Status::Fail, problems.join("; ")).with(figures)
    }
}

/// The CUDA kernels vs the CPU twin: on the camera's frames when there are
/// some, else on synthetic 1280×720 frames in every layout. fp32 must be bit
/// for bit the CPU twin, fp16 the correctly rounded value.
fn check_kernels(config: &Config, gpu: Option<&cuda::GpuInfo>, live: &[Frame]) -> Check {
    const NAME: &str = "kernels";
    if gpu.is_none() {
        return Check::new(NAME, Status::Skip, "no GPU (see the cuda check)");
    }
    let meta = match crate::policy::ModelMeta::load(&config.model_dir) {
        Ok(m) => m,
        Err(e) => return Check::new(NAME, Status::Fail, format!("model: {e}")),
    };
    // Live frames still need the camera's rotation; the synthetic ones
    // stand in for camera frames, so the same.
    let rotation = match &config.capture {
        CaptureConfig::V4l2 { config: v, .. } => v.rotation,
        _ => meta.camera_rotation(),
    };
    let spec = meta.preprocess_spec(rotation);
    let synthetic: Vec<Frame> = [InputFormat::Packed3, InputFormat::Yuyv, InputFormat::Nv12]
        .into_iter()
        .map(|format| Frame {
            width: 1280,
            height: 720,
            format,
            order: ChannelOrder::Bgr,
            data: crate::bench::synthetic_frame(format, 1280, 720),
            ..Frame::default()
        })
        .collect();
    let (frames, origin) = if live.is_empty() {
        (
            synthetic.as_slice(),
            "synthetic 1280x720 packed/YUYV/NV12 frames",
        )
    } else {
        (live, "live camera frames")
    };
    let mut compared = 0usize;
    let mut problems = Vec::new();
    let mut scratch = Vec::new();
    for f in frames {
        let mut want = vec![0f32; spec.output_len()];
        let packed = match f.packed(&mut scratch) {
            Ok(p) => p,
            Err(e) => {
                problems.push(format!("frame {}: {e}", f.seq));
                continue;
            }
        };
        if let Err(e) = CpuPreprocessor::new(spec).run(packed, &mut want) {
            problems.push(format!("CPU twin: {e}"));
            continue;
        }
        let order = f.order;
        let cache = config.ptx_cache_dir.as_deref();
        let mut report = |what: &str, run: Result<usize, cuda::CudaError>| match run {
            Ok(0) => {}
            Ok(n) => problems.push(format!("{:?} {what}: {n} elements differ", f.format)),
            Err(e) => problems.push(format!("{:?} {what}: {e}", f.format)),
        };
        // fp32: the CPU twin's bits exactly.
        let mut got = vec![0f32; want.len()];
        let fp32 = CudaPreprocessor::new(spec, f.width, f.height, f.format, cache)
            .and_then(|mut g| g.run_to_host(&f.data, order, &mut got))
            .map(|()| {
                got.iter()
                    .zip(&want)
                    .filter(|(g, w)| g.to_bits() != w.to_bits())
                    .count()
            });
        report("fp32 vs the CPU twin", fp32);
        // fp16: the correctly rounded CPU twin value.
        let mut bits = vec![0u16; want.len()];
        let fp16 = CudaPreprocessor::with_precision(
            spec,
            f.width,
            f.height,
            f.format,
            cache,
            OutputPrecision::F16,
        )
        .and_then(|mut g| g.run_to_host_f16_bits(&f.data, order, &mut bits))
        .map(|()| {
            bits.iter()
                .zip(&want)
                .filter(|(b, w)| **b != half::f16::from_f32(**w).to_bits())
                .count()
        });
        report("fp16 vs the correctly rounded CPU twin", fp16);
        compared += 1;
    }
    let figures =
        json!({ "frames": compared, "origin": origin, "rotation_deg": rotation.degrees() });
    if problems.is_empty() && compared > 0 {
        Check::new(
            NAME,
            Status::Pass,
            format!("GPU = CPU twin bit for bit (fp32) and correctly rounded (fp16) on {compared} {origin}"),
        )
        .with(figures)
    } else {
        Check::new(NAME, Status::Fail, problems.join("; ")).with(figures)
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
            (Check::new(NAME, status, e.to_string()), None)
        }
    }
}

fn check_engines(
    config: &Config,
    trt: Option<crate::policy::engine::TrtVersion>,
    gpu: Option<&cuda::GpuInfo>,
) -> Check {
    const NAME: &str = "engines";
    if config.backend == PolicyBackend::Tract {
        return Check::new(NAME, Status::Skip, "backend = tract (CPU): no engines used");
    }
    let (Some(trt), Some(gpu)) = (trt, gpu) else {
        let status = if config.backend == PolicyBackend::TensorRt {
            Status::Fail
        } else {
            Status::Skip
        };
        return Check::new(NAME, status, "needs TensorRT and a GPU (see above)");
    };
    let meta = match crate::policy::ModelMeta::load(&config.model_dir) {
        Ok(m) => m,
        Err(e) => return Check::new(NAME, Status::Fail, format!("model: {e}")),
    };
    let (_, _, paths) = crate::policy::engine::engine_paths(
        &meta,
        &config.engine_dir,
        trt,
        gpu.compute_capability,
        config.precision,
    );
    let figures = json!({ "dir": config.engine_dir, "backbone": paths.backbone,
        "head": paths.head, "parity_record": paths.parity });
    for p in [&paths.backbone, &paths.head] {
        if !p.is_file() {
            return Check::new(
                NAME,
                Status::Fail,
                format!(
                    "{} missing (mvla engine build --model {}, or mvla doctor --build)",
                    p.display(),
                    config.model_dir.display()
                ),
            )
            .with(figures);
        }
    }
    match crate::policy::engine::ParityRecord::check(
        &paths,
        &crate::policy::engine::ParityThresholds::default(),
    ) {
        Ok(r) => Check::new(
            NAME,
            Status::Pass,
            format!(
                "engines present, parity record passes (feature cosine min {:.5}, chain chunk max abs {:.4})",
                r.report.feature_cosine_min, r.report.chain_chunk_max_abs
            ),
        )
        .with(figures),
        Err(e) => Check::new(NAME, Status::Fail, e.to_string()).with(figures),
    }
}

fn check_gpu_chain(config: &Config, engines_ok: bool, steps: usize) -> Check {
    const NAME: &str = "gpu_chain";
    if !engines_ok {
        return Check::new(NAME, Status::Skip, "needs engines that pass (see engines)");
    }
    let meta = match crate::policy::ModelMeta::load(&config.model_dir) {
        Ok(m) => m,
        Err(e) => return Check::new(NAME, Status::Fail, format!("model: {e}")),
    };
    let spec = meta.preprocess_spec(meta.camera_rotation());
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
        Err(e) => return Check::new(NAME, Status::Fail, e.to_string()),
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
    match crate::bench::bench_chain(&mut chain, format, steps.max(1), 5) {
        Ok(r) => {
            // The team's target (UPSTREAM §4): inference < 200 ms.
            let budget_ms = config.budget.as_secs_f64() * 1000.0;
            let status = Status::pass_if(r.step_total.p99_ms <= budget_ms);
            Check::new(
                NAME,
                status,
                format!(
                    "{}: step p50 {:.2} ms, p99 {:.2} ms (budget {budget_ms:.0} ms), engines loaded in {load_s:.1} s",
                    r.frame, r.step_total.p50_ms, r.step_total.p99_ms
                ),
            )
            .with(serde_json::to_value(&r).unwrap_or(Value::Null))
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
        Err(e) => return Check::new(NAME, Status::Fail, format!("{}: {e}", slcan.port)),
    };
    let open_ms = t.elapsed().as_secs_f64() * 1000.0;
    let mut replies = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        match link.send(crate::drive::STOP_WHEELS) {
            Ok(()) => replies.push(t.elapsed()),
            Err(e) => {
                return Check::new(NAME, Status::Fail, format!("stop frame: {e}"));
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
}
