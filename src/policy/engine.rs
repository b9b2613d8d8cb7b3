//! TensorRT engine bookkeeping that needs no TensorRT: cache naming, the
//! parity gate and its record. Built in every configuration so the rules are
//! tested on machines without a GPU.
//!
//! An engine file is named by everything that decides whether it is valid:
//! `{role}-{graph digest}-trt{M.m.p}-sm{XY}-{precision}.engine`. The graph
//! digest covers the ONNX file and its external weights (the sha256 values in
//! `model.json`); TensorRT engines are tied to the TensorRT version and the
//! GPU's compute capability. Loading looks up the exact name, so a mismatching
//! engine is never loaded: it is rebuilt by `mvla engine build`.
//!
//! Parity gate: before an engine is accepted, the candidate backend (the
//! engines) and the reference backend (the same ONNX graphs through tract)
//! run the same inputs; the comparison is written beside the engines as
//! `{backbone engine stem}.parity.json` together with the sha256 of both
//! engine files, and checked again every time the engines are loaded.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{ModelMeta, Policy, PolicyError};
use crate::preprocess::{ChannelOrder, CpuPreprocessor, FrameRef, Preprocessor, Rotation};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp16,
    Fp32,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Self::Fp16 => "fp16",
            Self::Fp32 => "fp32",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "fp16" => Some(Self::Fp16),
            "fp32" => Some(Self::Fp32),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Backbone,
    Head,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Self::Backbone => "backbone",
            Self::Head => "head",
        }
    }
}

/// A TensorRT library version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TrtVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl TrtVersion {
    /// From `getInferLibVersion()` / `NV_TENSORRT_VERSION`: `M*1000 + m*100 + p`
    /// before TensorRT 10, `M*10000 + m*100 + p` from 10 on.
    pub fn from_encoded(v: i32) -> Option<Self> {
        if v <= 0 {
            return None;
        }
        let v = v as u32;
        let (major, rest) = if v >= 100_000 {
            (v / 10_000, v % 10_000)
        } else {
            (v / 1000, v % 1000)
        };
        Some(Self {
            major,
            minor: rest / 100,
            patch: rest % 100,
        })
    }
}

impl std::fmt::Display for TrtVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// What an engine was built from and for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineKey {
    pub role: Role,
    /// 16 hex digits of [`graph_digest`].
    pub graph: String,
    pub trt: TrtVersion,
    /// GPU compute capability (major, minor), e.g. (8, 7) for Orin.
    pub sm: (u32, u32),
    pub precision: Precision,
}

/// Digest of one exported graph: its ONNX sha256 and those of its external
/// weight files, as recorded (and verified) in `model.json`.
pub fn graph_digest(meta: &ModelMeta, role: Role) -> String {
    let (sha, external) = match role {
        Role::Backbone => (&meta.raw.backbone.sha256, &meta.raw.backbone.external_data),
        Role::Head => (&meta.raw.head.sha256, &meta.raw.head.external_data),
    };
    let mut h = Sha256::new();
    h.update(sha.as_bytes());
    for e in external {
        h.update(b"\n");
        h.update(e.file.as_bytes());
        h.update(b"=");
        h.update(e.sha256.as_bytes());
    }
    crate::hex::encode(&h.finalize())[..16].to_string()
}

impl EngineKey {
    pub fn new(
        meta: &ModelMeta,
        role: Role,
        trt: TrtVersion,
        sm: (u32, u32),
        precision: Precision,
    ) -> Self {
        Self {
            role,
            graph: graph_digest(meta, role),
            trt,
            sm,
            precision,
        }
    }

    pub fn stem(&self) -> String {
        format!(
            "{}-{}-trt{}-sm{}{}-{}",
            self.role.name(),
            self.graph,
            self.trt,
            self.sm.0,
            self.sm.1,
            self.precision.name()
        )
    }

    pub fn file_name(&self) -> String {
        format!("{}.engine", self.stem())
    }

