//! The statistics of a trial report: the 95 % Wilson score interval of a
//! success rate, the team's colour bands, and the comparison of two models
//! (difference in rate with Newcombe's hybrid score interval, Fisher's exact
//! test). Checked against SciPy / statsmodels values committed as
//! `tests/fixtures/trial/stats_reference.json` (`tests/trial_stats.rs`).

use serde::Serialize;

/// z of a two-sided 95 % normal interval (Φ⁻¹(0.975)).
const Z95: f64 = 1.959_963_984_540_054;

/// 95 % Wilson score interval for k successes in n trials ((0, 1) for n = 0).
pub fn wilson_interval(k: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = Z95;
    let (n, p) = (n as f64, k as f64 / n as f64);
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * ((p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt()) / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// The team's colour bands (UPSTREAM §5): green ≥ 80 %, yellow ≥ 60 %, else red.
pub fn band(rate: f64) -> &'static str {
    if rate >= 0.8 {
        "green"
    } else if rate >= 0.6 {
        "yellow"
    } else {
        "red"
    }
}

/// ln(k!) for k = 0..=n, by summing logarithms (exact enough for trial counts:
/// the error grows like n·ε).
fn ln_factorials(n: u64) -> Vec<f64> {
    let mut out = Vec::with_capacity(n as usize + 1);
    let mut acc = 0.0;
    out.push(0.0);
    for k in 1..=n {
        acc += (k as f64).ln();
        out.push(acc);
    }
    out
}

/// Two-sided p-value of Fisher's exact test on the 2×2 table
/// `[[k1, n1 − k1], [k2, n2 − k2]]`: the probability, under the
/// hypergeometric null with the margins fixed, of every table at most as
/// likely as the observed one (relative tolerance 1e-7, as R's `fisher.test`).
pub fn fisher_exact_two_sided(k1: u64, n1: u64, k2: u64, n2: u64) -> f64 {
    assert!(k1 <= n1 && k2 <= n2, "successes cannot exceed trials");
    let n = n1 + n2;
    let successes = k1 + k2;
    if n == 0 {
        return 1.0;
    }
    let lf = ln_factorials(n);
    // P(X = x) for X = successes in row 1: C(n1, x) C(n2, s − x) / C(n, s).
    let ln_choose = |a: u64, b: u64| lf[a as usize] - lf[b as usize] - lf[(a - b) as usize];
    let ln_total = ln_choose(n, successes);
    let lo = successes.saturating_sub(n2);
    let hi = successes.min(n1);
    let ln_p = |x: u64| ln_choose(n1, x) + ln_choose(n2, successes - x) - ln_total;
    let observed = ln_p(k1);
    let threshold = observed + (1.0f64 + 1e-7).ln();
    let p: f64 = (lo..=hi)
        .map(ln_p)
        .filter(|&lp| lp <= threshold)
        .map(f64::exp)
        .sum();
    p.min(1.0)
}

/// A comparison of model A with model B: the difference in success rate
/// (A − B) with its 95 % interval (Newcombe 1998, method 10: the hybrid
/// score interval built from each rate's Wilson interval) and Fisher's exact
/// two-sided p-value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Comparison {
    pub difference: f64,
    pub difference_95: (f64, f64),
    pub fisher_p: f64,
}

pub fn compare(k1: u64, n1: u64, k2: u64, n2: u64) -> Comparison {
    let rate = |k: u64, n: u64| if n == 0 { 0.0 } else { k as f64 / n as f64 };
    let (p1, p2) = (rate(k1, n1), rate(k2, n2));
    let (l1, u1) = wilson_interval(k1, n1);
    let (l2, u2) = wilson_interval(k2, n2);
    let d = p1 - p2;
    let lower = d - ((p1 - l1).powi(2) + (u2 - p2).powi(2)).sqrt();
    let upper = d + ((u1 - p1).powi(2) + (p2 - l2).powi(2)).sqrt();
    Comparison {
        difference: d,
        difference_95: (lower.max(-1.0), upper.min(1.0)),
        fisher_p: fisher_exact_two_sided(k1, n1, k2, n2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_follow_the_team_thresholds() {
        assert_eq!(band(0.8), "green");
        assert_eq!(band(0.79), "yellow");
        assert_eq!(band(0.6), "yellow");
        assert_eq!(band(0.59), "red");
    }

    #[test]
    fn fisher_of_identical_rows_is_one_and_of_opposites_is_small() {
        assert!((fisher_exact_two_sided(5, 10, 5, 10) - 1.0).abs() < 1e-12);
        // 10/10 vs 0/10: 2 / C(20, 10) = 1.0825e-5 (both extreme tables).
        let p = fisher_exact_two_sided(10, 10, 0, 10);
        assert!((p - 2.0 / 184_756.0).abs() < 1e-15, "{p}");
        assert_eq!(fisher_exact_two_sided(0, 0, 0, 0), 1.0);
    }

    #[test]
    fn newcombe_interval_contains_the_difference() {
        let c = compare(18, 20, 12, 20);
        assert!((c.difference - 0.3).abs() < 1e-12);
        assert!(c.difference_95.0 < 0.3 && 0.3 < c.difference_95.1);
    }
}
