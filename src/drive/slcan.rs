//! SLCAN (Lawicel ASCII) over a serial port to the robot's CAN bus.
//!
//! Open: `C\r` (close, in case the adapter was left open) → `S6\r` (500 kbit/s)
//! → `O\r`. Each wheel command: `t010407WWWWWW\r`. The adapter answers `\r`
//! (some firmware `z\r`/`Z\r` for a sent frame) on success and BEL (0x07) on
//! error. Any error drops the port; the next send reconnects with backoff and
//! commands stop before anything else.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::backoff::Backoff;

use super::{serbot_frame_data, LinkError, MotorLink, SERBOT_CAN_ID, STOP_WHEELS};

/// Serial speed of the USB SLCAN adapter (`[motor.slcan] baud`, `mvla calib --baud`).
pub const DEFAULT_BAUD: u32 = 115_200;
/// SLCAN bitrate code `S6` = 500 kbit/s, the Serbot bus (UPSTREAM §2).
pub const DEFAULT_BITRATE_CODE: char = '6';
/// A USB SLCAN adapter answers within a few ms; 20 ms leaves margin at 100 Hz.
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_millis(20);

#[derive(Debug, Clone)]
pub struct SlcanConfig {
    pub port: String,
    pub baud: u32,
    /// SLCAN bitrate code: '6' = 500 kbit/s (the Serbot bus).
    pub bitrate_code: char,
    /// Longest wait for the adapter's reply to one command.
    pub reply_timeout: Duration,
}

impl SlcanConfig {
    /// `port` at `baud` with the Serbot bus's bitrate and the default reply timeout.
    pub fn new(port: impl Into<String>, baud: u32) -> Self {
        Self {
            port: port.into(),
            baud,
            bitrate_code: DEFAULT_BITRATE_CODE,
            reply_timeout: DEFAULT_REPLY_TIMEOUT,
        }
    }
}

/// Encode a standard CAN frame as an SLCAN `t` command (no allocation).
pub fn encode_frame(id: u16, data: &[u8]) -> heapless::Vec<u8, 32> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = heapless::Vec::new();
    let push = |out: &mut heapless::Vec<u8, 32>, b: u8| {
        let _ = out.push(b);
    };
    push(&mut out, b't');
    for shift in [8, 4, 0] {
        push(&mut out, HEX[usize::from((id >> shift) & 0xF)]);
    }
    push(&mut out, HEX[data.len().min(8)]);
    for &b in data.iter().take(8) {
        push(&mut out, HEX[usize::from(b >> 4)]);
        push(&mut out, HEX[usize::from(b & 0xF)]);
    }
    push(&mut out, b'\r');
    out
}

/// The SLCAN command that carries one Serbot wheel command (what
/// [`Slcan::send`] writes; the lock-step simulator feeds the same bytes to the
/// board protocol).
pub fn wheel_command(wheels: [u8; 3]) -> heapless::Vec<u8, 32> {
    encode_frame(SERBOT_CAN_ID, &serbot_frame_data(wheels))
}

/// The commands [`Slcan::open`] sends, in order, without their CR.
pub fn open_sequence(bitrate_code: char) -> [heapless::String<2>; 3] {
    let mut s = heapless::String::new();
    let _ = s.push('S');
    let _ = s.push(bitrate_code);
    let one = |c: char| {
        let mut t = heapless::String::new();
        let _ = t.push(c);
        t
    };
    [one('C'), s, one('O')]
}

/// One complete adapter reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `\r`, or `z\r` / `Z\r` (some firmware's "frame sent").
    Ok,
    /// BEL (0x07): the adapter refused the command.
    Nack,
    /// Anything else before the CR, or more than 16 bytes without one.
    Garbage(heapless::Vec<u8, 16>),
}

/// The adapter's reply, byte by byte (outside data: the fuzz target
/// `slcan_replies` feeds it arbitrary bytes).
#[derive(Debug, Default)]
pub struct ReplyParser {
    got: heapless::Vec<u8, 16>,
}

impl ReplyParser {
    /// Take one byte; the reply once it is complete (the parser is then
    /// ready for the next one).
    pub fn push(&mut self, b: u8) -> Option<Reply> {
        match b {
            b'\r' => {
                let reply = match self.got.as_slice() {
                    [] | [b'z'] | [b'Z'] => Reply::Ok,
                    _ => Reply::Garbage(self.got.clone()),
                };
                self.got.clear();
                Some(reply)
            }
            0x07 => {
                self.got.clear();
                Some(Reply::Nack)
            }
            b => {
                if self.got.push(b).is_err() {
                    let reply = Reply::Garbage(self.got.clone());
                    self.got.clear();
                    return Some(reply);
                }
                None
            }
        }
    }
}

/// First reconnect after 100 ms, doubling to 2 s: fast recovery from a USB
/// glitch without hammering a missing device.
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

pub struct Slcan {
    config: SlcanConfig,
    port: Option<serialport::TTYPort>,
    backoff: Backoff,
    pub reconnects: u64,
}