    /// Parse a file name written by [`EngineKey::file_name`].
    pub fn parse(file_name: &str) -> Option<Self> {
        let stem = file_name.strip_suffix(".engine")?;
        let parts: Vec<&str> = stem.split('-').collect();
        let [role, graph, trt, sm, precision] = parts[..] else {
            return None;
        };
        let role = match role {
            "backbone" => Role::Backbone,
            "head" => Role::Head,
            _ => return None,
        };
        if graph.len() != 16 || !graph.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let v: Vec<u32> = trt
            .strip_prefix("trt")?
            .split('.')
            .map(|p| p.parse().ok())
            .collect::<Option<_>>()?;
        let [major, minor, patch] = v[..] else {
            return None;
        };
        let sm = sm.strip_prefix("sm")?;
        if sm.len() < 2 || !sm.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // The minor compute capability is one digit (sm_87, sm_90, sm_100 → "100").
        let (maj, min) = sm.split_at(sm.len() - 1);
        Some(Self {
            role,
            graph: graph.to_string(),
            trt: TrtVersion {
                major,
                minor,
                patch,
            },
            sm: (maj.parse().ok()?, min.parse().ok()?),
            precision: Precision::parse(precision)?,
        })
    }
}

/// Where a model's engines live unless configured otherwise: `<model dir>/engines`.
pub fn default_engine_dir(model_dir: &Path) -> PathBuf {
    model_dir.join("engines")
}

/// The two engine files of a model and their parity record.
#[derive(Debug, Clone)]
pub struct EnginePaths {
    pub backbone: PathBuf,
    pub head: PathBuf,
    pub parity: PathBuf,
    pub timing_cache: PathBuf,
}

impl EnginePaths {
    pub fn new(dir: &Path, backbone: &EngineKey, head: &EngineKey) -> Self {
        Self {
            backbone: dir.join(backbone.file_name()),
            head: dir.join(head.file_name()),
            parity: dir.join(format!("{}.parity.json", backbone.stem())),
            timing_cache: dir.join(format!(
                "timing-trt{}-sm{}{}.cache",
                backbone.trt, backbone.sm.0, backbone.sm.1
            )),
        }
    }
}

/// Engine keys and paths for `meta` on a machine with TensorRT `trt` and a GPU
/// of compute capability `sm` (what `mvla run`, `mvla engine build` and
/// `mvla doctor` look for).
pub fn engine_paths(
    meta: &ModelMeta,
    dir: &Path,
    trt: TrtVersion,
    sm: (u32, u32),
    precision: Precision,
) -> (EngineKey, EngineKey, EnginePaths) {
    let b = EngineKey::new(meta, Role::Backbone, trt, sm, precision);
    let h = EngineKey::new(meta, Role::Head, trt, sm, precision);
    let paths = EnginePaths::new(dir, &b, &h);
    (b, h, paths)
}

/// Engines in `dir` that are not the current ones for this model (another
/// model version, TensorRT, GPU or precision): never loaded, reported so the
/// operator can delete them.
pub fn stale_engines(dir: &Path, current: &[&EngineKey]) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut stale: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let key = EngineKey::parse(&name)?;
            (!current.contains(&&key)).then(|| e.path())
        })
        .collect();
    stale.sort();
    stale
}

// ---------------------------------------------------------------------------
// Engine build requests (executed by the `tensorrt` backend)

/// What `mvla engine build` asks for.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub precision: Precision,
    pub workspace_bytes: u64,
    /// Declare the backbone's pixel input fp16 so the fp16 preprocessing
    /// kernel writes it directly (TensorRT 10; ignored for fp32 builds).
    pub half_pixel_input: bool,
    /// Rebuild even when valid engines exist.
    pub force: bool,
    pub thresholds: ParityThresholds,
    /// Frames run through the parity gate.
    pub parity_frames: usize,
    /// −1: TensorRT's default builder optimisation level.
    pub optimization_level: i32,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            precision: Precision::Fp16,
            workspace_bytes: 2 << 30,
            half_pixel_input: true,
            force: false,
            thresholds: ParityThresholds::default(),
            parity_frames: 8,
            optimization_level: -1,
        }
    }
}

/// Builder progress, for a progress bar or a log.
pub enum BuildEvent<'a> {
    Phase {
        role: Role,
        name: &'a str,
        parent: Option<&'a str>,
        steps: i32,
    },
    Step {
        role: Role,
        name: &'a str,
        step: i32,
    },
    PhaseDone {
        role: Role,
        name: &'a str,
    },
    Message(&'a str),
}

pub struct BuildOutcome {
    pub paths: EnginePaths,
    pub reused: bool,
    pub record: ParityRecord,
    pub stale: Vec<PathBuf>,
}

// ---------------------------------------------------------------------------
// Parity gate

/// Acceptance thresholds. Defaults for an FP16 engine of the full model:
/// per-frame feature cosine similarity ≥ 0.999 against the fp32 ONNX
/// reference, and every chunk value (tanh range, so absolute error is
/// meaningful) within 0.02 of the reference, both for the head engine alone
/// (fed the reference features) and for the whole chain (engine features →
/// head engine). 0.02 in tanh units is 0.023 in action units after the ×1.15
/// scaling — well under the checkpoint's validation RMSE of 0.114.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ParityThresholds {
    pub feature_cosine_min: f64,
    pub chunk_max_abs: f64,
}

