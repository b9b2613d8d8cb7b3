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

/// Built-in defaults of `eval`, `bench`, `preprocess` and `engine build`
/// (relative to the repository root): the tiny fixture model and the bundled
/// episodes it was checked on, so the commands run with no hardware. (`run`
/// and `sim trials` take the model from the built-in config: the trained
/// sim policy.)
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

fn parse_channel_order(s: &str) -> Result<mvla::frame::ChannelOrder, String> {
    mvla::frame::ChannelOrder::parse(s).ok_or_else(|| format!("{s:?}: bgr or rgb"))
}

#[derive(clap::Args)]
struct SimTrialsArgs {
    /// Scenario names, glob (`*`, `?`), comma-separated alternatives; `mvla sim list` names them.
    #[arg(long, default_value = "*")]
    scenario: String,
    /// Trials per scenario; trial i uses seed S+i (each scenario draws its own world from it).
    #[arg(long, default_value_t = 1)]
    trials: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Model directory (default: the config's; built-in: the trained sim policy, models/mobile_vla_sim).
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
    /// The channel order the runtime feeds the model (default: the model's
    /// image.channel_order; the other one is a deliberately wrong run).
    #[arg(long, value_parser = parse_channel_order)]
    channel_order: Option<mvla::frame::ChannelOrder>,
    /// The policy step (ms) for history spacing and chunk steps (default: the
    /// model's step_ms, or the config's model.step_ms).
    #[arg(long)]
    step_ms: Option<u64>,
    /// Spacing (ms) of the history window's frames (default: one policy
    /// step; the camera's frame interval is the deliberately wrong run).
    #[arg(long)]
    history_step_ms: Option<u64>,
    /// Execute chunk step i at the chunk's age i·step (true, the model's
    /// semantics) or always step 0 (false; a diagnostic).
    #[arg(long)]
    chunk_by_age: Option<bool>,
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
    /// Also store every trial in this trial store (SQLite, created if
    /// missing), marked simulated, for `mvla trial report`.
    #[arg(long)]
    db: Option<PathBuf>,
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
        /// Episodes per scenario; episode i uses seed S+i (each scenario draws its own world from it).
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
        /// Human-gated DAgger: this model drives (lock-step, camera 10 fps,
        /// latency 60 ms), the expert labels every row and takes over while
        /// the clearance is under --dagger-gate-m; failures are kept.
        #[arg(long)]
        dagger_model: Option<PathBuf>,
        /// The clearance (m) under which the expert drives (with --dagger-model).
        /// 0.08: at 0.04 one smoke episode in six still clipped the box before
        /// the expert's first pulse landed; at 0.08 none of eight did.
        #[arg(long, default_value_t = 0.08)]
        dagger_gate_m: f64,
    },
}

#[derive(clap::Args)]
struct TrialConsoleArgs {
    /// TOML configuration (the one `mvla run` uses); default: built-in hardware-free config.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Trial plan (TOML: scenarios, repetitions, time_limit_s, seed).
    #[arg(long)]
    plan: Option<PathBuf>,
    /// Scenarios without a plan file, comma-separated.
    #[arg(long, value_delimiter = ',')]
    scenario: Vec<String>,
    /// Trials per scenario (with --scenario).
    #[arg(long, default_value_t = 10)]
    repetitions: u64,
    /// A trial still running after this long ends as a failure (OTHER) unless marked otherwise (with --scenario).
    #[arg(long, default_value_t = mvla::trial::plan::DEFAULT_TIME_LIMIT_S)]
    time_limit_s: f64,
    /// Seed of the randomised order (default: the plan's, else drawn and shown).
    #[arg(long)]
    seed: Option<u64>,
    /// The trial store (SQLite); default: trials.sqlite in the recordings folder.
    #[arg(long)]
    db: Option<PathBuf>,
    /// Recordings folder (default: the config's [record] dir, else ./mvla-trials).
    #[arg(long)]
    record: Option<PathBuf>,
    /// Who runs the trials (stored with each).
    #[arg(long)]
    operator: Option<String>,
    /// The robot's name (default: the host name).
    #[arg(long)]
    robot_id: Option<String>,
}

