//! Stand-in for the CUDA preprocessing backend in builds without the `cuda`
//! feature: says so at run time instead of failing to build.

pub use super::launch::OutputPrecision;
use super::{ChannelOrder, InputFormat, PreprocessSpec};

#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    #[error("this build has no CUDA support (rebuild with --features cuda); using the CPU preprocessing")]
    NotCompiled,
}

pub use super::GpuInfo;

pub fn gpu_info() -> Result<GpuInfo, CudaError> {
    Err(CudaError::NotCompiled)
}

pub fn nvrtc_version() -> Result<String, CudaError> {
    Err(CudaError::NotCompiled)
}

pub fn compile(
    _kernel: &super::kernels::KernelSource,
    _arch: &'static str,
) -> Result<String, CudaError> {
    Err(CudaError::NotCompiled)
}

/// Never constructed: `new` always reports the missing feature.
pub struct CudaPreprocessor {
    spec: PreprocessSpec,
}

impl CudaPreprocessor {
    pub fn new(
        _spec: PreprocessSpec,
        _in_w: usize,
        _in_h: usize,
        _format: super::InputFormat,
        _cache: Option<&std::path::Path>,
    ) -> Result<Self, CudaError> {
        Err(CudaError::NotCompiled)
    }

    pub fn with_precision(
        _spec: PreprocessSpec,
        _in_w: usize,
        _in_h: usize,
        _format: InputFormat,
        _cache: Option<&std::path::Path>,
        _precision: OutputPrecision,
    ) -> Result<Self, CudaError> {
        Err(CudaError::NotCompiled)
    }

    pub fn fits(&self, _width: usize, _height: usize, _format: InputFormat) -> bool {
        false
    }

    pub fn run_to_host(
        &mut self,
        _bytes: &[u8],
        _order: ChannelOrder,
        _out: &mut [f32],
    ) -> Result<(), CudaError> {
        Err(CudaError::NotCompiled)
    }

    pub fn run_to_host_f16_bits(
        &mut self,
        _bytes: &[u8],
        _order: ChannelOrder,
        _out: &mut [u16],
    ) -> Result<(), CudaError> {
        Err(CudaError::NotCompiled)
    }
}

impl super::Preprocessor for CudaPreprocessor {
    fn spec(&self) -> &PreprocessSpec {
        &self.spec
    }

    fn run(
        &mut self,
        _frame: super::FrameRef<'_>,
        _out: &mut [f32],
    ) -> Result<(), super::PreprocessError> {
        Err(super::PreprocessError::Device(
            CudaError::NotCompiled.to_string(),
        ))
    }
}
