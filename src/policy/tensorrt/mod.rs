//! TensorRT backend (feature `tensorrt`): the exported graphs as TensorRT
//! engines, through mvla's owned C++ shim (`shim.cpp`, built by `build.rs`).
//!
//! `tensorrt-rs` (the original plan) supports only TensorRT 5/7 and does not
//! build without it, so mvla binds the few calls it needs itself. TensorRT is
//! loaded with `dlopen` at run time: a binary built with this feature still
//! starts on a machine without TensorRT and says what is missing.
//!
//! * [`open`]: load libnvinfer, forward its log to `tracing`.
//! * [`Engine`]: deserialize, IO tensor introspection, tensor addresses,
//!   `enqueueV3` on a CUDA stream.
//! * [`build_engines`]: ONNX parser → builder (FP16, workspace limit,
//!   optimisation profile for the head's window length, timing cache) →
//!   parity gate against the tract reference → engines + record on disk.
//! * [`TensorRtPolicy`]: the two engines as a [`Policy`], with the per-frame
//!   feature kept on the GPU in a ring indexed like the host [`History`], so
//!   the zero-copy path ([`GpuChain`]) never moves a feature to the host.
//!
//! One file per job:
//!
//! | file | holds |
//! |---|---|
//! | `ffi.rs` | the C surface of `shim.cpp` |
//! | `runtime.rs` | library loading ([`open`]), [`TrtError`], the [`Engine`] wrapper |
//! | `builder.rs` | [`build_engines`]: ONNX → engines → parity gate → record |
//! | `policy.rs` | [`TensorRtPolicy`] (fp16 host uploads through the `half` crate) |
//! | `chain.rs` | [`GpuChain`]: frame → chunk on the GPU |

mod builder;
mod chain;
mod ffi;
mod policy;
mod runtime;

pub use super::engine::engine_paths;
pub use super::engine::{BuildEvent, BuildOptions, BuildOutcome};
pub use builder::build_engines;
pub use chain::GpuChain;
pub use ffi::Dims;
pub use policy::TensorRtPolicy;
pub use runtime::{header_version, open, DataType, Engine, IoTensor, TrtError};
