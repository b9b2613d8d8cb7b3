//! Where log lines go: the systemd journal (structured fields, no colours)
//! when the process runs as a service whose stderr is the journal, else
//! plain stderr (colours only on a terminal).
//!
//! Levels: `mvla` itself logs its state changes (failsafe transitions, link
//! up/down, READY, backend and model) at `info`, shown by default; `-v`
//! adds `mvla` debug lines, `-vv` trace. Dependency crates stay at `warn`
//! (`-vv`: `info`), so verbose output stays readable.

use std::io::IsTerminal;

use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Where [`init`] sent the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    Journal,
    Stderr { ansi: bool },
}

/// The filter for `-v` given `verbose` times.
pub fn filter_directives(verbose: u8) -> &'static str {
    match verbose {
        0 => "warn,mvla=info",
        1 => "warn,mvla=debug",
        _ => "info,mvla=trace",
    }
}

/// True when stderr is the journal stream systemd set up for this process:
/// `JOURNAL_STREAM` holds "device:inode" of that stream (systemd.exec(5)),
/// and it must match stderr itself, or a child whose stderr was redirected
/// would still write to a journal it is not connected to.
pub fn stderr_is_journal() -> bool {
    let Ok(value) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    // SAFETY: fstat on fd 2 into a zeroed stat buffer we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(2, &mut st) } != 0 {
        return false;
    }
    st.st_dev == dev && st.st_ino == ino
}

/// Install the global subscriber (once; later calls keep the first).
pub fn init(verbose: u8) -> Sink {
    let filter = || EnvFilter::new(filter_directives(verbose));
    if stderr_is_journal() {
        match tracing_journald::layer() {
            Ok(journald) => {
                let _ = tracing_subscriber::registry()
                    .with(filter())
                    .with(journald.with_syslog_identifier("mvla".into()))
                    .try_init();
                return Sink::Journal;
            }
            Err(e) => eprintln!("mvla: journald socket unavailable ({e}); logging to stderr"),
        }
    }
    let ansi = std::io::stderr().is_terminal();
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_env_filter(filter())
        .try_init();
    Sink::Stderr { ansi }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependency_crates_stay_quiet_at_every_verbosity() {
        for v in 0..4 {
            let d = filter_directives(v);
            assert!(d.starts_with("warn,") || d.starts_with("info,"), "{d}");
            assert!(d.contains("mvla="), "{d}");
            EnvFilter::try_new(d).expect("valid directives");
        }
        assert_eq!(filter_directives(0), "warn,mvla=info");
    }

    #[test]
    fn a_journal_stream_that_is_not_stderr_is_not_the_journal() {
        // Whatever stderr is here, it is not device 0 inode 0.
        std::env::set_var("JOURNAL_STREAM", "0:0");
        assert!(!stderr_is_journal());
        std::env::set_var("JOURNAL_STREAM", "garbage");
        assert!(!stderr_is_journal());
        std::env::remove_var("JOURNAL_STREAM");
        assert!(!stderr_is_journal());
    }
}
