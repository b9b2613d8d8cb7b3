//! CUDA preprocessing (feature `cuda`): the two kernels in `kernels/`
//! compiled with NVRTC at start-up (PTX cached on disk by source hash and GPU
//! architecture), launched asynchronously on one stream, writing the planar
//! model input straight into a device buffer (the engine's input binding).
//!
//! The arithmetic is the CPU twin's ([`super::CpuPreprocessor`]): the same
//! Pillow fixed-point coefficients (computed on the host, uploaded once), the
//! same u8 intermediate, the same float normalisation, so fp32 output is
//! expected to match it exactly.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions, Ptx};
use sha2::{Digest, Sha256};

use super::kernels::{ptx_float_semantics_violations, KernelSource, KERNELS};
use super::launch::{Buffer, KernelArg, Launch, LaunchPlan, TABLES};
use super::{ChannelOrder, FrameRef, InputFormat, PreprocessError, PreprocessSpec, Preprocessor};

#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    #[error("no CUDA driver (libcuda) on this machine; using the CPU preprocessing")]
    NoDriver,
    #[error("no NVRTC library (libnvrtc) on this machine")]
    NoNvrtc,
    #[error("CUDA driver: {0}")]
    Driver(String),
    #[error("PTX of kernels/{file} breaks the float semantics the CPU twin relies on: {}", violations.join("; "))]
    FloatSemantics {
        file: &'static str,
        violations: Vec<String>,
    },
    #[error("preprocessing kernels")]
    Plan(#[from] super::launch::LaunchPlanError),
    #[error("NVRTC compiling kernels/{file} for {arch}: {message}")]
    Compile {
        file: &'static str,
        arch: String,
        message: String,
    },
}

fn driver(e: impl std::fmt::Debug) -> CudaError {
    CudaError::Driver(format!("{e:?}"))
}

/// `libcuda` can be loaded (cudarc panics on first use without this check).
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen the library.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

pub use super::GpuInfo;

pub fn gpu_info() -> Result<GpuInfo, CudaError> {
    if !driver_present() {
        return Err(CudaError::NoDriver);
    }
    let mut v: std::ffi::c_int = 0;
    // SAFETY: writes one int; the library is present (checked above).
    let rc = unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut v) };
    if rc != cudarc::driver::sys::CUresult::CUDA_SUCCESS {
        return Err(CudaError::Driver(format!("cuDriverGetVersion: {rc:?}")));
    }
    let ctx = CudaContext::new(0).map_err(driver)?;
    let (major, minor) = ctx.compute_capability().map_err(driver)?;
    Ok(GpuInfo {
        name: ctx.name().map_err(driver)?,
        compute_capability: (major as u32, minor as u32),
        driver_cuda_version: format!("{}.{}", v / 1000, (v % 1000) / 10),
        memory_mib: ctx.total_mem().map_err(driver)? / (1024 * 1024),
    })
}

/// NVRTC's version, e.g. "12.9".
pub fn nvrtc_version() -> Result<String, CudaError> {
    if !nvrtc_present() {
        return Err(CudaError::NoNvrtc);
    }
    let (mut major, mut minor): (std::ffi::c_int, std::ffi::c_int) = (0, 0);
    // SAFETY: writes two ints; the library is present (checked above).
    let rc = unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
    if rc != cudarc::nvrtc::sys::nvrtcResult::NVRTC_SUCCESS {
        return Err(CudaError::Driver(format!("nvrtcVersion: {rc:?}")));
    }
    Ok(format!("{major}.{minor}"))
}

/// `libnvrtc` can be loaded.
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen the library.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// NVRTC options used for every kernel: IEEE division (the CPU twin's
/// normalisation), no flush-to-zero, no FMA contraction, no fast math. The
/// host emulation (`kernels/host_emulation.h`) assumes exactly these, and
/// every PTX is checked for them before it is loaded
/// ([`super::kernels::ptx_float_semantics_violations`]).
pub fn nvrtc_options(arch: &'static str) -> CompileOptions {
    CompileOptions {
        ftz: Some(false),
        prec_div: Some(true),
        prec_sqrt: Some(true),
        fmad: Some(false),
        arch: Some(arch),
        ..Default::default()
    }
}

