//! Replay of recorded HDF5 episodes as a frame source.
//!
//! Frames are stamped with the time they are handed out: paced at a fixed
//! interval on the given clock (default one training step, as the episodes
//! were recorded), or as fast as the consumer takes them. With a
//! [`ManualClock`](crate::clock::ManualClock) pacing is virtual time, so tests
//! are deterministic.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{CaptureError, Frame, FrameSource};
use crate::clock::{Clock, Timestamp};
use crate::frame::Rotation;
use crate::record::Episode;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// One frame every interval on the clock.
    Interval(Duration),
    /// No waiting; frames are stamped with the clock's current time.
    AsFastAsPossible,
}

pub struct ReplaySource {
    paths: Vec<PathBuf>,
    pacing: Pacing,
    clock: Arc<dyn Clock>,
    looped: bool,
    episode_index: usize,
    frame_index: usize,
    current: Option<Episode>,
    next_due: Option<Timestamp>,
    seq: u64,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl ReplaySource {
    pub fn new(
        paths: Vec<PathBuf>,
        pacing: Pacing,
        clock: Arc<dyn Clock>,
        looped: bool,
    ) -> Result<Self, CaptureError> {
        if paths.is_empty() {
            return Err(CaptureError::Config("replay: no episode files".into()));
        }
        // Every episode is checked before anything moves: a missing,
        // non-regular (a FIFO would block) or non-HDF5 file is a
        // configuration error (exit 2), not a capture thread spinning on
        // errors while the run reports success. `Episode::open` checks all
        // of it (its probe refuses what is not a regular file).
        for p in &paths {
            Episode::open(p).map_err(CaptureError::EpisodeOpen)?;
        }
        Ok(Self {
            paths,
            pacing,
            clock,
            looped,
            episode_index: 0,
            frame_index: 0,
            current: None,
            next_due: None,
            seq: 0,
            stop: Arc::default(),
        })
    }

    fn open_current(&mut self) -> Result<(), CaptureError> {
        if self.current.is_none() {
            let path = &self.paths[self.episode_index];
            let ep = Episode::open(path).map_err(CaptureError::EpisodeRead)?;
            self.current = Some(ep);
            self.frame_index = 0;
        }
        Ok(())
    }

    /// Move on to the next episode (after the end of one, or a broken one).
    fn advance_episode(&mut self) -> Result<(), CaptureError> {
        self.current = None;
        self.frame_index = 0;
        self.episode_index += 1;
        if self.episode_index >= self.paths.len() {
            if !self.looped {
                return Err(CaptureError::Ended);
            }
            self.episode_index = 0;
        }
        Ok(())
    }
}

impl FrameSource for ReplaySource {
    fn describe(&self) -> String {
        format!(
            "replay of {} episode(s), {}{}",
            self.paths.len(),
            match self.pacing {
                Pacing::Interval(d) => format!("one frame every {} ms", d.as_millis()),
                Pacing::AsFastAsPossible => "as fast as possible".into(),
            },
            if self.looped { ", looping" } else { "" }
        )
    }

    fn pending_rotation(&self) -> Rotation {
        Rotation::None
    }

    fn set_stop(&mut self, stop: Arc<std::sync::atomic::AtomicBool>) {
        self.stop = stop;
    }

    fn next_frame(&mut self, frame: &mut Frame) -> Result<(), CaptureError> {
        if self.episode_index >= self.paths.len() {
            return Err(CaptureError::Ended);
        }
        if let Err(e) = self.open_current() {
            // Report the broken episode once, then continue with the next one.
            self.advance_episode().ok();
            return Err(e);
        }
        let ep = self.current.as_ref().expect("opened above");
        if self.frame_index >= ep.frames {
            self.advance_episode()?;
            return self.next_frame(frame);
        }
        let index = self.frame_index;
        self.frame_index += 1;
        frame.format = crate::frame::InputFormat::Packed3;
        let read = ep.read_frame(index, &mut frame.data);
        let t = match self.pacing {
            Pacing::Interval(d) => {
                let due = self.next_due.unwrap_or_else(|| self.clock.now());
                if !crate::clock::sleep_until_or_stop(&*self.clock, due, &self.stop) {
                    return Err(CaptureError::Ended);
                }
                // Behind schedule (slow reader): the frame is "captured" now, not
                // at the missed slot, and the schedule restarts from here.
                let t = self.clock.now().max(due);
                self.next_due = Some(t.plus(d));
                t
            }
            Pacing::AsFastAsPossible => self.clock.now(),
        };
        self.seq += 1;
        frame.seq = self.seq;
        frame.capture_time = t;
        frame.width = ep.width;
        frame.height = ep.height;
        frame.order = ep.channel_order;
        frame.starts_episode = index == 0;
        frame.replay_position = Some((self.episode_index, index));
        read.map_err(CaptureError::EpisodeRead)
    }
}
