//! Stand-in for the TensorRT backend in builds without the `tensorrt`
//! feature: the same entry points, each reporting that the feature is off.

use std::path::{Path, PathBuf};

pub use super::engine::{BuildEvent, BuildOptions, BuildOutcome};
use super::engine::{ParityThresholds, Precision, TrtVersion};
use super::{ModelMeta, Policy, PolicyError, StepOutput};
use crate::frame::Frame;
use crate::preprocess::{PreprocessError, PreprocessSpec};

#[derive(Debug, thiserror::Error)]
pub enum TrtError {
    #[error("this build has no TensorRT support (rebuild with --features tensorrt on a machine with the TensorRT headers)")]
    NotCompiled,
}

pub fn open() -> Result<TrtVersion, TrtError> {
    Err(TrtError::NotCompiled)
}

pub fn header_version() -> Option<TrtVersion> {
    None
}

pub fn build_engines(
    _meta: &ModelMeta,
    _dir: &Path,
    _options: &BuildOptions,
    _make_reference: &mut dyn FnMut() -> Result<Box<dyn Policy>, PolicyError>,
    _progress: &mut dyn FnMut(BuildEvent<'_>),
) -> Result<BuildOutcome, TrtError> {
    Err(TrtError::NotCompiled)
}

/// Never constructed without the feature.
pub enum GpuChain {}

impl GpuChain {
    pub fn load(
        _meta: ModelMeta,
        _dir: &Path,
        _precision: Precision,
        _thresholds: &ParityThresholds,
        _capacity: usize,
        _spec: PreprocessSpec,
        _ptx_cache: Option<PathBuf>,
    ) -> Result<Self, TrtError> {
        Err(TrtError::NotCompiled)
    }

    pub fn describe(&self) -> String {
        match *self {}
    }

    pub fn prepare(
        &mut self,
        _width: usize,
        _height: usize,
        _format: crate::preprocess::InputFormat,
    ) -> Result<(), PreprocessError> {
        match *self {}
    }
}

impl crate::pipeline::FrameStep for GpuChain {
    fn preprocess(&mut self, _frame: &Frame) -> Result<(), PreprocessError> {
        match *self {}
    }

    fn infer(&mut self, _frame: &Frame) -> Result<StepOutput<'_>, PolicyError> {
        match *self {}
    }

    fn reset(&mut self) {
        match *self {}
    }

    fn step_length(&self) -> std::time::Duration {
        match *self {}
    }
}
