//! TensorRT backend (feature `tensorrt`): the exported graphs as TensorRT
//! engines, through mvla's owned C++ shim (`shim.cpp`, built by `build.rs`).
//!
//! `tensorrt-rs` (the original plan) supports only TensorRT 5/7 and does not
//! build without it, so mvla binds the few calls it needs itself. TensorRT is
//! loaded with `dlopen` at run time: a binary built with this feature still
//! starts on a machine without TensorRT and says what is missing.
//!
//! * [`open`]: load libnvinfer, forward its log to `tracing`.
//! * [`Engine`]: deserialize, IO tensor introspection, tensor addresses,
//!   `enqueueV3` on a CUDA stream.
//! * [`build_engines`]: ONNX parser → builder (FP16, workspace limit,
//!   optimisation profile for the head's window length, timing cache) →
//!   parity gate against the tract reference → engines + record on disk.
//! * [`TensorRtPolicy`]: the two engines as a [`Policy`], with the per-frame
//!   feature kept on the GPU in a ring indexed like the host [`History`], so
//!   the zero-copy path ([`GpuChain`]) never moves a feature to the host.

mod ffi;

use std::ffi::{c_char, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DevicePtr, DevicePtrMut};

use super::engine::{
    self, EngineCheckError, EnginePaths, ParityRecord, ParityReport, ParityThresholds, Precision,
    Role, TrtVersion,
};
pub use super::engine::{BuildEvent, BuildOptions, BuildOutcome};
use super::{History, ModelMeta, Policy, PolicyError};
use crate::clock::Timestamp;
use crate::preprocess::cuda::{CudaPreprocessor, OutputPrecision};
use crate::preprocess::{FrameRef, InputFormat, PreprocessError, PreprocessSpec};

pub use ffi::Dims;

/// Library names tried in order (JetPack 6 ships TensorRT 10).
const NVINFER_NAMES: [&str; 3] = ["libnvinfer.so.10", "libnvinfer.so.11", "libnvinfer.so"];
const PARSER_NAMES: [&str; 3] = [
    "libnvonnxparser.so.10",
    "libnvonnxparser.so.11",
    "libnvonnxparser.so",
];

