#!/usr/bin/env bash
# Instructions per delivery in one Hookline service, counted by callgrind: a
# figure that does not move with the machine's speed, for comparing two
# builds on a noisy host (the rates of `hookline-bench` do).
#
#   cargo build --release -p hookline -p hookline-bench
#   scripts/instructions.sh [delivery|ingest|subscriptions]   # default: delivery
#   scripts/instructions.sh scale                             # delivery, many tenants, slow receivers
#   HOOKLINE_BIN=/tmp/hookline-old scripts/instructions.sh       # another build
#
# The binaries are taken from $CARGO_TARGET_DIR/release (else target/release).
#
# `delivery` (and the other two roles) runs `hookline-bench delivery --quick
# --only throughput` with the chosen service under valgrind, zeroes the
# counters when the throughput phase starts and dumps them after the third
# fan-out 1 run (6,000 deliveries): one tenant, one fast endpoint. Takes
# about 3 minutes.
#
# `scale` runs `hookline-bench scale --only slow` with delivery under
# valgrind: 1,000 tenants and 3,000 endpoints (SCALE_TENANTS,
# SCALE_ENDPOINTS), every receiver answering after 100 ms, events spread
# over the tenants at SCALE_RATE deliveries/s (default 300, more than
# delivery makes under valgrind, so fan-out always has events waiting). It
# zeroes the counters once the raw baseline is done and 10 s of the paced
# run have passed, dumps them SCALE_WINDOW seconds later (default 40) and
# divides by the attempts delivery's /metrics counted meanwhile. Under
# valgrind only about 20 requests wait at the receiver at once, and costs
# that grow with the endpoints weigh a tenth of what 30,000 give them.
# Takes about 4 minutes.
#
# Only the counters of this run's own valgrind are zeroed and dumped, so
# two runs (say `delivery` and `scale`) may share the machine.
#
# Under valgrind SHA-256 runs without the CPU's SHA instructions, so
# `sha2::` functions weigh far more than on hardware: the script prints the
# total with and without them.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-delivery}
role=$mode
[ "$mode" = scale ] && role=delivery
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
release=${CARGO_TARGET_DIR:-$PWD/target}/release
bin=${HOOKLINE_BIN:-$release/hookline}
[ -x "$bin" ] && [ -x "$release/hookline-bench" ] || {
  echo "build first: cargo build --release -p hookline -p hookline-bench" >&2
  exit 1
}
work=$(mktemp -d /tmp/hookline-instructions.XXXXXX)
trap 'rm -rf "$work"' EXIT
cat >"$work/hookline" <<EOF
#!/usr/bin/env bash
if [ "\$1" = "$role" ]; then
  echo "\$HOOKLINE_HTTP_ADDR" >$work/http_addr
  echo \$\$ >$work/pid
  exec valgrind --tool=callgrind --callgrind-out-file=$work/callgrind.out.%p "$bin" "\$@"
fi
exec "$bin" "\$@"
EOF
chmod +x "$work/hookline"

log=$work/bench.log
if [ "$mode" = scale ]; then
  HOOKLINE_BIN=$work/hookline "$release/hookline-bench" scale --only slow \
    --tenants "${SCALE_TENANTS:-1000}" --endpoints "${SCALE_ENDPOINTS:-3000}" \
    --rate "${SCALE_RATE:-300}" --secs 90 --raw-concurrency 100 >"$log" 2>&1 &
else
  HOOKLINE_BIN=$work/hookline "$release/hookline-bench" delivery --quick --only throughput >"$log" 2>&1 &
fi
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
# Attempts delivery has made so far, from its /metrics.
attempts() {
  curl -s "http://$(cat "$work/http_addr")/metrics" |
    awk '/^hookline_delivery_attempt_duration_seconds_count/ {s += $NF} END {printf "%d\n", s}'
}
if [ "$mode" = scale ]; then
  wait_for "raw client, "
  sleep 10 # fan-out fills up
  callgrind_control -z "$(cat "$work/pid")" >/dev/null
  before=$(attempts)
  sleep "${SCALE_WINDOW:-40}"
  callgrind_control -d "$(cat "$work/pid")" >/dev/null
  deliveries=$(($(attempts) - before))
  [ "$deliveries" -gt 0 ] || { echo "no attempts in the window" >&2; cat "$log" >&2; exit 1; }
  echo "scale: $deliveries attempts in ${SCALE_WINDOW:-40} s under valgrind"
else
  wait_for "(2) end-to-end"
  callgrind_control -z "$(cat "$work/pid")" >/dev/null
  wait_for "fan-out 1 run 3:"
  callgrind_control -d "$(cat "$work/pid")" >/dev/null
  wait "$bench"
  grep -E "^  fan-out 1 run [0-9]: " "$log" | grep "/s beside"
  deliveries=6000
fi
dump=$(ls -t "$work"/callgrind.out.*.* | head -1)
total=$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")
sha=$(callgrind_annotate --threshold=100 "$dump" 2>/dev/null | awk '/sha2::/ {gsub(",", "", $1); s += $1} END {print s + 0}')
echo "$mode: $((total / deliveries)) instructions per delivery; without SHA-256: $(((total - sha) / deliveries))"
out=${CARGO_TARGET_DIR:-target}/callgrind.$mode.out
cp "$dump" "$out"
echo "profile kept in $out (callgrind_annotate --inclusive=yes it)"
if [ "$mode" = scale ]; then
  # The bench stops on its own once delivery is gone; its figures are not the point here.
  kill "$(cat "$work/pid")"
  wait "$bench" || true
fi