/// Compile any CUDA source to PTX text with `options` (`file` names it in errors).
pub fn compile_source(
    file: &'static str,
    source: String,
    options: CompileOptions,
) -> Result<String, CudaError> {
    if !nvrtc_present() {
        return Err(CudaError::NoNvrtc);
    }
    let arch = options.arch.unwrap_or("default").to_string();
    compile_ptx_with_opts(source, options)
        .map(|ptx| ptx.to_src())
        .map_err(|e| CudaError::Compile {
            file,
            arch,
            message: format!("{e:?}"),
        })
}

/// Compile one kernel to PTX text for `arch` (e.g. "compute_87" for Orin).
pub fn compile(kernel: &KernelSource, arch: &'static str) -> Result<String, CudaError> {
    compile_source(kernel.file, kernel.translation_unit(), nvrtc_options(arch))
}

/// Cache key: source, architecture and options.
fn cache_key(kernel: &KernelSource, arch: &str) -> String {
    let mut h = Sha256::new();
    h.update(kernel.translation_unit().as_bytes());
    h.update(arch.as_bytes());
    h.update(format!("{:?}", nvrtc_options("x")).as_bytes());
    crate::hex::encode(&h.finalize()[..12])
}

/// PTX from the disk cache, or compiled and stored there.
fn ptx_cached(
    kernel: &KernelSource,
    arch: &'static str,
    cache: Option<&Path>,
) -> Result<String, CudaError> {
    let path: Option<PathBuf> = cache.map(|d| {
        d.join(format!(
            "{}-{arch}-{}.ptx",
            kernel.entry,
            cache_key(kernel, arch)
        ))
    });
    if let Some(p) = &path {
        if let Ok(text) = std::fs::read_to_string(p) {
            return Ok(text);
        }
    }
    let ptx = compile(kernel, arch)?;
    if let Some(p) = &path {
        let _ = std::fs::create_dir_all(p.parent().unwrap_or(Path::new(".")));
        // Write then rename: a crash never leaves half a PTX file under the final name.
        let tmp = p.with_extension("ptx.tmp");
        if std::fs::write(&tmp, &ptx).is_ok() {
            let _ = std::fs::rename(&tmp, p);
        }
    }
    Ok(ptx)
}

pub use super::launch::OutputPrecision;

pub struct CudaPreprocessor {
    spec: PreprocessSpec,
    plan: LaunchPlan,
    stream: Arc<CudaStream>,
    horizontal: CudaFunction,
    vertical: CudaFunction,
    /// The coefficient tables, in `TABLES` order.
    tables: [CudaSlice<i32>; 6],
    src: CudaSlice<u8>,
    tmp: CudaSlice<u8>,
    out32: CudaSlice<f32>,
    out16: CudaSlice<u16>,
    precision: OutputPrecision,
    host_out16: Vec<u16>,
}

fn config(launch: Launch) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (launch.grid[0], launch.grid[1], launch.grid[2]),
        block_dim: (launch.block[0], launch.block[1], launch.block[2]),
        shared_mem_bytes: 0,
    }
}

impl CudaPreprocessor {
    /// Set up for frames of `in_w × in_h` in `format` on GPU 0. Fails (never
    /// panics) when there is no driver, no NVRTC or no GPU.
    pub fn new(
        spec: PreprocessSpec,
        in_w: usize,
        in_h: usize,
        format: InputFormat,
        cache: Option<&Path>,
    ) -> Result<Self, CudaError> {
        Self::with_precision(spec, in_w, in_h, format, cache, OutputPrecision::F32)
    }

    pub fn with_precision(
        spec: PreprocessSpec,
        in_w: usize,
        in_h: usize,
        format: InputFormat,
        cache: Option<&Path>,
        precision: OutputPrecision,
    ) -> Result<Self, CudaError> {
        if !driver_present() {
            return Err(CudaError::NoDriver);
        }
        let ctx = CudaContext::new(0).map_err(driver)?;
        let stream = ctx.default_stream();
        Self::on_stream(spec, in_w, in_h, format, cache, precision, stream)
    }

