//! `cargo bench --bench motor_tick`: motor loop tick period error (how late
//! each tick starts after its absolute deadline) at 100 Hz and 500 Hz, idle
//! and with a busy thread loading the other core, and allocations per tick.
//! The loop is the real `MotorLoop` fed a chunk every 800 ms, sleeping with
//! `clock_nanosleep(TIMER_ABSTIME)`; no real-time priority (as in CI).
//!
//! Then the real motor and link threads (`MotorThread`, `LinkWorker`, the
//! logger) at 100 Hz with every core busy (as when inference saturates the
//! CPU), once on normal scheduling and once with SCHED_FIFO 60 for both
//! threads (`realtime_priority = 60`; needs root or RTPRIO, else reported as
//! refused): tick lateness p50/p99/max from the run summary.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mvla::action::{ActionChunk, InferenceEvent};
use mvla::clock::{Clock, MonotonicClock};
use mvla::config::Config;
use mvla::control::motor::MotorLoop;
use mvla::telemetry::LatencyHistogram;

#[path = "../tests/support/counting_alloc.rs"]
mod counting_alloc;

/// A thread that keeps one core busy until `stop`.
fn busy_thread(stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut x = 0u64;
        while !stop.load(Ordering::Relaxed) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            std::hint::black_box(x);
        }
    })
}

fn run(hz: u32, seconds: f64, load: bool) {
    let stop = Arc::new(AtomicBool::new(false));
    let loader = load.then(|| busy_thread(stop.clone()));
    let mut cfg = Config::builtin_default().motor;
    cfg.loop_hz = hz;
    let mut m = MotorLoop::new(cfg, Config::builtin_default().calib);
    let clock = MonotonicClock;
    let period = cfg.period();
    let ticks = (seconds * f64::from(hz)) as u64;
    let chunks: Vec<InferenceEvent> = (0..=(seconds / 0.8) as u64 + 1)
        .map(|i| {
            InferenceEvent::Chunk(ActionChunk::repeated(
                i,
                clock.now().plus(Duration::from_millis(800 * i)),
                Duration::from_millis(800),
                [1.15, 0.0],
                10,
            ))
        })
        .collect();
    let mut chunks = chunks.into_iter();
    let mut next_chunk_at = clock.now();
    let mut late = LatencyHistogram::new();
    let mut work = LatencyHistogram::new();
    let mut misses = 0u64;
    let mut deadline = clock.now().plus(period);
    let before = counting_alloc::allocations();
    for _ in 0..ticks {
        clock.sleep_until(deadline);
        let now = clock.now();
        late.record(now.saturating_since(deadline));
        if now >= next_chunk_at {
            if let Some(c) = chunks.next() {
                m.on_event(c, now);
            }
            next_chunk_at = now.plus(Duration::from_millis(800));
        }
        std::hint::black_box(m.tick(now, true, false));
        work.record(clock.now().saturating_since(now));
        deadline = deadline.plus(period);
        if clock.now() > deadline {
            misses += 1;
        }
    }
    let allocs = counting_alloc::allocations() - before;
    stop.store(true, Ordering::Relaxed);
    if let Some(h) = loader {
        h.join().unwrap();
    }
    let (l, w) = (late.summary(), work.summary());
    println!(
        "{hz:>4} Hz {:<14} ticks {ticks:>6}: period error p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; tick work p50 {:.4} ms; deadline misses {misses}; allocations/tick {:.3}",
        if load { "other core busy" } else { "idle" },
        l.p50_ms,
        l.p99_ms,
        l.max_ms,
        w.p50_ms,
        allocs as f64 / ticks as f64
    );
}

struct NullLink;

impl mvla::drive::MotorLink for NullLink {
    fn describe(&self) -> String {
        "null".into()
    }
    fn send(&mut self, _: [u8; 3]) -> Result<(), mvla::drive::LinkError> {
        Ok(())
    }
}

/// The motor thread as `mvla run` starts it, all cores loaded.
fn threads_under_load(seconds: f64, priority: u8) {
    let stop = Arc::new(AtomicBool::new(false));
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let loaders: Vec<_> = (0..cores).map(|_| busy_thread(stop.clone())).collect();
    let logger = mvla::rtlog::Logger::start().unwrap();
    let link = mvla::drive::LinkWorker::spawn_with(
        Box::new(NullLink),
        mvla::drive::LinkOptions {
            realtime_priority: priority,
            log: logger.queue(mvla::rtlog::DEFAULT_CAPACITY),
        },
    )
    .unwrap();
    let (tx, rx) = mvla::channel::latest();
    let flags = mvla::control::MotorFlags::default();
    flags
        .ready
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let clock: Arc<dyn Clock> = Arc::new(MonotonicClock);
    let motor = mvla::control::MotorThread::new(
        MotorLoop::new(
            Config::builtin_default().motor,
            Config::builtin_default().calib,
        ),
        rx,
        link,
        clock.clone(),
        flags.clone(),
        mvla::systemd::Notifier::from_env(),
        logger.queue(mvla::rtlog::DEFAULT_CAPACITY),
    );
    let handle = std::thread::spawn(move || motor.run(priority));
    let start = std::time::Instant::now();
    let mut i = 0;
    while start.elapsed().as_secs_f64() < seconds {
        tx.send(InferenceEvent::Chunk(ActionChunk::repeated(
            i,
            clock.now(),
            Duration::from_millis(800),
            [1.15, 0.0],
            10,
        )));
        i += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    flags.shutdown.store(true, Ordering::Relaxed);
    flags.exit.store(true, Ordering::Relaxed);
    let s = handle.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    for h in loaders {
        h.join().unwrap();
    }
    logger.shutdown();
    let l = s.tick_lateness;
    let sched = |x: &mvla::realtime::Scheduling| match &x.refused {
        Some(why) => format!(
            "{} (FIFO {} refused: {why})",
            x.policy, x.requested_priority
        ),
        None => format!("{} {}", x.policy, x.priority),
    };
    println!(
        "threads, {cores} cores busy, motor {} / link {}: ticks {}, lateness p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; deadline misses {}",
        sched(&s.scheduling),
        sched(&s.link.scheduling),
        s.ticks,
        l.p50_ms,
        l.p99_ms,
        l.max_ms,
        s.deadline_misses
    );
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let seconds = if quick { 0.2 } else { 10.0 };
    for hz in [100, 500] {
        for load in [false, true] {
            run(hz, seconds, load);
        }
    }
    for priority in [0, 60] {
        threads_under_load(seconds, priority);
    }
}
