//! [`TensorRtPolicy`]: the backbone and head engines as a [`Policy`], with
//! the per-frame feature kept on the GPU in a ring indexed like the host
//! [`History`](crate::policy::History), so the zero-copy path
//! ([`GpuChain`](super::GpuChain)) never moves a feature to the host.

use std::ffi::CString;
use std::path::Path;
use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut};

use super::runtime::{compute_capability, cuda, gpu_stream, open, DataType, Engine, TrtError};
use crate::policy::engine::{engine_paths, EnginePaths, ParityRecord, ParityThresholds, Precision};
use crate::policy::{ModelMeta, Policy, PolicyError};
use crate::preprocess::cuda::OutputPrecision;

enum DeviceInput {
    F32(CudaSlice<f32>),
    F16(CudaSlice<u16>),
}

enum DeviceIds {
    I64(CudaSlice<i64>),
    I32(CudaSlice<i32>),
}

fn ptr_of<T>(s: &CudaSlice<T>, stream: &CudaStream) -> u64 {
    let (p, _sync) = s.device_ptr(stream);
    p
}

fn ptr_of_mut<T>(s: &mut CudaSlice<T>, stream: &CudaStream) -> u64 {
    let (p, _sync) = s.device_ptr_mut(stream);
    p
}

/// Both engines as a [`Policy`]. Device buffers are allocated once in
/// `load`; a step allocates nothing.
pub struct TensorRtPolicy {
    meta: ModelMeta,
    stream: Arc<CudaStream>,
    backbone: Engine,
    head: Engine,
    pixels_name: CString,
    feature_name: CString,
    head_in_name: CString,
    pixels: DeviceInput,
    _ids: Vec<DeviceIds>,
    /// Feature ring: `capacity + 1` slots of `feature_dim`; the last slot is
    /// scratch for the host-facing `encode`.
    ring: CudaSlice<f32>,
    capacity: usize,
    head_in: CudaSlice<f32>,
    chunk: CudaSlice<f32>,
    host_half: Vec<u16>,
    pub record: Option<ParityRecord>,
}

impl TensorRtPolicy {
    /// Load the engines for `meta` from `dir` after checking their names
    /// (model, TensorRT, GPU, precision) and their parity record.
    pub fn load(
        meta: ModelMeta,
        dir: &Path,
        precision: Precision,
        thresholds: &ParityThresholds,
        capacity: usize,
    ) -> Result<Self, TrtError> {
        let trt = open()?;
        let stream = gpu_stream()?;
        let sm = compute_capability(&stream)?;
        let (_, _, paths) = engine_paths(&meta, dir, trt, sm, precision);
        for (role, p) in [("backbone", &paths.backbone), ("head", &paths.head)] {
            if !p.is_file() {
                return Err(TrtError::NotBuilt {
                    role,
                    path: p.display().to_string(),
                });
            }
        }
        let record = ParityRecord::check(&paths, thresholds)?;
        let mut policy = Self::load_with_capacity(meta, &paths, stream, capacity)?;
        policy.record = Some(record);
        Ok(policy)
    }

    /// Load without the parity record (the gate itself uses this).
    pub(super) fn load_unchecked(
        meta: ModelMeta,
        paths: &EnginePaths,
        stream: Arc<CudaStream>,
    ) -> Result<Self, TrtError> {
        Self::load_with_capacity(meta, paths, stream, 1)
    }

