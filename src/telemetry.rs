//! Latency histograms that record without allocating (fixed log-spaced
//! buckets, 1/32 octave ≈ 2.2 % resolution) and their summaries; the
//! percentile of exact samples (benchmarks); rate-limited logging.
//!
//! Two percentile rules on purpose: the histogram (runtime, every sample,
//! no allocation) reports the bucket holding rank ⌈n·q⌉; benchmarks keep
//! their few hundred samples and report the exact sample at rank
//! round((n − 1)·q).

use std::time::Duration;

use serde::Serialize;

/// Sub-buckets per power of two.
const SUB: u32 = 32;
/// Covers 1 ns .. 2^40 ns (≈ 18 min).
const OCTAVES: u32 = 40;
const BUCKETS: usize = (SUB * OCTAVES) as usize;

#[derive(Clone)]
pub struct LatencyHistogram {
    counts: Box<[u32; BUCKETS]>,
    total: u64,
    max_ns: u64,
    min_ns: u64,
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyHistogram")
            .field("total", &self.total)
            .field("max_ns", &self.max_ns)
            .finish()
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

fn bucket_of(ns: u64) -> usize {
    let ns = ns.max(1);
    let octave = 63 - ns.leading_zeros(); // floor(log2)
    let base = 1u64 << octave;
    // Position inside the octave, in 1/SUB steps.
    let frac = ((ns - base) as u128 * SUB as u128 / base as u128) as u32;
    ((octave * SUB + frac) as usize).min(BUCKETS - 1)
}

/// Upper edge of a bucket in ns.
fn bucket_upper(index: usize) -> u64 {
    let octave = index as u32 / SUB;
    let frac = index as u32 % SUB;
    let base = 1u64 << octave;
    base + (base as u128 * (frac as u128 + 1) / SUB as u128) as u64
}

impl LatencyHistogram {
    pub fn new() -> Self {
        Self {
            counts: Box::new([0; BUCKETS]),
            total: 0,
            max_ns: 0,
            min_ns: u64::MAX,
        }
    }

    pub fn record(&mut self, d: Duration) {
        let ns = d.as_nanos().min(u128::from(u64::MAX)) as u64;
        self.counts[bucket_of(ns)] = self.counts[bucket_of(ns)].saturating_add(1);
        self.total += 1;
        self.max_ns = self.max_ns.max(ns);
        self.min_ns = self.min_ns.min(ns);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// Value at quantile `q` (0..=1): the upper edge of the bucket holding it,
    /// capped at the true maximum.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.total == 0 {
            return Duration::ZERO;
        }
        let rank = ((self.total as f64 * q).ceil() as u64).clamp(1, self.total);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                return Duration::from_nanos(bucket_upper(i).min(self.max_ns).max(self.min_ns));
            }
        }
        Duration::from_nanos(self.max_ns)
    }

    pub fn summary(&self) -> LatencySummary {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        LatencySummary {
            count: self.total,
            p50_ms: ms(self.quantile(0.5)),
            p99_ms: ms(self.quantile(0.99)),
            max_ms: ms(Duration::from_nanos(self.max_ns)),
        }
    }
}

/// The sample at quantile `q` (0..=1) of `sorted` (ascending, not empty):
/// index round((n − 1)·q), no interpolation.
pub fn percentile_of_sorted(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Log at most once per `interval` (hot paths report counters, not every event).
#[derive(Debug, Clone)]
pub struct RateLimit {
    interval: Duration,
    last: Option<std::time::Instant>,
    suppressed: u64,
}

impl RateLimit {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(suppressed since last time)` when the caller may log now.
    pub fn allow(&mut self) -> Option<u64> {
        let now = std::time::Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_bucket_resolution() {
        let mut h = LatencyHistogram::new();
        for ms in 1..=1000u64 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.quantile(0.5).as_secs_f64() * 1e3;
        let p99 = h.quantile(0.99).as_secs_f64() * 1e3;
        assert!((p50 - 500.0).abs() / 500.0 < 0.035, "{p50}");
        assert!((p99 - 990.0).abs() / 990.0 < 0.035, "{p99}");
        assert_eq!(h.summary().max_ms, 1000.0);
        assert_eq!(h.count(), 1000);
    }

    #[test]
    fn single_value_is_exact_enough() {
        let mut h = LatencyHistogram::new();
        h.record(Duration::from_micros(1234));
        assert_eq!(h.quantile(0.5), Duration::from_micros(1234));
        assert_eq!(LatencyHistogram::new().quantile(0.5), Duration::ZERO);
    }

    #[test]
    fn buckets_are_monotone() {
        let mut last = 0;
        for ns in [1u64, 2, 3, 100, 1000, 1_000_000, 123_456_789, 1 << 39] {
            let b = bucket_of(ns);
            assert!(b >= last);
            assert!(bucket_upper(b) >= ns, "{ns}");
            last = b;
        }
    }
}
