//! GPU preprocessing (feature `cuda`).
//! - Compiling every kernel with NVRTC and checking the PTX's float semantics
//!   needs only libnvrtc (CI installs the `nvidia-cuda-nvrtc-cu12` wheel):
//!   `cargo test --features cuda --test cuda_kernels`.
//! - Execution on a GPU, against the CPU twin, for the same cases as the host
//!   emulation (`tests/kernel_emulation.rs`) needs an NVIDIA GPU:
//!   `cargo test --release --features cuda --test cuda_kernels -- --ignored`
//!   (`compute-sanitizer --tool memcheck` on that binary checks the accesses).
#![cfg(feature = "cuda")]

mod common;

use common::kernel_cases::{all_cases, correctly_rounded_f16, first_bit_difference};
use common::*;
use mvla::policy::ModelMeta;
use mvla::preprocess::cuda::{
    compile, compile_source, driver_present, nvrtc_options, nvrtc_present, CudaPreprocessor,
    OutputPrecision,
};
use mvla::preprocess::kernels::{ptx_float_semantics_violations, KERNELS};
use mvla::preprocess::{InputFormat, Rotation};

/// sm_87: Jetson AGX Orin / Orin NX; sm_90: H100/H200 (development GPUs).
const ARCHES: [&str; 2] = ["compute_87", "compute_90"];

fn require_nvrtc() {
    assert!(
        nvrtc_present(),
        "libnvrtc not found: pip install nvidia-cuda-nvrtc-cu12 and put its nvidia/cuda_nvrtc/lib on LD_LIBRARY_PATH"
    );
}

#[test]
fn every_kernel_compiles_with_nvrtc_for_orin_and_hopper() {
    require_nvrtc();
    for arch in ARCHES {
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

#[test]
fn kernel_ptx_has_the_float_semantics_the_host_emulation_assumes() {
    // No FMA contraction, no flush-to-zero, IEEE division, and the fp16
    // store through cvt.rn (round to nearest even): what
    // kernels/host_emulation.h reproduces on the CPU.
    require_nvrtc();
    for arch in ARCHES {
        for k in KERNELS {
            let ptx = compile(k, arch).unwrap();
            let violations = ptx_float_semantics_violations(&ptx);
            assert!(violations.is_empty(), "{} {arch}: {violations:#?}", k.file);
        }
        let vertical = compile(&KERNELS[1], arch).unwrap();
        assert!(
            vertical.contains("div.rn.f32"),
            "{arch}: IEEE division expected"
        );
        assert!(
            vertical.contains("cvt.rn.f16.f32"),
            "{arch}: fp16 by cvt.rn expected"
        );
    }
}

#[test]
fn relaxed_nvrtc_options_are_caught_by_the_float_semantics_check() {
    // The check must be able to fail: the same NVRTC with fast-math style
    // options on a kernel with a multiply-add and a division.
    require_nvrtc();
    let src = r#"extern "C" __global__ void k(const float* a, float* o) {
        int i = threadIdx.x;
        o[i] = a[i] * a[i + 1] + a[i + 2];
        o[i + 32] = a[i] / a[i + 3];
    }"#;
    for arch in ARCHES {
        let strict = compile_source("control.cu", src.into(), nvrtc_options(arch)).unwrap();
        assert!(
            ptx_float_semantics_violations(&strict).is_empty(),
            "{strict}"
        );
        let mut relaxed = nvrtc_options(arch);
        relaxed.fmad = Some(true);
        relaxed.ftz = Some(true);
        relaxed.prec_div = Some(false);
        let ptx = compile_source("control.cu", src.into(), relaxed).unwrap();
        let v = ptx_float_semantics_violations(&ptx).join("\n");
        assert!(v.contains("fused multiply-add"), "{arch}: {v}\n{ptx}");
        assert!(v.contains("flush-to-zero"), "{arch}: {v}");
        assert!(v.contains("approximate"), "{arch}: {v}");
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU with a CUDA driver"]
fn gpu_is_bit_exact_with_the_cpu_twin_for_every_layout_rotation_and_size() {
    // fp32: every element's bits equal the CPU twin's; fp16: every element is
    // the correctly rounded CPU twin value (the `half` crate's rounding).
    assert!(driver_present(), "no CUDA driver");
    let cases = all_cases();
    for case in &cases {
        let want = case.expected();
        let mut gpu =
            CudaPreprocessor::new(case.spec(), case.width, case.height, case.format, None)
                .unwrap_or_else(|e| panic!("{}: {e}", case.label()));
        let mut got = vec![f32::NAN; want.len()];
        gpu.run_to_host(&case.frame(), case.order, &mut got)
            .unwrap();
        if let Some((i, g, w)) = first_bit_difference(&got, &want) {
            panic!(
                "{}: fp32 element {i} is {g:e}, CPU twin {w:e}",
                case.label()
            );
        }
        let mut gpu16 = CudaPreprocessor::with_precision(
            case.spec(),
            case.width,
            case.height,
            case.format,
            None,
            OutputPrecision::F16,
        )
        .unwrap();
        let mut bits = vec![0xffffu16; want.len()];
        gpu16
            .run_to_host_f16_bits(&case.frame(), case.order, &mut bits)
            .unwrap();
        let want16 = correctly_rounded_f16(&want);
        if let Some(i) = (0..want16.len()).find(|&i| bits[i] != want16[i]) {
            panic!(
                "{}: fp16 element {i} is 0x{:04x}, correctly rounded 0x{:04x}",
                case.label(),
                bits[i],
                want16[i]
            );
        }
    }
    eprintln!("{} cases bit-exact on the GPU", cases.len());
}

#[test]
#[ignore = "needs an NVIDIA GPU with a CUDA driver"]
fn gpu_output_does_not_depend_on_the_previous_frame() {
    // Every output element is written per frame: two different frames in a
    // row give the same tensor as each frame on a fresh preprocessor.
    assert!(driver_present(), "no CUDA driver");
    let meta = ModelMeta::load(&tiny_model()).unwrap();
    let spec = meta.preprocess_spec(Rotation::Rotate180);
    let (w, h) = (1280, 720);
    let a = pattern_frame(w, h);
    let b: Vec<u8> = a.iter().map(|v| 255 - v).collect();
    let run = |frames: &[&[u8]]| {
        let mut gpu = CudaPreprocessor::new(spec, w, h, InputFormat::Packed3, None).unwrap();
        let mut out = vec![0f32; spec.output_len()];
        for f in frames {
            gpu.run_to_host(f, mvla::preprocess::ChannelOrder::Bgr, &mut out)
                .unwrap();
        }
        out
    };
    assert!(first_bit_difference(&run(&[&a, &b]), &run(&[&b])).is_none());
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
