//! Pictures of a trial: the top-down trajectory (SVG: arena, obstacles, goal,
//! the success circle, the path coloured by failsafe level) and the camera
//! view with the chunk overlaid (animated GIF). What a developer opens first
//! when a trial fails.

use std::fmt::Write as _;
use std::path::Path;

use super::lockstep::{KeptFrame, TrialRecord};
use super::world::{Object, Shape};
use crate::control::failsafe::Level;

/// Colour of the path for a failsafe level (unknown in real time: blue).
fn level_color(level: Option<Level>) -> &'static str {
    match level {
        Some(Level::Nominal) => "#1a9850",
        Some(Level::Degraded) => "#91cf60",
        Some(Level::Hold) => "#fdae61",
        Some(Level::Stop) => "#f46d43",
        Some(Level::EStop) => "#d73027",
        None => "#2166ac",
    }
}

fn rgb_hex(c: [f32; 3]) -> String {
    // Linear light back to display bytes (gamma 1/2.2, as the renderer).
    let b = c.map(|v| (v.clamp(0.0, 1.0).powf(1.0 / 2.2) * 255.0).round() as u8);
    format!("#{:02x}{:02x}{:02x}", b[0], b[1], b[2])
}

/// The trial seen from above, x (forward) up the page, y (left) to the left.
pub fn trajectory_svg(r: &TrialRecord) -> String {
    let w = &r.world;
    let a = &w.arena;
    let scale = 200.0; // px per metre
    let (width, height) = ((a.y_max - a.y_min) * scale, (a.x_max - a.x_min) * scale);
    // World (x, y) → page (px, py): y left → page left, x forward → page up.
    let px = |y: f64| (a.y_max - y) * scale;
    let py = |x: f64| (a.x_max - x) * scale;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{:.0}" height="{:.0}" viewBox="0 0 {width:.0} {:.0}">"#,
        width,
        height + 60.0,
        height + 60.0
    );
    let _ = writeln!(
        s,
        r##"<rect x="0" y="0" width="{width:.0}" height="{height:.0}" fill="#f4f1ea" stroke="#444" stroke-width="3"/>"##
    );
    // 0.5 m grid.
    let mut g = (a.x_min / 0.5).ceil() * 0.5;
    while g <= a.x_max {
        let _ = writeln!(
            s,
            r##"<line x1="0" y1="{0:.1}" x2="{width:.0}" y2="{0:.1}" stroke="#ddd"/>"##,
            py(g)
        );
        g += 0.5;
    }
    let mut g = (a.y_min / 0.5).ceil() * 0.5;
    while g <= a.y_max {
        let _ = writeln!(
            s,
            r##"<line x1="{0:.1}" y1="0" x2="{0:.1}" y2="{height:.0}" stroke="#ddd"/>"##,
            px(g)
        );
        g += 0.5;
    }
    let object = |s: &mut String, o: &Object| {
        let fill = rgb_hex(o.color);
        match o.shape {
            Shape::Cylinder { radius } => {
                let _ = writeln!(
                    s,
                    r##"<circle cx="{:.1}" cy="{:.1}" r="{:.1}" fill="{fill}" stroke="#222"/>"##,
                    px(o.y),
                    py(o.x),
                    radius * scale
                );
            }
            Shape::Box {
                half_depth,
                half_width,
                yaw,
            } => {
                let (c, sn) = (yaw.cos(), yaw.sin());
                let pts: Vec<String> = [(1.0, 1.0), (1.0, -1.0), (-1.0, -1.0), (-1.0, 1.0)]
                    .iter()
                    .map(|(u, v)| {
                        let (lx, ly) = (u * half_depth, v * half_width);
                        let (x, y) = (o.x + c * lx - sn * ly, o.y + sn * lx + c * ly);
                        format!("{:.1},{:.1}", px(y), py(x))
                    })
                    .collect();
                let _ = writeln!(
                    s,
                    r##"<polygon points="{}" fill="{fill}" stroke="#222"/>"##,
                    pts.join(" ")
                );
            }
        }
    };
    for o in &w.obstacles {
        object(&mut s, o);
    }
    object(&mut s, &w.goal);
    // The success circle round the goal's front point.
    let _ = writeln!(
        s,
        r##"<circle cx="{:.1}" cy="{:.1}" r="{:.1}" fill="none" stroke="#1a9850" stroke-dasharray="6 4" stroke-width="2"/>"##,
        px(w.goal_front.1),
        py(w.goal_front.0),
        w.success_radius_m * scale
    );
    // The path, one segment per level run.
    let mut run: Vec<(f64, f64)> = Vec::new();
    let mut run_level = r.trajectory.first().map(|p| p.level);
    let flush = |s: &mut String, run: &[(f64, f64)], level: Option<Level>| {
        if run.len() >= 2 {
            let pts: Vec<String> = run
                .iter()
                .map(|(x, y)| format!("{:.1},{:.1}", px(*y), py(*x)))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="3"/>"#,
                pts.join(" "),
                level_color(level)
            );
        }
    };
    for p in &r.trajectory {
        if Some(p.level) != run_level {
            let last = run.last().copied();
            flush(&mut s, &run, run_level.flatten());
            run.clear();
            run.extend(last);
            run_level = Some(p.level);
        }
        run.push((p.x, p.y));
    }
    flush(&mut s, &run, run_level.flatten());
    // The footprint at the end.
    let _ = writeln!(
        s,
        r##"<circle cx="{:.1}" cy="{:.1}" r="{:.1}" fill="none" stroke="#000" stroke-width="2"/>"##,
        px(r.final_pose.y),
        py(r.final_pose.x),
        w.robot_radius_m * scale
    );
    let verdict = match r.failure_code {
        Some(c) => format!("FAILURE {c}"),
        None => "SUCCESS".to_string(),
    };
    let _ = writeln!(
        s,
        r#"<text x="8" y="{:.0}" font-family="sans-serif" font-size="16">{} seed {} ({}, {}): {verdict}, t {:.1} s, path {:.2} m</text>"#,
        height + 22.0,
        xml(&r.scenario),
        r.seed,
        r.mode,
        xml(&r.policy),
        r.time_s,
        r.path_length_m
    );
    let _ = writeln!(
        s,
        r#"<text x="8" y="{:.0}" font-family="sans-serif" font-size="13">{}</text>"#,
        height + 44.0,
        xml(&r.reason)
    );
    s.push_str("</svg>\n");
    s
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn put(f: &mut KeptFrame, x: i64, y: i64, c: [u8; 3]) {
    if x >= 0 && y >= 0 && (x as usize) < f.width && (y as usize) < f.height {
        let i = (y as usize * f.width + x as usize) * 3;
        f.rgb[i..i + 3].copy_from_slice(&c);
    }
}

