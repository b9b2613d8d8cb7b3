//! Stand-in for the CUDA preprocessing backend in builds without the `cuda`
//! feature: says so at run time instead of failing to build.

use super::PreprocessSpec;

#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    #[error("this build has no CUDA support (rebuild with --features cuda); using the CPU preprocessing")]
    NotCompiled,
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
