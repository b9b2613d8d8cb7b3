//! `mvla calib`: drive the wheels directly over SLCAN (wheel layout check,
//! speed table measurement).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::BadInput;
use mvla::clock::{Clock, MonotonicClock};
use mvla::drive::slcan::{Slcan, SlcanConfig};
use mvla::drive::{LinkWorker, MotorLink};

pub fn run(
    port: &str,
    baud: u32,
    direction: Option<&str>,
    offset: Option<i16>,
    throttle: f64,
    seconds: f64,
) -> Result<u8> {
    use mvla::robot::kinematics::vendor_move_offsets;
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= 30.0) {
        bail!(BadInput::msg(format!(
            "--seconds {seconds}: 0 < seconds <= 30"
        )));
    }
    if !(throttle > 0.0 && throttle <= 58.0) {
        bail!(BadInput::msg(format!(
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
        (None, Some(o)) => bail!(BadInput::msg(format!("--offset {o}: -80..=80"))),
        _ => bail!(BadInput::msg("give exactly one of --direction or --offset")),
    };
    drive_for(port, baud, offsets, seconds)
}

/// 50 Hz: the board expects a steady stream, like the motor loop sends.
const PERIOD: Duration = Duration::from_millis(20);
/// The adapter answers the first frame within one reply timeout (20 ms);
/// half a second allows a loaded machine's link thread to get to it. A link
/// that is not up by then failed, and the drive ends.
const FIRST_FRAME_GRACE: Duration = Duration::from_millis(500);

/// Drive `offsets` for `seconds` through the runtime's link path: the same
/// SLCAN link in the same [`LinkWorker`] the motor loop posts to, posted at
/// a fixed rate on absolute deadlines; the worker's shutdown sends the stop
/// frames (also after Ctrl-C or a link error).
fn drive_for(port: &str, baud: u32, offsets: [i64; 3], seconds: f64) -> Result<u8> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("installing signal handlers")?;
    }
    let link = Slcan::open(SlcanConfig::new(port, baud)).map_err(BadInput::of)?;
    let wheels = offsets.map(|o| (100 + o.clamp(-80, 80)) as u8);
    eprintln!(
        "driving wheels {wheels:?} for {seconds} s on {}",
        link.describe()
    );
    let worker = LinkWorker::spawn(Box::new(link)).context("starting the link thread")?;
    let driven = drive(
        &worker,
        wheels,
        Duration::from_secs_f64(seconds),
        &MonotonicClock,
        &stop,
    );
    let summary = worker.shutdown();
    eprintln!("stopped");
    driven?;
    if summary.errors > 0 {
        bail!(
            "wheel link: {} of {} frames failed (see the warnings above)",
            summary.errors,
            summary.errors + summary.frames_sent
        );
    }
    Ok(0)
}

/// Post `wheels` every [`PERIOD`] until `duration` has passed or `stop` is
/// set; an error when the link does not come up or goes down.
fn drive(
    worker: &LinkWorker,
    wheels: [u8; 3],
    duration: Duration,
    clock: &dyn Clock,
    stop: &AtomicBool,
) -> Result<()> {
    let start = clock.now();
    let end = start.plus(duration);
    let mut deadline = start;
    let mut was_up = false;
    while clock.now() < end && !stop.load(Ordering::Relaxed) {
        worker.post(wheels);
        deadline = deadline.plus(PERIOD);
        clock.sleep_until(deadline);
        let up = worker.is_up();
        if was_up && !up {
            bail!("wheel link went down (see the warning above)");
        }
        if !up && clock.now().saturating_since(start) > FIRST_FRAME_GRACE {
            bail!("wheel link: the adapter did not accept a frame (see the warning above)");
        }
        was_up |= up;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mvla::clock::{ManualClock, Timestamp};
    use mvla::drive::{LinkError, STOP_WHEELS};
    use std::sync::Mutex;

    /// A link that records what it is told to send, or refuses everything.
    struct Recorder {
        sent: Arc<Mutex<Vec<[u8; 3]>>>,
        refuse: bool,
    }

    impl MotorLink for Recorder {
        fn describe(&self) -> String {
            "recorder".into()
        }
        fn send(&mut self, wheels: [u8; 3]) -> Result<(), LinkError> {
            if self.refuse {
                return Err(LinkError::Down);
            }
            self.sent.lock().unwrap().push(wheels);
            Ok(())
        }
    }

    fn worker(refuse: bool) -> (LinkWorker, Arc<Mutex<Vec<[u8; 3]>>>) {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let link = Recorder {
            sent: sent.clone(),
            refuse,
        };
        (LinkWorker::spawn(Box::new(link)).unwrap(), sent)
    }

    #[test]
    fn drive_posts_through_the_worker_and_shutdown_ends_with_stop() {
        let (w, sent) = worker(false);
        let clock = ManualClock::new(Timestamp(0));
        // Virtual time: 5 periods, each posted; the worker sends the newest.
        drive(
            &w,
            [75, 75, 150],
            Duration::from_millis(100),
            &clock,
            &AtomicBool::new(false),
        )
        .unwrap();
        let summary = w.shutdown();
        assert!(summary.final_stop_sent);
        let sent = sent.lock().unwrap();
        assert_eq!(sent.last(), Some(&STOP_WHEELS), "{sent:?}");
        assert!(sent.iter().all(|&f| f == [75, 75, 150] || f == STOP_WHEELS));
    }

    #[test]
    fn a_link_that_never_comes_up_ends_the_drive() {
        let (w, _) = worker(true);
        let clock = ManualClock::new(Timestamp(0));
        let err = drive(
            &w,
            [110, 110, 110],
            Duration::from_secs(10),
            &clock,
            &AtomicBool::new(false),
        )
        .unwrap_err();
        assert!(err.to_string().contains("did not accept"), "{err}");
        // Past the grace period, not the whole 10 s.
        assert!(clock.now().saturating_since(Timestamp(0)) < Duration::from_secs(1));
        w.shutdown();
    }

    #[test]
    fn stop_flag_ends_the_drive_at_once() {
        let (w, _) = worker(false);
        let clock = ManualClock::new(Timestamp(0));
        drive(
            &w,
            [110, 110, 110],
            Duration::from_secs(10),
            &clock,
            &AtomicBool::new(true),
        )
        .unwrap();
        assert_eq!(clock.now(), Timestamp(0));
    }
}
