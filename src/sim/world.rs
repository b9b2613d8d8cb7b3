//! The simulated world: scenario files (data) → one sampled, concrete world.
//!
//! A scenario file describes a *family* (e.g. `{boxes}_hori_{side}_{pattern}_{distance}`):
//! a `[base]` table with every parameter, `[axes]` listing the values of each
//! name part, and `[values.<axis>.<value>]` tables deep-merged over the base
//! in axis order (tables merge key by key, anything else replaces). Ranges are
//! `[lo, hi]` (sampled uniformly per trial) or a single number. The frame is
//! the robot's start frame: x forward, y left, z up, metres, angles in degrees
//! in files and radians in code. `mirror_y = true` flips every y and yaw, so a
//! `right` scenario is its `left` twin seen in a mirror.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::rng::SimRng;

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("scenario file {path}: cannot read")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// toml's message carries the line, column and key.
    #[error("scenario file {path}")]
    Parse {
        path: String,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("scenario file {path}: {message}")]
    Format { path: String, message: String },
    #[error("scenario file {path}: scenario {scenario}")]
    Spec {
        path: String,
        scenario: String,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("scenario file {path}: scenario {scenario}: {message}")]
    Invalid {
        path: String,
        scenario: String,
        message: String,
    },
    #[error("no scenario matches {0:?} (known: {1})")]
    NoMatch(String, String),
}

/// `[lo, hi]` or one number.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Range {
    Fixed(f64),
    Span([f64; 2]),
}

