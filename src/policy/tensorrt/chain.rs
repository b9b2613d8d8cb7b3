//! Zero-copy chain: CUDA preprocessing → backbone → GPU feature ring → head.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::policy::backend;
use super::runtime::TrtError;
use super::TensorRtPolicy;
use crate::clock::Timestamp;
use crate::policy::engine::{ParityThresholds, Precision};
use crate::policy::{History, ModelMeta, Policy, PolicyError};
use crate::preprocess::cuda::CudaPreprocessor;
use crate::preprocess::{FrameRef, InputFormat, PreprocessError, PreprocessSpec};

/// Frame → chunk entirely on the GPU: the preprocessing kernels write the
/// backbone's input binding, the backbone writes its feature into the
/// device ring slot the host [`History`] assigns, the head reads the window
/// gathered on the device. Only the frame goes up and the chunk comes down.
pub struct GpuChain {
    policy: TensorRtPolicy,
    spec: PreprocessSpec,
    ptx_cache: Option<PathBuf>,
    pre: Option<CudaPreprocessor>,
    slots: History,
    output: crate::policy::ChunkOutput,
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
        let slots = History::slots_only(meta.raw.window, meta.history_step(), policy.capacity());
        Self {
            window_slots: vec![0; meta.raw.window],
            output: crate::policy::ChunkOutput::new(meta),
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
        self.pre = Some(pre);
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
        let fits = |p: &CudaPreprocessor| p.fits(frame.width, frame.height, format);
        if !self.pre.as_ref().is_some_and(fits) {
            self.prepare(frame.width, frame.height, format)?;
        }
        let pre = self.pre.as_mut().expect("set above");
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
    pub fn infer(&mut self) -> Result<crate::policy::StepOutput<'_>, PolicyError> {
        if self.pending.take().is_none() {
            return Err(PolicyError::Backend {
                stage: "tensorrt",
                source: "infer without a frame".into(),
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
    ) -> Result<crate::policy::StepOutput<'_>, PolicyError> {
        GpuChain::infer(self)
    }

    fn reset(&mut self) {
        GpuChain::reset(self)
    }

    fn step_length(&self) -> Duration {
        GpuChain::step_length(self)
    }
}
