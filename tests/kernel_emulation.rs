//! The CUDA preprocessing kernels (`kernels/*.cu`, unchanged) executed on the
//! CPU under `kernels/host_emulation.h`, with the launch plan the GPU gets
//! (`mvla::preprocess::launch`). No GPU needed: this runs in every CI build,
//! and once more under AddressSanitizer (`.ci/test`, `MVLA_KERNEL_SANITIZE=address`)
//! with every buffer at exactly its device size.
//!
//! References are independent of the kernels: the CPU twin (Pillow-exact) and,
//! for fp16, the `half` crate's correctly rounded conversion.

mod common;

use common::kernel_cases::{all_cases, correctly_rounded_f16, first_bit_difference, KernelCase};
use common::{pattern_frame, tiny_model};
use mvla::policy::ModelMeta;
use mvla::preprocess::emulated::{
    emulated_f32_to_f16_bits, EmulatedKernels, EmulatedPreprocessor, Schedule,
};
use mvla::preprocess::launch::OutputPrecision;
use mvla::preprocess::{ChannelOrder, FrameRef, InputFormat, Preprocessor, Rotation};

fn emulate(case: &KernelCase, precision: OutputPrecision) -> EmulatedKernels {
    let mut k = EmulatedKernels::new(case.spec(), case.width, case.height, case.format, precision)
        .unwrap_or_else(|e| panic!("{}: {e}", case.label()));
    k.run(&case.frame(), case.order)
        .unwrap_or_else(|e| panic!("{}: {e}", case.label()));
    k
}

#[test]
fn fp32_output_is_bit_exact_with_the_cpu_twin_for_every_layout_rotation_and_size() {
    let cases = all_cases();
    assert!(cases.len() >= 48, "case list shrank: {}", cases.len());
    for case in &cases {
        let want = case.expected();
        let k = emulate(case, OutputPrecision::F32);
        if let Some((i, got, exp)) = first_bit_difference(k.output_f32(), &want) {
            panic!("{}: element {i} is {got:e}, CPU twin {exp:e}", case.label());
        }
    }
}

#[test]
fn fp16_output_is_the_correctly_rounded_cpu_twin_value() {
    for case in all_cases() {
        let want = correctly_rounded_f16(&case.expected());
        let k = emulate(&case, OutputPrecision::F16);
        let got = k.output_f16();
        if let Some(i) = (0..want.len()).find(|&i| got[i] != want[i]) {
            panic!(
                "{}: element {i} is 0x{:04x}, correctly rounded 0x{:04x}",
                case.label(),
                got[i],
                want[i]
            );
        }
    }
}

#[test]
fn every_output_element_and_intermediate_byte_is_written() {
    // Different sentinels before the run must give identical buffers after
    // it: a byte the kernels never wrote would keep its sentinel.
    for case in all_cases()
        .iter()
        .filter(|c| c.rotation == Rotation::Rotate180)
    {
        for precision in [OutputPrecision::F32, OutputPrecision::F16] {
            let mut results = Vec::new();
            for sentinel in [0x00u8, 0xff, 0xa5] {
                let mut k = EmulatedKernels::new(
                    case.spec(),
                    case.width,
                    case.height,
                    case.format,
                    precision,
                )
                .unwrap();
                k.fill_outputs(sentinel);
                k.run(&case.frame(), case.order).unwrap();
                // Only the output of the chosen precision is written; the
                // other holds one placeholder element the kernels never touch.
                let out32: Vec<u32> = match precision {
                    OutputPrecision::F32 => k.output_f32().iter().map(|v| v.to_bits()).collect(),
                    OutputPrecision::F16 => Vec::new(),
                };
                let out16 = match precision {
                    OutputPrecision::F16 => k.output_f16().to_vec(),
                    OutputPrecision::F32 => Vec::new(),
                };
                results.push((k.intermediate().to_vec(), out32, out16));
            }
            let label = case.label();
            assert!(
                results.windows(2).all(|w| w[0] == w[1]),
                "{label} {precision:?}: output depends on the buffer's previous contents"
            );
            if precision == OutputPrecision::F32 {
                assert!(
                    results[0].1.iter().all(|&b| f32::from_bits(b).is_finite()),
                    "{label}: non-finite output element"
                );
            }
        }
    }
}

#[test]
fn shuffled_multithreaded_execution_gives_identical_results() {
    // The kernels must not depend on thread order or on running alone: run
    // the GPU threads shuffled (several seeds) over several host threads.
    let cases: Vec<KernelCase> = all_cases()
        .into_iter()
        .filter(|c| c.width <= 642 && c.rotation == Rotation::Rotate180)
        .collect();
    for case in &cases {
        for precision in [OutputPrecision::F32, OutputPrecision::F16] {
            let reference = emulate(case, precision);
            for (host_threads, seed) in [(1, 7), (3, 1), (4, 0xdead_beef), (8, 42)] {
                let mut k = EmulatedKernels::new(
                    case.spec(),
                    case.width,
                    case.height,
                    case.format,
                    precision,
                )
                .unwrap();
                k.set_schedule(Schedule { host_threads, seed });
                k.fill_outputs(0x5a);
                k.run(&case.frame(), case.order).unwrap();
                let label = case.label();
                assert_eq!(k.intermediate(), reference.intermediate(), "{label}");
                if precision == OutputPrecision::F32 {
                    assert_eq!(
                        k.output_f32()
                            .iter()
                            .map(|v| v.to_bits())
                            .collect::<Vec<_>>(),
                        reference
                            .output_f32()
                            .iter()
                            .map(|v| v.to_bits())
                            .collect::<Vec<_>>(),
                        "{label} threads {host_threads} seed {seed}"
                    );
                }
                if precision == OutputPrecision::F16 {
                    assert_eq!(k.output_f16(), reference.output_f16(), "{label}");
                }
            }
        }
    }
}