    fn load_with_capacity(
        meta: ModelMeta,
        paths: &EnginePaths,
        stream: Arc<CudaStream>,
        capacity: usize,
    ) -> Result<Self, TrtError> {
        // TensorRT allocates on the context current on this thread: make it
        // the one the stream (and the preprocessing kernels) belong to.
        stream.context().bind_to_thread().map_err(cuda)?;
        let mut backbone = Engine::load(&paths.backbone)?;
        let mut head = Engine::load(&paths.head)?;
        let raw = &meta.raw;
        let dim = meta.feature_dim();
        let (h, w) = (raw.image.height as i64, raw.image.width as i64);

        // Backbone inputs: pixels (fp32 or fp16), prompt ids and mask (int64 or int32).
        let mut ids = Vec::new();
        let mut pixels = None;
        for t in backbone.io.clone().iter().filter(|t| t.is_input) {
            match t.name.as_str() {
                "pixel_values" => {
                    let shape = [1, 3, h, w];
                    backbone.set_input_shape(&t.c_name, &shape)?;
                    let n = meta.pixel_count();
                    pixels = Some(match t.dtype {
                        DataType::F32 => DeviceInput::F32(stream.alloc_zeros(n).map_err(cuda)?),
                        DataType::F16 => DeviceInput::F16(stream.alloc_zeros(n).map_err(cuda)?),
                        other => {
                            return Err(backbone.err(format!(
                                "pixel_values has type {other:?}; expected fp32 or fp16"
                            )))
                        }
                    });
                }
                "input_ids" | "attention_mask" => {
                    let values = if t.name == "input_ids" {
                        &raw.prompt.input_ids
                    } else {
                        &raw.prompt.attention_mask
                    };
                    backbone.set_input_shape(&t.c_name, &[1, values.len() as i64])?;
                    let buf = match t.dtype {
                        DataType::I64 => DeviceIds::I64(stream.clone_htod(values).map_err(cuda)?),
                        DataType::I32 => {
                            let v: Vec<i32> = values.iter().map(|&x| x as i32).collect();
                            DeviceIds::I32(stream.clone_htod(&v).map_err(cuda)?)
                        }
                        other => {
                            return Err(backbone.err(format!(
                                "{} has type {other:?}; expected int64 or int32",
                                t.name
                            )))
                        }
                    };
                    let ptr = match &buf {
                        DeviceIds::I64(s) => ptr_of(s, &stream),
                        DeviceIds::I32(s) => ptr_of(s, &stream),
                    };
                    // SAFETY: `buf` is kept in `self._ids` for the policy's life and holds the full prompt.
                    unsafe { backbone.set_address(&t.c_name, ptr)? };
                    ids.push(buf);
                }
                other => return Err(backbone.err(format!("unexpected input {other:?}"))),
            }
        }
        let pixels = pixels.ok_or_else(|| backbone.err("no pixel_values input"))?;
        let feature = backbone.tensor(&raw.backbone.output)?.clone();
        if feature.dtype != DataType::F32 {
            return Err(backbone.err(format!(
                "{} has type {:?}; expected fp32",
                feature.name, feature.dtype
            )));
        }
        let out_shape = backbone.tensor_shape(&feature.c_name).unwrap_or_default();
        if out_shape.iter().product::<i64>() != dim as i64 {
            return Err(backbone.err(format!(
                "{} has shape {out_shape:?}; expected {dim} values",
                feature.name
            )));
        }

        let head_in = head.tensor(&raw.head.input)?.clone();
        let head_out = head.tensor(&raw.head.output)?.clone();
        if head_in.dtype != DataType::F32 || head_out.dtype != DataType::F32 {
            return Err(head.err("head input and output must be fp32"));
        }
        let [_, _, max] = head.profile_shape(&head_in.name)?;
        if max.get(1).copied().unwrap_or(0) < raw.window as i64 {
            return Err(head.err(format!(
                "optimisation profile allows windows up to {max:?}; the model's window is {}",
                raw.window
            )));
        }
        head.set_input_shape(&head_in.c_name, &[1, raw.window as i64, dim as i64])?;
        let chunk_shape = head.tensor_shape(&head_out.c_name).unwrap_or_default();
        if chunk_shape.iter().product::<i64>() != (raw.chunk * raw.action_dim) as i64 {
            return Err(head.err(format!(
                "{} has shape {chunk_shape:?}; model.json says chunk {} x action_dim {}",
                head_out.name, raw.chunk, raw.action_dim
            )));
        }
        let capacity = capacity.max(raw.window);
        let ring = stream
            .alloc_zeros::<f32>((capacity + 1) * dim)
            .map_err(cuda)?;
        let head_in_buf = stream.alloc_zeros::<f32>(raw.window * dim).map_err(cuda)?;
        let mut chunk = stream
            .alloc_zeros::<f32>(raw.chunk * raw.action_dim)
            .map_err(cuda)?;
        let (hi, ho) = (
            ptr_of(&head_in_buf, &stream),
            ptr_of_mut(&mut chunk, &stream),
        );
        // SAFETY: both buffers live in `self` and have the head's maximum shape.
        unsafe {
            head.set_address(&head_in.c_name, hi)?;
            head.set_address(&head_out.c_name, ho)?;
        }
        stream.synchronize().map_err(cuda)?;
        Ok(Self {
            pixels_name: CString::new("pixel_values").expect("literal"),
            feature_name: feature.c_name,
            head_in_name: head_in.c_name,
            meta,
            stream,
            backbone,
            head,
            pixels,
            _ids: ids,
            ring,
            capacity,
            head_in: head_in_buf,
            chunk,
            host_half: Vec::new(),
            record: None,
        })
    }

    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Slots in the device feature ring (the host [`History`]'s capacity).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Element type the backbone wants its pixels in: the preprocessing
    /// kernel writes exactly that.
    pub fn pixel_precision(&self) -> OutputPrecision {
        match self.pixels {
            DeviceInput::F32(_) => OutputPrecision::F32,
            DeviceInput::F16(_) => OutputPrecision::F16,
        }
    }

    /// Enqueue the backbone reading pixels at device address `pixels` and
    /// writing its feature into ring slot `slot`. Asynchronous.
    ///
    /// # Safety
    /// `pixels` must hold the model input in [`Self::pixel_precision`] and
    /// stay valid until the stream has passed this point.
    pub unsafe fn encode_device(&mut self, pixels: u64, slot: usize) -> Result<(), TrtError> {
        assert!(slot <= self.capacity, "ring slot out of range");
        let dim = self.meta.feature_dim();
        let out = {
            let mut view = self.ring.slice_mut(slot * dim..(slot + 1) * dim);
            let (p, _sync) = view.device_ptr_mut(&self.stream);
            p
        };
        // TensorRT uses whatever context is current on the calling thread; the
        // chain is built on the main thread and runs on the inference thread.
        self.stream.context().bind_to_thread().map_err(cuda)?;
        // SAFETY: `out` is inside the ring (alive in self); `pixels` per the contract.
        unsafe {
            self.backbone.set_address(&self.pixels_name, pixels)?;
            self.backbone.set_address(&self.feature_name, out)?;
        }
        self.backbone.enqueue(&self.stream)
    }

    /// Gather ring `slots` (oldest first) into the head input on the GPU,
    /// run the head and copy the chunk to `out` (waits for the stream).
    pub fn decode_slots(&mut self, slots: &[usize], out: &mut [f32]) -> Result<(), TrtError> {
        let dim = self.meta.feature_dim();
        let k = slots.len();
        crate::policy::check_window_len(&self.meta, k)?;
        for (pos, &slot) in slots.iter().enumerate() {
            let src = self.ring.slice(slot * dim..(slot + 1) * dim);
            let mut dst = self.head_in.slice_mut(pos * dim..(pos + 1) * dim);
            self.stream.memcpy_dtod(&src, &mut dst).map_err(cuda)?;
        }
        self.run_head(k, out)
    }

    fn run_head(&mut self, k: usize, out: &mut [f32]) -> Result<(), TrtError> {
        let dim = self.meta.feature_dim() as i64;
        self.stream.context().bind_to_thread().map_err(cuda)?;
        self.head
            .set_input_shape(&self.head_in_name, &[1, k as i64, dim])?;
        self.head.enqueue(&self.stream)?;
        if out.len() != self.chunk.len() {
            return Err(PolicyError::Shape {
                what: "head output",
                expected: self.chunk.len(),
                actual: out.len(),
            }
            .into());
        }
        self.stream.memcpy_dtoh(&self.chunk, out).map_err(cuda)?;
        self.stream.synchronize().map_err(cuda)
    }
}

pub(super) fn backend(stage: &'static str) -> impl Fn(TrtError) -> PolicyError {
    move |e| match e {
        TrtError::Policy(p) => p,
        other => PolicyError::Backend {
            stage,
            source: Box::new(other),
        },
    }
}

impl Policy for TensorRtPolicy {
    fn meta(&self) -> &ModelMeta {
        &self.meta
    }

