//! `cargo bench --bench policy`: per-step CPU latency of the tiny fixture
//! model (1280x720 frame → preprocess → backbone → head), medians reported.
//! For any other model (e.g. the full-size export) use
//! `cargo run --release -- bench --model DIR`.

fn main() {
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_model");
    // `cargo bench` passes --bench; `cargo test --benches` runs this once quickly.
    let quick = !std::env::args().any(|a| a == "--bench");
    let (steps, warmup) = if quick { (3, 1) } else { (200, 10) };
    let r = mvla::bench::bench_policy(&model, steps, warmup).expect("tiny fixture model loads");
    println!(
        "tiny model {}: preprocess p50 {:.3} ms, backbone p50 {:.3} ms, head p50 {:.3} ms, step p50 {:.3} ms / p99 {:.3} ms ({} steps), peak RSS {:.0} MiB",
        r.model_id,
        r.preprocess.p50_ms,
        r.backbone.p50_ms,
        r.head_full_window.p50_ms,
        r.step_total.p50_ms,
        r.step_total.p99_ms,
        r.step_total.samples,
        r.peak_rss_mib
    );
}
