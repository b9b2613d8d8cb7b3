//! The judge: success or a failure code, from the world and the base's
//! trajectory only (never from the controller's internals), with the field
//! rules of UPSTREAM §5: success = base centre within `success_radius_m` of the
//! goal's front point, no collision, before the time limit.
//!
//! Checked at every trajectory sample, first match wins:
//! 1. COLLISION: the footprint touches an obstacle or the goal.
//! 2. DRIFT: the footprint leaves the arena.
//! 3. WRONG_DIR: the base passes the first obstacle on the side the scenario forbids.
//! 4. success: within the radius of the front point.
//! 5. EARLY_STOP: no movement (1 cm) for `early_stop_s`, short of the goal.
//! 6. OTHER: the time limit passed.

use serde::Serialize;

use super::base::Sample;
use super::world::{Pose, Side, World};

pub use crate::trial::FailureCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub outcome: Outcome,
    pub failure_code: Option<FailureCode>,
    /// One line: what the judge saw.
    pub reason: String,
    /// Trial time of the decision.
    pub time_s: f64,
    pub pose: Pose,
    pub path_length_m: f64,
    /// Closest approach of the base centre to the goal's front point.
    pub min_goal_distance_m: f64,
}

/// "SUCCESS: why" / "FAILURE CODE: why" with the time and path: the one
/// line a verdict is shown as (run summaries, stop reasons).
pub fn verdict_text(
    outcome: Outcome,
    code: Option<FailureCode>,
    reason: &str,
    time_s: f64,
    path_length_m: f64,
) -> String {
    let head = match (outcome, code) {
        (Outcome::Success, _) => "SUCCESS".to_string(),
        (Outcome::Failure, Some(c)) => format!("FAILURE {c}"),
        (Outcome::Failure, None) => "FAILURE".to_string(),
    };
    format!("{head}: {reason} (t {time_s:.1} s, path {path_length_m:.2} m)")
}

impl Verdict {
    pub fn line(&self) -> String {
        verdict_text(
            self.outcome,
            self.failure_code,
            &self.reason,
            self.time_s,
            self.path_length_m,
        )
    }
}

pub struct Judge {
    world: World,
    verdict: Option<Verdict>,
    anchor: (Pose, f64),
    path_length_m: f64,
    last: Option<Pose>,
    min_goal_distance_m: f64,
}

impl Judge {
    pub fn new(world: &World) -> Self {
        Self {
            world: world.clone(),
            verdict: None,
            anchor: (world.start, 0.0),
            path_length_m: 0.0,
            last: None,
            min_goal_distance_m: f64::INFINITY,
        }
    }

    pub fn verdict(&self) -> Option<&Verdict> {
        self.verdict.as_ref()
    }

