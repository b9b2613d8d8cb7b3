//! Printing an error with its causes.
//!
//! mvla's errors keep the error they wrap as their `source()` and do not
//! repeat its text in their own message (the Rust API guidelines' rule), so
//! printing only `{e}` loses the detail. Everything that shows an error to a
//! person (CLI, summaries, `doctor`, the log) prints the whole chain with
//! [`report`] / [`Report`]: `outer: cause: root cause`.

use std::error::Error;
use std::fmt;

/// Displays an error and its chain of sources, joined by `": "`. A source
/// whose text the message before it already contains (a foreign library
/// that repeats its cause) is skipped, so nothing is printed twice.
pub struct Report<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last = self.0.to_string();
        f.write_str(&last)?;
        let mut next = self.0.source();
        while let Some(e) = next {
            let text = e.to_string();
            if !text.is_empty() && !last.contains(&text) {
                write!(f, ": {text}")?;
            }
            last = text;
            next = e.source();
        }
        Ok(())
    }
}

/// The error and its causes as one line (see [`Report`]).
pub fn report(e: &(dyn Error + 'static)) -> String {
    Report(e).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("config robot.toml")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn the_whole_chain_is_printed_once() {
        let e = Outer(Middle(std::io::Error::from_raw_os_error(2)));
        let text = report(&e);
        assert!(
            text.starts_with("config robot.toml: cannot read: No such file or directory"),
            "{text}"
        );
        assert_eq!(text.matches("No such file").count(), 1, "{text}");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("I/O error: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn a_source_the_message_already_shows_is_not_repeated() {
        let e = Repeats(std::io::Error::other("disk on fire"));
        assert_eq!(report(&e), "I/O error: disk on fire");
    }
}