impl Default for ParityThresholds {
    fn default() -> Self {
        Self {
            feature_cosine_min: 0.999,
            chunk_max_abs: 0.02,
        }
    }
}

impl ParityThresholds {
    /// `self` is at least as strict as `other`.
    pub fn at_least_as_strict_as(&self, other: &Self) -> bool {
        self.feature_cosine_min >= other.feature_cosine_min
            && self.chunk_max_abs <= other.chunk_max_abs
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParityReport {
    pub inputs: usize,
    pub feature_cosine_min: f64,
    pub feature_max_abs: f64,
    /// Head engine on the reference features vs the reference head.
    pub head_chunk_max_abs: f64,
    /// Engine features → head engine vs the reference chain.
    pub chain_chunk_max_abs: f64,
    pub thresholds: ParityThresholds,
    pub passed: bool,
    pub failures: Vec<String>,
}

/// Deterministic frames for the gate: `n` camera-sized frames (640×480,
/// structured gradients plus hash noise, a different pattern per frame) run
/// through the CPU preprocessing the model's metadata asks for.
pub fn parity_inputs(meta: &ModelMeta, n: usize) -> Vec<Vec<f32>> {
    let (w, h) = (640usize, 480usize);
    let spec = meta.preprocess_spec(Rotation::None);
    let mut pre = CpuPreprocessor::new(spec);
    (0..n as u64)
        .map(|k| {
            let mut frame = Vec::with_capacity(w * h * 3);
            for y in 0..h as u64 {
                for x in 0..w as u64 {
                    for c in 0..3u64 {
                        let noise = ((x.wrapping_mul(2654435761)
                            ^ y.wrapping_mul(40503)
                            ^ (c + 3 * k).wrapping_mul(9973))
                            >> 5)
                            & 63;
                        let ramp = (x * (k + 1) + y * (3 - k % 3) + 70 * c) % 192;
                        frame.push((noise + ramp) as u8);
                    }
                }
            }
            let mut out = vec![0.0; spec.output_len()];
            pre.run(
                FrameRef {
                    width: w,
                    height: h,
                    order: ChannelOrder::Bgr,
                    data: &frame,
                },
                &mut out,
            )
            .expect("parity frames have the size they were made with");
            out
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 && bb == 0.0 {
        return 1.0;
    }
    ab / (aa.sqrt() * bb.sqrt()).max(f64::MIN_POSITIVE)
}

fn max_abs(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from((x - y).abs()))
        .fold(0.0, f64::max)
}

/// The reference side of the gate, computed once: per-frame features and
/// the head's chunk over every prefix window. Computed before the engines are
/// built so the reference backend (the full model through tract: ~9 GiB) is
/// freed before TensorRT needs the memory (the Orin's memory is shared with
/// the GPU).
#[derive(Debug, Clone)]
pub struct ReferenceRun {
    pub inputs: Vec<Vec<f32>>,
    /// `inputs.len() × feature_dim`, frame after frame.
    pub features: Vec<f32>,
    /// Chunk of the head over windows 1..=min(inputs, window), in that order.
    pub chunks: Vec<Vec<f32>>,
}

impl ReferenceRun {
    pub fn compute(reference: &mut dyn Policy, inputs: Vec<Vec<f32>>) -> Result<Self, PolicyError> {
        let meta = reference.meta().clone();
        let dim = meta.feature_dim();
        let mut features = vec![0.0; inputs.len() * dim];
        for (pixels, f) in inputs.iter().zip(features.chunks_exact_mut(dim)) {
            reference.encode(pixels, f)?;
        }
        let n_chunk = meta.raw.chunk * meta.raw.action_dim;
        let chunks = (1..=inputs.len().min(meta.raw.window))
            .map(|k| {
                let mut c = vec![0.0; n_chunk];
                reference.decode(&features[..k * dim], k, &mut c).map(|_| c)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            inputs,
            features,
            chunks,
        })
    }
}

/// Run the reference's inputs through `candidate`: features per frame, then
/// the head over every prefix window — once on the reference features (head
/// alone) and once on the candidate's own features (whole chain).
/// Non-finite outputs count as failures.
pub fn compare_run(
    run: &ReferenceRun,
    candidate: &mut dyn Policy,
    thresholds: ParityThresholds,
) -> Result<ParityReport, PolicyError> {
    let meta = candidate.meta().clone();
    let dim = meta.feature_dim();
    let n_chunk = meta.raw.chunk * meta.raw.action_dim;
    let mut cand_feats = vec![0.0; run.inputs.len() * dim];
    let mut report = ParityReport {
        inputs: run.inputs.len(),
        feature_cosine_min: 1.0,
        feature_max_abs: 0.0,
        head_chunk_max_abs: 0.0,
        chain_chunk_max_abs: 0.0,
        thresholds,
        passed: false,
        failures: Vec::new(),
    };
    let mut non_finite = false;
    for (i, pixels) in run.inputs.iter().enumerate() {
        let f_ref = &run.features[i * dim..(i + 1) * dim];
        let f_cand = &mut cand_feats[i * dim..(i + 1) * dim];
        candidate.encode(pixels, f_cand)?;
        non_finite |= f_cand.iter().any(|v| !v.is_finite());
        report.feature_cosine_min = report.feature_cosine_min.min(cosine(f_ref, f_cand));
        report.feature_max_abs = report.feature_max_abs.max(max_abs(f_ref, f_cand));
    }
    let (mut c_head, mut c_chain) = (vec![0.0; n_chunk], vec![0.0; n_chunk]);
    for (i, c_ref) in run.chunks.iter().enumerate() {
        let k = i + 1;
        let end = k * dim;
        candidate.decode(&run.features[..end], k, &mut c_head)?;
        candidate.decode(&cand_feats[..end], k, &mut c_chain)?;
        non_finite |= c_head.iter().chain(&c_chain).any(|v| !v.is_finite());
        report.head_chunk_max_abs = report.head_chunk_max_abs.max(max_abs(c_ref, &c_head));
        report.chain_chunk_max_abs = report.chain_chunk_max_abs.max(max_abs(c_ref, &c_chain));
    }
    // NaN compares false with everything: check the failing direction explicitly.
    if non_finite {
        report
            .failures
            .push("candidate produced non-finite values".into());
    }
    if report.feature_cosine_min.is_nan()
        || report.feature_cosine_min < thresholds.feature_cosine_min
    {
        report.failures.push(format!(
            "feature cosine {:.6} < {}",
            report.feature_cosine_min, thresholds.feature_cosine_min
        ));
    }
    for (what, v) in [
        ("head chunk", report.head_chunk_max_abs),
        ("chain chunk", report.chain_chunk_max_abs),
    ] {
        if v.is_nan() || v > thresholds.chunk_max_abs {
            report.failures.push(format!(
                "{what} max abs error {v:.3e} > {}",
                thresholds.chunk_max_abs
            ));
        }
    }
    report.passed = report.failures.is_empty();
    Ok(report)
}

/// [`ReferenceRun::compute`] on `reference`, then [`compare_run`].
pub fn compare(
    reference: &mut dyn Policy,
    candidate: &mut dyn Policy,
    inputs: &[Vec<f32>],
    thresholds: ParityThresholds,
) -> Result<ParityReport, PolicyError> {
    let run = ReferenceRun::compute(reference, inputs.to_vec())?;
    compare_run(&run, candidate, thresholds)
}

/// The gate's verdict, stored beside the engines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParityRecord {
    pub format: String,
    pub model_id: String,
    pub backbone_engine: String,
    pub backbone_engine_sha256: String,
    pub head_engine: String,
    pub head_engine_sha256: String,
    pub tensorrt: TrtVersion,
    pub compute_capability: (u32, u32),
    pub precision: Precision,
    pub reference: String,
    pub report: ParityReport,
}

pub const PARITY_FORMAT: &str = "mvla-parity/1";

#[derive(Debug, thiserror::Error)]
pub enum EngineCheckError {
    #[error("{path}: no parity record (run `mvla engine build --model DIR`)")]
    Missing { path: String },
    #[error("{path}: cannot read")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a parity record")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("{path}: the parity gate failed when this engine was built: {failures}")]
    Failed { path: String, failures: String },
    #[error("{path}: recorded for {recorded} but the engine file {engine} hashes to {actual} (engine replaced or corrupt; rebuild)")]
    EngineChanged {
        path: String,
        engine: String,
        recorded: String,
        actual: String,
    },
    #[error("{path}: recorded thresholds {recorded:?} are looser than required {required:?}")]
    Looser {
        path: String,
        recorded: ParityThresholds,
        required: ParityThresholds,
    },
}

impl ParityRecord {
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text + "\n")?;
        std::fs::rename(&tmp, path)
    }

