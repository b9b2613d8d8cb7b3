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
pub mod stop;
pub mod trial;

/// An error that means "the input is wrong" (exit 2) rather than "something
/// failed" (exit 1). It keeps the error it marks, causes included.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct BadInput(anyhow::Error);

impl BadInput {
    /// A message of ours.
    pub fn msg(message: impl std::fmt::Display + std::fmt::Debug + Send + Sync + 'static) -> Self {
        Self(anyhow::Error::msg(message))
    }

    /// The input error `e`, as it is.
    pub fn of(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(anyhow::Error::new(e))
    }

    /// The input error `e`, under `context` (what was being read).
    pub fn context(
        e: impl std::error::Error + Send + Sync + 'static,
        context: impl std::fmt::Display + Send + Sync + 'static,
    ) -> Self {
        Self(anyhow::Error::new(e).context(context))
    }
}

/// Library errors that know whether they are about the input.
pub trait InputOrFailure: std::error::Error + Send + Sync + 'static {
    fn is_bad_input(&self) -> bool;
}

impl InputOrFailure for mvla::trial::store::StoreError {
    fn is_bad_input(&self) -> bool {
        self.is_bad_input()
    }
}

impl InputOrFailure for mvla::trial::console::ConsoleError {
    fn is_bad_input(&self) -> bool {
        self.is_bad_input()
    }
}

/// `e` as [`BadInput`] (exit 2) when it is about the input, else as a
/// runtime failure (exit 1).
pub fn classified(e: impl InputOrFailure) -> anyhow::Error {
    if e.is_bad_input() {
        BadInput::of(e).into()
    } else {
        e.into()
    }
}

pub fn load_policy(model: &Path) -> Result<TractPolicy> {
    TractPolicy::load(model)
        .map_err(|e| BadInput::context(e, format!("model {}", model.display())).into())
}

/// Write a new file; an existing one is never replaced.
pub fn write_new(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::File::create_new(path)?;
    if let Err(e) = f.write_all(bytes).and_then(|_| f.sync_all()) {
        drop(f);
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(())
}
