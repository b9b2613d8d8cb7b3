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

use super::kernels::{KernelSource, KERNELS};
use super::resize::AxisCoefficients;
use super::{
    ChannelOrder, FrameRef, InputFormat, PreprocessError, PreprocessSpec, Preprocessor, Rotation,
};

#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    #[error("no CUDA driver (libcuda) on this machine; using the CPU preprocessing")]
    NoDriver,
    #[error("no NVRTC library (libnvrtc) on this machine")]
    NoNvrtc,
    #[error("CUDA driver: {0}")]
    Driver(String),
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

/// `libnvrtc` can be loaded.
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen the library.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// NVRTC options used for every kernel: IEEE division (the CPU twin's
/// normalisation), no flush-to-zero, no fast math.
fn options(arch: &'static str) -> CompileOptions {
    CompileOptions {
        ftz: Some(false),
        prec_div: Some(true),
        prec_sqrt: Some(true),
        fmad: Some(false),
        arch: Some(arch),
        ..Default::default()
    }
}

/// Compile one kernel to PTX text for `arch` (e.g. "compute_87" for Orin).
pub fn compile(kernel: &KernelSource, arch: &'static str) -> Result<String, CudaError> {
    if !nvrtc_present() {
        return Err(CudaError::NoNvrtc);
    }
    compile_ptx_with_opts(kernel.translation_unit(), options(arch))
        .map(|ptx| ptx.to_src())
        .map_err(|e| CudaError::Compile {
            file: kernel.file,
            arch: arch.to_string(),
            message: format!("{e:?}"),
        })
}

/// Cache key: source, architecture and options.
fn cache_key(kernel: &KernelSource, arch: &str) -> String {
    let mut h = Sha256::new();
    h.update(kernel.translation_unit().as_bytes());
    h.update(arch.as_bytes());
    h.update(format!("{:?}", options("x")).as_bytes());
    h.finalize()
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect()
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

/// Output element type of the model input buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputPrecision {
    F32,
    /// IEEE half, bits in u16 (TensorRT FP16 engines).
    F16,
}

pub struct CudaPreprocessor {
    spec: PreprocessSpec,
    format: InputFormat,
    in_w: usize,
    in_h: usize,
    first_row: i32,
    rows: i32,
    h_stride: i32,
    v_stride: i32,
    stream: Arc<CudaStream>,
    horizontal: CudaFunction,
    vertical: CudaFunction,
    h_start: CudaSlice<i32>,
    h_len: CudaSlice<i32>,
    h_weights: CudaSlice<i32>,
    v_start: CudaSlice<i32>,
    v_len: CudaSlice<i32>,
    v_weights: CudaSlice<i32>,
    src: CudaSlice<u8>,
    tmp: CudaSlice<u8>,
    out32: CudaSlice<f32>,
    out16: CudaSlice<u16>,
    precision: OutputPrecision,
    current_order: ChannelOrder,
    host_out16: Vec<u16>,
}

