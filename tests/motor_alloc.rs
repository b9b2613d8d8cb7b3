//! A steady-state motor tick allocates nothing (counting global allocator).

use std::time::Duration;

use mvla::action::{ActionChunk, InferenceEvent, StageTimings};
use mvla::clock::Timestamp;
use mvla::config::Config;
use mvla::control::motor::{DriveMode, MotorLoop};
use mvla::robot::calib::Calibration;

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

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
        let before = counting_alloc::thread_allocations();
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
        let allocated = counting_alloc::thread_allocations() - before;
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
