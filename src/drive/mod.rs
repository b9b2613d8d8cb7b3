//! The wheel link: Serbot frame encoding, the `MotorLink` trait, SLCAN over a
//! serial port (`slcan.rs`), the link worker thread, and an in-tree board
//! emulator on a pty (`emulator.rs`) for tests and the default config.

pub mod crash_guard;
pub mod emulator;
pub mod slcan;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;

use crate::realtime::Scheduling;
use crate::rtlog::RtLog;

/// Serbot motor board CAN id (UPSTREAM §2).
pub const SERBOT_CAN_ID: u16 = 0x010;
/// Wheel mask: left 0x01 | right 0x02 | rear 0x04.
pub const SERBOT_WHEEL_MASK: u8 = 0x07;
/// Centre byte = wheel stopped.
pub const STOP_BYTE: u8 = 100;
pub const STOP_WHEELS: [u8; 3] = [STOP_BYTE; 3];

/// The 4 data bytes of the Serbot wheel frame: `[0x07, w0, w1, w2]`.
pub fn serbot_frame_data(wheels: [u8; 3]) -> [u8; 4] {
    [SERBOT_WHEEL_MASK, wheels[0], wheels[1], wheels[2]]
}

#[derive(Debug, thiserror::Error, Clone)]
pub enum LinkError {
    #[error("serial port {port}")]
    Io {
        port: String,
        #[source]
        source: std::sync::Arc<std::io::Error>,
    },
    #[error("adapter answered BEL (error) to {command:?}")]
    Nack { command: String },
    #[error("no reply from the adapter within {0:?}")]
    Timeout(Duration),
    #[error("unexpected reply bytes {0:?}")]
    Garbage(Vec<u8>),
    #[error("link is down (reconnecting)")]
    Down,
}

/// Something that can put a wheel command on the robot.
pub trait MotorLink: Send {
    fn describe(&self) -> String;
    /// Send one wheel command; an error means it may not have arrived.
    fn send(&mut self, wheels: [u8; 3]) -> Result<(), LinkError>;
    /// Best effort: command stop several times and flush (shutdown, panic).
    fn stop(&mut self) {
        for _ in 0..3 {
            if self.send(STOP_WHEELS).is_ok() {
                return;
            }
        }
    }
}

/// Link health shared with the motor loop (atomics only).
#[derive(Debug, Default)]
pub struct LinkStatus {
    pub up: AtomicBool,
    pub frames_sent: AtomicU64,
    pub errors: AtomicU64,
    pub commands_superseded: AtomicU64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LinkSummary {
    pub link: String,
    pub frames_sent: u64,
    pub errors: u64,
    pub commands_superseded: u64,
    pub final_stop_sent: bool,
    /// How the link thread was scheduled.
    pub scheduling: Scheduling,
}

/// The single-slot mailbox between the motor thread and the link thread:
/// the newest wheel command, packed into one atomic word (bit 32 = unread,
/// bits 0..24 = the three wheel bytes). Posting is one atomic swap and
/// taking is one atomic swap: no lock, no allocation, never blocks, and a
/// reader can never see a torn command.
#[derive(Debug, Default)]
pub struct CommandSlot {
    word: AtomicU64,
}

const UNREAD: u64 = 1 << 32;

impl CommandSlot {
    /// Store `wheels` as the newest command; `true` if it replaced one the
    /// link thread had not taken yet.
    pub fn post(&self, wheels: [u8; 3]) -> bool {
        let word = UNREAD
            | u64::from(wheels[0])
            | (u64::from(wheels[1]) << 8)
            | (u64::from(wheels[2]) << 16);
        self.word.swap(word, Ordering::AcqRel) & UNREAD != 0
    }

