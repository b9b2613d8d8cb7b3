//! A steady-state motor tick allocates nothing (counting global allocator).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mvla::clock::Timestamp;
use mvla::config::Config;
use mvla::control::calib::Calibration;
use mvla::control::motor::{DriveMode, MotorLoop};
use mvla::pipeline::{ActionChunk, InferenceEvent, StageTimings};

struct Counting;
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn chunk(t0_ms: u64) -> InferenceEvent {
    InferenceEvent::Chunk(ActionChunk {
        seq: t0_ms,
        frame_seq: t0_ms,
        t0: Timestamp(t0_ms * 1_000_000),
        step: Duration::from_millis(800),
        actions: [[1.15f32, 0.3]; 10].into_iter().collect(),
        raw_first: [1.0, 0.26],
        forced_zero: false,
        history_steps: 8,
        timings: StageTimings::default(),
    })
}

#[test]
fn steady_state_ticks_do_not_allocate() {
    for mode in [DriveMode::DirectionThrottle, DriveMode::Velocity] {
        let mut cfg = Config::builtin_default().motor;
        cfg.mode = mode;
        let mut m = MotorLoop::new(cfg, Calibration::serbot());
        // Events are built before counting: they arrive from another thread.
        let events: Vec<InferenceEvent> = (0..20).map(|i| chunk(i * 100)).collect();
        let mut events = events.into_iter();
        m.on_event(events.next().unwrap(), Timestamp(0));
        let before = ALLOCATIONS.load(Ordering::SeqCst);
        let mut moving = 0;
        for tick in 1..=2000u64 {
            let now = Timestamp(tick * 1_000_000);
            if tick % 100 == 0 {
                if let Some(e) = events.next() {
                    m.on_event(e, now);
                }
            }
            let out = m.tick(now, true, false);
            if out.wheels != [100; 3] {
                moving += 1;
            }
        }
        let allocated = ALLOCATIONS.load(Ordering::SeqCst) - before;
        assert_eq!(
            allocated, 0,
            "{mode:?}: {allocated} allocations in 2000 ticks"
        );
        assert!(
            moving > 1000,
            "{mode:?}: the ticks did real work ({moving} moving)"
        );
    }
}
