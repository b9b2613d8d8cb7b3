//! Trial plans: scenarios × repetitions in a randomised order with a seed
//! (printed and stored, so an order can be reproduced), a per-trial time
//! limit. From a TOML file (`mvla trial --plan FILE`) or the command line.
//!
//! ```toml
//! name = "left-right"
//! scenarios = ["1box_hori_left_core_medium", "1box_hori_right_core_medium"]
//! repetitions = 10        # per scenario
//! time_limit_s = 60       # a trial still running then ends as a failure (OTHER)
//! seed = 7                # optional: without it a seed is drawn and printed
//! ```

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::sim::rng::SimRng;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("plan {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("plan {path}")]
    Parse {
        path: String,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("plan {path}: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    name: Option<String>,
    scenarios: Vec<String>,
    repetitions: Option<u64>,
    time_limit_s: Option<f64>,
    seed: Option<u64>,
}

/// A plan, validated, with its order drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub name: String,
    /// The file it came from (None: the command line).
    pub file: Option<String>,
    /// The plan's text as given (stored with the trials).
    pub body: String,
    pub scenarios: Vec<String>,
    pub repetitions: u64,
    pub time_limit: Duration,
    pub seed: u64,
    /// The trials in the order to run them.
    pub order: Vec<String>,
}

pub const DEFAULT_TIME_LIMIT_S: f64 = 60.0;

impl Plan {
    pub fn load(path: &Path, seed_override: Option<u64>) -> Result<Plan, PlanError> {
        let p = path.display().to_string();
        let body = crate::textfile::read(path).map_err(|source| PlanError::Read {
            path: p.clone(),
            source,
        })?;
        let default_name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "plan".into());
        Self::parse(body, p, default_name, seed_override)
    }

    /// A plan from its text; `path` names it in errors.
    pub fn parse(
        body: String,
        path: String,
        default_name: String,
        seed_override: Option<u64>,
    ) -> Result<Plan, PlanError> {
        let raw: RawPlan = toml::from_str(&body).map_err(|e| PlanError::Parse {
            path: path.clone(),
            source: Box::new(e),
        })?;
        Self::build(raw, body, Some(path), default_name, seed_override)
    }

    /// A plan from the command line's scenarios.
    pub fn from_args(
        scenarios: &[String],
        repetitions: u64,
        time_limit_s: f64,
        seed: Option<u64>,
    ) -> Result<Plan, PlanError> {
        let quoted: Vec<String> = scenarios.iter().map(|s| format!("{s:?}")).collect();
        let body = format!(
            "scenarios = [{}]\nrepetitions = {repetitions}\ntime_limit_s = {time_limit_s}\n",
            quoted.join(", ")
        );
        let raw = RawPlan {
            name: None,
            scenarios: scenarios.to_vec(),
            repetitions: Some(repetitions),
            time_limit_s: Some(time_limit_s),
            seed: None,
        };
        Self::build(raw, body, None, "command-line".into(), seed)
    }

    fn build(
        raw: RawPlan,
        body: String,
        file: Option<String>,
        default_name: String,
        seed_override: Option<u64>,
    ) -> Result<Plan, PlanError> {
        let invalid = |message: String| PlanError::Invalid {
            path: file.clone().unwrap_or_else(|| "(command line)".into()),
            message,
        };
        let repetitions = raw.repetitions.unwrap_or(1);
        let time_limit_s = raw.time_limit_s.unwrap_or(DEFAULT_TIME_LIMIT_S);
        let keyed = |key: &'static str| move |m: String| invalid(format!("{key} = {m}"));
        crate::bounds::check_u64("plan:repetitions", repetitions).map_err(keyed("repetitions"))?;
        crate::bounds::check("plan:time_limit_s", time_limit_s).map_err(keyed("time_limit_s"))?;
        crate::bounds::check_u64("plan:scenarios", raw.scenarios.len() as u64)
            .map_err(keyed("scenarios (count)"))?;
        for s in &raw.scenarios {
            if s.is_empty()
                || s.len() > 128
                || !s
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(invalid(format!(
                    "scenario {s:?}: 1–128 characters of A-Z a-z 0-9 _ - (it becomes a file name)"
                )));
            }
        }
        let seed = seed_override.or(raw.seed).unwrap_or_else(draw_seed);
        let mut order: Vec<String> = raw
            .scenarios
            .iter()
            .flat_map(|s| std::iter::repeat_n(s.clone(), repetitions as usize))
            .collect();
        shuffle(&mut order, seed);
        Ok(Plan {
            name: raw.name.unwrap_or(default_name),
            file,
            body,
            scenarios: raw.scenarios,
            repetitions,
            time_limit: Duration::from_secs_f64(time_limit_s),
            seed,
            order,
        })
    }

    /// Identifies the plan's text and seed (the same plan and seed, the same order).
    pub fn id(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.body.as_bytes());
        format!(
            "{}-{}-s{}",
            self.name,
            &crate::hex::encode(&digest)[..8],
            self.seed
        )
    }
}

