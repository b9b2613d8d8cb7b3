//! The fuzz targets' deterministic CI run: every seed of the corpus and a
//! fixed set of mutants of it (seeded xorshift: the same inputs every run)
//! through each target. A panic fails the test with the input saved under
//! `target/fuzz-smoke-failures/`. The coverage-guided long runs are `fuzz/`.

use std::path::Path;

/// Mutants per seed; the episode target forks a reader child per input,
/// so it gets fewer.
const MUTANTS_PER_SEED: usize = 1500;
const EPISODE_MUTANTS: usize = 60;

/// Values that break parsers: numbers at type edges, non-finite, separators.
const TOKENS: &[&[u8]] = &[
    b"0",
    b"-1",
    b"1e308",
    b"-1e308",
    b"nan",
    b"inf",
    b"18446744073709551615",
    b"9223372036854775808",
    b"4294967296",
    b"1000000000000",
    b"\"",
    b"'",
    b"[",
    b"]",
    b"{",
    b"}",
    b"=",
    b",",
    b"\n",
    b"\r",
    b"\x00",
    b"\xff",
    b"\x07",
    b"true",
    b"[[",
    b"\\u0000",
    b"..",
    b"/",
    b"1e-320",
    b"0x7fffffff",
    b"(1000000000000, 1000000)",
];

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut XorShift, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(7) {
            0 if !v.is_empty() => {
                let i = at.min(v.len() - 1);
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = at.min(v.len() - 1);
                v[i] = [0u8, 0xff, 0x7f, 0x80, b'9'][rng.below(5)];
            }
            2 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                v.splice(at..at, t.iter().copied());
            }
            3 if !v.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(v.len());
                v.drain(at.min(end)..end);
            }
            4 if !v.is_empty() => {
                let start = rng.below(v.len());
                let end = (start + 1 + rng.below(32)).min(v.len());
                let piece: Vec<u8> = v[start..end].to_vec();
                v.splice(at..at, piece);
            }
            5 if !other.is_empty() => {
                let start = rng.below(other.len());
                let end = (start + 1 + rng.below(64)).min(other.len());
                v.splice(at..at, other[start..end].iter().copied());
            }
            _ => v.truncate(at),
        }
    }
    v
}

fn run_one(name: &str, target: mvla::fuzz::Target, input: &[u8]) {
    if std::panic::catch_unwind(|| target(input)).is_err() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-smoke-failures");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("{name}-{:016x}", fnv(input)));
        std::fs::write(&file, input).unwrap();
        panic!("fuzz target {name} panicked on {} (saved)", file.display());
    }
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

fn smoke(name: &str) {
    let target = mvla::fuzz::target(name).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let seeds: Vec<Vec<u8>> = mvla::fuzz::SEEDS
        .iter()
        .filter(|(t, _)| *t == name)
        .map(|(_, p)| std::fs::read(root.join(p)).unwrap_or_else(|e| panic!("seed {p}: {e}")))
        .collect();
    assert!(!seeds.is_empty(), "{name} has no seeds");
    let per_seed = if name == "episode" {
        EPISODE_MUTANTS
    } else {
        MUTANTS_PER_SEED
    };
    let mut rng = XorShift(0x9e3779b97f4a7c15 ^ fnv(name.as_bytes()));
    run_one(name, target, b"");
    for (i, seed) in seeds.iter().enumerate() {
        run_one(name, target, seed);
        let other = &seeds[(i + 1) % seeds.len()];
        for _ in 0..per_seed {
            run_one(name, target, &mutate(&mut rng, seed, other));
        }
    }
}

#[test]
fn every_target_has_a_smoke_test_here() {
    let here = include_str!("fuzz_smoke.rs");
    for (name, _) in mvla::fuzz::TARGETS {
        assert!(
            here.contains(&format!("fn {name}() {{")),
            "no smoke test for {name}"
        );
    }
}

#[test]
fn config() {
    smoke("config");
}

#[test]
fn plan() {
    smoke("plan");
}

#[test]
fn console_keys() {
    smoke("console_keys");
}

#[test]
fn model_json() {
    smoke("model_json");
}

#[test]
fn calibration() {
    smoke("calibration");
}

#[test]
fn scenario() {
    smoke("scenario");
}

#[test]
fn npy() {
    smoke("npy");
}

#[test]
fn slcan_replies() {
    smoke("slcan_replies");
}

#[test]
fn episode() {
    smoke("episode");
}
