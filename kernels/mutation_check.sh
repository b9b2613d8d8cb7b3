#!/usr/bin/env bash
# Mutation check of the kernel tests: each mutation below is a deliberately
# wrong one-line change to a kernel; the host-emulation tests
# (tests/kernel_emulation.rs, built with AddressSanitizer) must fail on every
# one of them. Restores the sources afterwards, also when interrupted.
#
#   bash kernels/mutation_check.sh        # from the repository root; .ci/test runs it
#
# Prints one line per mutation and exits non-zero if any survived.
set -euo pipefail
cd "$(dirname "$0")/.."

backup=$(mktemp -d)
cp kernels/*.cu kernels/*.cuh kernels/*.h "$backup/"
restore() { cp "$backup"/* kernels/; rm -rf "$backup"; }
trap restore EXIT

asan=$(${CC:-gcc} -print-file-name=libasan.so)
export MVLA_KERNEL_SANITIZE=address ASAN_OPTIONS=detect_leaks=0
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="env LD_PRELOAD=$asan"

# name | file | exact text | replacement
mutations=(
  "rotation off by one|resample_horizontal.cu|int sy = rotate180 ? (in_h - 1 - y) : y;|int sy = rotate180 ? (in_h - y) : y;"
  "mirrored column off by one|resample_horizontal.cu|int sx = rotate180 ? (in_w - 1 - x) : x;|int sx = rotate180 ? (in_w - 2 - x) : x;"
  "NV12 chroma row not halved|pillow_resample.cuh|const u8* uv = src + (long)(in_h + (y >> 1)) * pitch + (x & ~1);|const u8* uv = src + (long)(in_h + y) * pitch + (x & ~1);"
  "YUYV U and V swapped|pillow_resample.cuh|u = (int)pair[1] - 128;|u = (int)pair[3] - 128;"
  "NV12 U and V swapped|pillow_resample.cuh|u = (int)uv[0] - 128;|u = (int)uv[1] - 128;"
  "YUYV luma of the wrong pixel|pillow_resample.cuh|yv = pair[(x & 1) * 2];|yv = pair[0];"
  "bounds check off by one|resample_vertical_normalize.cu|if (x >= out_w \|\| y >= out_h) return;|if (x > out_w \|\| y >= out_h) return;"
  "horizontal rounding term dropped|resample_horizontal.cu|int s0 = round, s1 = round, s2 = round;|int s0 = 0, s1 = round, s2 = round;"
  "channel order never swapped|resample_vertical_normalize.cu|int src_c = swap_channels ? 2 - c : c;|int src_c = c;"
  "division replaced by a reciprocal multiply|resample_vertical_normalize.cu|float v = ((float)mvla_clip8(s[src_c]) / 255.0f - mean[c]) / sd[c];|float v = ((float)mvla_clip8(s[src_c]) / 255.0f - mean[c]) * (1.0f / sd[c]);"
  "fp16 conversion truncates instead of rounding|host_emulation.h|if (rem > halfway \|\| (rem == halfway && (q & 1u))) ++q;|(void)halfway;"
)

survived=0
for m in "${mutations[@]}"; do
    IFS='|' read -r name file from to <<<"$(sed 's/\\|/\x01/g' <<<"$m")"
    from=${from//$'\x01'/|}; to=${to//$'\x01'/|}
    python3 - "kernels/$file" "$from" "$to" <<'PY'
import sys
path, old, new = sys.argv[1:4]
s = open(path).read()
n = s.count(old)
if n != 1:
    sys.exit(f"mutation_check: expected the text once in {path}, found {n}: {old}")
open(path, "w").write(s.replace(old, new))
PY
    if out=$(cargo test --quiet --test kernel_emulation 2>&1); then
        echo "SURVIVED  $name ($file)"
        survived=$((survived + 1))
    elif grep -q "could not compile" <<<"$out"; then
        # A mutation that does not build proves nothing about the tests.
        echo "INVALID   $name ($file): does not compile" >&2
        survived=$((survived + 1))
    else
        caught=$( (grep -oE '^    [a-z0-9_]+$|ERROR: AddressSanitizer: [A-Za-z-]+' <<<"$out" || true) |
            sed 's/^ *//; s/^ERROR: //' | sort -u | paste -sd, -)
        echo "caught    $name ($file): ${caught:-test failure}"
    fi
    cp "$backup"/* kernels/
done
[ "$survived" -eq 0 ] || { echo "mutation_check: $survived mutation(s) survived" >&2; exit 1; }
echo "mutation_check: all ${#mutations[@]} mutations caught"
