//! The two bits of systemd's notify protocol the service uses (sd_notify(3)):
//! `READY=1` once the model is loaded and the wheel link is open, and
//! `WATCHDOG=1` from the motor loop while it keeps its deadlines. Outside
//! systemd (no `NOTIFY_SOCKET`) both are no-ops.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

pub struct Notifier {
    socket: Option<(UnixDatagram, String)>,
}

impl Notifier {
    /// Reads the socket path systemd passes in `NOTIFY_SOCKET`.
    pub fn from_env() -> Self {
        let socket = std::env::var("NOTIFY_SOCKET")
            .ok()
            .filter(|p| p.starts_with('/')) // abstract sockets (@...) are not used by our unit
            .and_then(|p| UnixDatagram::unbound().ok().map(|s| (s, p)))
            // Non-blocking: the motor thread feeds the watchdog, and a
            // notify socket whose queue is full must not stall the loop
            // (a blocking send_to there hung the loop in a test).
            .filter(|(s, _)| s.set_nonblocking(true).is_ok());
        Self { socket }
    }

    pub fn is_active(&self) -> bool {
        self.socket.is_some()
    }

    pub fn notify(&self, message: &str) {
        if let Err(e) = self.try_notify(message) {
            tracing::warn!("sd_notify {message:?}: {e}");
        }
    }

    /// Send without logging (the motor thread counts failures instead);
    /// never blocks. Ok when there is no socket.
    pub fn try_notify(&self, message: &str) -> std::io::Result<()> {
        match &self.socket {
            Some((s, path)) => s.send_to(message.as_bytes(), path).map(|_| ()),
            None => Ok(()),
        }
    }

    /// Half the watchdog interval systemd asked for (`WATCHDOG_USEC`), if any.
    pub fn watchdog_period() -> Option<Duration> {
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        (usec > 0).then(|| Duration::from_micros(usec / 2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_reach_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            socket: Some((UnixDatagram::unbound().unwrap(), path.display().to_string())),
        };
        n.notify("READY=1");
        let mut buf = [0u8; 64];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");
        assert!(!Notifier { socket: None }.is_active());
    }

    /// Regression: a blocking send_to on a notify socket nobody reads hung
    /// the motor loop (found by the whole-loop allocation test).
    #[test]
    fn a_full_notify_socket_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let _server = UnixDatagram::bind(&path).unwrap(); // never read
        std::env::set_var("NOTIFY_SOCKET", &path);
        let n = Notifier::from_env();
        std::env::remove_var("NOTIFY_SOCKET");
        assert!(n.is_active());
        let mut failed = 0;
        for _ in 0..100_000 {
            if n.try_notify("WATCHDOG=1").is_err() {
                failed += 1;
            }
        }
        assert!(
            failed > 0,
            "the socket queue filled up and sends failed instead of blocking"
        );
    }
}