fn to_i32(v: &[usize]) -> Vec<i32> {
    v.iter().map(|&x| x as i32).collect()
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
        let ctx = stream.context().clone();
        let (major, minor) = ctx.compute_capability().map_err(driver)?;
        // cudarc wants a &'static str; one string per process and architecture.
        let arch: &'static str = Box::leak(format!("compute_{major}{minor}").into_boxed_str());
        let load = |k: &KernelSource| -> Result<CudaFunction, CudaError> {
            let ptx = ptx_cached(k, arch, cache)?;
            let module = ctx.load_module(Ptx::from_src(ptx)).map_err(driver)?;
            module.load_function(k.entry).map_err(driver)
        };
        let horizontal = load(&KERNELS[0])?;
        let vertical = load(&KERNELS[1])?;
        let h = AxisCoefficients::bilinear(in_w, spec.out_width);
        let v = AxisCoefficients::bilinear(in_h, spec.out_height);
        let (y0, y1) = (
            v.start[0],
            v.start[spec.out_height - 1] + v.len[spec.out_height - 1],
        );
        let v_start_rel: Vec<i32> = v.start.iter().map(|&s| (s - y0) as i32).collect();
        let up = |data: &[i32]| stream.clone_htod(data).map_err(driver);
        if format != InputFormat::Packed3
            && (!in_w.is_multiple_of(2) || (format == InputFormat::Nv12 && !in_h.is_multiple_of(2)))
        {
            return Err(CudaError::Driver(format!(
                "{format:?} frames need even sizes, got {in_w}x{in_h}"
            )));
        }
        let src_bytes = format.frame_len(in_w, in_h);
        let out_len = spec.output_len();
        Ok(Self {
            h_start: up(&to_i32(&h.start))?,
            h_len: up(&to_i32(&h.len))?,
            h_weights: up(&h.weights)?,
            v_start: up(&v_start_rel)?,
            v_len: up(&to_i32(&v.len))?,
            v_weights: up(&v.weights)?,
            src: stream.alloc_zeros::<u8>(src_bytes).map_err(driver)?,
            tmp: stream
                .alloc_zeros::<u8>((y1 - y0) * spec.out_width * 3)
                .map_err(driver)?,
            out32: stream
                .alloc_zeros::<f32>(if precision == OutputPrecision::F32 {
                    out_len
                } else {
                    1
                })
                .map_err(driver)?,
            out16: stream
                .alloc_zeros::<u16>(if precision == OutputPrecision::F16 {
                    out_len
                } else {
                    1
                })
                .map_err(driver)?,
            h_stride: h.stride as i32,
            v_stride: v.stride as i32,
            first_row: y0 as i32,
            rows: (y1 - y0) as i32,
            spec,
            format,
            in_w,
            in_h,
            stream,
            horizontal,
            vertical,
            precision,
            current_order: ChannelOrder::Bgr,
            host_out16: Vec::new(),
        })
    }

    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
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
        self.current_order = match self.format {
            InputFormat::Packed3 => order,
            InputFormat::Yuyv | InputFormat::Nv12 => ChannelOrder::Bgr,
        };
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
        let out_w = self.spec.out_width as i32;
        let out_h = self.spec.out_height as i32;
        let (in_w, in_h) = (self.in_w as i32, self.in_h as i32);
        let (format, pitch) = match self.format {
            InputFormat::Packed3 => (0i32, in_w * 3),
            InputFormat::Yuyv => (1i32, in_w * 2),
            InputFormat::Nv12 => (2i32, in_w),
        };
        let rotate = i32::from(self.spec.rotation == Rotation::Rotate180);
        // 32×8 threads: a warp per row segment keeps the tap loads coalesced.
        let block = (32u32, 8u32, 1u32);
        let grid = |w: i32, h: i32| ((w as u32).div_ceil(32), (h as u32).div_ceil(8), 1u32);
        let cfg_h = LaunchConfig {
            grid_dim: grid(out_w, self.rows),
            block_dim: block,
            shared_mem_bytes: 0,
        };
        let mut b = self.stream.launch_builder(&self.horizontal);
        b.arg(&self.src)
            .arg(&format)
            .arg(&in_w)
            .arg(&in_h)
            .arg(&pitch)
            .arg(&rotate)
            .arg(&self.h_start)
            .arg(&self.h_len)
            .arg(&self.h_weights)
            .arg(&self.h_stride)
            .arg(&out_w)
            .arg(&self.first_row)
            .arg(&self.rows)
            .arg(&mut self.tmp);
        // SAFETY: argument types and order match `mvla_resample_horizontal`;
        // buffer sizes were fixed in `with_precision` for this geometry.
        unsafe { b.launch(cfg_h) }.map_err(driver)?;

        let n = &self.spec.normalisation;
        let swap = i32::from(self.format_order_differs());
        let fp16 = i32::from(self.precision == OutputPrecision::F16);
        let cfg_v = LaunchConfig {
            grid_dim: grid(out_w, out_h),
            block_dim: block,
            shared_mem_bytes: 0,
        };
        let mut b = self.stream.launch_builder(&self.vertical);
        b.arg(&self.tmp)
            .arg(&out_w)
            .arg(&out_h)
            .arg(&self.v_start)
            .arg(&self.v_len)
            .arg(&self.v_weights)
            .arg(&self.v_stride)
            .arg(&swap)
            .arg(&n.mean[0])
            .arg(&n.mean[1])
            .arg(&n.mean[2])
            .arg(&n.std[0])
            .arg(&n.std[1])
            .arg(&n.std[2])
            .arg(&fp16)
            .arg(&mut self.out32)
            .arg(&mut self.out16);
        // SAFETY: argument types and order match `mvla_resample_vertical_normalize`.
        unsafe { b.launch(cfg_v) }.map_err(driver)?;
        Ok(())
    }

    fn format_order_differs(&self) -> bool {
        self.current_order != self.spec.model_order
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
}

/// IEEE half bits → f32 (host side, for checking fp16 output).
pub fn half_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0f32 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let frac = f32::from(h & 0x3ff);
    match exp {
        0 => sign * frac * 2f32.powi(-24),
        31 => {
            if frac == 0.0 {
                sign * f32::INFINITY
            } else {
                f32::NAN
            }
        }
        e => sign * (1.0 + frac / 1024.0) * 2f32.powi(e - 15),
    }
}

impl Preprocessor for CudaPreprocessor {
    fn spec(&self) -> &PreprocessSpec {
        &self.spec
    }

    /// Packed frames of the size given at construction (YUYV goes through `run_to_host`).
    fn run(&mut self, frame: FrameRef<'_>, out: &mut [f32]) -> Result<(), PreprocessError> {
        let expected = self.in_w * self.in_h * 3;
        if self.format != InputFormat::Packed3
            || (frame.width, frame.height) != (self.in_w, self.in_h)
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
