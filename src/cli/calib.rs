//! `mvla calib`: drive the wheels directly over SLCAN (wheel layout check,
//! speed table measurement).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use super::BadInput;

pub fn run(
    port: &str,
    baud: u32,
    direction: Option<&str>,
    offset: Option<i16>,
    throttle: f64,
    seconds: f64,
) -> Result<u8> {
    use mvla::control::kinematics::vendor_move_offsets;
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= 30.0) {
        bail!(BadInput(format!("--seconds {seconds}: 0 < seconds <= 30")));
    }
    if !(throttle > 0.0 && throttle <= 58.0) {
        bail!(BadInput(format!(
            "--throttle {throttle}: 0 < throttle <= 58"
        )));
    }
    let offsets: [i64; 3] = match (direction, offset) {
        (Some(d), None) => {
            let deg: f64 = match d {
                "forward" => 0.0,
                "left" => 90.0,
                "back" => 180.0,
                "right" => -90.0,
                _ => {
                    let o = throttle.round() as i64;
                    return drive_for(port, baud, [o, o, o], seconds);
                }
            };
            vendor_move_offsets(deg.to_radians(), throttle)
        }
        (None, Some(o)) if (-80..=80).contains(&o) => [i64::from(o); 3],
        (None, Some(o)) => bail!(BadInput(format!("--offset {o}: -80..=80"))),
        _ => bail!(BadInput(
            "give exactly one of --direction or --offset".into()
        )),
    };
    drive_for(port, baud, offsets, seconds)
}

fn drive_for(port: &str, baud: u32, offsets: [i64; 3], seconds: f64) -> Result<u8> {
    use mvla::drive::MotorLink;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("installing signal handlers")?;
    }
    let mut link = mvla::drive::slcan::Slcan::open(mvla::drive::slcan::SlcanConfig {
        port: port.to_string(),
        baud,
        bitrate_code: '6',
        reply_timeout: std::time::Duration::from_millis(20),
    })
    .map_err(|e| BadInput(e.to_string()))?;
    let wheels = offsets.map(|o| (100 + o.clamp(-80, 80)) as u8);
    eprintln!(
        "driving wheels {wheels:?} for {seconds} s on {}",
        link.describe()
    );
    let start = std::time::Instant::now();
    let mut result = Ok(0);
    // 50 Hz: the board expects a steady stream, like the motor loop sends.
    while start.elapsed().as_secs_f64() < seconds
        && !stop.load(std::sync::atomic::Ordering::Relaxed)
    {
        if let Err(e) = link.send(wheels) {
            result = Err(anyhow::anyhow!("wheel link: {e}"));
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    link.stop();
    eprintln!("stopped");
    result
}
