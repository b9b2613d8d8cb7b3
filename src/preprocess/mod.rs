//! Frame → model input tensor.
//!
//! Order of operations, as the training data was produced: the camera frame
//! (u8 H×W×3 in the camera's channel order) → rotation (the camera is mounted
//! upside down on the Serbot; recorded episodes are already rotated) →
//! Pillow-exact bilinear resize to the model size → channel order the model
//! was trained on → `(v/255 − mean[c]) / std[c]` → planar CHW f32.
//!
//! [`CpuPreprocessor`] is the reference implementation (and the CPU twin of
//! the CUDA kernels).

pub mod emulated;
pub mod kernels;
pub mod launch;
pub mod resize;

// The GPU backend swaps by module: the real one with `--features cuda`, a
// stand-in that explains itself otherwise.
#[cfg(feature = "cuda")]
pub mod cuda;
#[cfg(not(feature = "cuda"))]
#[path = "cuda_disabled.rs"]
pub mod cuda;

/// The GPU the CUDA preprocessing runs on (device 0), as `cuda::gpu_info`
/// reports it for `mvla doctor`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GpuInfo {
    pub name: String,
    pub compute_capability: (u32, u32),
    /// The driver's CUDA version, e.g. "12.6".
    pub driver_cuda_version: String,
    pub memory_mib: usize,
}

use resize::PillowBilinear;

// The pixel types are the preprocessing API's inputs; they live in
// `crate::frame` (capture and recording use them without the preprocessing).
pub use crate::frame::{ChannelOrder, FrameRef, InputFormat, Rotation};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalisation {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// Everything that decides the tensor for a frame, apart from the frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PreprocessSpec {
    pub out_width: usize,
    pub out_height: usize,
    /// Channel order of the tensor the model was trained on.
    pub model_order: ChannelOrder,
    /// Rotation still to apply to incoming frames.
    pub rotation: Rotation,
    pub normalisation: Normalisation,
}

