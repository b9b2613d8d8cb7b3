//! The wheel link: Serbot frame encoding, the `MotorLink` trait, SLCAN over a
//! serial port (`slcan.rs`), the link worker thread, and an in-tree board
//! emulator on a pty (`emulator.rs`) for tests and the default config.

pub mod emulator;
pub mod slcan;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;

use crate::channel::{latest, Latest};

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

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum LinkError {
    #[error("serial port {port}: {message}")]
    Io { port: String, message: String },
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
}

/// Runs a `MotorLink` on its own thread so the motor loop never blocks on
/// serial I/O: the loop posts the newest command; the worker sends it.
pub struct LinkWorker {
    commands: Latest<Option<[u8; 3]>>,
    pub status: Arc<LinkStatus>,
    handle: Option<JoinHandle<LinkSummary>>,
}

impl LinkWorker {
    pub fn spawn(mut link: Box<dyn MotorLink>) -> std::io::Result<Self> {
        let (tx, rx) = latest::<Option<[u8; 3]>>();
        let status = Arc::new(LinkStatus::default());
        let st = status.clone();
        let handle = std::thread::Builder::new()
            .name("mvla-link".into())
            .spawn(move || {
                let mut summary = LinkSummary {
                    link: link.describe(),
                    ..Default::default()
                };
                let mut log = crate::telemetry::RateLimit::new(Duration::from_secs(1));
                // `None` = shut down: command stop, then exit.
                while let Ok(Some(wheels)) = rx.recv() {
                    match link.send(wheels) {
                        Ok(()) => {
                            st.up.store(true, Ordering::Relaxed);
                            st.frames_sent.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            st.up.store(false, Ordering::Relaxed);
                            st.errors.fetch_add(1, Ordering::Relaxed);
                            if let Some(suppressed) = log.allow() {
                                tracing::warn!(suppressed, "wheel link: {e}");
                            }
                        }
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
            commands: tx,
            status,
            handle: Some(handle),
        })
    }

    /// Post the newest command (never blocks).
    pub fn post(&self, wheels: [u8; 3]) {
        if self.commands.send(Some(wheels)).is_some() {
            self.status
                .commands_superseded
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn is_up(&self) -> bool {
        self.status.up.load(Ordering::Relaxed)
    }

    /// Stop the worker: it commands stop on the link, then exits.
    pub fn shutdown(mut self) -> LinkSummary {
        self.commands.send(None);
        self.handle
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for LinkWorker {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            self.commands.send(None);
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_frame_matches_upstream() {
        assert_eq!(serbot_frame_data(STOP_WHEELS), [0x07, 0x64, 0x64, 0x64]);
    }
}
