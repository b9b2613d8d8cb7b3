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
            .and_then(|p| UnixDatagram::unbound().ok().map(|s| (s, p)));
        Self { socket }
    }

    pub fn is_active(&self) -> bool {
        self.socket.is_some()
    }

    pub fn notify(&self, message: &str) {
        if let Some((s, path)) = &self.socket {
            if let Err(e) = s.send_to(message.as_bytes(), path) {
                tracing::warn!("sd_notify {message:?}: {e}");
            }
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
}
