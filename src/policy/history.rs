//! The history window at training-step spacing.
//!
//! The head was trained on features of frames one *training step* apart
//! (one teleop key press, ≈0.7–0.86 s; UPSTREAM §3), never on consecutive
//! camera frames. The runtime may encode frames much more often than that, so
//! the history keeps the recent features with their capture times and, for
//! each inference, assembles the window backwards from the newest frame:
//! slot j (j = 0 newest) takes the stored feature captured closest to
//! `t_newest − j·step`, within half a step. The window stops at the first
//! slot with no such feature (start-up, or a gap in the frames), which gives
//! the training code's streaming rule for the first `window` steps: the head
//! runs from a zero state over the `k < window` features there are.

use std::time::Duration;

use crate::clock::Timestamp;

#[derive(Debug, Clone)]
pub struct History {
    dim: usize,
    window: usize,
    step_ns: i128,
    /// Ring of (time, feature); `times[i]` belongs to `feats[i*dim..]`.
    times: Vec<Timestamp>,
    feats: Vec<f32>,
    /// Index of the oldest entry and number of entries.
    head: usize,
    len: usize,
    /// Assembled window, oldest first.
    assembled: Vec<f32>,
}

impl History {
    pub fn new(dim: usize, window: usize, step: Duration, capacity: usize) -> Self {
        assert!(dim >= 1, "feature width");
        Self::with_dim(dim, window, step, capacity)
    }

    /// Times and slot indices only, for features kept elsewhere (the GPU
    /// feature ring of the TensorRT path): [`History::push_slot`] says where
    /// the newest feature goes, [`History::window_slots`] which slots form
    /// the window. Same selection rule as the host history.
    pub fn slots_only(window: usize, step: Duration, capacity: usize) -> Self {
        Self::with_dim(0, window, step, capacity)
    }

    fn with_dim(dim: usize, window: usize, step: Duration, capacity: usize) -> Self {
        assert!(window >= 1 && capacity >= window);
        Self {
            dim,
            window,
            step_ns: step.as_nanos() as i128,
            times: vec![Timestamp(0); capacity],
            feats: vec![0.0; capacity * dim],
            head: 0,
            len: 0,
            assembled: vec![0.0; window * dim],
        }
    }

    /// Ring capacity (slots).
    pub fn capacity(&self) -> usize {
        self.times.len()
    }

    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn slot(&self, i: usize) -> usize {
        (self.head + i) % self.capacity()
    }

    /// Add the newest feature. A time older than the newest entry means the
    /// clock or the source went backwards: the history is cleared first
    /// rather than mixing two timelines.
    pub fn push(&mut self, t: Timestamp, feature: &[f32]) {
        assert_eq!(feature.len(), self.dim, "feature width");
        let index = self.push_slot(t);
        self.feats[index * self.dim..(index + 1) * self.dim].copy_from_slice(feature);
    }

    /// Record a feature captured at `t` and return the ring slot it belongs
    /// in (the oldest entry's slot once the ring is full).
    pub fn push_slot(&mut self, t: Timestamp) -> usize {
        if self.len > 0 && t < self.times[self.slot(self.len - 1)] {
            self.clear();
        }
        let index = if self.len < self.capacity() {
            self.len += 1;
            self.slot(self.len - 1)
        } else {
            let i = self.head;
            self.head = (self.head + 1) % self.capacity();
            i
        };
        self.times[index] = t;
        index
    }

    /// Capture times of the entries the window uses, newest first.
    fn select(&self, picked: &mut [usize]) -> usize {
        if self.len == 0 {
            return 0;
        }
        let newest = self.len - 1;
        picked[0] = newest;
        let t_new = self.times[self.slot(newest)];
        let tolerance = self.step_ns / 2;
        let mut count = 1;
        let mut search_end = newest; // candidates are entries strictly older than the last pick
        while count < self.window && search_end > 0 {
            let target = t_new.0 as i128 - self.step_ns * count as i128;
            let mut best: Option<(usize, i128)> = None;
            for i in (0..search_end).rev() {
                let d = (self.times[self.slot(i)].0 as i128 - target).abs();
                if best.is_none_or(|(_, bd)| d < bd) {
                    best = Some((i, d));
                }
                if (self.times[self.slot(i)].0 as i128) < target - tolerance {
                    break; // entries only get older from here
                }
            }
            match best {
                Some((i, d)) if d <= tolerance => {
                    picked[count] = i;
                    count += 1;
                    search_end = i;
                }
                _ => break,
            }
        }
        count
    }

