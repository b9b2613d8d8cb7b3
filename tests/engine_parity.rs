//! The engine parity gate and its record, without TensorRT: the gate's
//! comparison runs on any two `Policy` backends, so here the tract reference
//! is compared with itself (must pass) and with deliberately degraded copies
//! (must fail, naming what failed); the record check refuses missing,
//! failed, replaced and loosely-gated engines.

mod common;

use common::*;
use mvla::policy::engine::{
    compare, parity_inputs, EngineCheckError, EngineKey, EnginePaths, ParityRecord, ParityReport,
    ParityThresholds, Precision, Role, TrtVersion, PARITY_FORMAT,
};
use mvla::policy::tract::TractPolicy;
use mvla::policy::{ModelMeta, Policy, PolicyError};

/// A backend that perturbs the reference: `feature_noise` added to every
/// other feature value (sign alternating), `chunk_bias` added to the chunk.
struct Degraded {
    inner: TractPolicy,
    feature_noise: f32,
    chunk_bias: f32,
}

impl Policy for Degraded {
    fn meta(&self) -> &ModelMeta {
        self.inner.meta()
    }

    fn encode(&mut self, pixels: &[f32], feature: &mut [f32]) -> Result<(), PolicyError> {
        self.inner.encode(pixels, feature)?;
        for (i, v) in feature.iter_mut().enumerate() {
            if i % 2 == 0 {
                *v += if i % 4 == 0 {
                    self.feature_noise
                } else {
                    -self.feature_noise
                };
            }
        }
        Ok(())
    }

    fn decode(&mut self, f: &[f32], steps: usize, chunk: &mut [f32]) -> Result<(), PolicyError> {
        self.inner.decode(f, steps, chunk)?;
        chunk.iter_mut().for_each(|v| *v += self.chunk_bias);
        Ok(())
    }
}

fn tract() -> TractPolicy {
    TractPolicy::load(&tiny_model()).unwrap()
}

/// The gate on `frames` parity frames: tract against a copy of itself with
/// `feature_noise` / `chunk_bias` added (0, 0: an identical backend).
fn gate(feature_noise: f32, chunk_bias: f32, frames: usize) -> ParityReport {
    let mut reference = tract();
    let mut candidate = Degraded {
        inner: tract(),
        feature_noise,
        chunk_bias,
    };
    let inputs = parity_inputs(reference.meta(), frames);
    compare(
        &mut reference,
        &mut candidate,
        &inputs,
        ParityThresholds::default(),
    )
    .unwrap()
}

#[test]
fn identical_backends_pass_the_gate() {
    // The inputs differ from each other (the gate is not fed one image 4 times).
    let inputs = parity_inputs(tract().meta(), 4);
    assert!(max_abs_diff(&inputs[0], &inputs[1]) > 0.5);
    let r = gate(0.0, 0.0, 4);
    assert!(r.passed, "{:?}", r.failures);
    assert_eq!(r.inputs, 4);
    assert!(r.feature_cosine_min > 0.999_999, "{}", r.feature_cosine_min);
    assert_eq!(r.chain_chunk_max_abs, 0.0);
}

#[test]
fn a_degraded_head_fails_the_gate_and_says_where() {
    let r = gate(0.0, 0.05, 3);
    assert!(!r.passed);
    assert!((r.head_chunk_max_abs - 0.05).abs() < 1e-6, "{r:?}");
    assert!(
        r.failures.iter().any(|f| f.starts_with("head chunk")),
        "{:?}",
        r.failures
    );
    assert!(r.feature_cosine_min > 0.999_999);
}

#[test]
fn degraded_features_fail_the_cosine_threshold() {
    let r = gate(0.5, 0.0, 2);
    assert!(!r.passed);
    assert!(r.feature_cosine_min < 0.999, "{r:?}");
    assert!(r.failures.iter().any(|f| f.starts_with("feature cosine")));
    // The head alone was fed the reference features: it is still exact.
    assert_eq!(r.head_chunk_max_abs, 0.0);
}

