//! The report's statistics against values computed by SciPy and statsmodels
//! (`tests/python/make_trial_stats_reference.py`, committed as
//! `tests/fixtures/trial/stats_reference.json`), not by this crate.

use mvla::trial::stats::{compare, fisher_exact_two_sided, wilson_interval};

fn reference() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/trial/stats_reference.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn u(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64().unwrap()
}

fn f(v: &serde_json::Value, k: &str) -> f64 {
    v[k].as_f64().unwrap()
}

#[test]
fn wilson_intervals_match_statsmodels() {
    let r = reference();
    let cases = r["wilson_95"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for c in cases {
        let (lo, hi) = wilson_interval(u(c, "k"), u(c, "n"));
        assert!(
            (lo - f(c, "lo")).abs() < 1e-12 && (hi - f(c, "hi")).abs() < 1e-12,
            "{c}: {lo} {hi}"
        );
    }
}

#[test]
fn fisher_p_values_and_newcombe_intervals_match_scipy_and_statsmodels() {
    let r = reference();
    let cases = r["comparisons"].as_array().unwrap();
    assert!(cases.len() >= 8);
    for c in cases {
        let (k1, n1, k2, n2) = (u(c, "k1"), u(c, "n1"), u(c, "k2"), u(c, "n2"));
        let p = fisher_exact_two_sided(k1, n1, k2, n2);
        let want = f(c, "fisher_p");
        assert!(
            (p - want).abs() <= 1e-9 * want.max(1e-300) + 1e-12,
            "{c}: p {p}"
        );
        let cmp = compare(k1, n1, k2, n2);
        assert_eq!(cmp.fisher_p, p);
        let (lo, hi) = cmp.difference_95;
        assert!(
            (lo - f(c, "diff_lo")).abs() < 1e-9 && (hi - f(c, "diff_hi")).abs() < 1e-9,
            "{c}: {lo} {hi}"
        );
    }
}