    /// Take the newest command if there is one not taken yet.
    pub fn take(&self) -> Option<[u8; 3]> {
        let word = self.word.swap(0, Ordering::AcqRel);
        (word & UNREAD != 0).then_some([word as u8, (word >> 8) as u8, (word >> 16) as u8])
    }
}

/// A state change of the link, logged by the logger thread (never on the
/// link thread, which may run at real-time priority).
#[derive(Debug)]
pub enum LinkEvent {
    /// The first frame went through, or frames go through again.
    Up { link: String },
    /// A send failed after frames went through: the motor loop stops the robot.
    Down { error: LinkError },
    /// Further errors while down (at most one per second is logged).
    Error { error: LinkError, suppressed: u64 },
}

impl crate::rtlog::RtEvent for LinkEvent {
    fn emit(&self, dropped: u64) {
        match self {
            Self::Up { link } => tracing::info!(link, dropped, "wheel link up"),
            Self::Down { error } => tracing::warn!(
                dropped,
                "wheel link down: {error}",
                error = crate::error::Report(error)
            ),
            Self::Error { error, suppressed } => {
                tracing::warn!(
                    suppressed,
                    dropped,
                    "wheel link: {error}",
                    error = crate::error::Report(error)
                )
            }
        }
    }
}

/// How the link thread runs.
#[derive(Clone)]
pub struct LinkOptions {
    /// SCHED_FIFO priority of the link thread (0 = normal scheduling). The
    /// link thread sends the stop frames, so it should not wait behind
    /// inference when the motor loop is real-time.
    pub realtime_priority: u8,
    /// Where its state changes are logged.
    pub log: RtLog<LinkEvent>,
}

impl Default for LinkOptions {
    fn default() -> Self {
        Self {
            realtime_priority: 0,
            log: RtLog::direct(),
        }
    }
}

/// Runs a `MotorLink` on its own thread so the motor loop never blocks on
/// serial I/O: the loop posts the newest command into a [`CommandSlot`] and
/// unparks the link thread; the worker sends it.
pub struct LinkWorker {
    slot: Arc<CommandSlot>,
    stop: Arc<AtomicBool>,
    pub status: Arc<LinkStatus>,
    thread: std::thread::Thread,
    handle: Option<JoinHandle<LinkSummary>>,
}

/// Longest the idle link thread sleeps without a command. Waking it is the
/// poster's job ([`LinkWorker::post`]); this bound only limits the damage of
/// a lost wake-up, which the parking protocol does not have.
const LINK_IDLE_WAKE: Duration = Duration::from_millis(100);

impl LinkWorker {
    pub fn spawn(link: Box<dyn MotorLink>) -> std::io::Result<Self> {
        Self::spawn_with(link, LinkOptions::default())
    }

    pub fn spawn_with(mut link: Box<dyn MotorLink>, options: LinkOptions) -> std::io::Result<Self> {
        let slot = Arc::new(CommandSlot::default());
        let stop = Arc::new(AtomicBool::new(false));
        let status = Arc::new(LinkStatus::default());
        let (st, slot_w, stop_w) = (status.clone(), slot.clone(), stop.clone());
        let handle = std::thread::Builder::new()
            .name("mvla-link".into())
            .spawn(move || {
                let scheduling =
                    crate::realtime::set_thread_priority(options.realtime_priority, "mvla-link");
                let log = options.log;
                let mut summary = LinkSummary {
                    link: link.describe(),
                    scheduling,
                    ..Default::default()
                };
                let mut error_log = crate::telemetry::RateLimit::new(Duration::from_secs(1));
                let mut was_up = false;
                loop {
                    // `stop` before `take`: a command posted before shutdown
                    // is still sent by this pass, then the loop ends.
                    let stopping = stop_w.load(Ordering::Acquire);
                    if let Some(wheels) = slot_w.take() {
                        match link.send(wheels) {
                            Ok(()) => {
                                st.up.store(true, Ordering::Relaxed);
                                st.frames_sent.fetch_add(1, Ordering::Relaxed);
                                if !was_up {
                                    log.push(LinkEvent::Up {
                                        link: summary.link.clone(),
                                    });
                                    was_up = true;
                                }
                            }
                            Err(error) => {
                                st.up.store(false, Ordering::Relaxed);
                                st.errors.fetch_add(1, Ordering::Relaxed);
                                if was_up {
                                    log.push(LinkEvent::Down { error });
                                    was_up = false;
                                } else if let Some(suppressed) = error_log.allow() {
                                    log.push(LinkEvent::Error { error, suppressed });
                                }
                            }
                        }
                    } else if stopping {
                        break;
                    } else {
                        // A post between `take` and here leaves the unpark
                        // token set, so this returns at once: no lost wake-up.
                        std::thread::park_timeout(LINK_IDLE_WAKE);
                    }
                }
                link.stop();
                summary.final_stop_sent = true;
                summary.frames_sent = st.frames_sent.load(Ordering::Relaxed);
                summary.errors = st.errors.load(Ordering::Relaxed);
                summary.commands_superseded = st.commands_superseded.load(Ordering::Relaxed);
                summary
            })?;
        Ok(Self {
            slot,
            stop,
            status,
            thread: handle.thread().clone(),
            handle: Some(handle),
        })
    }

    /// Post the newest command: one atomic swap, then `unpark` (an atomic
    /// swap, plus a FUTEX_WAKE system call only when the link thread is
    /// asleep). Takes no lock, never blocks, never allocates.
    pub fn post(&self, wheels: [u8; 3]) {
        if self.slot.post(wheels) {
            self.status
                .commands_superseded
                .fetch_add(1, Ordering::Relaxed);
        }
        self.thread.unpark();
    }

    pub fn is_up(&self) -> bool {
        self.status.up.load(Ordering::Relaxed)
    }

