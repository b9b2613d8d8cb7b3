//! Declarations of the C surface in `shim.cpp` (keep the two in step).

use std::os::raw::{c_char, c_void};

pub const MAX_DIMS: usize = 8;

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dims {
    pub nb: i32,
    pub d: [i64; MAX_DIMS],
}

impl Dims {
    pub fn new(values: &[i64]) -> Self {
        assert!(values.len() <= MAX_DIMS, "at most {MAX_DIMS} dimensions");
        let mut d = [0; MAX_DIMS];
        d[..values.len()].copy_from_slice(values);
        Self {
            nb: values.len() as i32,
            d,
        }
    }

    pub fn as_slice(&self) -> &[i64] {
        &self.d[..self.nb.clamp(0, MAX_DIMS as i32) as usize]
    }
}

#[repr(C)]
pub struct Profile {
    pub name: *const c_char,
    pub min: Dims,
    pub opt: Dims,
    pub max: Dims,
}

#[repr(C)]
pub struct BuildOptions {
    pub onnx_path: *const c_char,
    pub fp16: i32,
    pub workspace_bytes: u64,
    pub profiles: *const Profile,
    pub nb_profiles: i32,
    pub half_inputs: *const *const c_char,
    pub nb_half_inputs: i32,
    pub timing_cache: *const c_void,
    pub timing_cache_len: usize,
    pub optimization_level: i32,
}

#[repr(C)]
pub struct TensorInfo {
    pub name: *const c_char,
    pub is_input: i32,
    pub dtype: i32,
    pub dims: Dims,
}

/// Opaque engine + execution context handle.
#[repr(C)]
pub struct EngineHandle {
    _private: [u8; 0],
}

pub type LogFn = unsafe extern "C" fn(user: *mut c_void, severity: i32, msg: *const c_char);
pub type SinkFn = unsafe extern "C" fn(user: *mut c_void, data: *const c_void, len: usize);
pub type ProgressFn = unsafe extern "C" fn(
    user: *mut c_void,
    kind: i32,
    phase: *const c_char,
    parent: *const c_char,
    value: i32,
) -> i32;

extern "C" {
    pub fn mvla_trt_header_version() -> i32;
    pub fn mvla_trt_set_log_callback(f: Option<LogFn>, user: *mut c_void);
    pub fn mvla_trt_open(
        names: *const *const c_char,
        count: i32,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    pub fn mvla_trt_open_parser(
        names: *const *const c_char,
        count: i32,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    pub fn mvla_trt_lib_version() -> i32;

    pub fn mvla_trt_engine_load(
        blob: *const c_void,
        len: usize,
        err: *mut c_char,
        err_len: usize,
    ) -> *mut EngineHandle;
    pub fn mvla_trt_engine_free(e: *mut EngineHandle);
    pub fn mvla_trt_engine_nb_io(e: *const EngineHandle) -> i32;
    pub fn mvla_trt_engine_io(e: *const EngineHandle, index: i32, out: *mut TensorInfo) -> i32;
    pub fn mvla_trt_engine_profile_shape(
        e: *const EngineHandle,
        name: *const c_char,
        selector: i32,
        out: *mut Dims,
    ) -> i32;
    pub fn mvla_trt_set_input_shape(
        e: *mut EngineHandle,
        name: *const c_char,
        dims: *const Dims,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    pub fn mvla_trt_tensor_shape(
        e: *const EngineHandle,
        name: *const c_char,
        out: *mut Dims,
    ) -> i32;
    pub fn mvla_trt_set_address(
        e: *mut EngineHandle,
        name: *const c_char,
        device_ptr: *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    pub fn mvla_trt_enqueue(
        e: *mut EngineHandle,
        stream: *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;

    pub fn mvla_trt_build(
        options: *const BuildOptions,
        progress: Option<ProgressFn>,
        progress_user: *mut c_void,
        engine_sink: SinkFn,
        cache_sink: Option<SinkFn>,
        sink_user: *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
}