    /// The window ending at the newest feature, oldest first, and its length.
    pub fn window(&mut self) -> (&[f32], usize) {
        let mut slots = [0usize; 64];
        let count = self.window_slots(&mut slots);
        for (pos, &slot) in slots[..count].iter().enumerate() {
            let src = slot * self.dim;
            self.assembled[pos * self.dim..(pos + 1) * self.dim]
                .copy_from_slice(&self.feats[src..src + self.dim]);
        }
        (&self.assembled[..count * self.dim], count)
    }

    /// Ring slots of the window ending at the newest feature, oldest first,
    /// written to `out[..count]`; returns `count`.
    pub fn window_slots(&self, out: &mut [usize]) -> usize {
        let mut picked = [0usize; 64];
        assert!(self.window <= picked.len(), "window longer than 64 steps");
        assert!(
            out.len() >= self.window,
            "slot buffer shorter than the window"
        );
        let count = self.select(&mut picked[..self.window]);
        for (pos, &entry) in picked[..count].iter().rev().enumerate() {
            out[pos] = self.slot(entry);
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: Duration = Duration::from_millis(800);

    fn ms(v: u64) -> Timestamp {
        Timestamp(v * 1_000_000)
    }

    /// Features are [t_ms] so the window shows which frames were chosen.
    fn window_times(h: &mut History) -> Vec<f32> {
        h.window().0.to_vec()
    }

    #[test]
    fn one_frame_per_step_uses_every_frame_up_to_the_window() {
        let mut h = History::new(1, 3, STEP, 3);
        assert_eq!(h.window().1, 0);
        h.push(ms(0), &[0.0]);
        assert_eq!(window_times(&mut h), vec![0.0]);
        h.push(ms(800), &[800.0]);
        assert_eq!(window_times(&mut h), vec![0.0, 800.0]);
        h.push(ms(1600), &[1600.0]);
        h.push(ms(2400), &[2400.0]);
        assert_eq!(window_times(&mut h), vec![800.0, 1600.0, 2400.0]);
    }

    #[test]
    fn camera_rate_frames_are_subsampled_to_step_spacing() {
        // 10 Hz frames, 0.8 s step, window 4: slots at t, t-0.8, t-1.6, t-2.4 s.
        let mut h = History::new(1, 4, STEP, 64);
        for i in 0..=40 {
            h.push(ms(i * 100), &[(i * 100) as f32]);
        }
        assert_eq!(window_times(&mut h), vec![1600.0, 2400.0, 3200.0, 4000.0]);
        // Irregular timing: the nearest frame within half a step is used.
        let mut h = History::new(1, 3, STEP, 64);
        for t in [0, 130, 790, 1170, 1590, 1630] {
            h.push(ms(t), &[t as f32]);
        }
        assert_eq!(window_times(&mut h), vec![0.0, 790.0, 1630.0]);
    }

    #[test]
    fn a_gap_longer_than_half_a_step_cuts_the_window() {
        let mut h = History::new(1, 4, STEP, 16);
        h.push(ms(0), &[0.0]);
        h.push(ms(800), &[800.0]);
        // Nothing near 1600 ± 400 ms.
        h.push(ms(2500), &[2500.0]);
        assert_eq!(window_times(&mut h), vec![2500.0]);
    }

    #[test]
    fn time_going_backwards_clears_the_history() {
        let mut h = History::new(1, 3, STEP, 8);
        h.push(ms(1000), &[1.0]);
        h.push(ms(1800), &[2.0]);
        h.push(ms(500), &[3.0]);
        assert_eq!(window_times(&mut h), vec![3.0]);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn clear_forgets_everything() {
        let mut h = History::new(2, 2, STEP, 4);
        h.push(ms(0), &[1.0, 2.0]);
        h.clear();
        assert!(h.is_empty());
        h.push(ms(800), &[3.0, 4.0]);
        assert_eq!(h.window(), (&[3.0f32, 4.0][..], 1));
    }

    #[test]
    fn slot_history_selects_what_the_host_history_assembles() {
        // The GPU ring path stores features by the slots `push_slot` returns
        // and gathers `window_slots`; it must see the same window as `window`.
        let mut host = History::new(1, 4, STEP, 12);
        let mut slots = History::slots_only(4, STEP, 12);
        let mut ring = [f32::NAN; 12];
        let mut t = 0u64;
        for i in 0..60u64 {
            t += [90, 130, 410, 800, 60][(i % 5) as usize];
            if i == 30 {
                t -= 5000; // a clock step backwards clears both
            }
            host.push(ms(t), &[t as f32]);
            ring[slots.push_slot(ms(t))] = t as f32;
            let mut picked = [0usize; 4];
            let n = slots.window_slots(&mut picked);
            let gathered: Vec<f32> = picked[..n].iter().map(|&s| ring[s]).collect();
            assert_eq!(gathered, window_times(&mut host), "after push {i}");
        }
    }
}