    /// Set up on an existing stream (the TensorRT engines' stream, so the
    /// backbone runs after the kernels without any host synchronisation).
    pub fn on_stream(
        spec: PreprocessSpec,
        in_w: usize,
        in_h: usize,
        format: InputFormat,
        cache: Option<&Path>,
        precision: OutputPrecision,
        stream: Arc<CudaStream>,
    ) -> Result<Self, CudaError> {
        let plan = LaunchPlan::new(spec, in_w, in_h, format)?;
        let ctx = stream.context().clone();
        let (major, minor) = ctx.compute_capability().map_err(driver)?;
        // cudarc wants a &'static str; one string per process and architecture.
        let arch: &'static str = Box::leak(format!("compute_{major}{minor}").into_boxed_str());
        let load = |k: &KernelSource| -> Result<CudaFunction, CudaError> {
            let ptx = ptx_cached(k, arch, cache)?;
            // Cached or fresh, PTX with other float semantics than the CPU
            // twin's is refused rather than run (it would differ silently).
            let violations = ptx_float_semantics_violations(&ptx);
            if !violations.is_empty() {
                return Err(CudaError::FloatSemantics {
                    file: k.file,
                    violations,
                });
            }
            let module = ctx.load_module(Ptx::from_src(ptx)).map_err(driver)?;
            module.load_function(k.entry).map_err(driver)
        };
        let horizontal = load(&KERNELS[0])?;
        let vertical = load(&KERNELS[1])?;
        let upload = |b: Buffer| {
            stream
                .clone_htod(plan.table(b).expect("a table buffer"))
                .map_err(driver)
        };
        let [t0, t1, t2, t3, t4, t5] = TABLES;
        let tables = [
            upload(t0)?,
            upload(t1)?,
            upload(t2)?,
            upload(t3)?,
            upload(t4)?,
            upload(t5)?,
        ];
        let len = |b| plan.buffer_len(b, precision);
        Ok(Self {
            tables,
            src: stream
                .alloc_zeros::<u8>(len(Buffer::Source))
                .map_err(driver)?,
            tmp: stream
                .alloc_zeros::<u8>(len(Buffer::Intermediate))
                .map_err(driver)?,
            out32: stream
                .alloc_zeros::<f32>(len(Buffer::OutputF32))
                .map_err(driver)?,
            out16: stream
                .alloc_zeros::<u16>(len(Buffer::OutputF16))
                .map_err(driver)?,
            spec,
            plan,
            stream,
            horizontal,
            vertical,
            precision,
            host_out16: Vec::new(),
        })
    }

    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Whether this preprocessor was set up for `width × height` frames in
    /// `format` (else build a new one: [`LaunchPlan::fits`]).
    pub fn fits(&self, width: usize, height: usize, format: InputFormat) -> bool {
        self.plan.fits(width, height, format)
    }

    /// The launch plan (grids, tables, argument lists) this preprocessor runs.
    pub fn plan(&self) -> &LaunchPlan {
        &self.plan
    }

    /// The model input on the device (fp32 output), valid once the stream reaches this point.
    pub fn output_f32(&self) -> &CudaSlice<f32> {
        &self.out32
    }

    /// Device address of the model input in this preprocessor's precision
    /// (bound as the backbone engine's input tensor).
    pub fn output_device_ptr(&self) -> u64 {
        use cudarc::driver::DevicePtr;
        let (ptr, _sync) = match self.precision {
            OutputPrecision::F32 => self.out32.device_ptr(&self.stream),
            OutputPrecision::F16 => self.out16.device_ptr(&self.stream),
        };
        ptr
    }

    /// The model input on the device as fp16 bits.
    pub fn output_f16(&self) -> &CudaSlice<u16> {
        &self.out16
    }

    /// Upload `bytes` (the raw camera buffer) and enqueue both kernels on the
    /// stream. Returns without synchronising.
    /// `order`: channel order of packed frames (YUYV and NV12 always decode to BGR).
    pub fn enqueue(&mut self, bytes: &[u8], order: ChannelOrder) -> Result<(), CudaError> {
        if bytes.len() != self.src.len() {
            return Err(CudaError::Driver(format!(
                "frame has {} bytes, the preprocessor was set up for {}",
                bytes.len(),
                self.src.len()
            )));
        }
        self.stream
            .memcpy_htod(bytes, &mut self.src)
            .map_err(driver)?;
        let horizontal = self.plan.horizontal_args();
        // SAFETY: the plan's argument list is `mvla_resample_horizontal`'s
        // parameter list in order (the host emulation runs the same list
        // against the same source); buffer sizes come from the same plan.
        unsafe { self.launch(&self.horizontal, self.plan.horizontal, &horizontal) }?;
        let vertical = self.plan.vertical_args(order, self.precision);
        // SAFETY: as above, for `mvla_resample_vertical_normalize`.
        unsafe { self.launch(&self.vertical, self.plan.vertical, &vertical) }
    }

