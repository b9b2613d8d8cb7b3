//! The whole motor thread loop allocates nothing: the motor thread itself,
//! the link thread it posts to and the idle logger thread. Counted with the
//! process-wide counter, so this file holds exactly one test (the test
//! harness's own thread allocates when another test finishes).

use std::time::Duration;

use mvla::action::{ActionChunk, InferenceEvent};
use mvla::clock::Timestamp;
use mvla::config::Config;
use mvla::control::motor::MotorLoop;
use mvla::robot::calib::Calibration;

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

fn chunk(t0_ms: u64) -> InferenceEvent {
    InferenceEvent::Chunk(ActionChunk::repeated(
        t0_ms,
        Timestamp(t0_ms * 1_000_000),
        Duration::from_millis(800),
        [1.15, 0.3],
        10,
    ))
}

struct CountingLink(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl mvla::drive::MotorLink for CountingLink {
    fn describe(&self) -> String {
        "counting".into()
    }
    fn send(&mut self, _wheels: [u8; 3]) -> Result<(), mvla::drive::LinkError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

/// The whole motor thread loop, not only `tick()`: taking events from the
/// channel, posting to the link worker (and the link thread sending), level
/// changes handed to the logger, the systemd watchdog, deadline keeping.
#[test]
fn the_whole_motor_thread_loop_does_not_allocate() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use mvla::clock::{Clock, ManualClock};
    use mvla::control::{MotorFlags, MotorThread};
    use mvla::drive::{LinkOptions, LinkWorker};

    // A watchdog socket so the WATCHDOG=1 path runs too.
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify");
    let server = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    server.set_nonblocking(true).unwrap();
    // Read by `Notifier::from_env` and `MotorThread::new` (half of WATCHDOG_USEC).
    std::env::set_var("NOTIFY_SOCKET", &socket_path);
    std::env::set_var("WATCHDOG_USEC", "200000");
    let notifier = mvla::systemd::Notifier::from_env();

    let logger = mvla::rtlog::Logger::start().unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let link = LinkWorker::spawn_with(
        Box::new(CountingLink(sent.clone())),
        LinkOptions {
            realtime_priority: 0,
            log: logger.queue(64),
        },
    )
    .unwrap();
    let clock = Arc::new(ManualClock::new(Timestamp(0)));
    let (tx, rx) = mvla::channel::latest();
    let flags = MotorFlags::default();
    flags
        .ready
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let cfg = Config::builtin_default().motor;
    let mut motor = MotorThread::new(
        MotorLoop::new(cfg, Calibration::serbot()),
        rx,
        link,
        clock.clone(),
        flags.clone(),
        notifier,
        logger.queue(64),
    );
    std::env::remove_var("NOTIFY_SOCKET");
    std::env::remove_var("WATCHDOG_USEC");
    let events: Vec<InferenceEvent> = (0..40).map(|i| chunk(i * 100)).collect();
    let mut events = events.into_iter();
    // Warm up: first chunk, first send, first log events, then count.
    for _ in 0..50 {
        let d = motor.cycle().deadline;
        clock.sleep_until(d);
    }
    tx.send(events.next().unwrap());
    for _ in 0..50 {
        let d = motor.cycle().deadline;
        clock.sleep_until(d);
    }
    // The link thread's start-up (name, scheduling report) allocates: wait
    // until it has sent frames, i.e. it is in its steady loop.
    while sent.load(Ordering::Relaxed) < 10 {
        let d = motor.cycle().deadline;
        clock.sleep_until(d);
        std::thread::sleep(Duration::from_millis(1));
    }
    // The logger thread's first write sets up its thread-locals (tracing's
    // dispatch state): let it drain the warm-up's level changes first.
    std::thread::sleep(mvla::rtlog::LOGGER_POLL * 5);
    let before_thread = counting_alloc::thread_allocations();
    let before_all = counting_alloc::allocations();
    for tick in 0..3000u64 {
        // Chunks every second, except a 2 s gap in the middle: the action goes
        // stale and the failsafe changes level twice (logged through the queue).
        let now = clock.now();
        if tick % 100 == 0 && !(1000..1200).contains(&tick) {
            if let Some(InferenceEvent::Chunk(mut c)) = events.next() {
                c.t0 = now;
                tx.send(InferenceEvent::Chunk(c));
            }
        }
        let d = motor.cycle().deadline;
        clock.sleep_until(d);
        // Let the link thread keep up, as it does in real time.
        if tick % 10 == 0 {
            std::thread::yield_now();
        }
    }
    // The window's level changes are written by the logger thread within
    // LOGGER_POLL: let it drain them, so their writing is counted too.
    std::thread::sleep(mvla::rtlog::LOGGER_POLL * 5);
    let motor_thread = counting_alloc::thread_allocations() - before_thread;
    let all_threads = counting_alloc::allocations() - before_all;
    let summary = motor.finish();
    logger.shutdown();
    assert_eq!(
        motor_thread, 0,
        "{motor_thread} allocations on the motor thread"
    );
    assert_eq!(
        all_threads, 0,
        "{all_threads} allocations on the motor, link and logger threads"
    );
    // The window did real work: moving, stopping, watchdog, link frames.
    assert!(summary.ticks_moving > 1500, "{summary:?}");
    assert!(summary.ticks_stop + summary.ticks_hold > 50, "{summary:?}");
    let mut buf = [0u8; 32];
    let mut feeds = 0;
    while let Ok(n) = server.recv(&mut buf) {
        assert_eq!(&buf[..n], b"WATCHDOG=1");
        feeds += 1;
    }
    assert!(
        feeds >= 10,
        "{feeds} watchdog feeds over 31 s of manual time"
    );
    assert!(
        sent.load(Ordering::Relaxed) > 10,
        "the link thread sent frames"
    );
}