#[derive(clap::Args)]
struct TrialReportArgs {
    /// The trial store.
    #[arg(long, default_value = "mvla-trials/trials.sqlite")]
    db: PathBuf,
    /// The report as JSON (tallies, comparison, every trial).
    #[arg(long)]
    json: bool,
    /// The tallies as CSV (scope, key, n, successes, rate, Wilson bounds, band, codes).
    #[arg(long)]
    csv: bool,
    /// Also write a self-contained HTML page with the plots (never over an existing file).
    #[arg(long)]
    html: Option<PathBuf>,
    /// Trials started on or after this UTC date/time (ISO-8601, e.g. 2026-12-01).
    #[arg(long)]
    since: Option<String>,
    /// Trials started before this UTC date/time.
    #[arg(long)]
    until: Option<String>,
    /// Scenario glob (`*`, `?`, `[…]`).
    #[arg(long)]
    scenario: Option<String>,
    /// Model digest (prefix).
    #[arg(long)]
    model: Option<String>,
    /// Plan id (as the console and the JSON report show it).
    #[arg(long)]
    plan: Option<String>,
    /// Only simulated trials.
    #[arg(long, conflicts_with = "field")]
    simulated: bool,
    /// Only field trials.
    #[arg(long)]
    field: bool,
    /// Compare two models, A,B (digest prefixes): difference in success rate
    /// with its 95 % interval and Fisher's exact p (default: the two models,
    /// when the trials have exactly two).
    #[arg(long)]
    compare: Option<String>,
}

#[derive(Subcommand)]
enum TrialCommand {
    /// Success rates per scenario, per model and overall (95 % Wilson
    /// intervals, colour bands, failure codes), a comparison of two models
    /// (difference with its interval, Fisher's exact p); a table, --json,
    /// --csv, or --html FILE with plots.
    Report(TrialReportArgs),
}

#[derive(Subcommand)]
enum Command {
    /// Field trials: the operator console (the robot's field mode), or `report`.
    ///
    /// The console runs the controller of `mvla run` (same config, threads,
    /// failsafe) disarmed, in a terminal UI (80x24, keys only, works over
    /// SSH): Enter starts a trial (arms the policy, starts the recording),
    /// Space stops the wheels at once (e-stop), y marks success, f failure
    /// with a code, a aborts, t adds a note, n skips to the next plan entry,
    /// q quits. Every trial is written to the trial store (SQLite) when it
    /// starts and when it ends; one left running by a crash is recorded as
    /// aborted by the next session.
    #[command(args_conflicts_with_subcommands = true)]
    Trial {
        #[command(subcommand)]
        action: Option<TrialCommand>,
        #[command(flatten)]
        console: TrialConsoleArgs,
    },
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
    /// Without --config it uses the built-in default: the trained sim policy
    /// (models/mobile_vla_sim) driving the simulated base in real time, no
    /// hardware needed. Stops on SIGINT/SIGTERM, after --duration-s, on the
    /// sim judge's verdict, or when a non-looping replay ends,
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
        Command::Trial {
            action: Some(TrialCommand::Report(a)),
            ..
        } => cli::trial::report_cmd(cli::trial::ReportArgs {
            db: a.db,
            json: a.json,
            csv: a.csv,
            html: a.html,
            filter: mvla::trial::store::Filter {
                since: a.since,
                until: a.until,
                scenario_glob: a.scenario,
                model: a.model,
                plan_id: a.plan,
                simulated: match (a.simulated, a.field) {
                    (true, _) => Some(true),
                    (_, true) => Some(false),
                    _ => None,
                },
            },
            compare: a.compare,
        }),
        Command::Trial {
            action: None,
            console: c,
        } => cli::trial::console(cli::trial::ConsoleArgs {
            config: c.config,
            plan: c.plan,
            scenario: c.scenario,
            repetitions: c.repetitions,
            time_limit_s: c.time_limit_s,
            seed: c.seed,
            db: c.db,
            record: c.record,
            operator: c.operator,
            robot_id: c.robot_id,
        }),
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