#[test]
fn emulated_ptx_f16_conversion_matches_the_half_crate() {
    // cvt.rn.f16.f32 as emulated vs `half` (round to nearest even): every
    // 251st f32 bit pattern, plus every f16 value's neighbourhood (the
    // halfway points between consecutive halves and one f32 ulp either side),
    // where rounding decisions are made.
    let check = |f: f32| {
        if f.is_nan() {
            let h = emulated_f32_to_f16_bits(f);
            assert!(half::f16::from_bits(h).is_nan(), "NaN -> 0x{h:04x}");
            return;
        }
        let got = emulated_f32_to_f16_bits(f);
        let want = half::f16::from_f32(f).to_bits();
        assert_eq!(got, want, "{f:e} (0x{:08x})", f.to_bits());
    };
    let mut bits = 0u64;
    while bits <= u64::from(u32::MAX) {
        check(f32::from_bits(bits as u32));
        bits += 251;
    }
    for h in 0..=u16::MAX {
        let lo = half::f16::from_bits(h);
        let hi = half::f16::from_bits(h.wrapping_add(1));
        if !lo.is_finite()
            || !hi.is_finite()
            || lo.to_f32().is_sign_negative() != hi.to_f32().is_sign_negative()
        {
            continue;
        }
        let mid = (f64::from(lo.to_f32()) + f64::from(hi.to_f32())) / 2.0;
        let m = mid as f32; // exact: halves have 11 significant bits
        for f in [
            m,
            f32::from_bits(m.to_bits() - 1),
            f32::from_bits(m.to_bits() + 1),
        ] {
            check(f);
            check(-f);
        }
    }
    for f in [
        0.0,
        -0.0,
        65504.0,
        65519.99,
        65520.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MAX,
        f32::MIN_POSITIVE,
        5.96e-8,
        2.98e-8,
        2.99e-8,
    ] {
        check(f);
        check(-f);
    }
}

#[test]
fn the_emulated_preprocessor_behind_the_trait_matches_the_cpu_twin() {
    let meta = ModelMeta::load(&tiny_model()).unwrap();
    let spec = meta.preprocess_spec(Rotation::Rotate180);
    let mut emulated = EmulatedPreprocessor::new(spec, OutputPrecision::F32);
    let mut cpu = mvla::preprocess::CpuPreprocessor::new(spec);
    // Two sizes in a row: the plan is rebuilt for the new size.
    for (w, h) in [(640usize, 480usize), (1280, 720), (640, 480)] {
        let frame = pattern_frame(w, h);
        let f = FrameRef {
            width: w,
            height: h,
            order: ChannelOrder::Rgb,
            data: &frame,
        };
        let (mut a, mut b) = (vec![0f32; spec.output_len()], vec![0f32; spec.output_len()]);
        emulated.run(f, &mut a).unwrap();
        cpu.run(f, &mut b).unwrap();
        assert!(first_bit_difference(&a, &b).is_none(), "{w}x{h}");
    }
    // Wrong sizes are errors, not panics.
    let mut out = vec![0f32; spec.output_len()];
    let short = FrameRef {
        width: 640,
        height: 480,
        order: ChannelOrder::Bgr,
        data: &[0u8; 10],
    };
    assert!(emulated.run(short, &mut out).is_err());
    let mut k =
        EmulatedKernels::new(spec, 640, 480, InputFormat::Yuyv, OutputPrecision::F32).unwrap();
    assert!(k.run(&[0u8; 10], ChannelOrder::Bgr).is_err());
    assert!(k
        .run_to_host(&vec![0u8; 640 * 480 * 2], ChannelOrder::Bgr, &mut [0f32; 3])
        .is_err());
}

/// Compile `body` (a kernel using `construct`) with the emulation header and
/// return the compiler's stderr; None if it compiled.
fn compile_with_emulation_header(body: &str) -> Option<String> {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("k.cpp");
    std::fs::write(&src, format!("#include \"host_emulation.h\"\n{body}\n")).unwrap();
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let kernels = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
    let out = std::process::Command::new(&cxx)
        .args(["-std=c++17", "-fsyntax-only", "-I"])
        .arg(&kernels)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("running {cxx}: {e}"));
    (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn constructs_the_emulation_cannot_reproduce_fail_to_compile() {
    // The control: a plain kernel like ours compiles.
    assert_eq!(
        compile_with_emulation_header(
            "__global__ void k(float* o) { int i = blockIdx.x * blockDim.x + threadIdx.x; o[i] = (float)max(i, 0); }"
        ),
        None
    );
    for (construct, body, message) in [
        (
            "shared memory",
            "__global__ void k(float* o) { __shared__ float s[32]; o[0] = s[0]; }",
            "__shared__",
        ),
        (
            "barrier",
            "__global__ void k(float* o) { o[0] = 1; __syncthreads(); }",
            "__syncthreads",
        ),
        (
            "warp shuffle",
            "__global__ void k(float* o) { o[0] = __shfl_down_sync(0xffffffffu, o[0], 1); }",
            "shuffle",
        ),
        (
            "warp vote",
            "__global__ void k(int* o) { o[0] = __ballot_sync(0xffffffffu, o[0]); }",
            "vote",
        ),
        (
            "atomic",
            "__global__ void k(int* o) { atomicAdd(o, 1); }",
            "atomic",
        ),
        (
            "inline PTX",
            "__global__ void k(int* o) { asm(\"trap;\"); }",
            "inline PTX",
        ),
    ] {
        let stderr = compile_with_emulation_header(body)
            .unwrap_or_else(|| panic!("{construct} compiled under the emulation header"));
        assert!(stderr.contains(message), "{construct}: {stderr}");
    }
}