#[test]
fn nan_from_the_candidate_fails_even_though_nan_compares_false() {
    let r = gate(0.0, f32::NAN, 1);
    assert!(!r.passed, "{r:?}");
}

fn record_for(paths: &EnginePaths, passed_report: bool) -> ParityRecord {
    let report = gate(0.0, if passed_report { 0.0 } else { 0.5 }, 1);
    let sha = |p| mvla::policy::meta::sha256_file(p).unwrap();
    ParityRecord {
        format: PARITY_FORMAT.into(),
        model_id: "tiny".into(),
        backbone_engine: paths.backbone.display().to_string(),
        backbone_engine_sha256: sha(&paths.backbone),
        head_engine: paths.head.display().to_string(),
        head_engine_sha256: sha(&paths.head),
        tensorrt: TrtVersion {
            major: 10,
            minor: 3,
            patch: 0,
        },
        compute_capability: (8, 7),
        precision: Precision::Fp16,
        reference: "tract".into(),
        report,
    }
}

#[test]
fn the_record_vouches_only_for_the_engines_it_was_made_for() {
    let meta = ModelMeta::load(&tiny_model()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let v = TrtVersion {
        major: 10,
        minor: 3,
        patch: 0,
    };
    let b = EngineKey::new(&meta, Role::Backbone, v, (8, 7), Precision::Fp16);
    let h = EngineKey::new(&meta, Role::Head, v, (8, 7), Precision::Fp16);
    assert_ne!(b.graph, h.graph);
    let paths = EnginePaths::new(dir.path(), &b, &h);
    std::fs::write(&paths.backbone, b"backbone plan bytes").unwrap();
    std::fs::write(&paths.head, b"head plan bytes").unwrap();
    let strict = ParityThresholds::default();

    // No record yet.
    assert!(matches!(
        ParityRecord::check(&paths, &strict),
        Err(EngineCheckError::Missing { .. })
    ));
    // A passing record for these exact files.
    record_for(&paths, true).write(&paths.parity).unwrap();
    ParityRecord::check(&paths, &strict).unwrap();
    // Stricter requirements than the record was gated with: refused.
    let stricter = ParityThresholds {
        feature_cosine_min: 0.9999,
        chunk_max_abs: 0.02,
    };
    assert!(matches!(
        ParityRecord::check(&paths, &stricter),
        Err(EngineCheckError::Looser { .. })
    ));
    // The engine file replaced after the gate: refused, naming the file.
    std::fs::write(&paths.head, b"another head").unwrap();
    match ParityRecord::check(&paths, &strict) {
        Err(EngineCheckError::EngineChanged { engine, .. }) => {
            assert!(engine.ends_with(&h.file_name()), "{engine}")
        }
        other => panic!("{other:?}"),
    }
    // A record of a failed gate: refused with the failures.
    record_for(&paths, false).write(&paths.parity).unwrap();
    match ParityRecord::check(&paths, &strict) {
        Err(EngineCheckError::Failed { failures, .. }) => {
            assert!(failures.contains("chunk"), "{failures}")
        }
        other => panic!("{other:?}"),
    }
    // Garbage: refused with the position.
    std::fs::write(&paths.parity, "{ not json").unwrap();
    match ParityRecord::check(&paths, &strict) {
        Err(e @ EngineCheckError::Json { .. }) => {
            let text = mvla::error::report(&e);
            assert!(text.contains("line 1"), "{text}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn engine_names_change_with_the_graph() {
    let meta = ModelMeta::load(&tiny_model()).unwrap();
    let v = TrtVersion {
        major: 10,
        minor: 3,
        patch: 0,
    };
    let a = EngineKey::new(&meta, Role::Backbone, v, (8, 7), Precision::Fp16);
    let mut other = meta.clone();
    other.raw.backbone.sha256 = "0".repeat(64);
    let b = EngineKey::new(&other, Role::Backbone, v, (8, 7), Precision::Fp16);
    assert_ne!(a.file_name(), b.file_name());
    assert_eq!(EngineKey::parse(&a.file_name()), Some(a));
}
