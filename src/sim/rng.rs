//! The simulator's random numbers: SplitMix64 (Steele, Lea & Flood 2014).
//!
//! Hand-written on purpose: a seed must give the same world, noise and
//! trajectory on every machine and in every later build, and `rand`'s
//! `StdRng` documents that its stream may change between versions. Ten lines
//! with a published reference output (tested below) are the cheaper promise.

/// SplitMix64: 64-bit state, full period, passes BigCrush as a generator of
/// independent streams; one stream per purpose, derived with [`SimRng::fork`].
#[derive(Debug, Clone)]
pub struct SimRng(u64);

/// A stable 64-bit key of a scenario name: FNV-1a (Fowler, Noll, Vo; the
/// published 64-bit offset basis and prime), fixed here for the same reason as
/// the generator itself (std's hashers may change between versions).
pub fn scenario_key(name: &str) -> u64 {
    name.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

impl SimRng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The stream for `purpose` of trial `seed` in `scenario`. The name is part
    /// of the key so that scenarios run with the same seed (every scenario of
    /// a `--trials N --seed S` batch uses S..S+N) are independent draws of
    /// lighting, camera, colours, geometry, wheels and expert, not the same
    /// draw seen through each scenario's ranges.
    pub fn for_scenario(seed: u64, scenario: &str, purpose: u64) -> SimRng {
        SimRng::new(seed).fork(purpose).fork(scenario_key(scenario))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi] (lo when the range is empty).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        if hi > lo {
            lo + (hi - lo) * self.unit()
        } else {
            lo
        }
    }

    /// Index in 0..n (0 when n is 0).
    pub fn index(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.unit() * n as f64) as usize % n
        }
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(f64::MIN_POSITIVE);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// An independent stream for `purpose` (world, noise, expert ...).
    pub fn fork(&self, purpose: u64) -> SimRng {
        let mut r = SimRng(self.0 ^ purpose.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next_u64();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_splitmix64_stream() {
        // Reference values: the C reference implementation (prng.di.unimi.it/splitmix64.c) seeded with 1234567.
        let mut r = SimRng::new(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
        assert_eq!(r.next_u64(), 9817491932198370423);
    }

    #[test]
    fn uniform_stays_in_range() {
        let mut r = SimRng::new(7);
        for _ in 0..10_000 {
            let v = r.uniform(-2.0, 3.0);
            assert!((-2.0..=3.0).contains(&v));
            assert!(r.index(5) < 5);
        }
    }
}
