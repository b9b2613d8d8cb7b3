//! `mvla`: the on-robot controller's command line: the definition, the
//! dispatch to one module per subcommand (`cli/`), logging and exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use mvla::preprocess::ChannelOrder;

mod cli;

use cli::BadInput;

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

impl From<FrameFormatArg> for mvla::preprocess::InputFormat {
    fn from(f: FrameFormatArg) -> Self {
        match f {
            FrameFormatArg::Bgr => Self::Packed3,
            FrameFormatArg::Yuyv => Self::Yuyv,
            FrameFormatArg::Nv12 => Self::Nv12,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum PrecisionArg {
    Fp16,
    Fp32,
}

impl From<PrecisionArg> for mvla::policy::engine::Precision {
    fn from(p: PrecisionArg) -> Self {
        match p {
            PrecisionArg::Fp16 => Self::Fp16,
            PrecisionArg::Fp32 => Self::Fp32,
        }
    }
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
    /// Command the wheels to stop over the configured link, then exit.
    ///
    /// For systemd's ExecStopPost: after the controller has ended for any
    /// reason (also SIGKILL or a crash), this opens the wheel link again and
    /// sends stop frames. With the in-process emulator there is nothing to do.
    Stop {
        /// TOML configuration (the controller's); default: built-in hardware-free config.
        #[arg(long)]
        config: Option<PathBuf>,
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
        #[arg(long, default_value_t = mvla::drive::slcan::DEFAULT_BAUD)]
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Sim { action } => cli::sim::run(action),
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
        } => cli::engine::build(
            &model,
            engine_dir.as_deref(),
            precision.into(),
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
        } => cli::eval::run(&model, &episodes, json),
        Command::Doctor {
            config,
            json,
            require,
            strict,
            min_free_gib,
            report_dir,
            build,
            list_hardware_tests,
        } => cli::doctor::run(
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
        } => cli::run::run(config.as_deref(), duration_s, record, json),
        Command::Stop { config } => cli::stop::run(config.as_deref()),
        Command::Calib {
            port,
            baud,
            direction,
            offset,
            throttle,
            seconds,
        } => cli::calib::run(&port, baud, direction.as_deref(), offset, throttle, seconds),
        Command::Bench { steps: 0, .. } => Err(BadInput::msg("--steps must be at least 1").into()),
        Command::Bench {
            model,
            steps,
            warmup,
            json,
            backend: BenchBackend::Tensorrt,
            engine_dir,
            precision,
            frame_format,
        } => cli::bench::tensorrt(
            &model,
            engine_dir.as_deref(),
            precision.into(),
            frame_format.into(),
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
        } => cli::bench::cpu(&model, steps, warmup, json),
        Command::Preprocess {
            model,
            input,
            out,
            frame_order,
            rotate_deg,
        } => cli::preprocess::run(&model, &input, &out, frame_order.into(), rotate_deg),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", mvla::error::Report(e.as_ref()));
            if e.downcast_ref::<BadInput>().is_some() {
                ExitCode::from(exit::BAD_INPUT)
            } else {
                ExitCode::from(exit::FAILURE)
            }
        }
    }
}
