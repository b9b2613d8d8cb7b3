//! `mvla stop`: command the wheels to stop over the configured link (the
//! systemd unit's ExecStopPost, after the controller has ended for any reason).

use std::path::Path;

use anyhow::Result;

use super::BadInput;
use mvla::config::{Config, LinkConfig};
use mvla::drive::slcan::{Slcan, SlcanConfig};
use mvla::drive::{MotorLink, STOP_WHEELS};

/// Stop frames sent; one accepted by the adapter is enough, as `MotorLink::stop` does.
const ATTEMPTS: usize = 3;

pub fn run(config: Option<&Path>) -> Result<u8> {
    let config = match config {
        Some(path) => Config::load(path).map_err(BadInput::of)?,
        None => Config::builtin_default(),
    };
    match &config.link {
        LinkConfig::Emulator => {
            out!("wheel link is the in-process board emulator: it ended with the controller; nothing to stop");
            Ok(0)
        }
        LinkConfig::Slcan(slcan) => stop_slcan(slcan),
    }
}

fn stop_slcan(config: &SlcanConfig) -> Result<u8> {
    // Opening already sends C/S/O; the adapter then forwards frames.
    let mut link = Slcan::open(config.clone())?;
    let mut last = None;
    for _ in 0..ATTEMPTS {
        match link.send(STOP_WHEELS) {
            Ok(()) => {
                out!("stop frame accepted by the adapter on {}", config.port);
                return Ok(0);
            }
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) => Err(anyhow::Error::new(e).context(format!("stop frames on {}", config.port))),
        None => Ok(0),
    }
}