#[derive(Debug, thiserror::Error)]
pub enum TrtError {
    #[error("{0}")]
    Unavailable(String),
    #[error("no CUDA driver (libcuda) on this machine")]
    NoDriver,
    #[error("CUDA: {0}")]
    Cuda(String),
    #[error("{path}: {message}")]
    Engine { path: String, message: String },
    #[error("building an engine from {onnx}: {message}")]
    Build { onnx: String, message: String },
    #[error("no {role} engine for this model, TensorRT and GPU: {path} (run `mvla engine build --model DIR`)")]
    NotBuilt { role: &'static str, path: String },
    #[error(transparent)]
    Check(#[from] EngineCheckError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("parity gate failed: {}", .0.failures.join("; "))]
    ParityFailed(Box<ParityReport>),
}

fn cuda(e: impl std::fmt::Debug) -> TrtError {
    TrtError::Cuda(format!("{e:?}"))
}

const ERR_LEN: usize = 2048;

/// On the stack: the per-frame calls (addresses, shapes, enqueue) allocate nothing.
fn err_buf() -> [u8; ERR_LEN] {
    [0u8; ERR_LEN]
}

fn err_text(buf: &[u8]) -> String {
    CStr::from_bytes_until_nul(buf)
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown TensorRT error".into())
}

fn c_names(names: &[&str]) -> (Vec<CString>, Vec<*const c_char>) {
    let owned: Vec<CString> = names
        .iter()
        .map(|n| CString::new(*n).expect("no NUL in library names"))
        .collect();
    let ptrs = owned.iter().map(|c| c.as_ptr()).collect();
    (owned, ptrs)
}

unsafe extern "C" fn log_to_tracing(_user: *mut c_void, severity: i32, msg: *const c_char) {
    if msg.is_null() {
        return;
    }
    // SAFETY: TensorRT passes a NUL-terminated message valid for this call.
    let text = unsafe { CStr::from_ptr(msg) }.to_string_lossy();
    match severity {
        0 | 1 => tracing::error!(target: "tensorrt", "{text}"),
        2 => tracing::warn!(target: "tensorrt", "{text}"),
        3 => tracing::info!(target: "tensorrt", "{text}"),
        _ => tracing::trace!(target: "tensorrt", "{text}"),
    }
}

/// The TensorRT version the shim was compiled against.
pub fn header_version() -> Option<TrtVersion> {
    // SAFETY: returns a compile-time constant.
    TrtVersion::from_encoded(unsafe { ffi::mvla_trt_header_version() })
}

type OpenFn = unsafe extern "C" fn(*const *const c_char, i32, *mut c_char, usize) -> i32;

/// Call one of the shim's library loaders with the candidate `names`.
fn load_library(open_fn: OpenFn, names: &[&str]) -> Result<(), TrtError> {
    let (_owned, ptrs) = c_names(names);
    let mut err = err_buf();
    // SAFETY: `ptrs` holds valid C strings for the call; `err` is writable for ERR_LEN bytes.
    let rc = unsafe {
        open_fn(
            ptrs.as_ptr(),
            ptrs.len() as i32,
            err.as_mut_ptr().cast(),
            ERR_LEN,
        )
    };
    if rc != 0 {
        return Err(TrtError::Unavailable(err_text(&err)));
    }
    Ok(())
}

/// Load libnvinfer and return its version. Fails with a clear message when
/// TensorRT is not installed.
pub fn open() -> Result<TrtVersion, TrtError> {
    load_library(ffi::mvla_trt_open, &NVINFER_NAMES)?;
    // SAFETY: the callback is a plain function valid for the program's life.
    unsafe { ffi::mvla_trt_set_log_callback(Some(log_to_tracing), std::ptr::null_mut()) };
    // SAFETY: library opened above.
    let v = unsafe { ffi::mvla_trt_lib_version() };
    let version = TrtVersion::from_encoded(v)
        .ok_or_else(|| TrtError::Unavailable(format!("libnvinfer reports version {v}")))?;
    if let Some(h) = header_version() {
        if h.major != version.major {
            return Err(TrtError::Unavailable(format!(
                "libnvinfer is TensorRT {version} but mvla was built against TensorRT {h} headers"
            )));
        }
    }
    Ok(version)
}

fn open_parser() -> Result<(), TrtError> {
    load_library(ffi::mvla_trt_open_parser, &PARSER_NAMES)
}

/// TensorRT `DataType` values the runtime handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    F32,
    F16,
    I32,
    I64,
    Other(i32),
}

impl DataType {
    fn from_raw(v: i32) -> Self {
        match v {
            0 => Self::F32,
            1 => Self::F16,
            3 => Self::I32,
            8 => Self::I64,
            other => Self::Other(other),
        }
    }
}

#[derive(Debug, Clone)]
pub struct IoTensor {
    pub name: String,
    c_name: CString,
    pub is_input: bool,
    pub dtype: DataType,
    /// −1 for dynamic dimensions.
    pub dims: Vec<i64>,
}

/// One deserialized engine with its execution context.
pub struct Engine {
    handle: NonNull<ffi::EngineHandle>,
    path: PathBuf,
    pub io: Vec<IoTensor>,
}

// SAFETY: an engine and its context are used by one thread at a time (the
// owner holds `&mut self` for every call that touches the context); TensorRT
// allows moving them between threads.
unsafe impl Send for Engine {}

impl Drop for Engine {
    fn drop(&mut self) {
        // SAFETY: created by mvla_trt_engine_load, freed exactly once here.
        unsafe { ffi::mvla_trt_engine_free(self.handle.as_ptr()) }
    }
}

impl Engine {
    /// Deserialize `path` (TensorRT must be [`open`]).
    pub fn load(path: &Path) -> Result<Self, TrtError> {
        let blob = std::fs::read(path).map_err(|source| TrtError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let mut err = err_buf();
        // SAFETY: `blob` is valid for its length during the call.
        let handle = unsafe {
            ffi::mvla_trt_engine_load(
                blob.as_ptr().cast(),
                blob.len(),
                err.as_mut_ptr().cast(),
                ERR_LEN,
            )
        };
        let handle = NonNull::new(handle).ok_or_else(|| TrtError::Engine {
            path: path.display().to_string(),
            message: err_text(&err),
        })?;
        let mut engine = Self {
            handle,
            path: path.to_path_buf(),
            io: Vec::new(),
        };
        // SAFETY: valid handle.
        let n = unsafe { ffi::mvla_trt_engine_nb_io(handle.as_ptr()) };
        for i in 0..n {
            let mut info = ffi::TensorInfo {
                name: std::ptr::null(),
                is_input: 0,
                dtype: 0,
                dims: Dims::default(),
            };
            // SAFETY: valid handle and index; `info.name` points into the engine, copied below.
            if unsafe { ffi::mvla_trt_engine_io(handle.as_ptr(), i, &mut info) } != 0
                || info.name.is_null()
            {
                return Err(engine.err(format!("IO tensor {i} has no name")));
            }
            // SAFETY: NUL-terminated name owned by the engine.
            let c_name = unsafe { CStr::from_ptr(info.name) }.to_owned();
            engine.io.push(IoTensor {
                name: c_name.to_string_lossy().into_owned(),
                c_name,
                is_input: info.is_input != 0,
                dtype: DataType::from_raw(info.dtype),
                dims: info.dims.as_slice().to_vec(),
            });
        }
        Ok(engine)
    }

    fn err(&self, message: impl Into<String>) -> TrtError {
        TrtError::Engine {
            path: self.path.display().to_string(),
            message: message.into(),
        }
    }

    pub fn tensor(&self, name: &str) -> Result<&IoTensor, TrtError> {
        self.io.iter().find(|t| t.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.io.iter().map(|t| t.name.as_str()).collect();
            self.err(format!("no IO tensor {name:?} (engine has {names:?})"))
        })
    }

    fn c_name(&self, name: &str) -> Result<CString, TrtError> {
        Ok(self.tensor(name)?.c_name.clone())
    }

    /// Profile 0's (min, opt, max) shape of an input.
    pub fn profile_shape(&self, name: &str) -> Result<[Vec<i64>; 3], TrtError> {
        let c = self.c_name(name)?;
        let mut out: [Vec<i64>; 3] = Default::default();
        for (sel, slot) in out.iter_mut().enumerate() {
            let mut d = Dims::default();
            // SAFETY: valid handle and name.
            if unsafe {
                ffi::mvla_trt_engine_profile_shape(
                    self.handle.as_ptr(),
                    c.as_ptr(),
                    sel as i32,
                    &mut d,
                )
            } != 0
            {
                return Err(self.err(format!("{name}: no optimisation profile shape")));
            }
            *slot = d.as_slice().to_vec();
        }
        Ok(out)
    }