    /// Push `args` (scalars by value, buffers as device pointers) and launch.
    ///
    /// # Safety
    /// `args` must be `function`'s parameter list, in order.
    unsafe fn launch(
        &self,
        function: &CudaFunction,
        launch: Launch,
        args: &[KernelArg],
    ) -> Result<(), CudaError> {
        let mut b = self.stream.launch_builder(function);
        for arg in args {
            match arg {
                KernelArg::I32(v) => b.arg(v),
                KernelArg::F32(v) => b.arg(v),
                KernelArg::Buffer(buffer) => match buffer {
                    Buffer::Source => b.arg(&self.src),
                    Buffer::Intermediate => b.arg(&self.tmp),
                    Buffer::OutputF32 => b.arg(&self.out32),
                    Buffer::OutputF16 => b.arg(&self.out16),
                    table => {
                        let i = table.table_index().expect("every other buffer is a table");
                        b.arg(&self.tables[i])
                    }
                },
            };
        }
        // SAFETY: per this function's contract.
        unsafe { b.launch(config(launch)) }.map_err(driver)?;
        Ok(())
    }

    /// Enqueue, then copy the result to the host and wait (tests, CPU consumers).
    pub fn run_to_host(
        &mut self,
        bytes: &[u8],
        order: ChannelOrder,
        out: &mut [f32],
    ) -> Result<(), CudaError> {
        self.enqueue(bytes, order)?;
        match self.precision {
            OutputPrecision::F32 => self.stream.memcpy_dtoh(&self.out32, out).map_err(driver)?,
            OutputPrecision::F16 => {
                self.host_out16.resize(out.len(), 0);
                self.stream
                    .memcpy_dtoh(&self.out16, &mut self.host_out16)
                    .map_err(driver)?;
                self.stream.synchronize().map_err(driver)?;
                for (o, &h) in out.iter_mut().zip(&self.host_out16) {
                    *o = half_to_f32(h);
                }
            }
        }
        self.stream.synchronize().map_err(driver)
    }

    /// Enqueue, then copy the raw fp16 output bits to the host and wait
    /// (precision F16; tests compare them bit for bit).
    pub fn run_to_host_f16_bits(
        &mut self,
        bytes: &[u8],
        order: ChannelOrder,
        out: &mut [u16],
    ) -> Result<(), CudaError> {
        self.enqueue(bytes, order)?;
        self.stream.memcpy_dtoh(&self.out16, out).map_err(driver)?;
        self.stream.synchronize().map_err(driver)
    }
}

/// IEEE half bits → f32 (host side, for checking fp16 output).
pub fn half_to_f32(h: u16) -> f32 {
    half::f16::from_bits(h).to_f32()
}

impl Preprocessor for CudaPreprocessor {
    fn spec(&self) -> &PreprocessSpec {
        &self.spec
    }

    /// Packed frames of the size given at construction (YUYV goes through `run_to_host`).
    fn run(&mut self, frame: FrameRef<'_>, out: &mut [f32]) -> Result<(), PreprocessError> {
        let expected = self.plan.in_width * self.plan.in_height * 3;
        if !self.fits(frame.width, frame.height, InputFormat::Packed3)
            || frame.data.len() != expected
        {
            return Err(PreprocessError::FrameSize {
                width: frame.width,
                height: frame.height,
                expected,
                actual: frame.data.len(),
            });
        }
        if out.len() != self.spec.output_len() {
            return Err(PreprocessError::OutputSize {
                expected: self.spec.output_len(),
                actual: out.len(),
            });
        }
        self.run_to_host(frame.data, frame.order, out)
            .map_err(|e| PreprocessError::Device(e.to_string()))
    }
}
