//! Session recording: the HDF5 episode (one row per training step, with the
//! action commanded) and a JSON-lines session log (one line per inference or
//! fault). Writing happens on its own thread;
//! the inference thread only hands over copies and never waits: when the
//! recorder falls behind, items are dropped and counted.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use serde::Serialize;

use super::writer::{utc_stamp, EpisodeHeader, EpisodeWriter};
use crate::action::{InferenceEvent, InferenceObserver};
use crate::clock::Timestamp;
use crate::frame::Frame;

#[derive(Debug, Clone)]
pub struct RecordSettings {
    pub dir: PathBuf,
    pub episode: bool,
    pub session_log: bool,
    pub scenario: String,
    pub instruction: String,
    pub model_id: String,
    pub chunk_size: usize,
    /// One recorded row per training step.
    pub step: Duration,
}

enum RecordMsg {
    /// A copy of the frame as captured (raw YUYV/NV12 is converted on the
    /// recorder thread, not on the inference thread that forwards it).
    Step {
        frame: Frame,
        action: [f32; 3],
    },
    Line(String),
}

/// The inference-side half: an [`InferenceObserver`] that forwards without blocking.
pub struct Recorder {
    tx: Sender<RecordMsg>,
    settings: RecordSettings,
    dropped: Arc<AtomicU64>,
    last_row: Option<Timestamp>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RecordOutcome {
    /// Every episode file written (a new one per source episode), with its rows.
    pub episodes: Vec<(String, usize)>,
    pub session_log_path: Option<String>,
    pub session_log_lines: u64,
    pub dropped_items: u64,
    pub errors: Vec<String>,
}

/// Queue depth between the inference and recorder threads (a few steps of slack).
const QUEUE: usize = 8;

pub fn spawn_recorder(
    settings: RecordSettings,
) -> std::io::Result<(Recorder, JoinHandle<RecordOutcome>)> {
    std::fs::create_dir_all(&settings.dir)?;
    let (tx, rx) = bounded(QUEUE);
    let dropped = Arc::new(AtomicU64::new(0));
    let thread_settings = settings.clone();
    let thread_dropped = dropped.clone();
    let handle = std::thread::Builder::new()
        .name("mvla-record".into())
        .spawn(move || record_thread(rx, thread_settings, thread_dropped))?;
    Ok((
        Recorder {
            tx,
            settings,
            dropped,
            last_row: None,
        },
        handle,
    ))
}

impl Recorder {
    fn forward(&self, msg: RecordMsg) {
        match self.tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl InferenceObserver for Recorder {
    fn on_event(&mut self, frame: Option<&Frame>, event: &InferenceEvent, error: Option<&str>) {
        if self.settings.session_log {
            let line = match event {
                InferenceEvent::Chunk(c) => serde_json::json!({
                    "type": "inference",
                    "seq": c.seq,
                    "frame_seq": c.frame_seq,
                    "capture_ns": c.t0.0,
                    "queue_ms": c.timings.queue.as_secs_f64() * 1e3,
                    "preprocess_ms": c.timings.preprocess.as_secs_f64() * 1e3,
                    "infer_ms": c.timings.infer.as_secs_f64() * 1e3,
                    "capture_to_chunk_ms": c.timings.total.as_secs_f64() * 1e3,
                    "history_steps": c.history_steps,
                    "forced_zero": c.forced_zero,
                    "raw_first": c.raw_first,
                    "chunk": c.actions.as_slice(),
                }),
                InferenceEvent::Fault { kind, at } => serde_json::json!({
                    "type": "fault",
                    "kind": kind,
                    "at_ns": at.0,
                    "detail": error,
                }),
            };
            self.forward(RecordMsg::Line(line.to_string()));
        }
        if !self.settings.episode {
            return;
        }
        if let (Some(frame), InferenceEvent::Chunk(c)) = (frame, event) {
            if frame.starts_episode {
                self.last_row = None;
            }
            let due = self
                .last_row
                .is_none_or(|last| frame.capture_time >= last.plus(self.settings.step));
            if due {
                self.last_row = Some(frame.capture_time);
                let a = c.actions.first().copied().unwrap_or([0.0, 0.0]);
                self.forward(RecordMsg::Step {
                    frame: frame.clone(),
                    action: [a[0], a[1], 0.0],
                });
            }
        }
    }
}

/// `dir/stem.ext`, or the first of `dir/stem_1.ext`, `dir/stem_2.ext`, …
/// that does not exist yet (the creation itself is exclusive, so a name
/// taken in between is an error, never an overwrite).
fn unique_path(dir: &std::path::Path, stem: &str, ext: &str) -> PathBuf {
    let first = dir.join(format!("{stem}.{ext}"));
    if !first.exists() {
        return first;
    }
    (1..)
        .map(|k| dir.join(format!("{stem}_{k}.{ext}")))
        .find(|p| !p.exists())
        .expect("an unbounded range ends with a free name")
}

fn record_thread(
    rx: Receiver<RecordMsg>,
    s: RecordSettings,
    dropped: Arc<AtomicU64>,
) -> RecordOutcome {
    let mut outcome = RecordOutcome::default();
    let (iso, stamp, hour, minute) = utc_stamp(std::time::SystemTime::now());
    let mut log = if s.session_log {
        // Never over an earlier log (two recorders within one second: the
        // console's trials): the first free `session_<stamp>[_k].jsonl`.
        let path = unique_path(&s.dir, &format!("session_{stamp}"), "jsonl");
        match std::fs::File::create_new(&path) {
            Ok(f) => {
                outcome.session_log_path = Some(path.display().to_string());
                Some(std::io::BufWriter::new(f))
            }
            Err(e) => {
                outcome.errors.push(format!(
                    "{}: {e}",
                    path.display(),
                    e = crate::error::Report(&e)
                ));
                None
            }
        }
    } else {
        None
    };
    let mut writer: Option<EpisodeWriter> = None;
    let mut first_capture: Option<Timestamp> = None;
    let mut episode_failed = false;
    let mut episode_count = 0usize;
    // Raw YUYV/NV12 frames converted to BGR (allocated on the first such frame).
    let mut packed: Vec<u8> = Vec::new();
    for msg in rx {
        match msg {
            RecordMsg::Line(line) => {
                if let Some(w) = log.as_mut() {
                    // Flushed per line: the log is small and must survive a crash.
                    if let Err(e) = writeln!(w, "{line}").and_then(|_| w.flush()) {
                        outcome
                            .errors
                            .push(format!("session log: {e}", e = crate::error::Report(&e)));
                        log = None;
                    } else {
                        outcome.session_log_lines += 1;
                    }
                }
            }
            RecordMsg::Step { frame, action } => {
                // Episodes store packed BGR like the collector did.
                let view = match frame.packed(&mut packed) {
                    Ok(view) => view,
                    Err(e) => {
                        outcome.errors.push(format!(
                            "frame {} not recorded: {e}",
                            frame.seq,
                            e = crate::error::Report(&e)
                        ));
                        continue;
                    }
                };
                let (width, height, capture) = (view.width, view.height, frame.capture_time);
                if frame.starts_episode && writer.is_some() {
                    // The source started a new episode: close this file, open the next.
                    writer = None;
                    first_capture = None;
                    episode_failed = false;
                }
                if episode_failed {
                    continue;
                }
                if writer.is_none() {
                    let suffix = if episode_count == 0 {
                        String::new()
                    } else {
                        format!("_{episode_count}")
                    };
                    episode_count += 1;
                    let path = unique_path(
                        &s.dir,
                        &format!("episode_{stamp}_{}{suffix}", s.scenario),
                        "h5",
                    );
                    let name = path
                        .file_stem()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let header = EpisodeHeader {
                        episode_name: name,
                        instruction: s.instruction.clone(),
                        action_chunk_size: s.chunk_size as i64,
                        time_period: None,
                        scenario: s.scenario.clone(),
                        collection_datetime: iso.clone(),
                        collection_hour: hour,
                        collection_minute: minute,
                        model_id: s.model_id.clone(),
                    };
                    match EpisodeWriter::create(&path, width, height, view.order, &header) {
                        Ok(w) => {
                            outcome.episodes.push((path.display().to_string(), 0));
                            writer = Some(w);
                        }
                        Err(e) => {
                            outcome.errors.push(crate::error::report(&e));
                            episode_failed = true;
                            continue;
                        }
                    }
                }
                let w = writer.as_mut().expect("created above");
                let first = *first_capture.get_or_insert(capture);
                let event = if w.rows() == 0 {
                    "episode_start"
                } else if action[0] != 0.0 || action[1] != 0.0 {
                    "start_action"
                } else {
                    "stop_action"
                };
                let action = if w.rows() == 0 { [0.0; 3] } else { action };
                let elapsed = capture.saturating_since(first).as_secs_f64();
                if let Err(e) = w.append(view.data, action, event, elapsed) {
                    // Keep what is on disk; stop writing rather than corrupt it further.
                    outcome.errors.push(crate::error::report(&e));
                    episode_failed = true;
                }
                if let Some(last) = outcome.episodes.last_mut() {
                    last.1 = w.rows();
                }
            }
        }
    }
    outcome.dropped_items = dropped.load(Ordering::Relaxed);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_recorders_in_one_second_keep_both_session_logs() {
        let dir = tempfile::tempdir().unwrap();
        let settings = RecordSettings {
            dir: dir.path().to_path_buf(),
            episode: false,
            session_log: true,
            scenario: "x".into(),
            instruction: String::new(),
            model_id: String::new(),
            chunk_size: 1,
            step: Duration::from_millis(800),
        };
        let mut paths = Vec::new();
        for k in 0..3 {
            let (mut recorder, handle) = spawn_recorder(settings.clone()).unwrap();
            let event = InferenceEvent::Fault {
                kind: crate::fault::FaultKind::NoFrame,
                at: Timestamp(k),
            };
            recorder.on_event(None, &event, Some("marker"));
            drop(recorder);
            let outcome = handle.join().unwrap();
            assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
            paths.push(outcome.session_log_path.unwrap());
        }
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), 3, "one log each, none overwritten: {paths:?}");
        for p in &paths {
            let text = std::fs::read_to_string(p).unwrap();
            assert_eq!(text.lines().count(), 1, "{p}");
        }
    }
}
