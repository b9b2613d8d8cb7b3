//! `mvla`: the on-robot controller's command line.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use mvla::eval::{evaluate_episode, EpisodeReport, ErrorSums, Metrics};
use mvla::policy::tract::TractPolicy;
use mvla::policy::{Policy, PolicyRunner};
use mvla::preprocess::{ChannelOrder, CpuPreprocessor, FrameRef, Preprocessor, Rotation};
use mvla::record::{collect_episode_paths, Episode};

/// `println!` that a closed stdout (`mvla eval --json | head`) cannot turn
/// into a panic: the write is dropped and the command finishes normally.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod sim_cmd;

/// Exit codes, so systemd and scripts can tell failures apart.
mod exit {
    /// Bad arguments, configuration, model or input: retrying will not help.
    pub const BAD_INPUT: u8 = 2;
    /// Runtime failure.
    pub const FAILURE: u8 = 1;
    /// `eval` finished but skipped at least one unreadable episode.
    pub const PARTIAL: u8 = 3;
}

/// Built-in defaults (relative to the repository root): the tiny fixture
/// model and the bundled episodes, so the commands run with no hardware.
const DEFAULT_MODEL_DIR: &str = "tests/fixtures/tiny_model";
const DEFAULT_EPISODES: &str = "tests/fixtures/episodes";

#[derive(Parser)]
#[command(
    name = "mvla",
    version,
    about = "On-robot controller for a Mobile-VLA policy (camera -> policy -> Serbot wheels)",
    long_about = "On-robot controller for a Mobile-VLA policy.\n\n\
        Model directories hold backbone.onnx, head.onnx and model.json as written by \
        engines/export.py. Exit codes: 0 ok, 1 runtime failure, 2 bad input or configuration, \
        3 eval skipped unreadable episodes."
)]
struct Cli {
    /// More log output (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum OrderArg {
    Bgr,
    Rgb,
}