impl PreprocessSpec {
    pub fn output_len(&self) -> usize {
        3 * self.out_width * self.out_height
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PreprocessError {
    #[error("frame is {width}x{height}x3 = {expected} bytes but holds {actual}")]
    FrameSize {
        width: usize,
        height: usize,
        expected: usize,
        actual: usize,
    },
    #[error("frame is empty ({width}x{height})")]
    EmptyFrame { width: usize, height: usize },
    #[error("output buffer holds {actual} floats, the model input needs {expected}")]
    OutputSize { expected: usize, actual: usize },
    #[error("camera frame")]
    Convert(#[from] crate::frame::convert::ConvertError),
    #[error("GPU preprocessing: {0}")]
    Device(String),
}

/// Turns frames into model input tensors. Implementations: [`CpuPreprocessor`]
/// (reference) and, with the `cuda` feature, the CUDA kernels.
pub trait Preprocessor {
    fn spec(&self) -> &PreprocessSpec;
    /// Write the CHW f32 tensor for `frame` into `out` (`3·H·W` floats).
    fn run(&mut self, frame: FrameRef<'_>, out: &mut [f32]) -> Result<(), PreprocessError>;
}

/// CPU reference preprocessing. Reuses its buffers while the input size stays
/// the same; a new input size rebuilds the resize plan (a camera does not
/// change size in steady state).
#[derive(Debug, Clone)]
pub struct CpuPreprocessor {
    spec: PreprocessSpec,
    plan: Option<PillowBilinear>,
    rotated: Vec<u8>,
    resized: Vec<u8>,
}

impl CpuPreprocessor {
    pub fn new(spec: PreprocessSpec) -> Self {
        Self {
            spec,
            plan: None,
            rotated: Vec::new(),
            resized: vec![0; spec.output_len()],
        }
    }

    /// Rotation + resize only: the u8 `out_h × out_w × 3` image (still in the
    /// frame's channel order) that Pillow's `Image.resize` would produce.
    pub fn resize_u8(&mut self, frame: FrameRef<'_>) -> Result<&[u8], PreprocessError> {
        let expected = frame.width * frame.height * 3;
        if frame.width == 0 || frame.height == 0 {
            return Err(PreprocessError::EmptyFrame {
                width: frame.width,
                height: frame.height,
            });
        }
        if frame.data.len() != expected {
            return Err(PreprocessError::FrameSize {
                width: frame.width,
                height: frame.height,
                expected,
                actual: frame.data.len(),
            });
        }
        let needs_plan = self
            .plan
            .as_ref()
            .is_none_or(|p| p.in_size() != (frame.width, frame.height));
        if needs_plan {
            self.plan = Some(PillowBilinear::new(
                frame.width,
                frame.height,
                self.spec.out_width,
                self.spec.out_height,
            ));
        }
        let plan = self.plan.as_mut().expect("plan set above");
        let src: &[u8] = match self.spec.rotation {
            Rotation::None => frame.data,
            Rotation::Rotate180 => {
                self.rotated.resize(expected, 0);
                rotate_180(frame.data, &mut self.rotated);
                &self.rotated
            }
        };
        plan.run(src, &mut self.resized);
        Ok(&self.resized)
    }
}

/// 180° rotation of a packed 3-channel image: pixel i ↔ pixel (n − 1 − i).
pub fn rotate_180(src: &[u8], dst: &mut [u8]) {
    debug_assert_eq!(src.len(), dst.len());
    for (d, s) in dst.chunks_exact_mut(3).zip(src.chunks_exact(3).rev()) {
        d.copy_from_slice(s);
    }
}

/// u8 HWC (in `order`) → normalised f32 CHW in the model's order.
pub fn normalise_to_chw(
    hwc: &[u8],
    width: usize,
    height: usize,
    order: ChannelOrder,
    spec: &PreprocessSpec,
    out: &mut [f32],
) {
    let plane = width * height;
    debug_assert_eq!(hwc.len(), plane * 3);
    debug_assert_eq!(out.len(), plane * 3);
    let swap = order != spec.model_order;
    let n = &spec.normalisation;
    for c in 0..3 {
        // Tensor channel c comes from source channel c, or 2 − c when the orders differ.
        let src_c = if swap { 2 - c } else { c };
        let (mean, std) = (n.mean[c], n.std[c]);
        let dst = &mut out[c * plane..(c + 1) * plane];
        for (i, d) in dst.iter_mut().enumerate() {
            *d = (f32::from(hwc[i * 3 + src_c]) / 255.0 - mean) / std;
        }
    }
}

impl Preprocessor for CpuPreprocessor {
    fn spec(&self) -> &PreprocessSpec {
        &self.spec
    }

    fn run(&mut self, frame: FrameRef<'_>, out: &mut [f32]) -> Result<(), PreprocessError> {
        if out.len() != self.spec.output_len() {
            return Err(PreprocessError::OutputSize {
                expected: self.spec.output_len(),
                actual: out.len(),
            });
        }
        self.resize_u8(frame)?;
        let spec = self.spec;
        normalise_to_chw(
            &self.resized,
            spec.out_width,
            spec.out_height,
            frame.order,
            &spec,
            out,
        );
        Ok(())
    }
}

/// Which preprocessing implementation the inference stage uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Cpu,
    /// The GPU, or an error when it cannot be used.
    Cuda,
    /// The GPU when there is one, else the CPU twin (said once in the log).
    Auto,
}

/// Preprocessing that uses the CUDA kernels when asked and possible, the CPU
/// twin otherwise. The GPU plan is built for the first frame size seen and
/// rebuilt if the size changes (a camera never changes size in steady state).
pub struct SelectedPreprocessor {
    spec: PreprocessSpec,
    backend: Backend,
    cpu: CpuPreprocessor,
    gpu: Option<cuda::CudaPreprocessor>,
    gpu_unavailable: Option<String>,
    cache: Option<std::path::PathBuf>,
}

impl SelectedPreprocessor {
    pub fn new(
        spec: PreprocessSpec,
        backend: Backend,
        ptx_cache: Option<std::path::PathBuf>,
    ) -> Self {
        Self {
            spec,
            backend,
            cpu: CpuPreprocessor::new(spec),
            gpu: None,
            gpu_unavailable: None,
            cache: ptx_cache,
        }
    }

    /// "cpu", "cuda" or "cpu (cuda unavailable: …)" for summaries.
    pub fn describe(&self) -> String {
        match (&self.backend, &self.gpu, &self.gpu_unavailable) {
            (Backend::Cpu, ..) => "cpu".into(),
            (_, Some(_), _) => "cuda".into(),
            (_, None, Some(why)) => format!("cpu (cuda unavailable: {why})"),
            (_, None, None) => "not started".into(),
        }
    }
}

impl Preprocessor for SelectedPreprocessor {
    fn spec(&self) -> &PreprocessSpec {
        &self.spec
    }

    fn run(&mut self, frame: FrameRef<'_>, out: &mut [f32]) -> Result<(), PreprocessError> {
        if self.backend == Backend::Cpu || self.gpu_unavailable.is_some() {
            if self.backend == Backend::Cuda {
                return Err(PreprocessError::Device(
                    self.gpu_unavailable.clone().unwrap_or_default(),
                ));
            }
            return self.cpu.run(frame, out);
        }
        let fits =
            |g: &cuda::CudaPreprocessor| g.fits(frame.width, frame.height, InputFormat::Packed3);
        if !self.gpu.as_ref().is_some_and(fits) {
            match cuda::CudaPreprocessor::new(
                self.spec,
                frame.width,
                frame.height,
                InputFormat::Packed3,
                self.cache.as_deref(),
            ) {
                Ok(g) => self.gpu = Some(g),
                Err(e) => {
                    if self.backend == Backend::Auto {
                        tracing::warn!(
                            "GPU preprocessing unavailable ({}); using the CPU twin",
                            crate::error::Report(&e)
                        );
                    }
                    self.gpu_unavailable = Some(crate::error::report(&e));
                    return self.run(frame, out);
                }
            }
        }
        let gpu = self.gpu.as_mut().expect("set above");
        gpu.run(frame, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn without_cuda_auto_falls_back_and_cuda_is_an_error() {
        let data: Vec<u8> = (0..8 * 6 * 3).map(|i| (i * 37 % 251) as u8).collect();
        let frame = FrameRef {
            width: 8,
            height: 6,
            order: ChannelOrder::Bgr,
            data: &data,
        };
        let spec = spec(ChannelOrder::Rgb, Rotation::Rotate180);
        let mut want = [0f32; 6];
        CpuPreprocessor::new(spec).run(frame, &mut want).unwrap();
        let mut auto = SelectedPreprocessor::new(spec, Backend::Auto, None);
        let mut got = [0f32; 6];
        auto.run(frame, &mut got).unwrap();
        assert_eq!(got, want);
        assert!(
            auto.describe().starts_with("cpu (cuda unavailable"),
            "{}",
            auto.describe()
        );
        let mut cuda = SelectedPreprocessor::new(spec, Backend::Cuda, None);
        let err = cuda.run(frame, &mut got).unwrap_err().to_string();
        assert!(err.contains("--features cuda"), "{err}");
    }

    fn spec(order: ChannelOrder, rotation: Rotation) -> PreprocessSpec {
        PreprocessSpec {
            out_width: 2,
            out_height: 1,
            model_order: order,
            rotation,
            normalisation: Normalisation {
                mean: [0.0; 3],
                std: [1.0; 3],
            },
        }
    }

    #[test]
    fn rotation_180_reverses_pixels_not_channels() {
        let src = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        let mut dst = [0; 9];
        rotate_180(&src, &mut dst);
        assert_eq!(dst, [7, 8, 9, 4, 5, 6, 1, 2, 3]);
    }

    #[test]
    fn channel_swap_when_orders_differ() {
        // One BGR pixel per output position (no resize: 2x1 -> 2x1).
        let data = [10, 20, 30, 40, 50, 60];
        let frame = FrameRef {
            width: 2,
            height: 1,
            order: ChannelOrder::Bgr,
            data: &data,
        };
        let mut out = [0f32; 6];
        CpuPreprocessor::new(spec(ChannelOrder::Rgb, Rotation::None))
            .run(frame, &mut out)
            .unwrap();
        let v = |x: u8| f32::from(x) / 255.0;
        // Tensor channel 0 (R) = frame byte 2 of each pixel.
        assert_eq!(out, [v(30), v(60), v(20), v(50), v(10), v(40)]);
        CpuPreprocessor::new(spec(ChannelOrder::Bgr, Rotation::Rotate180))
            .run(frame, &mut out)
            .unwrap();
        assert_eq!(out, [v(40), v(10), v(50), v(20), v(60), v(30)]);
    }

    #[test]
    fn wrong_frame_size_is_an_error() {
        let data = [0u8; 5];
        let frame = FrameRef {
            width: 2,
            height: 1,
            order: ChannelOrder::Bgr,
            data: &data,
        };
        let mut out = [0f32; 6];
        let err = CpuPreprocessor::new(spec(ChannelOrder::Bgr, Rotation::None))
            .run(frame, &mut out)
            .unwrap_err();
        assert_eq!(
            err,
            PreprocessError::FrameSize {
                width: 2,
                height: 1,
                expected: 6,
                actual: 5
            }
        );
    }
}
