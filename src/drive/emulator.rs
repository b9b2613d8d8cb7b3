//! Serbot board emulator: the adapter side of SLCAN on a pty pair.
//!
//! Opens a pseudo-terminal; the controller opens the slave path like a USB
//! serial adapter. The emulator parses SLCAN commands, answers like the
//! adapter (`\r` OK, BEL error), decodes Serbot wheel frames
//! ([`BoardProtocol`], also used in-process by the lock-step simulator), hands
//! each wheel frame to the base it drives ([`SimBase`]: the simulator's base,
//! or a noise-free one), keeps a timestamped log of every command, and can
//! inject faults (BEL replies, garbage, stalls, disconnect).

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};

use super::{SERBOT_CAN_ID, SERBOT_WHEEL_MASK};
use crate::clock::{Clock, MonotonicClock, Timestamp};
use crate::robot::calib::Calibration;
use crate::sim::base::SimBase;
use crate::sim::world::Pose;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    #[default]
    None,
    /// Answer every command with BEL.
    BelReplies,
    /// Answer with bytes that are not SLCAN.
    Garbage,
    /// Stop reading and answering (a hung adapter).
    Stall,
}

/// One command as received.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// Monotonic-clock time of arrival (comparable with capture timestamps).
    pub at: Timestamp,
    pub command: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
pub struct EmulatorState {
    pub commands: Vec<Received>,
    /// Decoded wheel frames `(time, [w0, w1, w2])`.
    pub wheel_frames: Vec<(Timestamp, [u8; 3])>,
    pub open: bool,
    pub bitrate_code: Option<char>,
    /// Base pose (x m, y m, heading rad) when the last wheel frame arrived.
    pub pose: (f64, f64, f64),
    pub fault: Fault,
    /// Frames that arrived while the channel was closed, malformed, or with another id.
    pub rejected: u64,
}

pub struct BoardEmulator {
    slave_path: PathBuf,
    state: Arc<Mutex<EmulatorState>>,
    base: Arc<Mutex<SimBase>>,
    stop: Arc<AtomicBool>,
    disconnect: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Parse `tIIILDD..` (without the trailing CR).
fn parse_t(cmd: &[u8]) -> Option<(u16, heapless::Vec<u8, 8>)> {
    if cmd.len() < 5 || cmd[0] != b't' {
        return None;
    }
    let id = (u16::from(hex_val(cmd[1])?) << 8)
        | (u16::from(hex_val(cmd[2])?) << 4)
        | u16::from(hex_val(cmd[3])?);
    let len = usize::from(hex_val(cmd[4])?);
    if len > 8 || cmd.len() != 5 + 2 * len {
        return None;
    }
    let mut data = heapless::Vec::new();
    for i in 0..len {
        let b = (hex_val(cmd[5 + 2 * i])? << 4) | hex_val(cmd[6 + 2 * i])?;
        data.push(b).ok()?;
    }
    Some((id, data))
}

/// The adapter side of SLCAN plus the Serbot board's frame check: one
/// complete command in (without its CR), the reply bytes and the wheel bytes
/// it carried out. Pure (no I/O, no clock), so the pty emulator and the
/// lock-step simulator decode exactly the same way.
#[derive(Debug, Clone, Default)]
pub struct BoardProtocol {
    pub open: bool,
    pub bitrate_code: Option<char>,
    /// Frames that arrived while the channel was closed, malformed, or with another id.
    pub rejected: u64,
}

impl BoardProtocol {
    pub fn command(&mut self, line: &[u8]) -> (&'static [u8], Option<[u8; 3]>) {
        match line.first() {
            Some(b'S') if line.len() == 2 => {
                self.bitrate_code = Some(line[1] as char);
                (b"\r", None)
            }
            Some(b'O') if line.len() == 1 => {
                self.open = true;
                (b"\r", None)
            }
            Some(b'C') if line.len() == 1 => {
                self.open = false;
                (b"\r", None)
            }
            Some(b't') => match parse_t(line) {
                Some((id, data))
                    if self.open
                        && id == SERBOT_CAN_ID
                        && data.len() == 4
                        && data[0] == SERBOT_WHEEL_MASK =>
                {
                    (b"\r", Some([data[1], data[2], data[3]]))
                }
                _ => {
                    self.rejected += 1;
                    (b"\x07", None)
                }
            },
            _ => (b"\x07", None),
        }
    }
}

impl BoardEmulator {
    /// Start the emulator with a noise-free base at the origin; `calib`
    /// decodes wheel bytes into speeds for the pose.
    pub fn start(calib: Calibration) -> std::io::Result<Self> {
        let base = SimBase::ideal(calib, Pose::default(), MonotonicClock.now());
        Self::start_with_base(Arc::new(Mutex::new(base)))
    }