fn line(f: &mut KeptFrame, (x0, y0): (f64, f64), (x1, y1): (f64, f64), c: [u8; 3]) {
    let n = (x1 - x0).abs().max((y1 - y0).abs()).ceil().max(1.0) as usize;
    for k in 0..=n {
        let t = k as f64 / n as f64;
        let (x, y) = (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t);
        for (dx, dy) in [(0, 0), (1, 0), (0, 1)] {
            put(f, x.round() as i64 + dx, y.round() as i64 + dy, c);
        }
    }
}

/// Overlay: the chunk's actions as arrows from the bottom centre (forward =
/// up, left = left), step 0 bold; a border in the failsafe level's colour.
fn overlay(f: &mut KeptFrame) {
    let (w, h) = (f.width as f64, f.height as f64);
    let origin = (w / 2.0, h - 8.0);
    let len = h * 0.25;
    let actions = f.actions.clone();
    for (i, a) in actions.iter().enumerate().rev() {
        let (ax, ay) = (f64::from(a[0]), f64::from(a[1]));
        let tip = (origin.0 - ay / 1.15 * len, origin.1 - ax / 1.15 * len);
        let c = if i == 0 {
            [255, 255, 0]
        } else {
            [255, 255, 255]
        };
        line(f, origin, tip, c);
    }
    let hex = level_color(Some(f.level));
    let c = [1, 3, 5].map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or(0));
    for x in 0..f.width as i64 {
        for y in [0, 1, f.height as i64 - 2, f.height as i64 - 1] {
            put(f, x, y, c);
        }
    }
    for y in 0..f.height as i64 {
        for x in [0, 1, f.width as i64 - 2, f.width as i64 - 1] {
            put(f, x, y, c);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error("no frames were kept (the expert drives without a camera)")]
    NoFrames,
    #[error("cannot write the video")]
    Io(#[from] std::io::Error),
    #[error("gif")]
    Gif(#[from] gif::EncodingError),
}

/// The kept camera frames with the overlay, as an animated GIF (real-time pacing).
pub fn write_video(path: &Path, r: &TrialRecord) -> Result<(), VideoError> {
    let first = r.kept_frames.first().ok_or(VideoError::NoFrames)?;
    let (w, h) = (first.width as u16, first.height as u16);
    if path.exists() {
        return Err(VideoError::Io(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "exists (never overwritten)",
        )));
    }
    let tmp = path.with_extension("gif.partial");
    {
        let file = std::fs::File::create_new(&tmp)?;
        let mut enc = gif::Encoder::new(std::io::BufWriter::new(file), w, h, &[])?;
        enc.set_repeat(gif::Repeat::Infinite)?;
        for (i, k) in r.kept_frames.iter().enumerate() {
            let mut f = k.clone();
            overlay(&mut f);
            let next_t = r
                .kept_frames
                .get(i + 1)
                .map(|n| n.t_s)
                .unwrap_or(k.t_s + 0.1);
            let mut frame = gif::Frame::from_rgb_speed(w, h, &f.rgb, 10);
            frame.delay = ((next_t - k.t_s) * 100.0).round().clamp(2.0, 500.0) as u16;
            if let Err(e) = enc.write_frame(&frame) {
                drop(enc);
                let _ = std::fs::remove_file(&tmp);
                return Err(e.into());
            }
        }
    }
    super::publish_new(&tmp, path)?;
    Ok(())
}