impl From<OrderArg> for ChannelOrder {
    fn from(o: OrderArg) -> Self {
        match o {
            OrderArg::Bgr => ChannelOrder::Bgr,
            OrderArg::Rgb => ChannelOrder::Rgb,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BenchBackend {
    Tract,
    Tensorrt,
}

#[derive(Clone, Copy, ValueEnum)]
enum FrameFormatArg {
    Bgr,
    Yuyv,
    Nv12,
}

#[derive(Clone, Copy, ValueEnum)]
enum PrecisionArg {
    Fp16,
    Fp32,
}

#[derive(Subcommand)]
enum EngineCommand {
    /// Build the backbone and head TensorRT engines for a model directory,
    /// then run the parity gate against the same ONNX graphs through tract.
    ///
    /// Engines are named by graph digest, TensorRT version, GPU compute
    /// capability and precision; valid engines with a passing parity record
    /// are reused (unless --force). The parity record is written beside the
    /// engines and checked whenever `mvla run` loads them. Needs a build with
    /// `--features tensorrt`, an NVIDIA GPU and TensorRT (libnvinfer,
    /// libnvonnxparser); takes minutes for the full model.
    Build {
        #[arg(long, default_value = DEFAULT_MODEL_DIR)]
        model: PathBuf,
        /// Where engines go; default MODEL/engines ([inference] engine_dir in the run config).
        #[arg(long)]
        engine_dir: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "fp16")]
        precision: PrecisionArg,
        /// Builder workspace limit.
        #[arg(long, default_value_t = 2048)]
        workspace_mib: u64,
        /// Keep the backbone's pixel input fp32 (default for fp16 engines: an
        /// fp16 input the preprocessing kernel writes directly).
        #[arg(long)]
        fp32_pixels: bool,
        /// Frames run through the parity gate.
        #[arg(long, default_value_t = 8)]
        parity_frames: usize,
        /// Rebuild even when valid engines exist.
        #[arg(long)]
        force: bool,
        /// Print the parity record as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct SimTrialsArgs {
    /// Scenario names, glob (`*`, `?`), comma-separated alternatives; `mvla sim list` names them.
    #[arg(long, default_value = "*")]
    scenario: String,
    /// Trials per scenario; trial i uses seed S+i.
    #[arg(long, default_value_t = 1)]
    trials: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Model directory (default: the config's; built-in: the tiny fixture model).
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "model")]
    policy: mvla::sim::trials::PolicyChoice,
    /// Modelled inference latency (ms); default: the measured compute time of each step.
    #[arg(long)]
    latency_ms: Option<f64>,
    /// Camera frame rate of the simulated camera.
    #[arg(long, default_value_t = 10.0)]
    fps: f64,
    #[arg(long, default_value_t = 1280)]
    width: usize,
    #[arg(long, default_value_t = 720)]
    height: usize,
    #[arg(long, value_enum, default_value = "bgr")]
    pixel_format: mvla::sim::render::PixelLayout,
    /// The rotation the runtime applies (default: the model's camera_rotation_deg).
    #[arg(long)]
    rotation_deg: Option<u32>,
    /// TOML config for the motor loop, calibration and inference backend (default: built-in).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Extra scenario family files.
    #[arg(long)]
    scenario_file: Vec<PathBuf>,
    /// One JSON record per trial (JSON lines, with the full trajectory), then the summary.
    #[arg(long)]
    json: bool,
    /// Write a top-down trajectory plot (SVG) per trial here.
    #[arg(long)]
    plot_dir: Option<PathBuf>,
    /// Write the camera view with the chunk overlaid (animated GIF) per trial here.
    #[arg(long)]
    video_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum SimCommand {
    /// List the scenarios (built-in families plus --scenario-file).
    List {
        #[arg(long)]
        scenario_file: Vec<PathBuf>,
    },
    /// Lock-step trials: deterministic (with --latency-ms), faster than real
    /// time, the runtime's own inference stage and motor loop; prints each
    /// verdict and the success rate with its 95 % Wilson interval.
    Trials(SimTrialsArgs),
    /// Expert demonstrations in the training format (HDF5 episodes, one per
    /// scenario x episode, event-driven frames like the team's collector).
    Collect {
        #[arg(long, default_value = "*box_hori_*")]
        scenario: String,
        /// Episodes per scenario; episode i uses seed S+i.
        #[arg(long, default_value_t = 1)]
        episodes: usize,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Rows per episode: 1 episode_start + key presses (the team's 18).
        #[arg(long, default_value_t = 18)]
        frames: usize,
        #[arg(long, default_value_t = 1280)]
        width: usize,
        #[arg(long, default_value_t = 720)]
        height: usize,
        #[arg(long)]
        scenario_file: Vec<PathBuf>,
        /// Probability that a key press executes a random key instead of
        /// the expert's (DART-style noise; the expert's key stays the label).
        #[arg(long, default_value_t = 0.0)]
        perturb: f64,
    },
}

#[derive(Subcommand)]
enum Command {
    /// The closed-loop simulator: scenarios, lock-step trials, expert demonstrations.
    Sim {
        #[command(subcommand)]
        action: SimCommand,
    },
    /// TensorRT engines: build (with the parity gate).
    Engine {
        #[command(subcommand)]
        action: EngineCommand,
    },
    /// Run the controller: capture → preprocessing → policy → motor side.
    ///
    /// Without --config it uses the built-in default: replay of the bundled
    /// episodes through the tiny fixture model, no hardware needed. Stops on
    /// SIGINT/SIGTERM, after --duration-s, or when a non-looping replay ends,
    /// then prints a summary (frames, inferences, stage latencies, chunk age).
    Run {
        /// TOML configuration (see README); default: built-in hardware-free config.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Stop after this many seconds.
        #[arg(long)]
        duration_s: Option<f64>,
        /// Record an HDF5 episode and a session log into this folder.
        #[arg(long)]
        record: Option<PathBuf>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// On-robot acceptance checks: run after installing, after any change.
    ///
    /// Checks, each pass / FAIL / skip with the reason: systemd (unit enabled,
    /// not failed, started with this --config, granted real-time priority and
    /// memory locking), disk (free space for recordings), realtime
    /// (SCHED_FIFO and mlock for this user, rlimits), camera (formats offered,
    /// measured fps, timestamp monotonicity, dropped frames), cuda (driver,
    /// GPU), nvrtc (kernels compile, float semantics as the CPU twin), kernels
    /// (GPU vs CPU twin on live or synthetic frames, max abs diff; fails above
    /// 1e-6), tensorrt (version), engines (present for this TensorRT/GPU/
    /// precision, parity record passes; --build builds and gates them first),
    /// gpu_chain (the `mvla bench --backend tensorrt` chain, p99 vs
    /// budget_ms), link (SLCAN open sequence, then stop frames only: the
    /// robot never moves).
    ///
    /// Uses the same --config as `mvla run`; stop the service first (it holds
    /// the camera and the adapter). Without the hardware the hardware checks
    /// are skipped with the reason; --require (or --strict) turns skips into
    /// failures, so on the robot:
    ///
    ///   mvla doctor --config /etc/mvla/robot.toml --strict
    ///
    /// Exit 0 when nothing failed, 1 when a check failed, 2 on bad arguments
    /// or config. The JSON report (versions, figures) is also written as
    /// doctor_<UTC time>.json to --report-dir or the config's [record] dir.
    /// The repository's hardware-only tests: --list-hardware-tests.
    Doctor {
        /// TOML configuration (the one the service uses); default: built-in.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the JSON report instead of the table.
        #[arg(long)]
        json: bool,
        /// Checks that must not be skipped, comma-separated check names or
        /// groups: gpu (cuda,nvrtc,kernels), hardware (camera, cuda, nvrtc,
        /// kernels, tensorrt, engines, gpu_chain, link), all.
        #[arg(long, value_delimiter = ',')]
        require: Vec<String>,
        /// Every check must run (= --require all): the robot's acceptance.
        #[arg(long)]
        strict: bool,
        /// Free space the recordings directory needs, GiB (an episode is ~50 MB).
        #[arg(long, default_value_t = mvla::doctor::DEFAULT_MIN_FREE_GIB)]
        min_free_gib: f64,
        /// Where to write the JSON report (default: the config's `[record]
        /// dir`); the disk check measures it when the config records nowhere.
        #[arg(long)]
        report_dir: Option<PathBuf>,
        /// Build (or reuse) and parity-gate the TensorRT engines first, like
        /// `mvla engine build` (minutes on the robot).
        #[arg(long)]
        build: bool,
        /// List the repository's hardware-only tests and how to run them, then exit.
        #[arg(long)]
        list_hardware_tests: bool,
    },
    /// Evaluate a model on recorded episodes (RMSE, direction agreement).
    ///
    /// Feeds each episode's frames in order as training steps and compares each
    /// predicted chunk step with the recorded action it refers to. Episodes
    /// that cannot be read are reported by name and skipped.
    Eval {
        /// Model directory (backbone.onnx, head.onnx, model.json).
        #[arg(long, default_value = DEFAULT_MODEL_DIR)]
        model: PathBuf,
        /// Episode files (.h5) or directories of them.
        #[arg(default_value = DEFAULT_EPISODES)]
        episodes: Vec<PathBuf>,
        /// Machine-readable JSON on stdout instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Calibration helper: drive the wheels directly over SLCAN (robot on blocks!).
    ///
    /// `--direction forward|left|right|back|spin` drives the vendor move at
    /// --throttle for --seconds to check the wheel layout in calib/ (the base
    /// must move that way). `--offset N` turns all three wheels at byte offset
    /// N for --seconds: count wheel revolutions, speed = 2π·revs/seconds, and
    /// enter (N, speed) in the calibration's [[bytes.table]]. Always ends
    /// with stop frames, also on Ctrl-C.
    Calib {
        /// Serial port of the SLCAN adapter.
        #[arg(long)]
        port: String,
        #[arg(long, default_value_t = 115_200)]
        baud: u32,
        #[arg(long, value_parser = ["forward", "left", "right", "back", "spin"])]
        direction: Option<String>,
        /// Byte offset from 100 for all wheels (-80..=80).
        #[arg(long, allow_hyphen_values = true)]
        offset: Option<i16>,
        #[arg(long, default_value_t = 50.0)]
        throttle: f64,
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
    },
    /// Measure per-step latency of the CPU path (preprocess + backbone + head) and peak memory.
    ///
    /// Reports medians (p50), p99 and max in milliseconds over the measured steps.
    Bench {
        #[arg(long, default_value = DEFAULT_MODEL_DIR)]
        model: PathBuf,
        /// Measured steps.
        #[arg(long, default_value_t = 50)]
        steps: usize,
        /// Unmeasured steps first.
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
        /// `tensorrt`: the on-robot chain (CUDA preprocessing into the engine
        /// input, both engines, GPU feature ring) with checked engines from
        /// --engine-dir; needs `--features tensorrt`, a GPU and TensorRT.
        #[arg(long, value_enum, default_value = "tract")]
        backend: BenchBackend,
        /// Engines for --backend tensorrt; default MODEL/engines.
        #[arg(long)]
        engine_dir: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "fp16")]
        precision: PrecisionArg,
        /// Camera frame layout fed to --backend tensorrt (raw YUYV/NV12 are decoded by the first kernel).
        #[arg(long, value_enum, default_value = "yuyv")]
        frame_format: FrameFormatArg,
    },
    /// Preprocess one frame exactly as the runtime does and write the model input.
    ///
    /// Input: a u8 [H, W, 3] .npy frame. Output: the float32 [1, 3, h, w] tensor
    /// the backbone receives, as .npy, for comparison with Pillow/PyTorch.
    Preprocess {
        #[arg(long, default_value = DEFAULT_MODEL_DIR)]
        model: PathBuf,
        /// Frame file: u8 .npy of shape [H, W, 3].
        #[arg(long)]
        input: PathBuf,
        /// Where to write the float32 [1, 3, h, w] .npy tensor.
        #[arg(long)]
        out: PathBuf,
        /// Channel order of the frame's bytes (the robot's camera pipeline delivers BGR).
        #[arg(long, value_enum, default_value = "bgr")]
        frame_order: OrderArg,
        /// Rotation still to apply: 0 for frames as stored in episodes (already
        /// rotated), the model's camera_rotation_deg for raw camera frames.
        #[arg(long, default_value_t = 0)]
        rotate_deg: u32,
    },
}

fn init_logging(verbose: u8) {
    mvla::logging::init(verbose);
}

/// An error that means "the input is wrong" (exit 2) rather than "something failed" (exit 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BadInput(String);

fn load_policy(model: &Path) -> Result<TractPolicy> {
    TractPolicy::load(model).map_err(|e| BadInput(format!("model {}: {e}", model.display())).into())
}

fn cmd_preprocess(
    model: &Path,
    input: &Path,
    out: &Path,
    frame_order: ChannelOrder,
    rotate_deg: u32,
) -> Result<u8> {
    let meta = mvla::policy::ModelMeta::load(model).map_err(|e| BadInput(e.to_string()))?;
    let rotation = Rotation::from_degrees(rotate_deg).ok_or_else(|| {
        BadInput(format!(
            "--rotate-deg {rotate_deg}: supported values are 0 and 180"
        ))
    })?;
    let frame = mvla::npy::read::<u8>(input).map_err(|e| BadInput(e.to_string()))?;
    if frame.shape.len() != 3 || frame.shape[2] != 3 {
        bail!(BadInput(format!(
            "{}: shape {:?}, expected [H, W, 3]",
            input.display(),
            frame.shape
        )));
    }
    let spec = meta.preprocess_spec(rotation);
    let mut pre = CpuPreprocessor::new(spec);
    let mut tensor = vec![0f32; spec.output_len()];
    pre.run(
        FrameRef {
            width: frame.shape[1],
            height: frame.shape[0],
            order: frame_order,
            data: &frame.data,
        },
        &mut tensor,
    )
    .map_err(|e| BadInput(format!("{}: {e}", input.display())))?;
    mvla::npy::write(out, &[1, 3, spec.out_height, spec.out_width], &tensor)?;
    eprintln!(
        "wrote {} [1, 3, {}, {}] ({} frame {}x{}, rotation {}°, model order {})",
        out.display(),
        spec.out_height,
        spec.out_width,
        frame_order,
        frame.shape[1],
        frame.shape[0],
        rotate_deg,
        spec.model_order
    );
    Ok(0)
}

fn cmd_run(
    config: Option<&Path>,
    duration_s: Option<f64>,
    record: Option<PathBuf>,
    json: bool,
) -> Result<u8> {
    let config = match config {
        Some(path) => mvla::config::Config::load(path).map_err(|e| BadInput(e.to_string()))?,
        None => mvla::config::Config::builtin_default(),
    };
    let duration = match duration_s {
        Some(s) if !(s.is_finite() && s > 0.0) => {
            bail!(BadInput(format!("--duration-s {s}: must be positive")))
        }
        // A year bounds any field session and keeps Duration from overflowing.
        Some(s) if s > 3.2e7 => {
            bail!(BadInput(format!(
                "--duration-s {s}: at most 3.2e7 (a year)"
            )))
        }
        Some(s) => Some(std::time::Duration::from_secs_f64(s)),
        None => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("installing signal handlers")?;
    }
    let options = mvla::run::RunOptions {
        duration,
        record_dir: record,
    };
    let summary = match mvla::run::run(&config, &options, stop) {
        Ok(s) => s,
        Err(
            e @ (mvla::run::RunError::Model { .. }
            | mvla::run::RunError::Capture(mvla::capture::CaptureError::Config(_))),
        ) => {
            bail!(BadInput(e.to_string()))
        }
        Err(e) => return Err(e.into()),
    };
    if json {
        out!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_run_summary(&summary);
    }
    Ok(0)
}

fn print_run_summary(s: &mvla::run::RunSummary) {
    let c = &s.counters;
    out!("mvla run: {} ({})", s.stop_reason, s.config);
    out!(
        "  model {} ({}, {}); source: {}",
        s.model_dir,
        s.model_id,
        s.backend,
        s.source
    );
    out!(
        "  ran {:.1} s: frames captured {}, dropped (replaced unread) {}, capture errors {}",
        s.ran_s,
        c.frames_captured,
        c.frames_dropped,
        c.capture_errors
    );
    out!(
        "  inferences {}, inference faults {}, chunks superseded unread {}",
        c.inferences,
        c.inference_faults,
        c.chunks_superseded_unread
    );
    if !s.inference.faults.is_empty() {
        let faults: Vec<String> = s
            .inference
            .faults
            .iter()
            .map(|(k, n)| format!("{k} x{n}"))
            .collect();
        out!("  faults: {}", faults.join(", "));
    }
    out!(
        "  {:<28} {:>9} {:>9} {:>9} {:>7}",
        "latency (ms)",
        "p50",
        "p99",
        "max",
        "count"
    );
    let i = &s.inference;
    for (name, l) in [
        ("capture -> pickup", i.capture_to_pickup),
        ("preprocess", i.preprocess),
        ("infer (backbone+head)", i.infer),
        ("capture -> chunk", i.capture_to_chunk),
        ("chunk age at use (motor)", s.motor.chunk_age_at_use),
    ] {
        out!(
            "  {:<28} {:>9.2} {:>9.2} {:>9.2} {:>7}",
            name,
            l.p50_ms,
            l.p99_ms,
            l.max_ms,
            l.count
        );
    }
    let m = &s.motor;
    out!(
        "  motor ({}, {} Hz): ticks {} (moving {}), levels nominal {} / degraded {} / hold {} / stop {} / estop {}, deadline misses {}, tick lateness p99 {:.2} ms",
        m.mode,
        m.loop_hz,
        m.ticks,
        m.ticks_moving,
        m.ticks_nominal,
        m.ticks_degraded,
        m.ticks_hold,
        m.ticks_stop,
        m.ticks_estop,
        m.deadline_misses,
        m.tick_lateness.p99_ms
    );
    out!(
        "  link {}: frames sent {}, errors {}, superseded {}, final stop sent {}",
        m.link.link,
        m.link.frames_sent,
        m.link.errors,
        m.link.commands_superseded,
        m.link.final_stop_sent
    );
    if let Some(t) = &s.sim {
        out!(
            "  sim {} seed {}: {}, closest {:.2} m to the goal's front point",
            t.scenario,
            t.seed,
            t.verdict_line(),
            t.min_goal_distance_m
        );
    }
    if let (Some(p), Some(n)) = (s.emulator_pose, s.emulator_wheel_frames) {
        out!(
            "  emulated base: {n} wheel frames, pose x {:.3} m, y {:.3} m, heading {:.1} deg",
            p.0,
            p.1,
            p.2.to_degrees()
        );
    }
    if let Some(r) = &s.record {
        for (path, rows) in &r.episodes {
            out!("  recorded episode {path} ({rows} rows)");
        }
        out!(
            "  session log {} ({} lines); items dropped by a busy recorder: {}",
            r.session_log_path.as_deref().unwrap_or("-"),
            r.session_log_lines,
            r.dropped_items
        );
        for e in &r.errors {
            out!("  recording error: {e}");
        }
    }
}

fn cmd_calib(
    port: &str,
    baud: u32,
    direction: Option<&str>,
    offset: Option<i16>,
    throttle: f64,
    seconds: f64,
) -> Result<u8> {
    use mvla::robot::kinematics::vendor_move_offsets;
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= 30.0) {
        bail!(BadInput(format!("--seconds {seconds}: 0 < seconds <= 30")));
    }
    if !(throttle > 0.0 && throttle <= 58.0) {
        bail!(BadInput(format!(
            "--throttle {throttle}: 0 < throttle <= 58"
        )));
    }
    let offsets: [i64; 3] = match (direction, offset) {
        (Some(d), None) => {
            let deg: f64 = match d {
                "forward" => 0.0,
                "left" => 90.0,
                "back" => 180.0,
                "right" => -90.0,
                _ => {
                    let o = throttle.round() as i64;
                    return drive_for(port, baud, [o, o, o], seconds);
                }
            };
            vendor_move_offsets(deg.to_radians(), throttle)
        }
        (None, Some(o)) if (-80..=80).contains(&o) => [i64::from(o); 3],
        (None, Some(o)) => bail!(BadInput(format!("--offset {o}: -80..=80"))),
        _ => bail!(BadInput(
            "give exactly one of --direction or --offset".into()
        )),
    };
    drive_for(port, baud, offsets, seconds)
}

fn drive_for(port: &str, baud: u32, offsets: [i64; 3], seconds: f64) -> Result<u8> {
    use mvla::drive::MotorLink;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("installing signal handlers")?;
    }
    let mut link = mvla::drive::slcan::Slcan::open(mvla::drive::slcan::SlcanConfig {
        port: port.to_string(),
        baud,
        bitrate_code: '6',
        reply_timeout: std::time::Duration::from_millis(20),
    })
    .map_err(|e| BadInput(e.to_string()))?;
    let wheels = offsets.map(|o| (100 + o.clamp(-80, 80)) as u8);
    eprintln!(
        "driving wheels {wheels:?} for {seconds} s on {}",
        link.describe()
    );
    let start = std::time::Instant::now();
    let mut result = Ok(0);
    // 50 Hz: the board expects a steady stream, like the motor loop sends.
    while start.elapsed().as_secs_f64() < seconds
        && !stop.load(std::sync::atomic::Ordering::Relaxed)
    {
        if let Err(e) = link.send(wheels) {
            result = Err(anyhow::anyhow!("wheel link: {e}"));
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    link.stop();
    eprintln!("stopped");
    result
}

fn precision(p: PrecisionArg) -> mvla::policy::engine::Precision {
    match p {
        PrecisionArg::Fp16 => mvla::policy::engine::Precision::Fp16,
        PrecisionArg::Fp32 => mvla::policy::engine::Precision::Fp32,
    }
}

/// `mvla bench --backend tensorrt`: the whole GPU chain per frame.
fn cmd_bench_tensorrt(
    model: &Path,
    engine_dir: Option<&Path>,
    precision_arg: PrecisionArg,
    frame_format: FrameFormatArg,
    steps: usize,
    warmup: usize,
    json: bool,
) -> Result<u8> {
    use mvla::preprocess::InputFormat;
    let meta = mvla::policy::ModelMeta::load(model)
        .map_err(|e| BadInput(format!("model {}: {e}", model.display())))?;
    let dir = engine_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| mvla::policy::engine::default_engine_dir(model));
    let spec = meta.preprocess_spec(Rotation::Rotate180);
    let window = meta.raw.window;
    let t_load = std::time::Instant::now();
    let mut chain = mvla::policy::tensorrt::GpuChain::load(
        meta,
        &dir,
        precision(precision_arg),
        &mvla::policy::engine::ParityThresholds::default(),
        window,
        spec,
        None,
    )?;
    let load_s = t_load.elapsed().as_secs_f64();
    let describe = chain.describe();
    let format = match frame_format {
        FrameFormatArg::Bgr => InputFormat::Packed3,
        FrameFormatArg::Yuyv => InputFormat::Yuyv,
        FrameFormatArg::Nv12 => InputFormat::Nv12,
    };
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

fn cmd_bench(model: &Path, steps: usize, warmup: usize, json: bool) -> Result<u8> {
    let report = mvla::bench::bench_policy(model, steps, warmup)
        .map_err(|e| BadInput(format!("model {}: {e}", model.display())))?;
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

fn cmd_eval(model: &Path, inputs: &[PathBuf], json: bool) -> Result<u8> {
    let policy = load_policy(model)?;
    let model_id = policy.meta().model_id.clone();
    let window = policy.meta().raw.window;
    let paths = collect_episode_paths(inputs).context("listing episodes")?;
    if paths.is_empty() {
        bail!(BadInput(format!("no episodes found in {inputs:?}")));
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
                error: e.to_string(),
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
                error: e.to_string(),
            }),
        }
    }
    bar.finish_and_clear();

    let mut first = ErrorSums::default();
    let mut chunk = ErrorSums::default();
    for r in &episodes {
        first.merge(&r.first);
        chunk.merge(&r.chunk);
    }
    let steps: usize = episodes.iter().map(|r| r.steps_evaluated).sum();
    if json {
        let summary = EvalSummary {
            model_dir: model.display().to_string(),
            model_id: &model_id,
            episodes: episodes.iter().map(episode_json).collect(),
            skipped,
            overall_first: first.metrics(),
            overall_chunk: chunk.metrics(),
            steps_evaluated: steps,
        };
        out!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(if summary.skipped.is_empty() {
            0
        } else {
            exit::PARTIAL
        });
    }
    print_eval_table(model, &model_id, &episodes, &first, &chunk, steps);
    for s in &skipped {
        out!("SKIPPED {}: {}", s.path, s.error);
    }
    Ok(if skipped.is_empty() { 0 } else { exit::PARTIAL })
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
    first: &ErrorSums,
    chunk: &ErrorSums,
    steps: usize,
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
    row("OVERALL", steps, first.metrics(), chunk.metrics());
    out!("(rmse/dir: chunk step 0 vs the recorded action; chunk_rmse: every chunk step with a recorded action; target rmse < 0.12)");
}

#[allow(clippy::too_many_arguments)]
fn cmd_engine_build(
    model: &Path,
    engine_dir: Option<&Path>,
    precision_arg: PrecisionArg,
    workspace_mib: u64,
    fp32_pixels: bool,
    parity_frames: usize,
    force: bool,
    json: bool,
) -> Result<u8> {
    use mvla::policy::engine::{BuildEvent, BuildOptions};
    use mvla::policy::tensorrt;
    let meta = mvla::policy::ModelMeta::load(model)
        .map_err(|e| BadInput(format!("model {}: {e}", model.display())))?;
    meta.verify_files()
        .map_err(|e| BadInput(format!("model {}: {e}", model.display())))?;
    let dir = engine_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| mvla::policy::engine::default_engine_dir(model));
    let options = BuildOptions {
        precision: precision(precision_arg),
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

/// `mvla doctor`: see `mvla::doctor`.
#[allow(clippy::too_many_arguments)]
fn cmd_doctor(
    config_path: Option<&Path>,
    json: bool,
    require: Vec<String>,
    strict: bool,
    min_free_gib: f64,
    report_dir: Option<PathBuf>,
    build: bool,
    list_hardware_tests: bool,
) -> Result<u8> {
    if list_hardware_tests {
        for t in mvla::doctor::HARDWARE_TESTS {
            out!("{}\n    needs {}", t.command, t.needs);
        }
        return Ok(0);
    }
    let mut require = require;
    if strict {
        require.push("all".into());
    }
    let require = mvla::doctor::expand_require(&require).map_err(BadInput)?;
    if !(min_free_gib.is_finite() && min_free_gib >= 0.0) {
        bail!(BadInput(format!(
            "--min-free-gib {min_free_gib}: must be a finite number >= 0"
        )));
    }
    let config = match config_path {
        Some(path) => mvla::config::Config::load(path).map_err(|e| BadInput(e.to_string()))?,
        None => mvla::config::Config::builtin_default(),
    };
    let options = mvla::doctor::DoctorOptions {
        config_path: config_path.map(Path::to_path_buf),
        require: require.into_iter().map(String::from).collect(),
        min_free_gib,
        report_dir,
        build,
        ..Default::default()
    };
    let report = mvla::doctor::run(&config, &options);
    let written = match options.report_dir(&config) {
        Some(d) => match mvla::doctor::write_report(&report, &d) {
            Ok(p) => format!("report: {}", p.display()),
            Err(e) => format!("report NOT written to {}: {e}", d.display()),
        },
        None => "report not written (no --report-dir and no [record] dir in the config)".into(),
    };
    if json {
        out!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
        out!("hardware-only tests: mvla doctor --list-hardware-tests");
    }
    eprintln!("{written}");
    Ok(report.exit_code())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Sim { action } => sim_cmd::run(action),
        Command::Engine {
            action:
                EngineCommand::Build {
                    model,
                    engine_dir,
                    precision,
                    workspace_mib,
                    fp32_pixels,
                    parity_frames,
                    force,
                    json,
                },
        } => cmd_engine_build(
            &model,
            engine_dir.as_deref(),
            precision,
            workspace_mib,
            fp32_pixels,
            parity_frames,
            force,
            json,
        ),
        Command::Eval {
            model,
            episodes,
            json,
        } => cmd_eval(&model, &episodes, json),
        Command::Doctor {
            config,
            json,
            require,
            strict,
            min_free_gib,
            report_dir,
            build,
            list_hardware_tests,
        } => cmd_doctor(
            config.as_deref(),
            json,
            require,
            strict,
            min_free_gib,
            report_dir,
            build,
            list_hardware_tests,
        ),
        Command::Run {
            config,
            duration_s,
            record,
            json,
        } => cmd_run(config.as_deref(), duration_s, record, json),
        Command::Calib {
            port,
            baud,
            direction,
            offset,
            throttle,
            seconds,
        } => cmd_calib(&port, baud, direction.as_deref(), offset, throttle, seconds),
        Command::Bench { steps: 0, .. } => {
            Err(BadInput("--steps must be at least 1".into()).into())
        }
        Command::Bench {
            model,
            steps,
            warmup,
            json,
            backend: BenchBackend::Tensorrt,
            engine_dir,
            precision,
            frame_format,
        } => cmd_bench_tensorrt(
            &model,
            engine_dir.as_deref(),
            precision,
            frame_format,
            steps,
            warmup,
            json,
        ),
        Command::Bench {
            model,
            steps,
            warmup,
            json,
            ..
        } => cmd_bench(&model, steps, warmup, json),
        Command::Preprocess {
            model,
            input,
            out,
            frame_order,
            rotate_deg,
        } => cmd_preprocess(&model, &input, &out, frame_order.into(), rotate_deg),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<BadInput>().is_some() {
                ExitCode::from(exit::BAD_INPUT)
            } else {
                ExitCode::from(exit::FAILURE)
            }
        }
    }
}