    /// Host-facing path (the parity gate, tools): upload, backbone into the
    /// scratch slot, download.
    fn encode(&mut self, pixels: &[f32], feature: &mut [f32]) -> Result<(), PolicyError> {
        crate::policy::check_pixels(&self.meta, pixels)?;
        let err = backend("tensorrt backbone");
        let ptr = match &mut self.pixels {
            DeviceInput::F32(buf) => {
                self.stream
                    .memcpy_htod(pixels, buf)
                    .map_err(|e| err(cuda(e)))?;
                ptr_of(buf, &self.stream)
            }
            DeviceInput::F16(buf) => {
                // Host-facing only (the parity gate, tools), not the per-frame
                // path: there the kernel writes fp16 itself (`cvt.rn.f16.f32`).
                // `half` rounds to nearest even like that instruction.
                self.host_half.clear();
                self.host_half
                    .extend(pixels.iter().map(|&v| half::f16::from_f32(v).to_bits()));
                self.stream
                    .memcpy_htod(&self.host_half, buf)
                    .map_err(|e| err(cuda(e)))?;
                ptr_of(buf, &self.stream)
            }
        };
        let scratch = self.capacity;
        // SAFETY: `ptr` is our own pixel buffer, alive in self.
        unsafe { self.encode_device(ptr, scratch) }.map_err(&err)?;
        let dim = self.meta.feature_dim();
        let src = self.ring.slice(scratch * dim..(scratch + 1) * dim);
        self.stream
            .memcpy_dtoh(&src, feature)
            .map_err(|e| err(cuda(e)))?;
        self.stream.synchronize().map_err(|e| err(cuda(e)))
    }

    fn decode(
        &mut self,
        features: &[f32],
        steps: usize,
        chunk: &mut [f32],
    ) -> Result<(), PolicyError> {
        crate::policy::check_head_input(&self.meta, features, steps)?;
        let dim = self.meta.feature_dim();
        let err = backend("tensorrt head");
        let mut dst = self.head_in.slice_mut(..steps * dim);
        self.stream
            .memcpy_htod(features, &mut dst)
            .map_err(|e| err(cuda(e)))?;
        self.run_head(steps, chunk).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    /// The host upload must round like the kernel's `cvt.rn.f16.f32`
    /// (round to nearest, ties to even; overflow to infinity, underflow to 0).
    #[test]
    fn host_fp16_upload_rounds_to_nearest_even() {
        let bits = |v: f32| half::f16::from_f32(v).to_bits();
        // Halfway between 1.0 and the next half (1 + 2^-10): ties to even (1.0).
        assert_eq!(bits(1.0 + 2f32.powi(-11)), 0x3c00);
        assert_eq!(bits(1.0 + 3.0 * 2f32.powi(-11)), 0x3c02);
        assert_eq!(bits(1e6), 0x7c00);
        assert_eq!(bits(1e-9), 0);
    }
}
