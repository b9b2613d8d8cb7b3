//! Logging for the real-time threads (motor loop, wheel link) without doing
//! logging I/O on them.
//!
//! A real-time thread pushes a typed event into a bounded lock-free queue
//! ([`RtLog::push`]: one compare-and-swap, no allocation, no lock, no system
//! call, never blocks); the logger thread ([`Logger`]) pops the events every
//! [`LOGGER_POLL`] and writes them with `tracing` (stderr or the journal).
//! When the queue is full the event is dropped and counted; the count is
//! logged with the next event that gets through, so nothing is lost silently.
//!
//! Producers that are not real-time (calibration, tests) can use
//! [`RtLog::direct`], which logs on the caller's thread.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;

/// How often the logger thread drains the queues. State changes reach the
/// log at most this late; the real-time threads never wake the logger (that
/// would be a futex system call on their side). 20 ms is well below what an
/// operator reading a journal notices and a 2-events-per-tick burst at
/// 100 Hz fills only 4 slots of a [`DEFAULT_CAPACITY`] queue in that time.
pub const LOGGER_POLL: Duration = Duration::from_millis(20);

/// Queue slots per producer: a failsafe level can change at most once per
/// tick, so 256 slots hold 2.5 s of changes at 100 Hz even if the logger
/// thread were starved that long.
pub const DEFAULT_CAPACITY: usize = 256;

/// An event a real-time thread hands to the logger thread.
pub trait RtEvent: Send + 'static {
    /// Write the event (runs on the logger thread). `dropped` = events of
    /// this queue dropped because it was full since the last one written.
    fn emit(&self, dropped: u64);
}

struct Queue<E> {
    events: ArrayQueue<E>,
    dropped: AtomicU64,
}

trait Drain: Send + Sync {
    /// Write every queued event; the number written.
    fn drain(&self) -> usize;
}

impl<E: RtEvent> Drain for Queue<E> {
    fn drain(&self) -> usize {
        let mut n = 0;
        while let Some(e) = self.events.pop() {
            e.emit(self.dropped.swap(0, Ordering::Relaxed));
            n += 1;
        }
        n
    }
}

/// The producer side: cheap to clone, one queue per event type.
pub struct RtLog<E> {
    queue: Option<Arc<Queue<E>>>,
}

impl<E> Clone for RtLog<E> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<E: RtEvent> RtLog<E> {
    /// Log on the caller's thread (for producers that are not real-time).
    pub fn direct() -> Self {
        Self { queue: None }
    }

    /// Hand `event` to the logger thread; never blocks or allocates. A full
    /// queue drops the event and counts it.
    pub fn push(&self, event: E) {
        match &self.queue {
            Some(q) => {
                if q.events.push(event).is_err() {
                    q.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => event.emit(0),
        }
    }

    /// Events dropped (queue full) and not yet reported.
    pub fn dropped(&self) -> u64 {
        self.queue
            .as_ref()
            .map_or(0, |q| q.dropped.load(Ordering::Relaxed))
    }
}

/// The logger thread and the queues it drains.
pub struct Logger {
    queues: Arc<Mutex<Vec<Arc<dyn Drain>>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Logger {
    /// Start the logger thread (normal scheduling: it is not real-time).
    pub fn start() -> std::io::Result<Self> {
        let queues: Arc<Mutex<Vec<Arc<dyn Drain>>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let (queues, stop) = (queues.clone(), stop.clone());
            std::thread::Builder::new()
                .name("mvla-log".into())
                .spawn(move || loop {
                    // Read the flag before draining: whatever was pushed
                    // before `stop` was set is written by this last pass.
                    let stopping = stop.load(Ordering::Acquire);
                    // The lock is the logger's own (queues are added at
                    // start-up); the real-time threads never take it. An idle
                    // pass allocates nothing.
                    for q in queues.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                        q.drain();
                    }
                    if stopping {
                        break;
                    }
                    std::thread::park_timeout(LOGGER_POLL);
                })?
        };
        Ok(Self {
            queues,
            stop,
            handle: Some(handle),
        })
    }

    /// A new queue of `capacity` events drained by this logger.
    pub fn queue<E: RtEvent>(&self, capacity: usize) -> RtLog<E> {
        let q = Arc::new(Queue {
            events: ArrayQueue::new(capacity.max(1)),
            dropped: AtomicU64::new(0),
        });
        self.queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(q.clone());
        RtLog { queue: Some(q) }
    }

    /// Write what is queued and stop the thread (call after the producers stopped).
    pub fn shutdown(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        if let Some(h) = self.handle.take() {
            self.stop.store(true, Ordering::Release);
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

impl Drop for Logger {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counted(Arc<Mutex<Vec<(u32, u64)>>>, u32);
    impl RtEvent for Counted {
        fn emit(&self, dropped: u64) {
            self.0.lock().unwrap().push((self.1, dropped));
        }
    }

    #[test]
    fn every_event_pushed_before_shutdown_is_written_in_order() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let logger = Logger::start().unwrap();
        let log = logger.queue::<Counted>(64);
        let producer = {
            let (log, seen) = (log.clone(), seen.clone());
            std::thread::spawn(move || {
                for i in 0..5000u32 {
                    log.push(Counted(seen.clone(), i));
                    if i % 32 == 0 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            })
        };
        producer.join().unwrap();
        // Once the logger has caught up, an event pushed right before
        // shutdown is written by its last pass.
        while !log.queue.as_ref().unwrap().events.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
        log.push(Counted(seen.clone(), 5000));
        logger.shutdown();
        let seen = seen.lock().unwrap();
        // In order, none twice; what is missing was dropped and reported.
        let ids: Vec<u32> = seen.iter().map(|(i, _)| *i).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "order kept");
        let reported: u64 = seen.iter().map(|(_, d)| d).sum::<u64>() + log.dropped();
        assert_eq!(
            ids.len() as u64 + reported,
            5001,
            "written + dropped = pushed"
        );
        assert_eq!(
            *ids.last().unwrap(),
            5000,
            "the last event is written at shutdown"
        );
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        // A queue no logger drains yet: the producer must not block.
        let queue = Arc::new(Queue {
            events: ArrayQueue::new(4),
            dropped: AtomicU64::new(0),
        });
        let log = RtLog {
            queue: Some(queue.clone()),
        };
        for i in 0..10 {
            log.push(Counted(seen.clone(), i));
        }
        assert_eq!(log.dropped(), 6);
        assert_eq!(queue.drain(), 4);
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
        assert_eq!(seen[0].1, 6, "the drop count goes out with the next event");
        assert_eq!(log.dropped(), 0);
    }

    #[test]
    fn direct_logs_on_the_callers_thread() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        RtLog::direct().push(Counted(seen.clone(), 7));
        assert_eq!(*seen.lock().unwrap(), vec![(7, 0)]);
    }
}
