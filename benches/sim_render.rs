//! `cargo bench --bench sim_render`: the simulator's CPU renderer at the
//! robot camera's 1280×720, per scenario family and pose (start, beside the
//! obstacle, at the goal), single core (the real-time sim camera) and two
//! cores (lock-step batches); medians of 41 frames after one warm-up frame,
//! plus the allocations of those frames (must be 0 on one core). Then one
//! lock-step batch with the tiny model for the speed versus real time.

use std::time::{Duration, Instant};

use mvla::config::Config;
use mvla::sim::lockstep::Latency;
use mvla::sim::render::{PixelLayout, Renderer};
use mvla::sim::trials::{run_trials, summarize, TrialsOptions};
use mvla::sim::world::{Catalogue, Pose};

#[path = "../tests/support/counting_alloc.rs"]
mod counting_alloc;

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e3
}

fn main() {
    let c = Catalogue::builtin();
    println!(
        "{:<30} {:<8} {:<6} {:>9} {:>9} {:>7}",
        "scenario", "pose", "layout", "1 core", "2 cores", "allocs"
    );
    let mut all = Vec::new();
    for name in [
        "1box_hori_left_core_medium",
        "2box_hori_right_variant_close",
        "v3_center",
    ] {
        let w = c.world(name, 1).unwrap();
        let first = w.obstacles[0];
        let (_, y_hi) = first.y_extent();
        let poses = [
            ("start", w.start),
            (
                "beside",
                Pose {
                    x: first.x,
                    y: y_hi + w.robot_radius_m + 0.1,
                    yaw: 0.0,
                },
            ),
            (
                "goal",
                Pose {
                    x: w.goal_front.0,
                    y: w.goal_front.1,
                    yaw: 0.0,
                },
            ),
        ];
        for (pose_name, pose) in poses {
            for layout in [PixelLayout::Bgr, PixelLayout::Yuyv, PixelLayout::Nv12] {
                let mut r = Renderer::new(1280, 720, &w.camera);
                let mut out = Vec::new();
                r.render(&w, pose, 0, layout, &mut out);
                let mut times = Vec::with_capacity(41);
                let before = counting_alloc::allocations();
                for i in 0..41u64 {
                    let t = Instant::now();
                    r.render(&w, pose, i, layout, &mut out);
                    times.push(t.elapsed());
                }
                let allocs = counting_alloc::allocations() - before;
                let one = median(times);
                let two = if layout == PixelLayout::Bgr {
                    let mut helper = r.clone();
                    let times: Vec<Duration> = (0..41u64)
                        .map(|i| {
                            let t = Instant::now();
                            r.render_bgr_on_two_cores(&mut helper, &w, pose, i, &mut out);
                            t.elapsed()
                        })
                        .collect();
                    format!("{:>7.2}ms", median(times))
                } else {
                    "-".into()
                };
                if layout == PixelLayout::Bgr {
                    all.push(one);
                }
                println!(
                    "{name:<30} {pose_name:<8} {:<6} {one:>7.2}ms {two:>9} {allocs:>7}",
                    format!("{layout:?}")
                );
            }
        }
    }
    all.sort_by(f64::total_cmp);
    println!(
        "1280x720 BGR on one core: median over cases {:.2} ms, worst {:.2} ms",
        all[all.len() / 2],
        all[all.len() - 1]
    );
    let mut config = Config::builtin_default();
    config.model_dir =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_model");
    let mut o = TrialsOptions::new(config);
    o.scenario_glob = "1box_hori_*_core_medium,2box_hori_*_core_medium,v3_*".into();
    o.latency = Latency::Fixed(Duration::from_millis(60));
    let records = run_trials(&o, |_| {}).unwrap();
    let s = summarize(&records);
    println!(
        "lock-step, tiny model, 1280x720 at {} fps, 60 ms modelled latency, {} trials: {:.1}x faster than real time",
        o.camera_fps, s.trials, s.speed_vs_real_time
    );
}
