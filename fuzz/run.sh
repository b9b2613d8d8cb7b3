#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser of outside data (mvla::fuzz) with
# AFL++ on stable Rust: rustc's SanitizerCoverage pass (trace-pc-guard) and
# AFL++'s compiler runtime from Debian's afl++ package, in persistent mode.
#
#   bash fuzz/run.sh [EXECS_PER_TARGET] [TARGET...]
#
# Default: 2 000 000 executions per target, every target. Findings land in
# target/afl/out/TARGET/default/{crashes,hangs}; reproduce one with
#   target/debug/mvla-fuzz TARGET FILE
# The figures (executions, crashes, hangs per target) are printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

execs=${1:-2000000}
shift || true
if ! command -v afl-fuzz >/dev/null; then
    apt-get install -y -q afl++ >/dev/null
fi
rt=/usr/lib/afl/afl-compiler-rt.o
[ -f "$rt" ] || { echo "no $rt (Debian package afl++)" >&2; exit 2; }

# Instrument everything (mvla and its dependencies); a separate target dir
# keeps the normal build's cache intact.
export RUSTFLAGS="--cfg mvla_afl -C passes=sancov-module -C llvm-args=-sanitizer-coverage-level=3 \
-C llvm-args=-sanitizer-coverage-trace-pc-guard -C llvm-args=-sanitizer-coverage-prune-blocks=0 \
-C debug-assertions -C overflow-checks -C link-arg=$rt"
cargo build --release --locked --bin mvla-fuzz --target-dir target/afl
bin=target/afl/release/mvla-fuzz
grep -q "##SIG_AFL_PERSISTENT##" "$bin" || { echo "persistent-mode marker missing in $bin" >&2; exit 1; }

if [ $# -eq 0 ]; then
    set -- config model_json calibration scenario npy slcan_replies episode
fi
export AFL_SKIP_CPUFREQ=1 AFL_NO_UI=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_QUIET=1
summary=()
for t in "$@"; do
    seeds=target/afl/seeds/$t
    rm -rf "$seeds" "target/afl/out/$t"
    mkdir -p "$seeds" target/afl/out
    "$bin" --seeds "$t" | while read -r f; do cp "$f" "$seeds/"; done
    # Episodes: the reader child's own stall timeout is 10 s, so only a
    # wait past it is a hang; the text parsers get 1 s.
    timeout_ms=1000
    [ "$t" = episode ] && timeout_ms=15000
    start=$(date +%s)
    afl-fuzz -i "$seeds" -o "target/afl/out/$t" -E "$execs" -t "$timeout_ms" -m none -- "$bin" "$t" >"target/afl/$t.log" 2>&1 || {
        echo "afl-fuzz failed for $t (see target/afl/$t.log)" >&2; tail -20 "target/afl/$t.log" >&2; exit 1; }
    stats=target/afl/out/$t/default/fuzzer_stats
    get() { awk -F' *: *' -v k="$1" '$1==k {print $2}' "$stats"; }
    summary+=("$(printf '%-14s %12s execs %6ss %4s crashes %4s hangs  %s paths' "$t" "$(get execs_done)" "$(( $(date +%s) - start ))" "$(get saved_crashes)" "$(get saved_hangs)" "$(get corpus_count)")")
done
echo "== fuzz/run.sh: $(afl-fuzz -h 2>&1 | head -1 | grep -o 'afl-fuzz++[0-9.a-z]*'), $(nproc) cores, $(date -u +%F)"
printf '%s\n' "${summary[@]}"
