#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer through cargo-fuzz) of the parsers that
# take outside input. Usage: scripts/fuzz.sh [seconds per target] [target...]
# Default: 600 s for each of event_json, endpoint_config, retry_after, layout.
# The committed seeds in fuzz/corpus/<target> are read, never written; what
# the fuzzer learns goes to fuzz/work/<target> (ignored by git). A crash
# leaves its input in fuzz/artifacts/<target> and fails the script.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-600}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(event_json endpoint_config retry_after layout)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# cargo-fuzz passes -Z flags; the stable toolchain accepts them this way.
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O
for t in "${targets[@]}"; do
    mkdir -p "work/$t"
    echo "== $t for ${secs}s"
    cargo fuzz run -O "$t" "work/$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 2>&1 |
        tee "work/$t.log" | grep -E "^(#[0-9]+ *DONE|==|INFO: seed)|Done [0-9]+ runs|ERROR|panicked" || true
    grep -q "Done [0-9]* runs" "work/$t.log" || { echo "$t: fuzzer stopped early, see fuzz/work/$t.log"; exit 1; }
done
