//! The fuzz harness for the targets in `mvla::fuzz`.
//!
//! `mvla-fuzz TARGET [FILE...]` runs the files (or stdin) through TARGET:
//! how a crash or hang found by a fuzzer is reproduced and triaged.
//! `mvla-fuzz --seeds TARGET` lists the target's seed files.
//!
//! Built by `fuzz/run.sh` with AFL++'s instrumentation and `--cfg mvla_afl`,
//! it instead runs AFL++'s persistent loop under `afl-fuzz` (stable Rust:
//! rustc's SanitizerCoverage pass plus AFL++'s compiler runtime).

use std::io::Read;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let names = || {
        mvla::fuzz::TARGETS
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let [flag, name] = args.as_slice() {
        if flag == "--seeds" {
            for (_, path) in mvla::fuzz::SEEDS.iter().filter(|(t, _)| t == name) {
                println!("{path}");
            }
            return ExitCode::SUCCESS;
        }
    }
    let Some((name, files)) = args.split_first() else {
        eprintln!(
            "usage: mvla-fuzz TARGET [FILE...] | --seeds TARGET (targets: {})",
            names()
        );
        return ExitCode::from(2);
    };
    let Some(target) = mvla::fuzz::target(name) else {
        eprintln!("unknown target {name:?} (targets: {})", names());
        return ExitCode::from(2);
    };
    #[cfg(mvla_afl)]
    if files.is_empty() {
        afl::run(target);
        return ExitCode::SUCCESS;
    }
    if files.is_empty() {
        let mut data = Vec::new();
        if let Err(e) = std::io::stdin().read_to_end(&mut data) {
            eprintln!("stdin: {e}");
            return ExitCode::from(2);
        }
        target(&data);
    }
    for file in files {
        match std::fs::read(file) {
            Ok(data) => target(&data),
            Err(e) => {
                eprintln!("{file}: {e}");
                return ExitCode::from(2);
            }
        }
        println!("{file}: ok");
    }
    ExitCode::SUCCESS
}

#[cfg(mvla_afl)]
mod afl {
    use std::io::Read;

    extern "C" {
        // AFL++'s compiler runtime (afl-compiler-rt.o, linked by fuzz/run.sh).
        fn __afl_persistent_loop(max: u32) -> i32;
        fn __afl_manual_init();
    }

    // afl-fuzz scans the binary for these markers to use persistent mode and
    // the deferred fork server.
    #[used]
    static PERSISTENT: &[u8] = b"##SIG_AFL_PERSISTENT##\0";
    #[used]
    static DEFERRED: &[u8] = b"##SIG_AFL_DEFER_FORKSRV##\0";

    /// Inputs from afl-fuzz through `target`, many per process; a panic is
    /// an abort, i.e. a crash afl-fuzz records.
    pub fn run(target: mvla::fuzz::Target) {
        std::panic::set_hook(Box::new(|info| {
            eprintln!("{info}");
            std::process::abort();
        }));
        // SAFETY: AFL++'s documented entry points, called from the main thread.
        unsafe { __afl_manual_init() };
        let mut input = Vec::new();
        // SAFETY: as above; 10 000 inputs per process, then a fresh fork.
        while unsafe { __afl_persistent_loop(10_000) } != 0 {
            input.clear();
            if std::io::stdin().read_to_end(&mut input).is_ok() {
                target(&input);
            }
        }
    }
}