    /// Look at the next trajectory sample; returns the verdict once there is one (it never changes).
    pub fn observe(&mut self, s: &Sample) -> Option<&Verdict> {
        if self.verdict.is_some() {
            return self.verdict.as_ref();
        }
        let w = &self.world;
        let p = s.pose;
        if let Some(last) = self.last {
            self.path_length_m += (p.x - last.x).hypot(p.y - last.y);
        }
        let goal_d = (p.x - w.goal_front.0).hypot(p.y - w.goal_front.1);
        self.min_goal_distance_m = self.min_goal_distance_m.min(goal_d);
        let r = w.robot_radius_m;
        let fail = |code: FailureCode, reason: String| (Outcome::Failure, Some(code), reason);
        let mut decided = None;
        // 1. Collision with an obstacle or the goal itself.
        for (i, o) in w.obstacles.iter().enumerate() {
            let d = o.footprint_distance(p.x, p.y);
            if d < r {
                decided = Some(fail(
                    FailureCode::Collision,
                    format!(
                        "footprint touched obstacle {i} ({:?}) at ({:.2}, {:.2})",
                        o.kind, p.x, p.y
                    ),
                ));
                break;
            }
        }
        if decided.is_none() && w.goal.footprint_distance(p.x, p.y) < r {
            decided = Some(fail(
                FailureCode::Collision,
                format!("footprint touched the goal at ({:.2}, {:.2})", p.x, p.y),
            ));
        }
        // 2. Out of the arena.
        let a = &w.arena;
        if decided.is_none()
            && (p.x - r < a.x_min || p.x + r > a.x_max || p.y - r < a.y_min || p.y + r > a.y_max)
        {
            decided = Some(fail(
                FailureCode::Drift,
                format!("left the arena at ({:.2}, {:.2})", p.x, p.y),
            ));
        }
        // 3. Past the first obstacle on the wrong side.
        if decided.is_none() {
            if let (Some(side), Some(first), Some(last)) =
                (w.pass_side, w.obstacles.first(), self.last)
            {
                if last.x < first.x && p.x >= first.x {
                    let on = if p.y >= first.y {
                        Side::Left
                    } else {
                        Side::Right
                    };
                    if on != side {
                        decided = Some(fail(
                            FailureCode::WrongDir,
                            format!(
                                "passed the first obstacle on its {on:?} side (scenario: {side:?})"
                            )
                            .to_lowercase(),
                        ));
                    }
                }
            }
        }
        // 4. Arrived.
        if decided.is_none() && goal_d <= w.success_radius_m {
            decided = Some((
                Outcome::Success,
                None,
                format!(
                    "reached the goal's front point ({goal_d:.2} m ≤ {:.2} m)",
                    w.success_radius_m
                ),
            ));
        }
        // 5. Stopped short.
        if (p.x - self.anchor.0.x).hypot(p.y - self.anchor.0.y) > 0.01 {
            self.anchor = (p, s.t_s);
        }
        if decided.is_none() && s.t_s - self.anchor.1 >= w.early_stop_s {
            decided = Some(fail(
                FailureCode::EarlyStop,
                format!(
                    "no movement for {:.1} s, {goal_d:.2} m from the goal's front point",
                    w.early_stop_s
                ),
            ));
        }
        // 6. Out of time.
        if decided.is_none() && s.t_s >= w.time_limit_s {
            decided = Some(fail(
                FailureCode::Other,
                format!(
                    "time limit {:.0} s, {goal_d:.2} m from the goal's front point",
                    w.time_limit_s
                ),
            ));
        }
        self.last = Some(p);
        if let Some((outcome, failure_code, reason)) = decided {
            self.verdict = Some(Verdict {
                outcome,
                failure_code,
                reason,
                time_s: s.t_s,
                pose: p,
                path_length_m: self.path_length_m,
                min_goal_distance_m: self.min_goal_distance_m,
            });
        }
        self.verdict.as_ref()
    }