    pub fn set_input_shape(&mut self, name: &CStr, dims: &[i64]) -> Result<(), TrtError> {
        let d = Dims::new(dims);
        let mut err = err_buf();
        // SAFETY: valid handle, NUL-terminated name, writable error buffer.
        let rc = unsafe {
            ffi::mvla_trt_set_input_shape(
                self.handle.as_ptr(),
                name.as_ptr(),
                &d,
                err.as_mut_ptr().cast(),
                ERR_LEN,
            )
        };
        if rc != 0 {
            return Err(self.err(err_text(&err)));
        }
        Ok(())
    }

    /// Shape of a tensor in the current context (outputs after the inputs' shapes are set).
    pub fn tensor_shape(&self, name: &CStr) -> Option<Vec<i64>> {
        let mut d = Dims::default();
        // SAFETY: valid handle and name.
        (unsafe { ffi::mvla_trt_tensor_shape(self.handle.as_ptr(), name.as_ptr(), &mut d) } == 0)
            .then(|| d.as_slice().to_vec())
    }

    /// Bind a device address to a tensor.
    ///
    /// # Safety
    /// `ptr` must be a device allocation large enough for the tensor's shape
    /// and type, alive until every enqueue that uses it has completed.
    pub unsafe fn set_address(&mut self, name: &CStr, ptr: u64) -> Result<(), TrtError> {
        let mut err = err_buf();
        // SAFETY: see the function's contract; handle and name are valid.
        let rc = unsafe {
            ffi::mvla_trt_set_address(
                self.handle.as_ptr(),
                name.as_ptr(),
                ptr as *mut c_void,
                err.as_mut_ptr().cast(),
                ERR_LEN,
            )
        };
        if rc != 0 {
            return Err(self.err(err_text(&err)));
        }
        Ok(())
    }

    /// Enqueue one inference on `stream`; returns without waiting.
    pub fn enqueue(&mut self, stream: &CudaStream) -> Result<(), TrtError> {
        let mut err = err_buf();
        // SAFETY: valid handle; the stream outlives the call; addresses were bound by the caller.
        let rc = unsafe {
            ffi::mvla_trt_enqueue(
                self.handle.as_ptr(),
                stream.cu_stream() as *mut c_void,
                err.as_mut_ptr().cast(),
                ERR_LEN,
            )
        };
        if rc != 0 {
            return Err(self.err(err_text(&err)));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Engine build

struct ProgressCtx<'a> {
    role: Role,
    sink: &'a mut dyn FnMut(BuildEvent<'_>),
}

unsafe extern "C" fn progress_trampoline(
    user: *mut c_void,
    kind: i32,
    phase: *const c_char,
    parent: *const c_char,
    value: i32,
) -> i32 {
    // SAFETY: `user` is the &mut ProgressCtx passed to mvla_trt_build for this call.
    let ctx = unsafe { &mut *(user as *mut ProgressCtx<'_>) };
    let text = |p: *const c_char| {
        // SAFETY: TensorRT passes NUL-terminated phase names valid for the call.
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    };
    let name = text(phase).unwrap_or_default();
    let parent = text(parent);
    let role = ctx.role;
    match kind {
        0 => (ctx.sink)(BuildEvent::Phase {
            role,
            name: &name,
            parent: parent.as_deref(),
            steps: value,
        }),
        1 => (ctx.sink)(BuildEvent::Step {
            role,
            name: &name,
            step: value,
        }),
        _ => (ctx.sink)(BuildEvent::PhaseDone { role, name: &name }),
    }
    1
}

#[derive(Default)]
struct Sinks {
    engine: Vec<u8>,
    cache: Vec<u8>,
}

unsafe extern "C" fn engine_sink(user: *mut c_void, data: *const c_void, len: usize) {
    // SAFETY: `user` is the &mut Sinks of this build; data is valid for len bytes.
    let s = unsafe { &mut *(user as *mut Sinks) };
    s.engine
        .extend_from_slice(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) });
}

unsafe extern "C" fn cache_sink(user: *mut c_void, data: *const c_void, len: usize) {
    // SAFETY: as in `engine_sink`.
    let s = unsafe { &mut *(user as *mut Sinks) };
    s.cache.clear();
    s.cache
        .extend_from_slice(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) });
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), TrtError> {
    let io = |source| TrtError::Io {
        path: path.display().to_string(),
        source,
    };
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

fn c_path(p: &Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).expect("no NUL in paths")
}