    /// Start the emulator driving `base` (the simulator's, shared with its
    /// camera and judge). Wheel frames are applied at their arrival time on
    /// the monotonic clock.
    pub fn start_with_base(base: Arc<Mutex<SimBase>>) -> std::io::Result<Self> {
        let pty = nix::pty::openpty(None, None).map_err(std::io::Error::from)?;
        // Raw mode on the slave: no CR/NL translation, no echo.
        let mut t = tcgetattr(pty.slave.as_fd()).map_err(std::io::Error::from)?;
        cfmakeraw(&mut t);
        tcsetattr(pty.slave.as_fd(), SetArg::TCSANOW, &t).map_err(std::io::Error::from)?;
        let slave_path = nix::unistd::ttyname(pty.slave.as_fd()).map_err(std::io::Error::from)?;
        let state = Arc::new(Mutex::new(EmulatorState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let disconnect = Arc::new(AtomicBool::new(false));
        let (st, sp, dc, b) = (
            state.clone(),
            stop.clone(),
            disconnect.clone(),
            base.clone(),
        );
        let master: OwnedFd = pty.master;
        // Keep our slave fd open so the pty survives the controller closing it.
        let slave_keepalive: OwnedFd = pty.slave;
        let handle = std::thread::Builder::new()
            .name("serbot-emulator".into())
            .spawn(move || {
                run(master, st, sp, dc, b);
                drop(slave_keepalive);
            })?;
        Ok(Self {
            slave_path,
            state,
            base,
            stop,
            disconnect,
            handle: Some(handle),
        })
    }

    /// The path the controller opens as its serial port.
    pub fn port_path(&self) -> &std::path::Path {
        &self.slave_path
    }

    pub fn set_fault(&self, fault: Fault) {
        self.state.lock().expect("emulator state").fault = fault;
    }

    /// Close the adapter side (like pulling the USB cable).
    pub fn disconnect(&self) {
        self.disconnect.store(true, Ordering::SeqCst);
    }

    pub fn snapshot(&self) -> EmulatorState {
        self.state.lock().expect("emulator state").clone()
    }

    /// The base the wheel frames drive.
    pub fn base(&self) -> &Arc<Mutex<SimBase>> {
        &self.base
    }
}

impl Drop for BoardEmulator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn run(
    master: OwnedFd,
    state: Arc<Mutex<EmulatorState>>,
    stop: Arc<AtomicBool>,
    disconnect: Arc<AtomicBool>,
    base: Arc<Mutex<SimBase>>,
) {
    let mut file = std::fs::File::from(master);
    let mut line: Vec<u8> = Vec::with_capacity(64);
    let mut buf = [0u8; 256];
    let mut protocol = BoardProtocol::default();
    while !stop.load(Ordering::SeqCst) {
        if disconnect.load(Ordering::SeqCst) {
            return; // dropping the master fd hangs up the pty
        }
        if state.lock().expect("emulator state").fault == Fault::Stall {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let ready = {
            let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
            poll(&mut fds, 10u16).unwrap_or(0)
        };
        if ready <= 0 {
            continue;
        }
        let n = match file.read(&mut buf) {
            Ok(0) => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            Ok(n) => n,
            // EIO: no process has the slave open right now; wait for one.
            Err(_) => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        for &b in &buf[..n] {
            if b != b'\r' {
                line.push(b);
                continue;
            }
            let now = MonotonicClock.now();
            let reply: &[u8] = {
                let mut s = state.lock().expect("emulator state");
                s.commands.push(Received {
                    at: now,
                    command: line.clone(),
                });
                match s.fault {
                    // Hung since the bytes were read: received, never answered.
                    Fault::Stall => b"",
                    Fault::BelReplies => b"\x07",
                    Fault::Garbage => b"?!#\r",
                    _ => {
                        let (reply, wheels) = protocol.command(&line);
                        s.open = protocol.open;
                        s.bitrate_code = protocol.bitrate_code;
                        s.rejected = protocol.rejected;
                        if let Some(wheels) = wheels {
                            let pose = {
                                let mut b = base.lock().expect("sim base");
                                b.command(wheels, now);
                                b.pose()
                            };
                            s.pose = (pose.x, pose.y, pose.yaw);
                            s.wheel_frames.push((now, wheels));
                        }
                        reply
                    }
                }
            };
            line.clear();
            if file.write_all(reply).is_err() {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wheel_frames() {
        let (id, data) = parse_t(b"t010407646464").unwrap();
        assert_eq!(id, 0x010);
        assert_eq!(data.as_slice(), &[7, 100, 100, 100]);
        assert!(parse_t(b"t01040764646").is_none(), "odd length");
        assert!(parse_t(b"t0109").is_none(), "length > 8");
        assert!(parse_t(b"x010407646464").is_none());
    }

    #[test]
    fn protocol_accepts_wheel_frames_only_when_open() {
        let mut p = BoardProtocol::default();
        assert_eq!(p.command(b"t010407646464"), (&b"\x07"[..], None), "closed");
        assert_eq!(p.rejected, 1);
        assert_eq!(p.command(b"S6"), (&b"\r"[..], None));
        assert_eq!(p.command(b"O"), (&b"\r"[..], None));
        assert_eq!(
            p.command(b"t01040739AB64"),
            (&b"\r"[..], Some([0x39, 0xAB, 0x64]))
        );
        assert_eq!(p.command(b"t011407646464").1, None, "other id");
        assert_eq!(p.command(b"t010406646464").1, None, "other wheel mask");
        assert_eq!(p.command(b"C"), (&b"\r"[..], None));
        assert_eq!(p.command(b"t010407646464").1, None, "closed again");
        assert_eq!(p.bitrate_code, Some('6'));
    }
}
