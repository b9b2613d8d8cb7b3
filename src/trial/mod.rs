//! Field trials: the trial store (SQLite), trial plans, the operator
//! console (`mvla trial`), and reports with their statistics.
//!
//! A trial is the same record whether the world was real (the console) or
//! simulated (`mvla sim trials --db`); a column says which.

pub mod console;
pub mod plan;
pub mod report;
pub mod stats;
pub mod store;

use serde::Serialize;

/// The team's failure codes (UPSTREAM §5). The simulator's judge gives
/// COLLISION, WRONG_DIR, EARLY_STOP, DRIFT and OTHER; FORWARD_BIAS and
/// GROUNDING_FAIL are field diagnoses an operator makes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailureCode {
    ForwardBias,
    WrongDir,
    EarlyStop,
    Drift,
    GroundingFail,
    Collision,
    Other,
}

impl FailureCode {
    pub const ALL: [FailureCode; 7] = [
        FailureCode::ForwardBias,
        FailureCode::WrongDir,
        FailureCode::EarlyStop,
        FailureCode::Drift,
        FailureCode::GroundingFail,
        FailureCode::Collision,
        FailureCode::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FailureCode::ForwardBias => "FORWARD_BIAS",
            FailureCode::WrongDir => "WRONG_DIR",
            FailureCode::EarlyStop => "EARLY_STOP",
            FailureCode::Drift => "DRIFT",
            FailureCode::GroundingFail => "GROUNDING_FAIL",
            FailureCode::Collision => "COLLISION",
            FailureCode::Other => "OTHER",
        }
    }

    pub fn parse(s: &str) -> Option<FailureCode> {
        Self::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s))
    }
}

impl std::fmt::Display for FailureCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a trial ended. `Running` is a trial written at its start and not yet
/// ended; a later session turns any it finds into `Aborted` (never lost,
/// never counted as a success).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Running,
    Success,
    Failure,
    Aborted,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Running,
        Status::Success,
        Status::Failure,
        Status::Aborted,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Success => "success",
            Status::Failure => "failure",
            Status::Aborted => "aborted",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Self::ALL.into_iter().find(|c| c.name() == s)
    }
}

/// The parts of a scenario name (UPSTREAM §1: `{1box|2box}_hori_{left|right}_{core|variant}_{close|medium|far}`,
/// `basket_…`, `v3_{center|left|right|recovery|noise}`); absent parts are None.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScenarioParts {
    pub boxes: Option<u32>,
    pub side: Option<String>,
    pub pattern: Option<String>,
    pub distance: Option<String>,
}

impl ScenarioParts {
    pub fn parse(name: &str) -> Self {
        let mut p = Self::default();
        for token in name.split('_') {
            if let Some(n) = token.strip_suffix("box").and_then(|n| n.parse().ok()) {
                p.boxes.get_or_insert(n);
            } else if ["left", "right", "center"].contains(&token) {
                p.side.get_or_insert_with(|| token.to_string());
            } else if ["core", "variant", "recovery", "noise"].contains(&token) {
                p.pattern.get_or_insert_with(|| token.to_string());
            } else if ["close", "medium", "far"].contains(&token) {
                p.distance.get_or_insert_with(|| token.to_string());
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_names_split_into_their_parts() {
        let p = ScenarioParts::parse("2box_hori_right_variant_far");
        assert_eq!(p.boxes, Some(2));
        assert_eq!(p.side.as_deref(), Some("right"));
        assert_eq!(p.pattern.as_deref(), Some("variant"));
        assert_eq!(p.distance.as_deref(), Some("far"));
        let p = ScenarioParts::parse("v3_center");
        assert_eq!((p.boxes, p.side.as_deref()), (None, Some("center")));
        assert_eq!(ScenarioParts::parse("hallway"), ScenarioParts::default());
    }
}