#[allow(clippy::too_many_arguments)]
fn build_one(
    onnx: &Path,
    role: Role,
    options: &BuildOptions,
    profiles: &[(String, [Vec<i64>; 3])],
    half_inputs: &[&str],
    timing_cache: &mut Vec<u8>,
    progress: &mut dyn FnMut(BuildEvent<'_>),
) -> Result<Vec<u8>, TrtError> {
    let onnx_c = c_path(onnx);
    let names: Vec<CString> = profiles
        .iter()
        .map(|(n, _)| CString::new(n.as_str()).expect("tensor names have no NUL"))
        .collect();
    let ffi_profiles: Vec<ffi::Profile> = profiles
        .iter()
        .zip(&names)
        .map(|((_, [min, opt, max]), n)| ffi::Profile {
            name: n.as_ptr(),
            min: Dims::new(min),
            opt: Dims::new(opt),
            max: Dims::new(max),
        })
        .collect();
    let (_half_owned, half_ptrs) = c_names(half_inputs);
    let opts = ffi::BuildOptions {
        onnx_path: onnx_c.as_ptr(),
        fp16: i32::from(options.precision == Precision::Fp16),
        workspace_bytes: options.workspace_bytes,
        profiles: ffi_profiles.as_ptr(),
        nb_profiles: ffi_profiles.len() as i32,
        half_inputs: half_ptrs.as_ptr(),
        nb_half_inputs: half_ptrs.len() as i32,
        timing_cache: timing_cache.as_ptr().cast(),
        timing_cache_len: timing_cache.len(),
        optimization_level: options.optimization_level,
    };
    let mut sinks = Sinks::default();
    let mut ctx = ProgressCtx {
        role,
        sink: progress,
    };
    let mut err = err_buf();
    // SAFETY: every pointer in `opts` refers to data alive for the call; the
    // callbacks' user pointers are the locals above, used only during the call.
    let rc = unsafe {
        ffi::mvla_trt_build(
            &opts,
            Some(progress_trampoline),
            (&mut ctx as *mut ProgressCtx<'_>).cast(),
            engine_sink,
            Some(cache_sink),
            (&mut sinks as *mut Sinks).cast(),
            err.as_mut_ptr().cast(),
            ERR_LEN,
        )
    };
    if rc != 0 {
        return Err(TrtError::Build {
            onnx: onnx.display().to_string(),
            message: err_text(&err),
        });
    }
    if !sinks.cache.is_empty() {
        *timing_cache = sinks.cache;
    }
    Ok(sinks.engine)
}

/// A new stream on GPU 0's primary context (needs the CUDA driver; cudarc
/// panics without it, hence the probe).
fn gpu_stream() -> Result<Arc<CudaStream>, TrtError> {
    if !crate::preprocess::cuda::driver_present() {
        return Err(TrtError::NoDriver);
    }
    CudaContext::new(0)
        .map_err(cuda)?
        .new_stream()
        .map_err(cuda)
}

/// Compute capability of the GPU `stream` runs on.
fn compute_capability(stream: &CudaStream) -> Result<(u32, u32), TrtError> {
    let (a, b) = stream.context().compute_capability().map_err(cuda)?;
    Ok((a as u32, b as u32))
}

pub use super::engine::engine_paths;

/// Build (or reuse) both engines for `meta` in `dir`, then run the parity
/// gate against the reference backend `make_reference` loads (the same
/// graphs through tract). The reference runs — and is dropped — before the
/// build, and only when something is built. Engines that fail the gate stay
/// on disk for inspection, but their record says failed, so they are never
/// loaded.
pub fn build_engines(
    meta: &ModelMeta,
    dir: &Path,
    options: &BuildOptions,
    make_reference: &mut dyn FnMut() -> Result<Box<dyn Policy>, PolicyError>,
    progress: &mut dyn FnMut(BuildEvent<'_>),
) -> Result<BuildOutcome, TrtError> {
    let trt = open()?;
    open_parser()?;
    let stream = gpu_stream()?;
    let sm = compute_capability(&stream)?;
    let (bkey, hkey, paths) = engine_paths(meta, dir, trt, sm, options.precision);
    std::fs::create_dir_all(dir).map_err(|source| TrtError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let stale = engine::stale_engines(dir, &[&bkey, &hkey]);
    if !options.force && paths.backbone.is_file() && paths.head.is_file() {
        if let Ok(record) = ParityRecord::check(&paths, &options.thresholds) {
            progress(BuildEvent::Message(
                "engines present and vouched for by their parity record; reusing them",
            ));
            return Ok(BuildOutcome {
                paths,
                reused: true,
                record,
                stale,
            });
        }
    }
    progress(BuildEvent::Message(
        "parity reference: the ONNX graphs through tract on the gate's frames",
    ));
    let reference_run = {
        let mut reference = make_reference()?;
        let inputs = engine::parity_inputs(meta, options.parity_frames.max(1));
        engine::ReferenceRun::compute(reference.as_mut(), inputs)?
    }; // the reference backend is freed here, before TensorRT allocates
    let mut timing = std::fs::read(&paths.timing_cache).unwrap_or_default();
    let raw = &meta.raw;

    // Backbone: static shapes; the pixel input optionally fp16 (zero copy from the kernel).
    let half: Vec<&str> = if options.half_pixel_input && options.precision == Precision::Fp16 {
        vec!["pixel_values"]
    } else {
        Vec::new()
    };
    progress(BuildEvent::Message(
        "building the backbone engine (minutes)",
    ));
    let backbone = build_one(
        &meta.backbone_path,
        Role::Backbone,
        options,
        &[],
        &half,
        &mut timing,
        progress,
    )?;
    write_atomically(&paths.backbone, &backbone)?;
    drop(backbone);

    // Head: window length is dynamic, 1..=window, optimised for the full window.
    let dim = meta.feature_dim() as i64;
    let w = raw.window as i64;
    let profile = (
        raw.head.input.clone(),
        [vec![1, 1, dim], vec![1, w, dim], vec![1, w, dim]],
    );
    progress(BuildEvent::Message("building the head engine"));
    let head = build_one(
        &meta.head_path,
        Role::Head,
        options,
        &[profile],
        &[],
        &mut timing,
        progress,
    )?;
    write_atomically(&paths.head, &head)?;
    drop(head);
    if !timing.is_empty() {
        write_atomically(&paths.timing_cache, &timing)?;
    }

    progress(BuildEvent::Message(
        "parity gate: engines vs the ONNX graphs through tract",
    ));
    let mut candidate = TensorRtPolicy::load_unchecked(meta.clone(), &paths, stream)?;
    let report = engine::compare_run(&reference_run, &mut candidate, options.thresholds)?;
    let sha = |p: &Path| {
        super::meta::sha256_file(p).map_err(|source| TrtError::Io {
            path: p.display().to_string(),
            source,
        })
    };
    let record = ParityRecord {
        format: engine::PARITY_FORMAT.into(),
        model_id: meta.model_id.clone(),
        backbone_engine: bkey.file_name(),
        backbone_engine_sha256: sha(&paths.backbone)?,
        head_engine: hkey.file_name(),
        head_engine_sha256: sha(&paths.head)?,
        tensorrt: trt,
        compute_capability: sm,
        precision: options.precision,
        reference: "the same ONNX graphs through tract (fp32, CPU)".into(),
        report,
    };
    record.write(&paths.parity).map_err(|source| TrtError::Io {
        path: paths.parity.display().to_string(),
        source,
    })?;
    if !record.report.passed {
        return Err(TrtError::ParityFailed(Box::new(record.report)));
    }
    Ok(BuildOutcome {
        paths,
        reused: false,
        record,
        stale,
    })
}

// ---------------------------------------------------------------------------
// The policy

enum DeviceInput {
    F32(CudaSlice<f32>),
    F16(CudaSlice<u16>),
}

enum DeviceIds {
    I64(CudaSlice<i64>),
    I32(CudaSlice<i32>),
}

fn ptr_of<T>(s: &CudaSlice<T>, stream: &CudaStream) -> u64 {
    let (p, _sync) = s.device_ptr(stream);
    p
}

fn ptr_of_mut<T>(s: &mut CudaSlice<T>, stream: &CudaStream) -> u64 {
    let (p, _sync) = s.device_ptr_mut(stream);
    p
}

/// Both engines as a [`Policy`]. Device buffers are allocated once in
/// `load`; a step allocates nothing.
pub struct TensorRtPolicy {
    meta: ModelMeta,
    stream: Arc<CudaStream>,
    backbone: Engine,
    head: Engine,
    pixels_name: CString,
    feature_name: CString,
    head_in_name: CString,
    pixels: DeviceInput,
    _ids: Vec<DeviceIds>,
    /// Feature ring: `capacity + 1` slots of `feature_dim`; the last slot is
    /// scratch for the host-facing `encode`.
    ring: CudaSlice<f32>,
    capacity: usize,
    head_in: CudaSlice<f32>,
    chunk: CudaSlice<f32>,
    host_half: Vec<u16>,
    pub record: Option<ParityRecord>,
}

impl TensorRtPolicy {
    /// Load the engines for `meta` from `dir` after checking their names
    /// (model, TensorRT, GPU, precision) and their parity record.
    pub fn load(
        meta: ModelMeta,
        dir: &Path,
        precision: Precision,
        thresholds: &ParityThresholds,
        capacity: usize,
    ) -> Result<Self, TrtError> {
        let trt = open()?;
        let stream = gpu_stream()?;
        let sm = compute_capability(&stream)?;
        let (_, _, paths) = engine_paths(&meta, dir, trt, sm, precision);
        for (role, p) in [("backbone", &paths.backbone), ("head", &paths.head)] {
            if !p.is_file() {
                return Err(TrtError::NotBuilt {
                    role,
                    path: p.display().to_string(),
                });
            }
        }
        let record = ParityRecord::check(&paths, thresholds)?;
        let mut policy = Self::load_with_capacity(meta, &paths, stream, capacity)?;
        policy.record = Some(record);
        Ok(policy)
    }

    /// Load without the parity record (the gate itself uses this).
    fn load_unchecked(
        meta: ModelMeta,
        paths: &EnginePaths,
        stream: Arc<CudaStream>,
    ) -> Result<Self, TrtError> {
        Self::load_with_capacity(meta, paths, stream, 1)
    }

    fn load_with_capacity(
        meta: ModelMeta,
        paths: &EnginePaths,
        stream: Arc<CudaStream>,
        capacity: usize,
    ) -> Result<Self, TrtError> {
        // TensorRT allocates on the context current on this thread: make it
        // the one the stream (and the preprocessing kernels) belong to.
        stream.context().bind_to_thread().map_err(cuda)?;
        let mut backbone = Engine::load(&paths.backbone)?;
        let mut head = Engine::load(&paths.head)?;
        let raw = &meta.raw;
        let dim = meta.feature_dim();
        let (h, w) = (raw.image.height as i64, raw.image.width as i64);

        // Backbone inputs: pixels (fp32 or fp16), prompt ids and mask (int64 or int32).
        let mut ids = Vec::new();
        let mut pixels = None;
        for t in backbone.io.clone().iter().filter(|t| t.is_input) {
            match t.name.as_str() {
                "pixel_values" => {
                    let shape = [1, 3, h, w];
                    backbone.set_input_shape(&t.c_name, &shape)?;
                    let n = meta.pixel_count();
                    pixels = Some(match t.dtype {
                        DataType::F32 => DeviceInput::F32(stream.alloc_zeros(n).map_err(cuda)?),
                        DataType::F16 => DeviceInput::F16(stream.alloc_zeros(n).map_err(cuda)?),
                        other => {
                            return Err(backbone.err(format!(
                                "pixel_values has type {other:?}; expected fp32 or fp16"
                            )))
                        }
                    });
                }
                "input_ids" | "attention_mask" => {
                    let values = if t.name == "input_ids" {
                        &raw.prompt.input_ids
                    } else {
                        &raw.prompt.attention_mask
                    };
                    backbone.set_input_shape(&t.c_name, &[1, values.len() as i64])?;
                    let buf = match t.dtype {
                        DataType::I64 => DeviceIds::I64(stream.clone_htod(values).map_err(cuda)?),
                        DataType::I32 => {
                            let v: Vec<i32> = values.iter().map(|&x| x as i32).collect();
                            DeviceIds::I32(stream.clone_htod(&v).map_err(cuda)?)
                        }
                        other => {
                            return Err(backbone.err(format!(
                                "{} has type {other:?}; expected int64 or int32",
                                t.name
                            )))
                        }
                    };
                    let ptr = match &buf {
                        DeviceIds::I64(s) => ptr_of(s, &stream),
                        DeviceIds::I32(s) => ptr_of(s, &stream),
                    };
                    // SAFETY: `buf` is kept in `self._ids` for the policy's life and holds the full prompt.
                    unsafe { backbone.set_address(&t.c_name, ptr)? };
                    ids.push(buf);
                }
                other => return Err(backbone.err(format!("unexpected input {other:?}"))),
            }
        }
        let pixels = pixels.ok_or_else(|| backbone.err("no pixel_values input"))?;
        let feature = backbone.tensor(&raw.backbone.output)?.clone();
        if feature.dtype != DataType::F32 {
            return Err(backbone.err(format!(
                "{} has type {:?}; expected fp32",
                feature.name, feature.dtype
            )));
        }
        let out_shape = backbone.tensor_shape(&feature.c_name).unwrap_or_default();
        if out_shape.iter().product::<i64>() != dim as i64 {
            return Err(backbone.err(format!(
                "{} has shape {out_shape:?}; expected {dim} values",
                feature.name
            )));
        }

        let head_in = head.tensor(&raw.head.input)?.clone();
        let head_out = head.tensor(&raw.head.output)?.clone();
        if head_in.dtype != DataType::F32 || head_out.dtype != DataType::F32 {
            return Err(head.err("head input and output must be fp32"));
        }
        let [_, _, max] = head.profile_shape(&head_in.name)?;
        if max.get(1).copied().unwrap_or(0) < raw.window as i64 {
            return Err(head.err(format!(
                "optimisation profile allows windows up to {max:?}; the model's window is {}",
                raw.window
            )));
        }
        head.set_input_shape(&head_in.c_name, &[1, raw.window as i64, dim as i64])?;
        let chunk_shape = head.tensor_shape(&head_out.c_name).unwrap_or_default();
        if chunk_shape.iter().product::<i64>() != (raw.chunk * raw.action_dim) as i64 {
            return Err(head.err(format!(
                "{} has shape {chunk_shape:?}; model.json says chunk {} x action_dim {}",
                head_out.name, raw.chunk, raw.action_dim
            )));
        }
        let capacity = capacity.max(raw.window);
        let ring = stream
            .alloc_zeros::<f32>((capacity + 1) * dim)
            .map_err(cuda)?;
        let head_in_buf = stream.alloc_zeros::<f32>(raw.window * dim).map_err(cuda)?;
        let mut chunk = stream
            .alloc_zeros::<f32>(raw.chunk * raw.action_dim)
            .map_err(cuda)?;
        let (hi, ho) = (
            ptr_of(&head_in_buf, &stream),
            ptr_of_mut(&mut chunk, &stream),
        );
        // SAFETY: both buffers live in `self` and have the head's maximum shape.
        unsafe {
            head.set_address(&head_in.c_name, hi)?;
            head.set_address(&head_out.c_name, ho)?;
        }
        stream.synchronize().map_err(cuda)?;
        Ok(Self {
            pixels_name: CString::new("pixel_values").expect("literal"),
            feature_name: feature.c_name,
            head_in_name: head_in.c_name,
            meta,
            stream,
            backbone,
            head,
            pixels,
            _ids: ids,
            ring,
            capacity,
            head_in: head_in_buf,
            chunk,
            host_half: Vec::new(),
            record: None,
        })
    }

    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Slots in the device feature ring (the host [`History`]'s capacity).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Element type the backbone wants its pixels in: the preprocessing
    /// kernel writes exactly that.
    pub fn pixel_precision(&self) -> OutputPrecision {
        match self.pixels {
            DeviceInput::F32(_) => OutputPrecision::F32,
            DeviceInput::F16(_) => OutputPrecision::F16,
        }
    }

    /// Enqueue the backbone reading pixels at device address `pixels` and
    /// writing its feature into ring slot `slot`. Asynchronous.
    ///
    /// # Safety
    /// `pixels` must hold the model input in [`Self::pixel_precision`] and
    /// stay valid until the stream has passed this point.
    pub unsafe fn encode_device(&mut self, pixels: u64, slot: usize) -> Result<(), TrtError> {
        assert!(slot <= self.capacity, "ring slot out of range");
        let dim = self.meta.feature_dim();
        let out = {
            let mut view = self.ring.slice_mut(slot * dim..(slot + 1) * dim);
            let (p, _sync) = view.device_ptr_mut(&self.stream);
            p
        };
        // TensorRT uses whatever context is current on the calling thread; the
        // chain is built on the main thread and runs on the inference thread.
        self.stream.context().bind_to_thread().map_err(cuda)?;
        // SAFETY: `out` is inside the ring (alive in self); `pixels` per the contract.
        unsafe {
            self.backbone.set_address(&self.pixels_name, pixels)?;
            self.backbone.set_address(&self.feature_name, out)?;
        }
        self.backbone.enqueue(&self.stream)
    }

    /// Gather ring `slots` (oldest first) into the head input on the GPU,
    /// run the head and copy the chunk to `out` (waits for the stream).
    pub fn decode_slots(&mut self, slots: &[usize], out: &mut [f32]) -> Result<(), TrtError> {
        let dim = self.meta.feature_dim();
        let k = slots.len();
        super::check_window_len(&self.meta, k)?;
        for (pos, &slot) in slots.iter().enumerate() {
            let src = self.ring.slice(slot * dim..(slot + 1) * dim);
            let mut dst = self.head_in.slice_mut(pos * dim..(pos + 1) * dim);
            self.stream.memcpy_dtod(&src, &mut dst).map_err(cuda)?;
        }
        self.run_head(k, out)
    }

    fn run_head(&mut self, k: usize, out: &mut [f32]) -> Result<(), TrtError> {
        let dim = self.meta.feature_dim() as i64;
        self.stream.context().bind_to_thread().map_err(cuda)?;
        self.head
            .set_input_shape(&self.head_in_name, &[1, k as i64, dim])?;
        self.head.enqueue(&self.stream)?;
        if out.len() != self.chunk.len() {
            return Err(PolicyError::Shape {
                what: "head output",
                expected: self.chunk.len(),
                actual: out.len(),
            }
            .into());
        }
        self.stream.memcpy_dtoh(&self.chunk, out).map_err(cuda)?;
        self.stream.synchronize().map_err(cuda)
    }
}

fn backend(stage: &'static str) -> impl Fn(TrtError) -> PolicyError {
    move |e| match e {
        TrtError::Policy(p) => p,
        other => PolicyError::Backend {
            stage,
            message: other.to_string(),
        },
    }
}

impl Policy for TensorRtPolicy {
    fn meta(&self) -> &ModelMeta {
        &self.meta
    }

    /// Host-facing path (the parity gate, tools): upload, backbone into the
    /// scratch slot, download.
    fn encode(&mut self, pixels: &[f32], feature: &mut [f32]) -> Result<(), PolicyError> {
        super::check_pixels(&self.meta, pixels)?;
        let err = backend("tensorrt backbone");
        let ptr = match &mut self.pixels {
            DeviceInput::F32(buf) => {
                self.stream
                    .memcpy_htod(pixels, buf)
                    .map_err(|e| err(cuda(e)))?;
                ptr_of(buf, &self.stream)
            }
            DeviceInput::F16(buf) => {
                self.host_half.clear();
                self.host_half
                    .extend(pixels.iter().map(|&v| f32_to_half(v)));
                self.stream
                    .memcpy_htod(&self.host_half, buf)
                    .map_err(|e| err(cuda(e)))?;
                ptr_of(buf, &self.stream)
            }
        };
        let scratch = self.capacity;
        // SAFETY: `ptr` is our own pixel buffer, alive in self.
        unsafe { self.encode_device(ptr, scratch) }.map_err(&err)?;
        let dim = self.meta.feature_dim();
        let src = self.ring.slice(scratch * dim..(scratch + 1) * dim);
        self.stream
            .memcpy_dtoh(&src, feature)
            .map_err(|e| err(cuda(e)))?;
        self.stream.synchronize().map_err(|e| err(cuda(e)))
    }

    fn decode(
        &mut self,
        features: &[f32],
        steps: usize,
        chunk: &mut [f32],
    ) -> Result<(), PolicyError> {
        super::check_head_input(&self.meta, features, steps)?;
        let dim = self.meta.feature_dim();
        let err = backend("tensorrt head");
        let mut dst = self.head_in.slice_mut(..steps * dim);
        self.stream
            .memcpy_htod(features, &mut dst)
            .map_err(|e| err(cuda(e)))?;
        self.run_head(steps, chunk).map_err(err)
    }
}

/// f32 → IEEE half bits, round to nearest even (what the kernel's
/// `cvt.rn.f16.f32` does), for host-side uploads to an fp16 binding.
pub fn f32_to_half(v: f32) -> u16 {
    let bits = v.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let man = bits & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 31 {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = m >> shift;
        let rem = m & ((1 << shift) - 1);
        let halfway = 1 << (shift - 1);
        let round = rem > halfway || (rem == halfway && half & 1 == 1);
        return sign | (half + u32::from(round)) as u16;
    }
    let half = ((e as u32) << 10) | (man >> 13);
    let rem = man & 0x1fff;
    let round = rem > 0x1000 || (rem == 0x1000 && half & 1 == 1);
    sign | (half + u32::from(round)) as u16
}

// ---------------------------------------------------------------------------
// Zero-copy chain: CUDA preprocessing → backbone → GPU feature ring → head

/// Frame → chunk entirely on the GPU: the preprocessing kernels write the
/// backbone's input binding, the backbone writes its feature into the
/// device ring slot the host [`History`] assigns, the head reads the window
/// gathered on the device. Only the frame goes up and the chunk comes down.
pub struct GpuChain {
    policy: TensorRtPolicy,
    spec: PreprocessSpec,
    ptx_cache: Option<PathBuf>,
    pre: Option<(usize, usize, InputFormat, CudaPreprocessor)>,
    slots: History,
    output: super::ChunkOutput,
    window_slots: Vec<usize>,
    pending: Option<usize>,
}

impl GpuChain {
    /// Load the checked engines for `meta` from `dir` and set up the chain;
    /// the preprocessing kernels are compiled on the first frame (its size
    /// and layout decide the plan).
    pub fn load(
        meta: ModelMeta,
        dir: &Path,
        precision: Precision,
        thresholds: &ParityThresholds,
        capacity: usize,
        spec: PreprocessSpec,
        ptx_cache: Option<PathBuf>,
    ) -> Result<Self, TrtError> {
        let policy = TensorRtPolicy::load(meta, dir, precision, thresholds, capacity)?;
        Ok(Self::new(policy, spec, ptx_cache))
    }

    /// One line for the run summary.
    pub fn describe(&self) -> String {
        let r = self.policy.record.as_ref();
        format!(
            "tensorrt {} ({} engines, parity: feature cosine {:.5}, chunk max err {:.2e}), cuda preprocessing into the engine input ({:?})",
            r.map(|r| r.tensorrt.to_string()).unwrap_or_default(),
            r.map(|r| r.precision.name()).unwrap_or("?"),
            r.map(|r| r.report.feature_cosine_min).unwrap_or(f64::NAN),
            r.map(|r| r.report.chain_chunk_max_abs).unwrap_or(f64::NAN),
            self.policy.pixel_precision(),
        )
    }

    pub fn new(policy: TensorRtPolicy, spec: PreprocessSpec, ptx_cache: Option<PathBuf>) -> Self {
        let meta = policy.meta();
        let slots = History::slots_only(meta.raw.window, meta.step(), policy.capacity());
        Self {
            window_slots: vec![0; meta.raw.window],
            output: super::ChunkOutput::new(meta),
            slots,
            spec,
            ptx_cache,
            pre: None,
            pending: None,
            policy,
        }
    }

    pub fn meta(&self) -> &ModelMeta {
        self.policy.meta()
    }

    pub fn step_length(&self) -> Duration {
        self.policy.meta().step()
    }

    pub fn reset(&mut self) {
        self.slots.clear();
        self.output.reset();
        self.pending = None;
    }

    /// Build the preprocessing plan (and compile or load the kernels) for
    /// frames of this size and layout now, instead of on the first frame.
    pub fn prepare(
        &mut self,
        width: usize,
        height: usize,
        format: InputFormat,
    ) -> Result<(), PreprocessError> {
        let pre = CudaPreprocessor::on_stream(
            self.spec,
            width,
            height,
            format,
            self.ptx_cache.as_deref(),
            self.policy.pixel_precision(),
            self.policy.stream().clone(),
        )
        .map_err(|e| PreprocessError::Device(e.to_string()))?;
        self.pre = Some((width, height, format, pre));
        Ok(())
    }

    /// Enqueue the preprocessing kernels for `frame` (raw camera layout) into
    /// the backbone's input buffer, and the backbone after them. Asynchronous.
    pub fn enqueue_frame(
        &mut self,
        frame: FrameRef<'_>,
        format: InputFormat,
        t: Timestamp,
    ) -> Result<(), PreprocessError> {
        let stale = !matches!(&self.pre, Some((w, h, f, _)) if (*w, *h, *f) == (frame.width, frame.height, format));
        if stale {
            self.prepare(frame.width, frame.height, format)?;
        }
        let (.., pre) = self.pre.as_mut().expect("set above");
        pre.enqueue(frame.data, frame.order)
            .map_err(|e| PreprocessError::Device(e.to_string()))?;
        let pixels = pre.output_device_ptr();
        let slot = self.slots.push_slot(t);
        // SAFETY: the preprocessor's output buffer matches pixel_precision() and
        // lives in self.pre; both run on the same stream, so the backbone sees
        // the kernels' output.
        unsafe { self.policy.encode_device(pixels, slot) }
            .map_err(|e| PreprocessError::Device(e.to_string()))?;
        self.pending = Some(slot);
        Ok(())
    }

    /// Head over the one-step-spaced window ending at the enqueued frame; waits for the GPU.
    pub fn infer(&mut self) -> Result<super::StepOutput<'_>, PolicyError> {
        if self.pending.take().is_none() {
            return Err(PolicyError::Backend {
                stage: "tensorrt",
                message: "infer without a frame".into(),
            });
        }
        let count = self.slots.window_slots(&mut self.window_slots);
        self.policy
            .decode_slots(&self.window_slots[..count], self.output.raw_mut())
            .map_err(backend("tensorrt head"))?;
        self.output.finish(self.policy.meta(), count)
    }
}

impl crate::pipeline::FrameStep for GpuChain {
    fn preprocess(&mut self, frame: &crate::frame::Frame) -> Result<(), PreprocessError> {
        // Raw YUYV/NV12 go up as they are: the first kernel decodes them.
        self.enqueue_frame(frame.view(), frame.format, frame.capture_time)
    }

    fn infer(
        &mut self,
        _frame: &crate::frame::Frame,
    ) -> Result<super::StepOutput<'_>, PolicyError> {
        GpuChain::infer(self)
    }

    fn reset(&mut self) {
        GpuChain::reset(self)
    }

    fn step_length(&self) -> Duration {
        GpuChain::step_length(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::cuda::half_to_f32;

    #[test]
    fn f32_to_half_round_trips_and_rounds_to_nearest_even() {
        for h in 0u16..=0xffff {
            let f = half_to_f32(h);
            if f.is_nan() {
                assert_eq!(f32_to_half(f) & 0x7c00, 0x7c00);
                continue;
            }
            assert_eq!(f32_to_half(f), h, "half {h:#06x} = {f}");
        }
        // Halfway between 1.0 and the next half (1 + 2^-10): ties to even (1.0).
        assert_eq!(f32_to_half(1.0 + 2f32.powi(-11)), 0x3c00);
        assert_eq!(f32_to_half(1.0 + 3.0 * 2f32.powi(-11)), 0x3c02);
        assert_eq!(f32_to_half(1e6), 0x7c00);
        assert_eq!(f32_to_half(1e-9), 0);
    }

    #[test]
    fn open_without_tensorrt_is_an_error_not_a_crash() {
        // On machines with TensorRT this loads it; without, it must say so.
        match open() {
            Ok(v) => assert!(v.major >= 8),
            Err(TrtError::Unavailable(msg)) => assert!(msg.contains("libnvinfer"), "{msg}"),
            Err(other) => panic!("{other}"),
        }
    }
}