    /// The run ended (stopped, shut down) before the judge decided.
    pub fn ended_early(&mut self, s: &Sample, why: &str) -> &Verdict {
        if self.verdict.is_none() {
            let goal_d =
                (s.pose.x - self.world.goal_front.0).hypot(s.pose.y - self.world.goal_front.1);
            self.verdict = Some(Verdict {
                outcome: Outcome::Failure,
                failure_code: Some(FailureCode::Other),
                reason: format!(
                    "{why} before a verdict, {goal_d:.2} m from the goal's front point"
                ),
                time_s: s.t_s,
                pose: s.pose,
                path_length_m: self.path_length_m,
                min_goal_distance_m: self.min_goal_distance_m.min(goal_d),
            });
        }
        self.verdict.as_ref().expect("set above")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::world::Catalogue;

    fn world() -> World {
        let mut w = Catalogue::builtin()
            .world("1box_hori_left_core_medium", 5)
            .unwrap();
        w.start = Pose::default();
        w
    }

    fn sample(t_s: f64, x: f64, y: f64) -> Sample {
        Sample {
            t_s,
            pose: Pose { x, y, yaw: 0.0 },
            wheels: [100; 3],
        }
    }

    /// Feed a straight-line path through the points, 1 cm per sample, 0.01 s apart.
    fn judge_path(w: &World, points: &[(f64, f64)]) -> Verdict {
        let mut j = Judge::new(w);
        let mut t = 0.0;
        let mut prev = points[0];
        j.observe(&sample(t, prev.0, prev.1));
        for &p in &points[1..] {
            let n = ((p.0 - prev.0).hypot(p.1 - prev.1) / 0.01).ceil().max(1.0) as usize;
            for k in 1..=n {
                let f = k as f64 / n as f64;
                t += 0.01;
                if let Some(v) = j.observe(&sample(
                    t,
                    prev.0 + (p.0 - prev.0) * f,
                    prev.1 + (p.1 - prev.1) * f,
                )) {
                    return v.clone();
                }
            }
            prev = p;
        }
        // Then stand still until the judge decides.
        loop {
            t += 0.01;
            if let Some(v) = j.observe(&sample(t, prev.0, prev.1)) {
                return v.clone();
            }
        }
    }

    fn left_route(w: &World) -> Vec<(f64, f64)> {
        let (_, hi) = w.obstacles[0].y_extent();
        let y = hi + w.robot_radius_m + 0.1;
        vec![
            (0.0, 0.0),
            (0.3, y),
            (w.obstacles[0].x + 0.4, y),
            w.goal_front,
        ]
    }

    #[test]
    fn success_on_the_left_route() {
        let w = world();
        let v = judge_path(&w, &left_route(&w));
        assert_eq!(v.outcome, Outcome::Success, "{v:?}");
        assert_eq!(v.failure_code, None);
        assert!(v.path_length_m > 1.4 && v.path_length_m < 2.5, "{v:?}");
        assert!(v.min_goal_distance_m <= w.success_radius_m);
    }

    #[test]
    fn collision_when_driving_straight_into_the_box() {
        let w = world();
        let v = judge_path(&w, &[(0.0, 0.0), (2.0, 0.0)]);
        assert_eq!(v.failure_code, Some(FailureCode::Collision), "{v:?}");
        // The first contact: the disc's front touches the box's near face.
        let (x_lo, _) = w.obstacles[0].x_extent();
        assert!(
            v.pose.x > x_lo - w.robot_radius_m - 0.02 && v.pose.x < x_lo,
            "{v:?}"
        );
    }

    #[test]
    fn collision_with_the_goal_itself() {
        let w = world();
        let mut route = left_route(&w);
        route.push((w.goal.x, w.goal.y));
        let mut w2 = w.clone();
        w2.success_radius_m = -1.0; // never arrives: drive on into the bottle
        let v = judge_path(&w2, &route);
        assert_eq!(v.failure_code, Some(FailureCode::Collision), "{v:?}");
        assert!(v.reason.contains("goal"), "{v:?}");
    }

    #[test]
    fn wrong_dir_when_going_round_the_other_side() {
        let w = world();
        let (lo, _) = w.obstacles[0].y_extent();
        let y = lo - w.robot_radius_m - 0.1;
        let v = judge_path(
            &w,
            &[
                (0.0, 0.0),
                (0.3, y),
                (w.obstacles[0].x + 0.4, y),
                w.goal_front,
            ],
        );
        assert_eq!(v.failure_code, Some(FailureCode::WrongDir), "{v:?}");
        // No side rule in V3: the same manoeuvre is allowed there.
        let mut free = w.clone();
        free.pass_side = None;
        let v = judge_path(
            &free,
            &[
                (0.0, 0.0),
                (0.3, y),
                (w.obstacles[0].x + 0.4, y),
                w.goal_front,
            ],
        );
        assert_eq!(v.outcome, Outcome::Success, "{v:?}");
    }

    #[test]
    fn drift_when_leaving_the_arena() {
        let w = world();
        let v = judge_path(&w, &[(0.0, 0.0), (0.0, 1.5)]);
        assert_eq!(v.failure_code, Some(FailureCode::Drift), "{v:?}");
        assert!(v.pose.y + w.robot_radius_m > w.arena.y_max);
    }

    #[test]
    fn early_stop_when_standing_still_short_of_the_goal() {
        let w = world();
        let v = judge_path(&w, &[(0.0, 0.0), (0.2, 0.3)]);
        assert_eq!(v.failure_code, Some(FailureCode::EarlyStop), "{v:?}");
        assert!((v.time_s - (0.36 + w.early_stop_s)).abs() < 0.05, "{v:?}");
    }

    #[test]
    fn other_on_the_time_limit() {
        let mut w = world();
        w.time_limit_s = 3.0;
        // Circle slowly near the start: always moving, never arriving.
        let mut j = Judge::new(&w);
        let mut verdict = None;
        for k in 0..10_000 {
            let t = k as f64 * 0.01;
            let a = t * 0.5;
            if let Some(v) = j.observe(&sample(t, 0.1 * a.cos() - 0.1, 0.1 * a.sin())) {
                verdict = Some(v.clone());
                break;
            }
        }
        let v = verdict.unwrap();
        assert_eq!(v.failure_code, Some(FailureCode::Other), "{v:?}");
        assert!((v.time_s - 3.0).abs() < 0.011);
    }

    #[test]
    fn the_verdict_is_final() {
        let w = world();
        let mut j = Judge::new(&w);
        j.observe(&sample(0.0, 0.0, 0.0));
        let v = j.observe(&sample(0.01, 0.0, 1.5)).cloned().unwrap();
        let again = j
            .observe(&sample(0.02, w.goal_front.0, w.goal_front.1))
            .cloned()
            .unwrap();
        assert_eq!(v, again);
    }

    #[test]
    fn codes_round_trip_by_name() {
        for c in FailureCode::ALL {
            assert_eq!(FailureCode::parse(c.name()), Some(c));
            assert_eq!(
                serde_json::to_string(&c).unwrap(),
                format!("\"{}\"", c.name())
            );
        }
    }
}
