//! `cargo bench --features cuda --bench preprocess_gpu`: time per frame of the
//! CUDA preprocessing (upload of the raw camera frame + both kernels, until
//! the stream is idle) against the CPU twin on the same machine, for
//! 1280×720 and 640×480 packed BGR, YUYV and NV12 frames, fp32 and fp16
//! output. Medians (p50) and p99 over the measured frames. Without a CUDA
//! driver it says so and measures only the CPU twin.

use std::time::{Duration, Instant};

use mvla::bench::Summary;
use mvla::frame::convert::{nv12_to_bgr, yuyv_to_bgr};
use mvla::policy::ModelMeta;
use mvla::preprocess::cuda::{driver_present, CudaPreprocessor, OutputPrecision};
use mvla::preprocess::{
    ChannelOrder, CpuPreprocessor, FrameRef, InputFormat, Preprocessor, Rotation,
};

fn time(n: usize, warmup: usize, mut f: impl FnMut()) -> Summary {
    for _ in 0..warmup {
        f();
    }
    let samples: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    Summary::of(&samples)
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let (n, warmup) = if quick { (3, 1) } else { (500, 20) };
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_model");
    let meta = ModelMeta::load(&model).expect("fixture model");
    // Camera frames still need the 180° rotation: the on-robot case.
    let spec = meta.preprocess_spec(Rotation::Rotate180);
    let gpu = driver_present();
    if !gpu {
        println!("no CUDA driver on this machine: GPU preprocessing not measured");
    }
    let mut out = vec![0f32; spec.output_len()];
    for (w, h) in [(1280usize, 720usize), (640, 480)] {
        for format in [InputFormat::Packed3, InputFormat::Yuyv, InputFormat::Nv12] {
            let raw = mvla::bench::synthetic_frame(format, w, h);
            // CPU twin: conversion to BGR (for YUYV/NV12) + resize + normalise.
            let mut cpu = CpuPreprocessor::new(spec);
            let mut bgr = vec![0u8; w * h * 3];
            let c = time(n.min(100), warmup.min(5), || {
                let data: &[u8] = match format {
                    InputFormat::Packed3 => &raw,
                    InputFormat::Yuyv => {
                        yuyv_to_bgr(&raw, w, h, &mut bgr).unwrap();
                        &bgr
                    }
                    InputFormat::Nv12 => {
                        nv12_to_bgr(&raw, w, h, &mut bgr).unwrap();
                        &bgr
                    }
                };
                cpu.run(
                    FrameRef {
                        width: w,
                        height: h,
                        order: ChannelOrder::Bgr,
                        data,
                    },
                    &mut out,
                )
                .unwrap();
            });
            println!(
                "{w}x{h} {format:?}: cpu twin p50 {:.3} ms p99 {:.3} ms",
                c.p50_ms, c.p99_ms
            );
            if !gpu {
                continue;
            }
            for precision in [OutputPrecision::F32, OutputPrecision::F16] {
                let mut pre = CudaPreprocessor::with_precision(spec, w, h, format, None, precision)
                    .expect("CUDA preprocessor");
                let g = time(n, warmup, || {
                    pre.enqueue(&raw, ChannelOrder::Bgr).unwrap();
                    pre.stream().synchronize().unwrap();
                });
                println!(
                    "{w}x{h} {format:?} {precision:?}: cuda (upload + kernels) p50 {:.3} ms p99 {:.3} ms ({} frames)",
                    g.p50_ms, g.p99_ms, g.samples
                );
            }
        }
    }
}
