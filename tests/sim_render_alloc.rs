//! The sim camera's renderer allocates nothing per frame after warm-up, in
//! every layout, across worlds with other cameras. Its own test binary: the
//! counting allocator counts every thread of the process.

use mvla::sim::render::{PixelLayout, Renderer};
use mvla::sim::world::{Catalogue, Pose};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

#[test]
fn no_allocation_per_frame_after_warm_up() {
    let c = Catalogue::builtin();
    let a = c.world("1box_hori_left_core_medium", 0).unwrap();
    let b = c.world("v3_center", 5).unwrap(); // another pitch and objects
    for layout in [PixelLayout::Bgr, PixelLayout::Yuyv, PixelLayout::Nv12] {
        let mut r = Renderer::new(1280, 720, &a.camera);
        let mut out = Vec::new();
        r.render(&a, a.start, 0, layout, &mut out);
        let before = counting_alloc::allocations();
        for i in 0..6u64 {
            let w = if i % 2 == 0 { &b } else { &a };
            let pose = Pose {
                x: 0.05 * i as f64,
                ..w.start
            };
            r.render(w, pose, i, layout, &mut out);
        }
        let n = counting_alloc::allocations() - before;
        assert_eq!(n, 0, "{layout:?}: {n} allocations in 6 frames");
    }
}