impl Range {
    fn sample(self, rng: &mut SimRng) -> f64 {
        match self {
            Range::Fixed(v) => v,
            Range::Span(_) => {
                let (lo, hi) = self.bounds();
                rng.uniform(lo, hi)
            }
        }
    }
    /// (low, high); NaN stays NaN (so validation rejects it; `f64::min` would drop it).
    fn bounds(self) -> (f64, f64) {
        match self {
            Range::Fixed(v) => (v, v),
            Range::Span([a, b]) if a <= b => (a, b),
            Range::Span([a, b]) if b < a => (b, a),
            Range::Span(_) => (f64::NAN, f64::NAN),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Left,
    Right,
}

impl Side {
    /// +1 for left (+y), −1 for right.
    pub fn sign(self) -> f64 {
        match self {
            Side::Left => 1.0,
            Side::Right => -1.0,
        }
    }
    fn mirrored(self) -> Side {
        match self {
            Side::Left => Side::Right,
            Side::Right => Side::Left,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// Cardboard box obstacle.
    Box,
    /// Beverage bottle goal.
    Bottle,
    /// Gray basket goal (V3).
    Basket,
    /// Brown pot obstacle (V3).
    Pot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShapeKind {
    Box,
    Cylinder,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectSpec {
    /// Listed but absent unless an axis value switches it on.
    #[serde(default = "yes")]
    pub present: bool,
    pub kind: ObjectKind,
    pub shape: ShapeKind,
    pub x_m: Range,
    pub y_m: Range,
    #[serde(default = "zero_range")]
    pub yaw_deg: Range,
    /// Box: depth along its x, width along its y.
    #[serde(default = "zero_range")]
    pub depth_m: Range,
    #[serde(default = "zero_range")]
    pub width_m: Range,
    /// Cylinder radius.
    #[serde(default = "zero_range")]
    pub radius_m: Range,
    pub height_m: Range,
    /// RGB 0..255, one picked per trial, then each channel jittered by ± `color_jitter`.
    pub colors: Vec<[u8; 3]>,
    #[serde(default)]
    pub color_jitter: f64,
}

fn yes() -> bool {
    true
}

fn zero_range() -> Range {
    Range::Fixed(0.0)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArenaSpec {
    pub x_min_m: f64,
    pub x_max_m: f64,
    pub y_min_m: f64,
    pub y_max_m: f64,
    pub wall_height_m: f64,
    pub wall_colors: Vec<[u8; 3]>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RobotSpec {
    /// Disc footprint.
    pub radius_m: f64,
    pub start_x_m: Range,
    pub start_y_m: Range,
    pub start_yaw_deg: Range,
    /// Per-wheel multiplicative speed noise (std of a factor around 1, drawn per trial).
    #[serde(default)]
    pub wheel_gain_std: f64,
    /// Per-wheel speed noise per 10 ms (std, fraction of the commanded speed).
    #[serde(default)]
    pub wheel_noise_std: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraSpec {
    pub height_m: f64,
    /// Ahead of the base centre.
    pub forward_m: f64,
    /// Negative = looking down.
    pub pitch_deg: Range,
    pub hfov_deg: f64,
    /// The robot's camera is mounted upside down (frames arrive rotated 180°).
    pub upside_down: bool,
    /// Sensor noise, std in 0..255 units.
    pub noise_std: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LightSpec {
    /// Multiplies every colour.
    pub brightness: Range,
    /// RGB multipliers (colour temperature).
    pub tint: [f64; 3],
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FloorSpec {
    /// Tile edge length.
    pub tile_m: Range,
    /// Pairs of tile colours, one pair picked per trial.
    pub colors: Vec<[[u8; 3]; 2]>,
}

/// Everything one scenario needs, after the axis values are merged in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioSpec {
    pub instruction: String,
    pub time_limit_s: f64,
    /// Which way round the first obstacle the trial must go (none: either).
    #[serde(default)]
    pub pass_side: Option<Side>,
    #[serde(default)]
    pub mirror_y: bool,
    /// Base centre within this of the goal's front point = success.
    pub success_radius_m: f64,
    /// Front point: this far from the goal's surface, on the start side.
    pub goal_standoff_m: f64,
    /// Not moving for this long, short of the goal = EARLY_STOP.
    pub early_stop_s: f64,
    pub arena: ArenaSpec,
    pub robot: RobotSpec,
    pub camera: CameraSpec,
    pub goal: ObjectSpec,
    pub obstacles: Vec<ObjectSpec>,
    pub time_periods: Vec<String>,
    pub lighting: BTreeMap<String, LightSpec>,
    pub floor: FloorSpec,
}

/// One scenario family file.
#[derive(Debug, Clone)]
pub struct ScenarioFile {
    pub path: String,
    /// `{axis}` placeholders, e.g. `{boxes}_hori_{side}_{pattern}_{distance}`.
    pub name: String,
    axes: Vec<(String, Vec<String>)>,
    base: toml::Table,
    values: toml::Table,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenarioFile {
    name: String,
    #[serde(default)]
    axes: toml::Table,
    #[serde(default)]
    axis_order: Vec<String>,
    base: toml::Table,
    #[serde(default)]
    values: toml::Table,
}

/// The scenario files shipped in the repository (`src/sim/scenarios/`).
pub const BUILTIN_SCENARIOS: &[(&str, &str)] = &[
    (
        "src/sim/scenarios/box_hori.toml",
        include_str!("scenarios/box_hori.toml"),
    ),
    (
        "src/sim/scenarios/v3.toml",
        include_str!("scenarios/v3.toml"),
    ),
];

/// Merge `over` into `into`: tables key by key, arrays of tables element by
/// element (every obstacle a family can have is listed in its base, and axis
/// values switch them on with `present = true`; overlay elements past the end
/// of the base list are an error), anything else replaces.
fn deep_merge(into: &mut toml::Table, over: &toml::Table) -> Result<(), String> {
    for (k, v) in over {
        match (into.get_mut(k), v) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => deep_merge(a, b)?,
            (Some(toml::Value::Array(a)), toml::Value::Array(b))
                if a.iter().chain(b.iter()).all(|e| e.is_table()) =>
            {
                if b.len() > a.len() {
                    return Err(format!(
                        "{k}: {} entries over a base list of {}",
                        b.len(),
                        a.len()
                    ));
                }
                for (ea, eb) in a.iter_mut().zip(b) {
                    if let (toml::Value::Table(ta), toml::Value::Table(tb)) = (ea, eb) {
                        deep_merge(ta, tb)?;
                    }
                }
            }
            _ => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(())
}

impl ScenarioFile {
    pub fn parse(text: &str, path: &str) -> Result<Self, ScenarioError> {
        let perr = |message: String| ScenarioError::Format {
            path: path.to_string(),
            message,
        };
        let raw: RawScenarioFile = toml::from_str(text).map_err(|source| ScenarioError::Parse {
            path: path.to_string(),
            source: Box::new(source),
        })?;
        let order: Vec<String> = if raw.axis_order.is_empty() {
            raw.axes.keys().cloned().collect()
        } else {
            raw.axis_order.clone()
        };
        if let Some(extra) = raw.axes.keys().find(|k| !order.contains(k)) {
            return Err(perr(format!(
                "axis {extra:?} is in [axes] but not in axis_order"
            )));
        }
        let mut seen_axes = std::collections::BTreeSet::new();
        let mut axes = Vec::new();
        for a in &order {
            if !seen_axes.insert(a.clone()) {
                return Err(perr(format!("axis {a:?} listed twice in axis_order")));
            }
            let values = raw
                .axes
                .get(a)
                .and_then(|v| v.as_array())
                .ok_or_else(|| perr(format!("axis {a:?} has no value list in [axes]")))?;
            let values: Vec<String> = values
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| perr(format!("axis {a:?}: values must be strings")))
                })
                .collect::<Result<_, _>>()?;
            if values.is_empty() {
                return Err(perr(format!("axis {a:?} has no values")));
            }
            let distinct: std::collections::BTreeSet<&String> = values.iter().collect();
            if distinct.len() != values.len() {
                return Err(perr(format!("axis {a:?} repeats a value")));
            }
            if let Some(bad) = values.iter().find(|v| !is_name_part(v)) {
                return Err(perr(format!(
                    "axis {a:?}: value {bad:?} must be 1-64 characters of A-Z a-z 0-9 _ -"
                )));
            }
            if !raw.name.contains(&format!("{{{a}}}")) {
                return Err(perr(format!("name {:?} has no {{{a}}}", raw.name)));
            }
            axes.push((a.clone(), values));
        }
        // Scenario names become file names (plots, videos, episodes): only
        // safe characters, every placeholder an axis.
        let mut template = raw.name.clone();
        for (a, _) in &axes {
            template = template.replace(&format!("{{{a}}}"), "x");
        }
        if !is_name_part(&template) {
            return Err(perr(format!(
                "name {:?}: placeholders must be axes and the rest A-Z a-z 0-9 _ -",
                raw.name
            )));
        }
        let count = axes
            .iter()
            .try_fold(1usize, |n, (_, v)| n.checked_mul(v.len()));
        if count.is_none_or(|n| n > MAX_SCENARIOS_PER_FILE) {
            return Err(perr(format!(
                "more than {MAX_SCENARIOS_PER_FILE} scenarios (the product of the axes' value counts)"
            )));
        }
        for (axis, table) in &raw.values {
            let Some((_, values)) = axes.iter().find(|(a, _)| a == axis) else {
                return Err(perr(format!("[values.{axis}]: {axis:?} is not an axis")));
            };
            let Some(table) = table.as_table() else {
                return Err(perr(format!("[values.{axis}] must be a table")));
            };
            for (value, t) in table {
                if !values.contains(value) {
                    return Err(perr(format!(
                        "[values.{axis}.{value}]: {value:?} is not a value of axis {axis:?}"
                    )));
                }
                if !t.is_table() {
                    return Err(perr(format!("[values.{axis}.{value}] must be a table")));
                }
            }
        }
        let file = Self {
            path: path.to_string(),
            name: raw.name,
            axes,
            base: raw.base,
            values: raw.values,
        };
        // Every scenario of the family must be valid: fail at load, not mid-batch.
        for combo in file.combos() {
            file.spec_of(&combo)?;
        }
        Ok(file)
    }

    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let read_err = |source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        };
        // A regular file of sane size: not a FIFO that blocks, not /dev/zero.
        let text = crate::textfile::read(path).map_err(read_err)?;
        Self::parse(&text, &path.display().to_string())
    }

    fn combos(&self) -> Vec<Vec<(String, String)>> {
        let mut out: Vec<Vec<(String, String)>> = vec![Vec::new()];
        for (axis, values) in &self.axes {
            let mut next = Vec::new();
            for prefix in &out {
                for v in values {
                    let mut p = prefix.clone();
                    p.push((axis.clone(), v.clone()));
                    next.push(p);
                }
            }
            out = next;
        }
        out
    }

    fn name_of(&self, combo: &[(String, String)]) -> String {
        let mut n = self.name.clone();
        for (a, v) in combo {
            n = n.replace(&format!("{{{a}}}"), v);
        }
        n
    }

    /// Every scenario name of the family.
    pub fn names(&self) -> Vec<String> {
        self.combos().iter().map(|c| self.name_of(c)).collect()
    }

    /// The merged, validated spec of scenario `name`, with its name parts.
    pub fn spec(&self, name: &str) -> Result<(ScenarioSpec, Vec<(String, String)>), ScenarioError> {
        let combo = self
            .combos()
            .into_iter()
            .find(|c| self.name_of(c) == name)
            .ok_or_else(|| ScenarioError::NoMatch(name.to_string(), self.names().join(", ")))?;
        self.spec_of(&combo)
    }

    fn spec_of(
        &self,
        combo: &[(String, String)],
    ) -> Result<(ScenarioSpec, Vec<(String, String)>), ScenarioError> {
        let name = self.name_of(combo);
        let invalid = |message: String| ScenarioError::Invalid {
            path: self.path.clone(),
            scenario: name.to_string(),
            message,
        };
        let mut merged = self.base.clone();
        for (axis, value) in combo {
            if let Some(t) = self
                .values
                .get(axis)
                .and_then(|t| t.get(value))
                .and_then(|t| t.as_table())
            {
                deep_merge(&mut merged, t)
                    .map_err(|m| invalid(format!("[values.{axis}.{value}] {m}")))?;
            }
        }
        // `{side}`-style placeholders in the instruction.
        if let Some(toml::Value::String(s)) = merged.get_mut("instruction") {
            for (a, v) in combo {
                *s = s.replace(&format!("{{{a}}}"), v);
            }
        }
        let spec: ScenarioSpec =
            toml::Value::Table(merged)
                .try_into()
                .map_err(|source: toml::de::Error| ScenarioError::Spec {
                    path: self.path.clone(),
                    scenario: name.to_string(),
                    source: Box::new(source),
                })?;
        validate(&spec).map_err(invalid)?;
        Ok((spec, combo.to_vec()))
    }
}

/// Largest family a file may describe (the built-in ones have 24 and 3).
pub const MAX_SCENARIOS_PER_FILE: usize = 1024;

/// A scenario name (part): 1-64 characters of A-Z a-z 0-9 _ -.
fn is_name_part(s: &str) -> bool {
    crate::record::is_plain_name(s, 64)
}

fn finite_pos(v: f64, what: &str, max: f64) -> Result<(), String> {
    if v.is_finite() && v > 0.0 && v <= max {
        Ok(())
    } else {
        Err(format!("{what} = {v}: must be in (0, {max}]"))
    }
}

fn range_within(r: Range, what: &str, lo: f64, hi: f64) -> Result<(), String> {
    let (a, b) = r.bounds();
    if a.is_finite() && b.is_finite() && a >= lo && b <= hi {
        Ok(())
    } else {
        Err(format!("{what} = {r:?}: must lie in [{lo}, {hi}]"))
    }
}

fn validate(s: &ScenarioSpec) -> Result<(), String> {
    let a = &s.arena;
    for (v, w) in [
        (a.x_min_m, "arena.x_min_m"),
        (a.x_max_m, "arena.x_max_m"),
        (a.y_min_m, "arena.y_min_m"),
        (a.y_max_m, "arena.y_max_m"),
    ] {
        if !v.is_finite() || v.abs() > 100.0 {
            return Err(format!("{w} = {v}: must be within ±100 m"));
        }
    }
    if a.x_min_m >= 0.0 || a.x_max_m <= 0.0 || a.y_min_m >= 0.0 || a.y_max_m <= 0.0 {
        return Err("arena must contain the start (0, 0)".into());
    }
    finite_pos(a.wall_height_m, "arena.wall_height_m", 10.0)?;
    if a.wall_colors.is_empty() {
        return Err("arena.wall_colors is empty".into());
    }
    finite_pos(s.time_limit_s, "time_limit_s", 3600.0)?;
    finite_pos(s.success_radius_m, "success_radius_m", 5.0)?;
    finite_pos(s.early_stop_s, "early_stop_s", 3600.0)?;
    if !(s.goal_standoff_m.is_finite() && (0.0..=2.0).contains(&s.goal_standoff_m)) {
        return Err(format!(
            "goal_standoff_m = {}: must be in [0, 2]",
            s.goal_standoff_m
        ));
    }
    finite_pos(s.robot.radius_m, "robot.radius_m", 2.0)?;
    range_within(s.robot.start_yaw_deg, "robot.start_yaw_deg", -180.0, 180.0)?;
    range_within(s.robot.start_x_m, "robot.start_x_m", a.x_min_m, a.x_max_m)?;
    range_within(s.robot.start_y_m, "robot.start_y_m", a.y_min_m, a.y_max_m)?;
    for (v, w) in [
        (s.robot.wheel_gain_std, "robot.wheel_gain_std"),
        (s.robot.wheel_noise_std, "robot.wheel_noise_std"),
    ] {
        if !(v.is_finite() && (0.0..=0.5).contains(&v)) {
            return Err(format!("{w} = {v}: must be in [0, 0.5]"));
        }
    }
    let c = &s.camera;
    finite_pos(c.height_m, "camera.height_m", 3.0)?;
    if !(c.forward_m.is_finite() && c.forward_m.abs() <= 1.0) {
        return Err(format!(
            "camera.forward_m = {}: must be within ±1 m",
            c.forward_m
        ));
    }
    range_within(c.pitch_deg, "camera.pitch_deg", -60.0, 30.0)?;
    if !(c.hfov_deg.is_finite() && (20.0..=150.0).contains(&c.hfov_deg)) {
        return Err(format!(
            "camera.hfov_deg = {}: must be in [20, 150]",
            c.hfov_deg
        ));
    }
    if !(c.noise_std.is_finite() && (0.0..=50.0).contains(&c.noise_std)) {
        return Err(format!(
            "camera.noise_std = {}: must be in [0, 50]",
            c.noise_std
        ));
    }
    for (i, o) in std::iter::once(&s.goal).chain(&s.obstacles).enumerate() {
        let w = if i == 0 {
            "goal".to_string()
        } else {
            format!("obstacles[{}]", i - 1)
        };
        range_within(o.x_m, &format!("{w}.x_m"), a.x_min_m, a.x_max_m)?;
        range_within(o.y_m, &format!("{w}.y_m"), a.y_min_m, a.y_max_m)?;
        range_within(o.yaw_deg, &format!("{w}.yaw_deg"), -180.0, 180.0)?;
        range_within(o.height_m, &format!("{w}.height_m"), 0.01, 5.0)?;
        match o.shape {
            ShapeKind::Box => {
                range_within(o.depth_m, &format!("{w}.depth_m"), 0.01, 5.0)?;
                range_within(o.width_m, &format!("{w}.width_m"), 0.01, 5.0)?;
            }
            ShapeKind::Cylinder => range_within(o.radius_m, &format!("{w}.radius_m"), 0.005, 5.0)?,
        }
        if o.colors.is_empty() {
            return Err(format!("{w}.colors is empty"));
        }
        if !(o.color_jitter.is_finite() && (0.0..=128.0).contains(&o.color_jitter)) {
            return Err(format!("{w}.color_jitter must be in [0, 128]"));
        }
    }
    // The start footprint inside the arena and clear of every object in all
    // sampled positions (bounding circles: conservative).
    let (sx0, sx1) = s.robot.start_x_m.bounds();
    let (sy0, sy1) = s.robot.start_y_m.bounds();
    let r = s.robot.radius_m;
    if sx0 - r < a.x_min_m || sx1 + r > a.x_max_m || sy0 - r < a.y_min_m || sy1 + r > a.y_max_m {
        return Err(format!(
            "the robot's start footprint (radius {r} m) must lie inside the arena"
        ));
    }
    for (i, o) in std::iter::once(&s.goal).chain(&s.obstacles).enumerate() {
        if !o.present {
            continue;
        }
        let reach = match o.shape {
            ShapeKind::Cylinder => o.radius_m.bounds().1,
            ShapeKind::Box => 0.5 * o.depth_m.bounds().1.hypot(o.width_m.bounds().1),
        };
        let (ox0, ox1) = o.x_m.bounds();
        let (oy0, oy1) = o.y_m.bounds();
        let gap_x = (ox0 - sx1).max(sx0 - ox1).max(0.0);
        let gap_y = (oy0 - sy1).max(sy0 - oy1).max(0.0);
        if gap_x.hypot(gap_y) < r + reach {
            let w = if i == 0 {
                "goal".to_string()
            } else {
                format!("obstacles[{}]", i - 1)
            };
            return Err(format!("{w} can overlap the robot's start footprint"));
        }
    }
    if s.time_periods.is_empty() {
        return Err("time_periods is empty".into());
    }
    for p in &s.time_periods {
        let l = s
            .lighting
            .get(p)
            .ok_or_else(|| format!("time period {p:?} has no [lighting.{p}]"))?;
        range_within(l.brightness, &format!("lighting.{p}.brightness"), 0.05, 3.0)?;
        if l.tint
            .iter()
            .any(|t| !(t.is_finite() && (0.0..=3.0).contains(t)))
        {
            return Err(format!("lighting.{p}.tint must be in [0, 3]"));
        }
    }
    range_within(s.floor.tile_m, "floor.tile_m", 0.02, 5.0)?;
    if s.floor.colors.is_empty() {
        return Err("floor.colors is empty".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The sampled world

/// Base pose in the world frame: x, y (m), heading (rad, CCW from +x).
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Pose {
    pub x: f64,
    pub y: f64,
    pub yaw: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub enum Shape {
    /// Oriented box: half extents along its own x and y, yaw (rad).
    Box {
        half_depth: f64,
        half_width: f64,
        yaw: f64,
    },
    Cylinder {
        radius: f64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Object {
    pub kind: ObjectKind,
    pub x: f64,
    pub y: f64,
    pub height: f64,
    pub shape: Shape,
    /// Linear-light 0..1 RGB (decoded from the file's sRGB-like bytes), lighting not applied.
    pub color: [f32; 3],
}

impl Object {
    /// Distance from (px, py) to the object's footprint (negative inside).
    pub fn footprint_distance(&self, px: f64, py: f64) -> f64 {
        let (dx, dy) = (px - self.x, py - self.y);
        match self.shape {
            Shape::Cylinder { radius } => dx.hypot(dy) - radius,
            Shape::Box {
                half_depth,
                half_width,
                yaw,
            } => {
                let (c, s) = (yaw.cos(), yaw.sin());
                let lx = c * dx + s * dy;
                let ly = -s * dx + c * dy;
                let qx = lx.abs() - half_depth;
                let qy = ly.abs() - half_width;
                let outside = qx.max(0.0).hypot(qy.max(0.0));
                outside + qx.max(qy).min(0.0)
            }
        }
    }

    /// Half extents (along x, along y) of the footprint's bounding rectangle.
    fn half_extents(&self) -> (f64, f64) {
        match self.shape {
            Shape::Cylinder { radius } => (radius, radius),
            Shape::Box {
                half_depth,
                half_width,
                yaw,
            } => {
                let (s, c) = (yaw.sin().abs(), yaw.cos().abs());
                (
                    half_depth * c + half_width * s,
                    half_depth * s + half_width * c,
                )
            }
        }
    }

    /// Lateral extent (min y, max y) of the footprint.
    pub fn y_extent(&self) -> (f64, f64) {
        let (_, r) = self.half_extents();
        (self.y - r, self.y + r)
    }

    /// Extent along x (min x, max x) of the footprint.
    pub fn x_extent(&self) -> (f64, f64) {
        let (r, _) = self.half_extents();
        (self.x - r, self.x + r)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Arena {
    pub x_min: f64,
    pub x_max: f64,
    pub y_min: f64,
    pub y_max: f64,
    pub wall_height: f64,
    pub wall_color: [f32; 3],
}

impl Arena {
    pub fn contains(&self, x: f64, y: f64) -> bool {
        x >= self.x_min && x <= self.x_max && y >= self.y_min && y <= self.y_max
    }
}

/// The camera as mounted on the base.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Camera {
    pub height_m: f64,
    pub forward_m: f64,
    /// Radians, negative = down.
    pub pitch: f64,
    pub hfov: f64,
    pub upside_down: bool,
    pub noise_std: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Lighting {
    /// Per-channel multiplier (brightness × tint), linear RGB.
    pub gain: [f32; 3],
    /// Unit vector towards the key light (world frame).
    pub sun: [f32; 3],
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Floor {
    pub tile_m: f64,
    pub colors: [[f32; 3]; 2],
}

/// One trial's world: fixed for the whole trial.
#[derive(Debug, Clone, serde::Serialize)]
pub struct World {
    pub scenario: String,
    /// Name parts (`boxes` = `1box`, `side` = `left`, ...).
    pub parts: Vec<(String, String)>,
    pub seed: u64,
    pub instruction: String,
    pub time_period: String,
    pub time_limit_s: f64,
    pub pass_side: Option<Side>,
    pub success_radius_m: f64,
    pub early_stop_s: f64,
    pub arena: Arena,
    pub robot_radius_m: f64,
    pub start: Pose,
    pub wheel_gain_std: f64,
    pub wheel_noise_std: f64,
    pub camera: Camera,
    pub goal: Object,
    /// The goal's front point: where the base centre should end up.
    pub goal_front: (f64, f64),
    pub obstacles: Vec<Object>,
    pub lighting: Lighting,
    pub floor: Floor,
}

/// Scenario colours are sRGB-like bytes (what the colour looks like in a
/// photo); the renderer shades in linear light and applies gamma 1/2.2, so
/// decode with gamma 2.2 here (else a 176,132,84 box shows as 215,190,155).
fn linear(byte: f64) -> f32 {
    (byte.clamp(0.0, 255.0) / 255.0).powf(2.2) as f32
}

fn color(rng: &mut SimRng, colors: &[[u8; 3]], jitter: f64) -> [f32; 3] {
    let c = colors[rng.index(colors.len())];
    c.map(|v| linear(f64::from(v) + rng.uniform(-jitter, jitter)))
}

fn sample_object(spec: &ObjectSpec, mirror: bool, rng: &mut SimRng) -> Object {
    let sy = if mirror { -1.0 } else { 1.0 };
    let x = spec.x_m.sample(rng);
    let y = sy * spec.y_m.sample(rng);
    let yaw = sy * spec.yaw_deg.sample(rng).to_radians();
    let height = spec.height_m.sample(rng);
    let shape = match spec.shape {
        ShapeKind::Box => Shape::Box {
            half_depth: spec.depth_m.sample(rng) / 2.0,
            half_width: spec.width_m.sample(rng) / 2.0,
            yaw,
        },
        ShapeKind::Cylinder => Shape::Cylinder {
            radius: spec.radius_m.sample(rng),
        },
    };
    Object {
        kind: spec.kind,
        x,
        y,
        height,
        shape,
        color: color(rng, &spec.colors, spec.color_jitter),
    }
}

impl World {
    /// Sample a concrete world from `spec` with `seed` (same scenario and seed →
    /// same world; the scenario name keys the stream, so other scenarios with
    /// this seed are independent draws).
    pub fn sample(
        spec: &ScenarioSpec,
        scenario: &str,
        parts: Vec<(String, String)>,
        seed: u64,
    ) -> World {
        let mut rng = SimRng::for_scenario(seed, scenario, 0x5752_4C44); // "WRLD"
        let mirror = spec.mirror_y;
        let sy = if mirror { -1.0 } else { 1.0 };
        let a = &spec.arena;
        let arena = Arena {
            x_min: a.x_min_m,
            x_max: a.x_max_m,
            y_min: if mirror { -a.y_max_m } else { a.y_min_m },
            y_max: if mirror { -a.y_min_m } else { a.y_max_m },
            wall_height: a.wall_height_m,
            wall_color: color(&mut rng, &a.wall_colors, 10.0),
        };
        let start = Pose {
            x: spec.robot.start_x_m.sample(&mut rng),
            y: sy * spec.robot.start_y_m.sample(&mut rng),
            yaw: sy * spec.robot.start_yaw_deg.sample(&mut rng).to_radians(),
        };
        let goal = sample_object(&spec.goal, mirror, &mut rng);
        let obstacles = spec
            .obstacles
            .iter()
            .filter(|o| o.present)
            .map(|o| sample_object(o, mirror, &mut rng))
            .collect();
        let period = spec.time_periods[rng.index(spec.time_periods.len())].clone();
        let light = &spec.lighting[&period];
        let b = light.brightness.sample(&mut rng);
        let sun_az = rng.uniform(0.0, std::f64::consts::TAU);
        let sun_el = rng.uniform(0.5, 1.2);
        let lighting = Lighting {
            gain: light.tint.map(|t| (t * b) as f32),
            sun: [
                (sun_el.cos() * sun_az.cos()) as f32,
                (sun_el.cos() * sun_az.sin()) as f32,
                sun_el.sin() as f32,
            ],
        };
        let pair = spec.floor.colors[rng.index(spec.floor.colors.len())];
        let floor = Floor {
            tile_m: spec.floor.tile_m.sample(&mut rng),
            colors: pair.map(|c| c.map(|v| linear(f64::from(v)))),
        };
        let camera = Camera {
            height_m: spec.camera.height_m,
            forward_m: spec.camera.forward_m,
            pitch: spec.camera.pitch_deg.sample(&mut rng).to_radians(),
            hfov: spec.camera.hfov_deg.to_radians(),
            upside_down: spec.camera.upside_down,
            noise_std: spec.camera.noise_std,
        };
        // Front point: on the line from the start to the goal, `standoff` off its surface.
        let (gx, gy) = (goal.x - start.x, goal.y - start.y);
        let d = gx.hypot(gy).max(1e-9);
        let goal_reach = match goal.shape {
            Shape::Cylinder { radius } => radius,
            Shape::Box { half_depth, .. } => half_depth,
        } + spec.goal_standoff_m
            + spec.robot.radius_m;
        let goal_front = (goal.x - gx / d * goal_reach, goal.y - gy / d * goal_reach);
        World {
            scenario: scenario.to_string(),
            parts,
            seed,
            instruction: spec.instruction.clone(),
            time_period: period,
            time_limit_s: spec.time_limit_s,
            pass_side: spec
                .pass_side
                .map(|s| if mirror { s.mirrored() } else { s }),
            success_radius_m: spec.success_radius_m,
            early_stop_s: spec.early_stop_s,
            arena,
            robot_radius_m: spec.robot.radius_m,
            start,
            wheel_gain_std: spec.robot.wheel_gain_std,
            wheel_noise_std: spec.robot.wheel_noise_std,
            camera,
            goal,
            goal_front,
            obstacles,
            lighting,
            floor,
        }
    }

    /// Name part `axis` (e.g. `side`), if the scenario has it.
    pub fn part(&self, axis: &str) -> Option<&str> {
        self.parts
            .iter()
            .find(|(a, _)| a == axis)
            .map(|(_, v)| v.as_str())
    }
}

// ---------------------------------------------------------------------------
// Catalogue: all scenario files, names matched by glob

/// All known scenario families (the built-in ones plus any extra files).
#[derive(Debug, Clone)]
pub struct Catalogue {
    pub files: Vec<ScenarioFile>,
}

impl Catalogue {
    pub fn builtin() -> Self {
        Self {
            files: BUILTIN_SCENARIOS
                .iter()
                .map(|(p, t)| ScenarioFile::parse(t, p).expect("built-in scenario files are valid"))
                .collect(),
        }
    }

    /// Built-ins plus the given files (a later family with a known name wins).
    pub fn with_files(paths: &[PathBuf]) -> Result<Self, ScenarioError> {
        let mut c = Self::builtin();
        for p in paths {
            c.files.push(ScenarioFile::load(p)?);
        }
        Ok(c)
    }

    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.files.iter().flat_map(|f| f.names()).collect();
        v.sort();
        v.dedup();
        v
    }

    /// Scenario names matching a glob (`*` any run, `?` one character;
    /// comma-separated alternatives), sorted.
    pub fn matching(&self, pattern: &str) -> Result<Vec<String>, ScenarioError> {
        let names: Vec<String> = self
            .names()
            .into_iter()
            .filter(|n| pattern.split(',').any(|p| glob_match(p.trim(), n)))
            .collect();
        if names.is_empty() {
            return Err(ScenarioError::NoMatch(
                pattern.to_string(),
                self.files
                    .iter()
                    .map(|f| f.name.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
        }
        Ok(names)
    }

    /// The world of scenario `name` for `seed`.
    pub fn world(&self, name: &str, seed: u64) -> Result<World, ScenarioError> {
        let (spec, parts) = self.spec(name)?;
        Ok(World::sample(&spec, name, parts, seed))
    }

    /// The spec of scenario `name` (a later family with a known name wins)
    /// and its name parts.
    pub fn spec(&self, name: &str) -> Result<(ScenarioSpec, Vec<(String, String)>), ScenarioError> {
        match self
            .files
            .iter()
            .rev()
            .find(|f| f.names().iter().any(|n| n == name))
        {
            Some(f) => f.spec(name),
            None => Err(ScenarioError::NoMatch(
                name.to_string(),
                self.names().join(", "),
            )),
        }
    }
}

/// Shell-style glob: `*` any run, `?` one character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::rng::scenario_key;
    use std::collections::BTreeSet;

    #[test]
    fn builtin_families_expand_to_the_field_scenarios() {
        let c = Catalogue::builtin();
        let names = c.names();
        // 2 × 2 × 2 × 3 box scenarios + 3 V3 targets.
        assert_eq!(names.len(), 27, "{names:?}");
        assert!(names.contains(&"1box_hori_left_core_medium".to_string()));
        assert!(names.contains(&"2box_hori_right_variant_far".to_string()));
        assert!(names.contains(&"v3_center".to_string()));
        assert_eq!(c.matching("1box_*_left_*").unwrap().len(), 6);
        assert_eq!(
            c.matching("v3_*,1box_hori_left_core_close").unwrap().len(),
            4
        );
        assert!(c.matching("nothing*").is_err());
    }

    #[test]
    fn same_seed_same_world_other_seed_other_world() {
        let c = Catalogue::builtin();
        let a = c.world("1box_hori_left_variant_far", 3).unwrap();
        let b = c.world("1box_hori_left_variant_far", 3).unwrap();
        let d = c.world("1box_hori_left_variant_far", 4).unwrap();
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        assert_ne!(format!("{a:?}"), format!("{d:?}"));
    }

    /// Regression: every scenario of a batch used the trial seed's stream
    /// as is, so `--trials 17` over 24 scenarios drew 17 lightings, cameras
    /// and colours, and a `right` world was its `left` twin's mirror image
    /// (trial figures rested on 17 independent draws, not 408).
    #[test]
    fn scenarios_sharing_a_seed_are_independent_draws() {
        let c = Catalogue::builtin();
        let names = c.names();
        let box_names: Vec<&String> = names.iter().filter(|n| n.contains("box_hori")).collect();
        assert_eq!(box_names.len(), 24);
        for seed in 0..5 {
            let worlds: Vec<World> = box_names
                .iter()
                .map(|n| c.world(n, seed).unwrap())
                .collect();
            let suns: BTreeSet<[u32; 3]> = worlds
                .iter()
                .map(|w| w.lighting.sun.map(f32::to_bits))
                .collect();
            let pitches: BTreeSet<u64> = worlds.iter().map(|w| w.camera.pitch.to_bits()).collect();
            assert_eq!(suns.len(), 24, "seed {seed}: one sun per scenario");
            assert_eq!(
                pitches.len(),
                24,
                "seed {seed}: one camera pitch per scenario"
            );
            let l = c.world("1box_hori_left_core_medium", seed).unwrap();
            let r = c.world("1box_hori_right_core_medium", seed).unwrap();
            assert!(
                (l.goal.y + r.goal.y).abs() > 1e-9,
                "seed {seed}: right is not the left draw mirrored"
            );
        }
        assert_ne!(
            scenario_key("1box_hori_left_core_close"),
            scenario_key("1box_hori_right_core_close")
        );
        // FNV-1a 64 reference values (empty string: the offset basis; "a": published test vector).
        assert_eq!(scenario_key(""), 0xCBF2_9CE4_8422_2325);
        assert_eq!(scenario_key("a"), 0xAF63_DC4C_8601_EC8C);
    }

    #[test]
    fn right_is_the_mirror_of_left() {
        let c = Catalogue::builtin();
        for seed in 0..20 {
            let l = c.world("1box_hori_left_core_medium", seed).unwrap();
            // The right spec drawn with the left scenario's stream: its mirror
            // image (`Catalogue::world` keys the stream by name, so the real
            // right world of this seed is an independent draw).
            let (spec, parts) = c.spec("1box_hori_right_core_medium").unwrap();
            let r = World::sample(&spec, "1box_hori_left_core_medium", parts, seed);
            assert!(
                (l.start.y + r.start.y).abs() < 1e-12 && (l.start.yaw + r.start.yaw).abs() < 1e-12
            );
            assert_eq!(l.pass_side, Some(Side::Left));
            assert_eq!(r.pass_side, Some(Side::Right));
            assert!((l.goal.y + r.goal.y).abs() < 1e-12);
            assert!((l.obstacles[0].y + r.obstacles[0].y).abs() < 1e-12);
            // Left scenarios: the bottle on the left, the box leaning right.
            assert!(l.goal.y > 0.0 && l.obstacles[0].y < 0.0);
        }
    }

    #[test]
    fn footprint_distance_of_a_rotated_box() {
        let o = Object {
            kind: ObjectKind::Box,
            x: 1.0,
            y: 0.0,
            height: 0.3,
            shape: Shape::Box {
                half_depth: 0.1,
                half_width: 0.2,
                yaw: std::f64::consts::FRAC_PI_2,
            },
            color: [0.5; 3],
        };
        // Rotated 90°: the width now runs along x.
        assert!((o.footprint_distance(1.0, 0.3) - 0.2).abs() < 1e-9);
        assert!((o.footprint_distance(1.5, 0.0) - 0.3).abs() < 1e-9);
        assert!(o.footprint_distance(1.0, 0.0) < 0.0);
        let (lo, hi) = o.y_extent();
        assert!((lo + 0.1).abs() < 1e-9 && (hi - 0.1).abs() < 1e-9);
    }

    #[test]
    fn bad_scenario_files_name_the_fault() {
        let e = ScenarioFile::parse("name = \"x\"\n[base]\nbogus = 1\n", "f.toml").unwrap_err();
        let e = crate::error::report(&e);
        assert!(e.contains("f.toml"), "{e}");
        let e = ScenarioFile::parse("name = \"x\"", "g.toml").unwrap_err();
        let e = crate::error::report(&e);
        assert!(e.contains("base"), "{e}");
        let mut text = BUILTIN_SCENARIOS[0].1.to_string();
        text = text.replace("time_limit_s = 30.0", "time_limit_s = -1.0");
        let e = crate::error::report(&ScenarioFile::parse(&text, "h.toml").unwrap_err());
        assert!(e.contains("time_limit_s"), "{e}");
    }

    #[test]
    fn glob() {
        assert!(glob_match("1box_*", "1box_hori_left_core_medium"));
        assert!(glob_match("*left*", "1box_hori_left_core_medium"));
        assert!(!glob_match("2box_*", "1box_hori_left_core_medium"));
        assert!(glob_match("v3_?ight", "v3_right"));
        assert!(glob_match("*", "x"));
    }
}
