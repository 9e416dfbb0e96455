#!/usr/bin/env bash
# Instructions per fan-out 1 delivery in one Hookline service, counted by
# callgrind: a figure that does not move with the machine's speed, for
# comparing two builds on a noisy host (the rates of `hookline-bench` do).
#
#   cargo build --release -p hookline -p hookline-bench
#   scripts/instructions.sh [delivery|ingest|subscriptions]   # default: delivery
#   HOOKLINE_BIN=/tmp/hookline-old scripts/instructions.sh       # another build
#
# It runs `hookline-bench delivery --quick --only throughput` with the chosen
# service under valgrind, zeroes the counters when the throughput phase
# starts and dumps them after the third fan-out 1 run (6,000 deliveries).
# Takes about 3 minutes. Under valgrind SHA-256 runs without the CPU's SHA
# instructions, so `sha2::` functions weigh far more than on hardware: the
# script prints the total with and without them.
set -euo pipefail
cd "$(dirname "$0")/.."
role=${1:-delivery}
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
bin=${HOOKLINE_BIN:-$PWD/target/release/hookline}
[ -x "$bin" ] && [ -x target/release/hookline-bench ] || {
  echo "build first: cargo build --release -p hookline -p hookline-bench" >&2
  exit 1
}
work=$(mktemp -d /tmp/hookline-instructions.XXXXXX)
trap 'rm -rf "$work"' EXIT
cat >"$work/hookline" <<EOF
#!/usr/bin/env bash
if [ "\$1" = "$role" ]; then
  exec valgrind --tool=callgrind --callgrind-out-file=$work/callgrind.out.%p "$bin" "\$@"
fi
exec "$bin" "\$@"
EOF
chmod +x "$work/hookline"

log=$work/bench.log
HOOKLINE_BIN=$work/hookline target/release/hookline-bench delivery --quick --only throughput >"$log" 2>&1 &
bench=$!
wait_for() {
  for _ in $(seq 1 6000); do
    grep -q "$1" "$log" && return 0
    kill -0 "$bench" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.1
  done
  echo "timed out waiting for: $1" >&2
  exit 1
}
wait_for "(2) end-to-end"
callgrind_control -z >/dev/null
wait_for "fan-out 1 run 3:"
callgrind_control -d >/dev/null
wait "$bench"
grep -E "^  fan-out 1 run [0-9]: " "$log" | grep "/s beside"
dump=$(ls -t "$work"/callgrind.out.*.* | head -1)
deliveries=6000
total=$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")
sha=$(callgrind_annotate --threshold=100 "$dump" 2>/dev/null | awk '/sha2::/ {gsub(",", "", $1); s += $1} END {print s + 0}')
echo "$role: $((total / deliveries)) instructions per delivery; without SHA-256: $(((total - sha) / deliveries))"
cp "$dump" "target/callgrind.$role.out"
echo "profile kept in target/callgrind.$role.out (callgrind_annotate it)"
