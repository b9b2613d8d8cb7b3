//! GPU preprocessing (feature `cuda`).
//! - Compiling every kernel with NVRTC needs only libnvrtc (CI installs the
//!   `nvidia-cuda-nvrtc-cu12` wheel): `cargo test --features cuda --test cuda_kernels`.
//! - Parity with the CPU twin needs an NVIDIA GPU:
//!   `cargo test --release --features cuda --test cuda_kernels -- --ignored`.
#![cfg(feature = "cuda")]

mod common;

use common::*;
use mvla::policy::ModelMeta;
use mvla::preprocess::cuda::{
    compile, driver_present, nvrtc_present, CudaPreprocessor, OutputPrecision,
};
use mvla::preprocess::kernels::KERNELS;
use mvla::preprocess::{
    ChannelOrder, CpuPreprocessor, FrameRef, InputFormat, Preprocessor, Rotation,
};

#[test]
fn every_kernel_compiles_with_nvrtc_for_orin_and_hopper() {
    assert!(
        nvrtc_present(),
        "libnvrtc not found: pip install nvidia-cuda-nvrtc-cu12 and put its nvidia/cuda_nvrtc/lib on LD_LIBRARY_PATH"
    );
    // sm_87: Jetson AGX Orin / Orin NX; sm_90: H100/H200 (development GPUs).
    for arch in ["compute_87", "compute_90"] {
        for k in KERNELS {
            let ptx = compile(k, arch).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                ptx.contains(&format!(".entry {}", k.entry)),
                "{} for {arch}: entry missing in PTX",
                k.file
            );
        }
    }
}

fn cpu_reference(
    meta: &ModelMeta,
    frame: &[u8],
    w: usize,
    h: usize,
    order: ChannelOrder,
    rot: Rotation,
) -> Vec<f32> {
    let spec = meta.preprocess_spec(rot);
    let mut out = vec![0f32; spec.output_len()];
    CpuPreprocessor::new(spec)
        .run(
            FrameRef {
                width: w,
                height: h,
                order,
                data: frame,
            },
            &mut out,
        )
        .unwrap();
    out
}

#[test]
#[ignore = "needs an NVIDIA GPU with a CUDA driver"]
fn gpu_matches_the_cpu_twin() {
    assert!(driver_present(), "no CUDA driver");
    let meta = ModelMeta::load(&tiny_model()).unwrap();
    for (w, h) in [(1280usize, 720usize), (640, 480)] {
        for rot in [Rotation::None, Rotation::Rotate180] {
            // Packed BGR and RGB.
            let frame = pattern_frame(w, h);
            for order in [ChannelOrder::Bgr, ChannelOrder::Rgb] {
                let want = cpu_reference(&meta, &frame, w, h, order, rot);
                let spec = meta.preprocess_spec(rot);
                let mut gpu =
                    CudaPreprocessor::new(spec, w, h, InputFormat::Packed3, None).unwrap();
                let mut got = vec![0f32; spec.output_len()];
                gpu.run_to_host(&frame, order, &mut got).unwrap();
                let err = max_abs_diff(&got, &want);
                assert!(err <= 1e-6, "{w}x{h} {order:?} {rot:?}: fp32 max abs {err}");
                // fp16: rounding of values within about ±3 -> half ulp <= 2^-9.
                let mut gpu16 = CudaPreprocessor::with_precision(
                    spec,
                    w,
                    h,
                    InputFormat::Packed3,
                    None,
                    OutputPrecision::F16,
                )
                .unwrap();
                gpu16.run_to_host(&frame, order, &mut got).unwrap();
                let err16 = max_abs_diff(&got, &want);
                assert!(
                    err16 <= 4e-3,
                    "{w}x{h} {order:?} {rot:?}: fp16 max abs {err16}"
                );
            }
            // YUYV decoded on the GPU vs OpenCV-exact CPU conversion + CPU twin.
            let yuyv = yuyv_pattern(w, h);
            let mut bgr = vec![0u8; w * h * 3];
            mvla::capture::convert::yuyv_to_bgr(&yuyv, w, h, &mut bgr).unwrap();
            let want = cpu_reference(&meta, &bgr, w, h, ChannelOrder::Bgr, rot);
            let spec = meta.preprocess_spec(rot);
            let mut gpu = CudaPreprocessor::new(spec, w, h, InputFormat::Yuyv, None).unwrap();
            let mut got = vec![0f32; spec.output_len()];
            gpu.run_to_host(&yuyv, ChannelOrder::Bgr, &mut got).unwrap();
            let err = max_abs_diff(&got, &want);
            assert!(err <= 1e-6, "YUYV {w}x{h} {rot:?}: max abs {err}");
            // NV12 likewise (OpenCV-exact CPU conversion, tests/capture_formats.rs).
            let nv12 = nv12_pattern(w, h);
            mvla::capture::convert::nv12_to_bgr(&nv12, w, h, &mut bgr).unwrap();
            let want = cpu_reference(&meta, &bgr, w, h, ChannelOrder::Bgr, rot);
            let mut gpu = CudaPreprocessor::new(spec, w, h, InputFormat::Nv12, None).unwrap();
            gpu.run_to_host(&nv12, ChannelOrder::Bgr, &mut got).unwrap();
            let err = max_abs_diff(&got, &want);
            assert!(err <= 1e-6, "NV12 {w}x{h} {rot:?}: max abs {err}");
        }
    }
}

#[test]
fn without_a_driver_construction_fails_instead_of_panicking() {
    if driver_present() {
        return; // covered by the GPU test on machines with a driver
    }
    let meta = ModelMeta::load(&tiny_model()).unwrap();
    let err = CudaPreprocessor::new(
        meta.preprocess_spec(Rotation::None),
        640,
        480,
        InputFormat::Packed3,
        None,
    )
    .err()
    .expect("no driver here");
    assert!(err.to_string().contains("no CUDA driver"), "{err}");
}