    /// Stop the worker: it sends the command still in the slot, commands
    /// stop on the link, then exits.
    pub fn shutdown(mut self) -> LinkSummary {
        self.finish().unwrap_or_default()
    }

    fn finish(&mut self) -> Option<LinkSummary> {
        let h = self.handle.take()?;
        self.stop.store(true, Ordering::Release);
        self.thread.unpark();
        h.join().ok()
    }
}

impl Drop for LinkWorker {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_frame_matches_upstream() {
        assert_eq!(serbot_frame_data(STOP_WHEELS), [0x07, 0x64, 0x64, 0x64]);
    }

    #[test]
    fn the_slot_holds_the_newest_command_once() {
        let slot = CommandSlot::default();
        assert_eq!(slot.take(), None);
        assert!(!slot.post([1, 2, 3]));
        assert!(slot.post([0, 255, 100]), "replaced an unread command");
        assert_eq!(slot.take(), Some([0, 255, 100]));
        assert_eq!(slot.take(), None, "taken once");
        assert!(!slot.post([100, 100, 100]));
        assert_eq!(slot.take(), Some(STOP_WHEELS));
    }

    /// One producer posts 200k distinct commands as fast as it can while the
    /// consumer takes them: every command taken is one that was posted, in
    /// posting order (never torn, never older than one seen before), and the
    /// last one posted is always delivered.
    #[test]
    fn the_slot_is_consistent_under_contention() {
        const N: u32 = 200_000;
        let slot = Arc::new(CommandSlot::default());
        let done = Arc::new(AtomicBool::new(false));
        let encode = |i: u32| {
            [
                (i & 0xff) as u8,
                ((i >> 8) & 0xff) as u8,
                ((i >> 16) & 0xff) as u8,
            ]
        };
        let decode =
            |w: [u8; 3]| u32::from(w[0]) | (u32::from(w[1]) << 8) | (u32::from(w[2]) << 16);
        let consumer = {
            let (slot, done) = (slot.clone(), done.clone());
            std::thread::spawn(move || {
                let mut taken = Vec::new();
                loop {
                    let finished = done.load(Ordering::Acquire);
                    if let Some(w) = slot.take() {
                        taken.push(decode(w));
                    } else if finished {
                        return taken;
                    }
                }
            })
        };
        let mut superseded = 0u64;
        for i in 1..=N {
            superseded += u64::from(slot.post(encode(i)));
        }
        done.store(true, Ordering::Release);
        let taken = consumer.join().unwrap();
        assert!(
            taken.windows(2).all(|w| w[0] < w[1]),
            "in posting order, none twice"
        );
        assert!(
            taken.iter().all(|&i| (1..=N).contains(&i)),
            "only posted commands"
        );
        assert_eq!(*taken.last().unwrap(), N, "the newest command is delivered");
        assert_eq!(
            taken.len() as u64 + superseded,
            u64::from(N),
            "taken + superseded = posted"
        );
    }

    struct Recording(Arc<std::sync::Mutex<Vec<[u8; 3]>>>);
    impl MotorLink for Recording {
        fn describe(&self) -> String {
            "recording".into()
        }
        fn send(&mut self, wheels: [u8; 3]) -> Result<(), LinkError> {
            self.0.lock().unwrap().push(wheels);
            Ok(())
        }
    }

    #[test]
    fn the_worker_sends_the_last_command_and_stop_at_shutdown() {
        let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
        let worker = LinkWorker::spawn(Box::new(Recording(sent.clone()))).unwrap();
        for i in 0..50u8 {
            worker.post([i, i, i]);
        }
        let summary = worker.shutdown();
        let sent = sent.lock().unwrap();
        assert_eq!(
            sent[sent.len() - 2],
            [49, 49, 49],
            "the newest command went out"
        );
        assert_eq!(*sent.last().unwrap(), STOP_WHEELS, "then stop");
        assert!(summary.final_stop_sent);
        assert_eq!(summary.frames_sent + summary.commands_superseded, 50);
    }

    #[test]
    fn the_link_thread_runs_at_the_configured_priority() {
        let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
        let worker = LinkWorker::spawn_with(
            Box::new(Recording(sent)),
            LinkOptions {
                realtime_priority: 20,
                ..Default::default()
            },
        )
        .unwrap();
        let s = worker.shutdown().scheduling;
        assert_eq!(s.requested_priority, 20);
        match &s.refused {
            None => assert_eq!((s.policy.as_str(), s.priority), ("SCHED_FIFO", 20)),
            Some(why) => {
                eprintln!("SCHED_FIFO not permitted here ({why})");
                assert_eq!(s.policy, "SCHED_OTHER");
            }
        }
    }
}
