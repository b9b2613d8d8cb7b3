//! The subcommands' glue (binary side): one module per subcommand, each
//! turning parsed arguments into library calls and printing the result.
//! `main.rs` holds the command-line definition, the dispatch and the exit
//! codes.

use std::path::Path;

use anyhow::Result;

use mvla::policy::tract::TractPolicy;

/// `println!` that a closed stdout (`mvla eval --json | head`) cannot turn
/// into a panic: the write is dropped and the command finishes normally.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

pub mod bench;
pub mod calib;
pub mod doctor;
pub mod engine;
pub mod eval;
pub mod preprocess;
pub mod run;
pub mod sim;

/// An error that means "the input is wrong" (exit 2) rather than "something failed" (exit 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

pub fn load_policy(model: &Path) -> Result<TractPolicy> {
    TractPolicy::load(model).map_err(|e| BadInput(format!("model {}: {e}", model.display())).into())
}
