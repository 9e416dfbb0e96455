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
# The bench starts the services on port 0 and reads their addresses from the
# `listening` log line; a build older than that line is driven by a bench
# built at 5ae491c (point CARGO_TARGET_DIR at its target directory).
#
# The binaries are taken from $CARGO_TARGET_DIR/release (else target/release).
#
# `delivery` runs `hookline-bench delivery --only latency` with delivery
# under valgrind: one tenant, one fast endpoint, events published one by
# one at DELIVERY_RATE events/s (default 40). It zeroes the counters once 5 s
# of the paced run have passed, dumps them DELIVERY_WINDOW seconds later
# (default 100) and divides by the attempts delivery's /metrics counted
# meanwhile; it prints how many fan-out made itself and how many tasks were
# deferred. The pace is well below what delivery makes under valgrind even
# on a loaded machine, so each event takes the same path whatever the load:
# fan-out makes its one attempt in a free slot, and nothing waits. A flood
# (the throughput runs) would put the one endpoint at its cap of 10 under
# valgrind; how long tasks then wait for a slot depends on how much CPU
# valgrind gets, and each task handed back and taken again renders and
# hashes its body once more, so such a count grows with the machine's load
# (to twice the quiet machine's at load 20). The endpoint's cap is raised
# to 128 too (HOOKLINE_ENDPOINT_CONCURRENCY, which every build reads), so
# the events that pile up while valgrind gets no CPU for a moment find free
# slots instead of being deferred. More than 1 % deferred: the figure is
# flagged; lower DELIVERY_RATE. The window also counts the services'
# background work (timers, heartbeats, the gauges' clock). What still moves
# with the load is batching: the less CPU delivery gets, the more events
# its projector writes in one Postgres batch and its runtime handles per
# wake-up, so one build's count varies by about ±8 % between hours of
# different load. Two builds counted side by side (the script may run
# twice at once) agree to 1-2 %: compare builds that way. Takes about 4
# minutes.
#
# `ingest` and `subscriptions` run `hookline-bench delivery --quick --only
# throughput` with that service under valgrind, zero the counters when the
# throughput phase starts and dump them after the third fan-out 1 run
# (6,000 events): one tenant, one fast endpoint. About 3 minutes.
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
rate=${DELIVERY_RATE:-40}
window=${DELIVERY_WINDOW:-100}
if [ "$mode" = scale ]; then
  HOOKLINE_BIN=$work/hookline "$release/hookline-bench" scale --only slow \
    --tenants "${SCALE_TENANTS:-1000}" --endpoints "${SCALE_ENDPOINTS:-3000}" \
    --rate "${SCALE_RATE:-300}" --secs 90 --raw-concurrency 100 >"$log" 2>&1 &
elif [ "$mode" = delivery ]; then
  # Publishing outlasts the warm-up, the 5 s before the window and the window.
  HOOKLINE_BIN=$work/hookline "$release/hookline-bench" delivery --only latency \
    --rate "$rate" --latency-secs $((window + 30)) \
    --env delivery:HOOKLINE_ENDPOINT_CONCURRENCY=128 >"$log" 2>&1 &
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
# The sum of one metric's series in delivery's /metrics so far: its
# attempts (attempt_duration_seconds_count), first attempts made in fan-out
# (direct_attempts_total), tasks handed back or parked (deferrals_total).
metric() {
  curl -s "http://$(cat "$work/http_addr")/metrics" |
    awk -v name="hookline_delivery_$1" '$1 == name || index($1, name "{") == 1 {s += $NF} END {printf "%d\n", s}'
}
attempts() { metric attempt_duration_seconds_count; }
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
elif [ "$mode" = delivery ]; then
  wait_for "(3) end-to-end latency"
  # The warm-up's events and 5 s of the paced run, before the window opens.
  start=$(attempts)
  until [ $(($(attempts) - start)) -ge $((rate * 5)) ]; do
    kill -0 "$bench" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 1
  done
  callgrind_control -z "$(cat "$work/pid")" >/dev/null
  before=$(attempts) direct=$(metric direct_attempts_total) deferred=$(metric deferrals_total)
  sleep "$window"
  callgrind_control -d "$(cat "$work/pid")" >/dev/null
  deliveries=$(($(attempts) - before))
  direct=$(($(metric direct_attempts_total) - direct))
  deferred=$(($(metric deferrals_total) - deferred))
  [ "$deliveries" -gt 0 ] || { echo "no attempts in the window" >&2; cat "$log" >&2; exit 1; }
  echo "delivery: $deliveries attempts in $window s at $rate events/s under valgrind;" \
    "$direct made in fan-out, $deferred deferred"
  if [ $((deferred * 100)) -gt "$deliveries" ]; then
    echo "WARNING: more than 1 % deferred: delivery fell behind the pace; the figure is not comparable" \
      "(lower DELIVERY_RATE)" >&2
  fi
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
if [ "$mode" = delivery ]; then
  # How far behind the pace delivery was, per 5 s of publishing.
  wait "$bench" || true
  grep -E "^ +[0-9]+-[0-9]+ +s: " "$log" || true
elif [ "$mode" = scale ]; then
  # The bench stops on its own once delivery is gone; its figures are not the point here.
  kill "$(cat "$work/pid")"
  wait "$bench" || true
fi