impl Slcan {
    /// Open and initialise the adapter; fails if it does not answer. Installs
    /// the process's [crash guard](super::crash_guard) first (once), so no
    /// real wheel link is ever open without it.
    pub fn open(config: SlcanConfig) -> Result<Self, LinkError> {
        super::crash_guard::install();
        let mut s = Self {
            config,
            port: None,
            backoff: Backoff::new(BACKOFF_START, BACKOFF_MAX),
            reconnects: 0,
        };
        s.connect()?;
        Ok(s)
    }

    fn io_err(&self, e: impl Into<std::io::Error>) -> LinkError {
        LinkError::Io {
            port: self.config.port.clone(),
            source: std::sync::Arc::new(e.into()),
        }
    }

    fn connect(&mut self) -> Result<(), LinkError> {
        let port = serialport::new(&self.config.port, self.config.baud)
            .timeout(self.config.reply_timeout)
            .open_native()
            .map_err(|e| self.io_err(e))?;
        // From here a crash of the process writes stop frames to this port.
        super::crash_guard::arm(std::os::fd::AsRawFd::as_raw_fd(&port));
        self.port = Some(port);
        // Close first: the adapter may still be open from a crashed run; its
        // answer (OK or BEL when already closed) does not matter.
        for (i, cmd) in open_sequence(self.config.bitrate_code).iter().enumerate() {
            let mut line = heapless::Vec::<u8, 4>::new();
            let _ = line.extend_from_slice(cmd.as_bytes());
            let _ = line.push(b'\r');
            self.write_all(&line)?;
            let reply = self.read_reply(cmd);
            if i > 0 {
                reply?;
            }
        }
        Ok(())
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), LinkError> {
        let port = self.port.as_mut().ok_or(LinkError::Down)?;
        let r = port.write_all(bytes).and_then(|_| port.flush());
        r.map_err(|e| self.io_err(e))
    }

    /// Read one reply ([`ReplyParser`]) within the reply timeout.
    fn read_reply(&mut self, command: &str) -> Result<(), LinkError> {
        let timeout = self.config.reply_timeout;
        let deadline = Instant::now() + timeout;
        let mut parser = ReplyParser::default();
        let port = self.port.as_mut().ok_or(LinkError::Down)?;
        let mut byte = [0u8; 1];
        loop {
            if Instant::now() > deadline {
                return Err(LinkError::Timeout(timeout));
            }
            match port.read(&mut byte) {
                Ok(0) => continue,
                Ok(_) => match parser.push(byte[0]) {
                    None => {}
                    Some(Reply::Ok) => return Ok(()),
                    Some(Reply::Nack) => {
                        return Err(LinkError::Nack {
                            command: command.to_string(),
                        })
                    }
                    Some(Reply::Garbage(bytes)) => return Err(LinkError::Garbage(bytes.to_vec())),
                },
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return Err(LinkError::Timeout(timeout));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.io_err(e)),
            }
        }
    }

    fn command(&mut self, bytes: &[u8], name: &str) -> Result<(), LinkError> {
        self.write_all(bytes)?;
        self.read_reply(name)
    }

    fn drop_port(&mut self) {
        self.close_port();
        self.backoff.failed(Instant::now());
    }

    fn close_port(&mut self) {
        if let Some(port) = self.port.take() {
            super::crash_guard::disarm(std::os::fd::AsRawFd::as_raw_fd(&port));
        }
    }

    fn send_frame(&mut self, wheels: [u8; 3]) -> Result<(), LinkError> {
        let frame = wheel_command(wheels);
        self.command(&frame, "t")
    }
}

impl MotorLink for Slcan {
    fn describe(&self) -> String {
        format!(
            "SLCAN on {} ({} baud, bitrate code S{})",
            self.config.port, self.config.baud, self.config.bitrate_code
        )
    }

    fn send(&mut self, wheels: [u8; 3]) -> Result<(), LinkError> {
        if self.port.is_none() {
            if !self.backoff.ready(Instant::now()) {
                return Err(LinkError::Down);
            }
            if let Err(e) = self.connect() {
                self.drop_port();
                return Err(e);
            }
            self.reconnects += 1;
            self.backoff.succeeded();
            // After a reconnect the first frame is always stop.
            if let Err(e) = self.send_frame(STOP_WHEELS) {
                self.drop_port();
                return Err(e);
            }
        }
        let r = self.send_frame(wheels);
        if r.is_err() {
            self.drop_port();
        }
        r
    }
}

impl Drop for Slcan {
    fn drop(&mut self) {
        self.close_port();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_frame_bytes_match_upstream() {
        let f = encode_frame(SERBOT_CAN_ID, &serbot_frame_data(STOP_WHEELS));
        assert_eq!(f.as_slice(), b"t010407646464\r");
        let f = encode_frame(SERBOT_CAN_ID, &serbot_frame_data([57, 143, 100]));
        assert_eq!(f.as_slice(), b"t010407398F64\r");
    }
}
