//! Stand-in for the CUDA preprocessing backend in builds without the `cuda`
//! feature: says so at run time instead of failing to build.

use super::PreprocessSpec;

#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    #[error("this build has no CUDA support (rebuild with --features cuda); using the CPU preprocessing")]
    NotCompiled,
}

pub struct CudaPreprocessor;

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
}
