//! Loading TensorRT (`dlopen` of libnvinfer / libnvonnxparser through the
//! shim, its log forwarded to `tracing`), the backend's error type, and
//! [`Engine`]: one deserialized engine with its execution context (IO tensor
//! introspection, shapes, tensor addresses, `enqueueV3` on a CUDA stream).

use std::ffi::{c_char, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaStream};

use super::ffi::{self, Dims};
use crate::policy::engine::{EngineCheckError, ParityReport, TrtVersion};
use crate::policy::PolicyError;

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
    #[error("{path}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("parity gate failed: {}", .0.failures.join("; "))]
    ParityFailed(Box<ParityReport>),
}

pub(super) fn cuda(e: impl std::fmt::Debug) -> TrtError {
    TrtError::Cuda(format!("{e:?}"))
}

pub(super) const ERR_LEN: usize = 2048;

/// On the stack: the per-frame calls (addresses, shapes, enqueue) allocate nothing.
pub(super) fn err_buf() -> [u8; ERR_LEN] {
    [0u8; ERR_LEN]
}

pub(super) fn err_text(buf: &[u8]) -> String {
    CStr::from_bytes_until_nul(buf)
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown TensorRT error".into())
}

pub(super) fn c_names(names: &[&str]) -> (Vec<CString>, Vec<*const c_char>) {
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

pub(super) fn open_parser() -> Result<(), TrtError> {
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
    pub(super) c_name: CString,
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

    pub(super) fn err(&self, message: impl Into<String>) -> TrtError {
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

/// A new stream on GPU 0's primary context (needs the CUDA driver; cudarc
/// panics without it, hence the probe).
pub(super) fn gpu_stream() -> Result<Arc<CudaStream>, TrtError> {
    if !crate::preprocess::cuda::driver_present() {
        return Err(TrtError::NoDriver);
    }
    CudaContext::new(0)
        .map_err(cuda)?
        .new_stream()
        .map_err(cuda)
}

/// Compute capability of the GPU `stream` runs on.
pub(super) fn compute_capability(stream: &CudaStream) -> Result<(u32, u32), TrtError> {
    let (a, b) = stream.context().compute_capability().map_err(cuda)?;
    Ok((a as u32, b as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

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