/// Fisher–Yates with the simulator's SplitMix64 (the same seed gives the
/// same order in every build).
fn shuffle(items: &mut [String], seed: u64) {
    let mut rng = SimRng::new(seed);
    for i in (1..items.len()).rev() {
        let j = rng.index(i + 1);
        items.swap(i, j);
    }
}

fn draw_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    // Small enough to read out and type back in.
    (t.as_nanos() as u64 ^ u64::from(std::process::id())) % 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> std::path::PathBuf {
        let p = dir.join("plan.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn a_plan_is_every_scenario_times_repetitions_in_a_seeded_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "name = \"lr\"\nscenarios = [\"a\", \"b\"]\nrepetitions = 10\nseed = 7\n",
        );
        let plan = Plan::load(&p, None).unwrap();
        assert_eq!(plan.order.len(), 20);
        assert_eq!(plan.order.iter().filter(|s| *s == "a").count(), 10);
        assert_eq!(plan.time_limit, Duration::from_secs(60));
        // Same seed, same order; another seed, another order.
        assert_eq!(Plan::load(&p, None).unwrap().order, plan.order);
        assert_ne!(Plan::load(&p, Some(8)).unwrap().order, plan.order);
        assert_ne!(
            plan.order,
            [vec!["a".to_string(); 10], vec!["b".to_string(); 10]].concat(),
            "shuffled"
        );
        assert!(plan.id().starts_with("lr-") && plan.id().ends_with("-s7"));
    }

    #[test]
    fn every_plan_key_is_refused_outside_its_documented_range() {
        let dir = tempfile::tempdir().unwrap();
        let names = |n: f64| {
            let list: Vec<String> = (0..n as usize).map(|i| format!("\"s{i}\"")).collect();
            format!("scenarios = [{}]\n", list.join(", "))
        };
        let text = |key: &str, v: f64| match key {
            "plan:repetitions" => format!("scenarios = [\"a\"]\nrepetitions = {}\n", v as u64),
            "plan:time_limit_s" => format!("scenarios = [\"a\"]\ntime_limit_s = {v:?}\n"),
            "plan:scenarios" => names(v),
            other => panic!("no plan text for {other}"),
        };
        let mut checked = 0;
        for r in crate::bounds::RANGES
            .iter()
            .filter(|r| r.key.starts_with("plan:"))
        {
            let step = if r.key.ends_with("_s") { 1e-3 } else { 1.0 };
            for (v, ok) in [
                (r.lo, true),
                (r.hi, true),
                (r.lo - step, false),
                (r.hi + step, false),
            ] {
                let p = write(dir.path(), &text(r.key, v));
                let got = Plan::load(&p, Some(1));
                assert_eq!(got.is_ok(), ok, "{} = {v}: {:?}", r.key, got.err());
            }
            checked += 1;
        }
        assert_eq!(checked, 3);
    }

    #[test]
    fn the_shipped_plan_is_the_teams_twenty_trials() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/left-right.toml");
        let plan = Plan::load(&p, Some(1)).unwrap();
        assert_eq!(plan.order.len(), 20);
        assert_eq!(plan.scenarios.len(), 2);
    }

    #[test]
    fn bad_plans_name_the_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        for (text, want) in [
            ("scenarios = []\n", "scenarios (count) = 0"),
            ("scenarios = [\"a\"]\nrepetitions = 0\n", "repetitions = 0"),
            (
                "scenarios = [\"a\"]\ntime_limit_s = 1e9\n",
                "time_limit_s = 1000000000",
            ),
            ("scenarios = [\"a/../b\"]\n", "A-Z a-z"),
            ("scenarios = [\"a\"]\nrepetition = 3\n", "unknown field"),
        ] {
            let p = write(dir.path(), text);
            let e = crate::error::report(&Plan::load(&p, None).unwrap_err());
            assert!(e.contains("plan.toml") && e.contains(want), "{text:?}: {e}");
        }
    }
}