    /// Load the record at `paths.parity` and check it vouches for the engine
    /// files now at `paths` with thresholds at least as strict as `required`.
    pub fn check(
        paths: &EnginePaths,
        required: &ParityThresholds,
    ) -> Result<Self, EngineCheckError> {
        let path = paths.parity.display().to_string();
        let text = match std::fs::read_to_string(&paths.parity) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(EngineCheckError::Missing { path })
            }
            Err(source) => return Err(EngineCheckError::Io { path, source }),
        };
        let record: Self =
            serde_json::from_str(&text).map_err(|source| EngineCheckError::Json {
                path: path.clone(),
                source,
            })?;
        if record.format != PARITY_FORMAT {
            return Err(EngineCheckError::Invalid {
                path,
                message: format!("format {:?}, expected {PARITY_FORMAT:?}", record.format),
            });
        }
        if !record.report.passed {
            return Err(EngineCheckError::Failed {
                path,
                failures: record.report.failures.join("; "),
            });
        }
        if !record.report.thresholds.at_least_as_strict_as(required) {
            return Err(EngineCheckError::Looser {
                path,
                recorded: record.report.thresholds,
                required: *required,
            });
        }
        for (engine, recorded) in [
            (&paths.backbone, &record.backbone_engine_sha256),
            (&paths.head, &record.head_engine_sha256),
        ] {
            let actual =
                super::meta::sha256_file(engine).map_err(|source| EngineCheckError::Io {
                    path: engine.display().to_string(),
                    source,
                })?;
            if &actual != recorded {
                return Err(EngineCheckError::EngineChanged {
                    path: path.clone(),
                    engine: engine.display().to_string(),
                    recorded: recorded.clone(),
                    actual,
                });
            }
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> EngineKey {
        EngineKey {
            role: Role::Backbone,
            graph: "0123456789abcdef".into(),
            trt: TrtVersion {
                major: 10,
                minor: 3,
                patch: 0,
            },
            sm: (8, 7),
            precision: Precision::Fp16,
        }
    }

    #[test]
    fn engine_names_round_trip_and_carry_every_part() {
        let k = key();
        assert_eq!(
            k.file_name(),
            "backbone-0123456789abcdef-trt10.3.0-sm87-fp16.engine"
        );
        assert_eq!(EngineKey::parse(&k.file_name()), Some(k.clone()));
        let mut h100 = k.clone();
        h100.sm = (9, 0);
        h100.role = Role::Head;
        h100.precision = Precision::Fp32;
        assert_eq!(EngineKey::parse(&h100.file_name()), Some(h100.clone()));
        for bad in [
            "backbone-0123456789abcdef-trt10.3.0-sm87-fp16.plan",
            "backbone-0123456789abcde-trt10.3.0-sm87-fp16.engine",
            "neck-0123456789abcdef-trt10.3.0-sm87-fp16.engine",
            "backbone-0123456789abcdef-trt10.3-sm87-fp16.engine",
            "backbone-0123456789abcdef-trt10.3.0-sm87-int8.engine",
        ] {
            assert_eq!(EngineKey::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn tensorrt_version_encodings() {
        let v = |e| TrtVersion::from_encoded(e).unwrap().to_string();
        assert_eq!(v(100300), "10.3.0"); // JetPack 6.1/6.2
        assert_eq!(v(110400), "11.4.0");
        assert_eq!(v(8602), "8.6.2"); // JetPack 6.0
        assert_eq!(TrtVersion::from_encoded(-1), None);
    }

    #[test]
    fn stale_engines_are_the_ones_with_another_key() {
        let dir = tempfile::tempdir().unwrap();
        let current = key();
        let mut other_gpu = current.clone();
        other_gpu.sm = (9, 0);
        let mut other_trt = current.clone();
        other_trt.trt.minor = 4;
        for k in [&current, &other_gpu, &other_trt] {
            std::fs::write(dir.path().join(k.file_name()), b"x").unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        let stale = stale_engines(dir.path(), &[&current]);
        let names: Vec<String> = stale
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
            .collect();
        assert_eq!(
            names,
            vec![other_trt.file_name(), other_gpu.file_name()]
                .into_iter()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn thresholds_ordering() {
        let d = ParityThresholds::default();
        let loose = ParityThresholds {
            feature_cosine_min: 0.99,
            chunk_max_abs: 0.02,
        };
        assert!(d.at_least_as_strict_as(&d));
        assert!(d.at_least_as_strict_as(&loose));
        assert!(!loose.at_least_as_strict_as(&d));
    }
}
