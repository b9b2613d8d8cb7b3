//! Whole chain in one process with parts swapped (replay → inference with a
//! policy that misbehaves on cue → motor loop → SLCAN link → emulated board):
//! a NaN from the policy and a stalled policy both stop the wheels within 150 ms.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use mvla::capture::replay::{Pacing, ReplaySource};
use mvla::clock::{Clock, MonotonicClock, Timestamp};
use mvla::config::Config;
use mvla::control::motor::MotorLoop;
use mvla::control::{MotorFlags, MotorThread};
use mvla::drive::emulator::BoardEmulator;
use mvla::drive::slcan::{Slcan, SlcanConfig};
use mvla::drive::{LinkWorker, STOP_WHEELS};
use mvla::pipeline::{spawn_stages, InferenceSettings, InferenceStage};
use mvla::policy::tract::TractPolicy;
use mvla::policy::{ModelMeta, Policy, PolicyError, PolicyRunner};
use mvla::preprocess::{CpuPreprocessor, Rotation};
use mvla::systemd::Notifier;

#[derive(Clone, Copy, PartialEq)]
enum Misbehave {
    Nan,
    Stall,
}

/// The forward-driving fixture policy, until `armed` is set: then its head
/// returns NaN, or it hangs (a stuck backend).
struct Faulty {
    inner: TractPolicy,
    armed: Arc<AtomicBool>,
    armed_at: Arc<AtomicU64>,
    mode: Misbehave,
}

impl Policy for Faulty {
    fn meta(&self) -> &ModelMeta {
        self.inner.meta()
    }
    fn encode(&mut self, pixels: &[f32], feature: &mut [f32]) -> Result<(), PolicyError> {
        self.inner.encode(pixels, feature)
    }
    fn decode(
        &mut self,
        features: &[f32],
        steps: usize,
        chunk: &mut [f32],
    ) -> Result<(), PolicyError> {
        self.inner.decode(features, steps, chunk)?;
        if self.armed.load(Ordering::SeqCst) {
            if self.armed_at.load(Ordering::SeqCst) == 0 {
                self.armed_at
                    .store(MonotonicClock.now().0, Ordering::SeqCst);
            }
            match self.mode {
                Misbehave::Nan => chunk.fill(f32::NAN),
                Misbehave::Stall => std::thread::sleep(Duration::from_secs(3)),
            }
        }
        Ok(())
    }
}

fn run_chain(mode: Misbehave) -> (Vec<(Timestamp, [u8; 3])>, Timestamp) {
    let emu = BoardEmulator::start(mvla::robot::calib::Calibration::serbot()).unwrap();
    let mut config = Config::builtin_default();
    config.motor.max_action_age = Duration::from_millis(100);
    let clock: Arc<dyn Clock> = Arc::new(MonotonicClock);
    let armed = Arc::new(AtomicBool::new(false));
    let armed_at = Arc::new(AtomicU64::new(0));
    let policy = Faulty {
        inner: TractPolicy::load(&fixtures().join("tiny_model_forward")).unwrap(),
        armed: armed.clone(),
        armed_at: armed_at.clone(),
        mode,
    };
    let spec = policy.meta().preprocess_spec(Rotation::None);
    let stage = InferenceStage::new(PolicyRunner::new(policy, 64), CpuPreprocessor::new(spec));
    let source = ReplaySource::new(
        vec![episodes_dir().join(format!("{OBS_EPISODE}.h5"))],
        Pacing::Interval(Duration::from_millis(50)),
        clock.clone(),
        true,
    )
    .unwrap();
    let link = LinkWorker::spawn(Box::new(
        Slcan::open(SlcanConfig {
            port: emu.port_path().display().to_string(),
            baud: 115_200,
            bitrate_code: '6',
            reply_timeout: Duration::from_millis(20),
        })
        .unwrap(),
    ))
    .unwrap();
    let flags = MotorFlags::default();
    flags
        .ready
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let settings = InferenceSettings {
        no_frame_timeout: Duration::from_millis(500),
        budget: Duration::from_secs(1),
    };
    let stages = spawn_stages(
        Box::new(source),
        stage,
        settings,
        clock.clone(),
        Box::new(()),
    )
    .unwrap();
    let erx = stages.events;
    let motor = {
        let (clock, flags) = (clock.clone(), flags.clone());
        let m = MotorLoop::new(config.motor, config.calib.clone());
        std::thread::spawn(move || {
            MotorThread::new(
                m,
                erx,
                link,
                clock,
                flags,
                Notifier::from_env(),
                mvla::rtlog::RtLog::direct(),
            )
            .run(0)
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    armed.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(800));
    stages.stop.store(true, Ordering::SeqCst);
    flags.shutdown.store(true, Ordering::SeqCst);
    flags.exit.store(true, Ordering::SeqCst);
    let summary = motor.join().expect("motor thread");
    stages.capture.join().expect("capture thread");
    if mode == Misbehave::Nan {
        stages.inference.join().expect("inference thread");
    } // a stalled backend is left to finish its sleep
    eprintln!("motor {summary:?}");
    eprintln!("counters {:?}", stages.counters.snapshot());
    assert!(summary.link.final_stop_sent);
    let t = Timestamp(armed_at.load(Ordering::SeqCst));
    assert!(t.0 > 0, "the fault was triggered");
    (emu.snapshot().wheel_frames, t)
}

fn assert_stops_within(frames: &[(Timestamp, [u8; 3])], fault_at: Timestamp, limit: Duration) {
    let forward = [57u8, 143, 100];
    let mut distinct: Vec<[u8; 3]> = frames.iter().map(|f| f.1).collect();
    distinct.dedup();
    eprintln!(
        "frames {}: {:?}",
        frames.len(),
        &distinct[..distinct.len().min(20)]
    );
    assert!(
        frames.iter().any(|(t, w)| *t < fault_at && *w == forward),
        "drove forward before the fault"
    );
    let first_stop = frames
        .iter()
        .find(|(t, w)| *t >= fault_at && *w == STOP_WHEELS)
        .expect("a stop frame after the fault");
    let latency = first_stop.0.saturating_since(fault_at);
    assert_reaction("stop frame after the fault", latency, limit);
    assert!(
        frames
            .iter()
            .filter(|(t, _)| *t >= first_stop.0)
            .all(|(_, w)| *w == STOP_WHEELS),
        "never moves again"
    );
}

/// These tests check reaction times: run them one at a time, not against each other.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_nan_from_the_policy_stops_the_wheels() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (frames, at) = run_chain(Misbehave::Nan);
    assert_stops_within(&frames, at, Duration::from_millis(150));
}

#[test]
fn a_stalled_policy_stops_the_wheels() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // The chunk in hand ages past max_action_age (100 ms here) and the motor loop stops.
    let (frames, at) = run_chain(Misbehave::Stall);
    assert_stops_within(&frames, at, Duration::from_millis(150));
}
