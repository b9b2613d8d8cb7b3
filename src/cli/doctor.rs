//! `mvla doctor`: the on-robot acceptance checks (see `mvla::doctor`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::BadInput;

#[allow(clippy::too_many_arguments)]
pub fn run(
    config_path: Option<&Path>,
    json: bool,
    require: Vec<String>,
    strict: bool,
    min_free_gib: f64,
    report_dir: Option<PathBuf>,
    build: bool,
    list_hardware_tests: bool,
) -> Result<u8> {
    if list_hardware_tests {
        for t in mvla::doctor::HARDWARE_TESTS {
            out!("{}\n    needs {}", t.command, t.needs);
        }
        return Ok(0);
    }
    let mut require = require;
    if strict {
        require.push("all".into());
    }
    let require = mvla::doctor::expand_require(&require).map_err(BadInput::msg)?;
    if !(min_free_gib.is_finite() && min_free_gib >= 0.0) {
        bail!(BadInput::msg(format!(
            "--min-free-gib {min_free_gib}: must be a finite number >= 0"
        )));
    }
    let config = match config_path {
        Some(path) => mvla::config::Config::load(path).map_err(BadInput::of)?,
        None => mvla::config::Config::builtin_default(),
    };
    let options = mvla::doctor::DoctorOptions {
        config_path: config_path.map(Path::to_path_buf),
        require: require.into_iter().map(String::from).collect(),
        min_free_gib,
        report_dir,
        build,
        ..Default::default()
    };
    let report = mvla::doctor::run(&config, &options);
    let written = match options.report_dir(&config) {
        Some(d) => match mvla::doctor::write_report(&report, &d) {
            Ok(p) => format!("report: {}", p.display()),
            Err(e) => format!("report NOT written to {}: {e}", d.display()),
        },
        None => "report not written (no --report-dir and no [record] dir in the config)".into(),
    };
    if json {
        out!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
        out!("hardware-only tests: mvla doctor --list-hardware-tests");
    }
    eprintln!("{written}");
    Ok(report.exit_code())
}
