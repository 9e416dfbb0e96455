#!/usr/bin/env bash
# Two `hookline` builds under `hookline-bench delivery`, side by side: the
# runs alternate A, B, A, B (PAIRS pairs, default 3) with the same bench
# binary and the same settings, and a table gives each key figure per run,
# its median per build and the ratio B/A.
#
#   scripts/bench-compare.sh A_HOOKLINE B_HOOKLINE HOOKLINE_BENCH [-- delivery options...]
#   PAIRS=1 scripts/bench-compare.sh old/hookline new/hookline bench -- --quick   # a smoke pair
#
# A full pair takes up to 10 minutes (a run 4-5 minutes at load 10, less on
# a quiet machine), so the default 3 pairs about half an hour; a --quick
# run under a minute.
#
# Why this way: a regression check between two builds ("no regression of
# `hookline-bench delivery`") holds only on the same machine under the same
# run conditions. This machine's speed drifts by a quarter within minutes
# (the raw POST baseline, which runs no Hookline code, moves that much), so
# two builds measured an hour apart differ by more than most changes cost.
# Alternating the builds spreads that drift over both, and the medians of
# several pairs keep one slow spell from deciding. Everything but the
# `hookline` binary is the same in every run:
#
# - one bench binary drives both builds (HOOKLINE_BIN points it at the
#   build), so the load it makes, its receiver and its clients do not
#   differ. A bench newer than the `… listening on` log line starts the
#   services on port 0 and learns their ports from that line, so it cannot
#   drive a build older than the line: use a bench built at 5ae491c, which
#   picks free ports itself and passes them in HOOKLINE_GRPC_ADDR and
#   HOOKLINE_HTTP_ADDR (every build reads those). Its `delivery` phases are
#   the same code as main's.
# - the options after `--` go to every run alike. ENV_A and ENV_B
#   (space-separated KEY=VALUE) add `--env` settings for one build only:
#   for a default that differs between the builds, when the comparison is
#   to hold it equal (say so beside the figures).
#   Defaults that differ between 6d7a6eb (before issue 20) and main:
#   * HOOKLINE_DELIVERY_CONCURRENCY 256 -> 1024, and fan-out's events at
#     once from a fixed 128 to that setting (at least 128; its consumer's
#     max_ack_pending is 4x it). No one value equals both builds: ENV_B=
#     "HOOKLINE_DELIVERY_CONCURRENCY=128" gives main 6d7a6eb's fan-out
#     (128, 512 pending) and 128 attempt permits instead of 256, which
#     this bench's at most 100 attempts at once (10 endpoints, 10 each)
#     do not reach.
#   * HOOKLINE_BREAKER_FIRST_COOLDOWN (new, 1s): 6d7a6eb waits a constant
#     HOOKLINE_BREAKER_COOLDOWN (30s) before each probe of an open breaker.
#     `--env HOOKLINE_BREAKER_FIRST_COOLDOWN=30s` for both equals them (a
#     build ignores a setting it does not know). The isolation phase only.
#   * HOOKLINE_RETRY_STORE_AFTER (new, 30s): retries due that far ahead
#     wait in HOOKLINE_RETRY, not HOOKLINE_DISPATCH; `--env
#     HOOKLINE_RETRY_STORE_AFTER=25h` (past the schedule's last 24h) stores
#     none. The isolation phase only (the black hole's retries).
#   The shipped defaults are what a regression check compares; a run with
#   them held equal says which of them a difference comes from.
# - the same nats-server (HOOKLINE_NATS_SERVER, printed), Postgres and
#   GOMEMLIMIT (the bench's own default unless set here).
# - REST seconds (default 15) of idle time before each run, so one run's
#   dropped database and dying processes do not weigh on the next.
#
# The machine is shared: look at the load lines (`uptime` before each run,
# and the "other processes" share the bench notes per phase) before reading
# a ratio; only a quiet machine's figures belong in BENCHMARKS.md. ORDER=abba
# runs the second pair B, A (and so on), for when the first run of a pair
# turns out to be favoured.
#
# Each run's output and JSON (`--json-out`) stay in OUT (default a new
# directory under /tmp, printed); `scripts/bench-compare.sh --table OUT`
# prints the table again from them.
set -euo pipefail

table() { # dir
  python3 - "$1" <<'PY'
import json, os, re, statistics, sys

out = sys.argv[1]
runs = {"A": [], "B": []}
for name in sorted(os.listdir(out), key=lambda n: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", n)]):
    m = re.fullmatch(r"run(\d+)-([AB])\.json", name)
    if m:
        with open(os.path.join(out, name)) as f:
            report = json.load(f)
        wall = None
        wall_file = os.path.join(out, f"run{m[1]}-{m[2]}.secs")
        if os.path.exists(wall_file):
            wall = float(open(wall_file).read().strip())
        runs[m[2]].append((int(m[1]), report, wall))
labels = {k: open(os.path.join(out, f"label-{k}")).read().strip() if os.path.exists(os.path.join(out, f"label-{k}")) else k for k in "AB"}
if not runs["A"] or not runs["B"]:
    sys.exit(f"no finished runs of both builds in {out}")

# (figure, unit) in the order the bench prints them, with derived lines.
order, values = [], {}
def put(build, key, v):
    if key not in values:
        order.append(key)
        values[key] = {"A": [], "B": []}
    values[key][build].append(v)

for build in "AB":
    for _, report, wall in runs[build]:
        for row in report["rows"]:
            put(build, (row["figure"], row["unit"]), row["value"])
            if row.get("ratio") is not None:
                put(build, ("  ÷ its baseline", "x", row["figure"]), row["ratio"])
            elif row.get("baseline") is not None:
                put(build, ("  its raw baseline", row["unit"], row["figure"]), row["baseline"])
        notes = report.get("notes", [])
        others = [float(x) for n in notes for x in re.findall(r"other processes ~(\d+(?:\.\d+)?) %", n)]
        if others:
            put(build, ("other processes, most in a phase", "%"), max(others))
        for n in notes:
            m = re.match(r"load average before: ([\d.]+)", n)
            if m:
                put(build, ("load average (1 min) before", ""), float(m[1]))
        if wall is not None:
            put(build, ("wall time of the run", "s"), wall)

def fmt(v, unit):
    if v is None:
        return "-"
    if unit in ("/s", "s", "%") or (unit == "" and (v == int(v) or abs(v) >= 100)):
        return f"{v:.0f}"
    if unit == "x":
        return f"{v:.3f}"
    if unit == "MiB":
        return f"{v:.1f}"
    return f"{v:.2f}"

def median(xs):
    return statistics.median(xs) if xs else None

names = [k[0] + (f" [{k[1]}]" if k[1] and k[1] != "x" else "") for k in order]
w = max(len(n) for n in names)
na, nb = len(runs["A"]), len(runs["B"])
print(f"A = {labels['A']}")
print(f"B = {labels['B']}")
print(f"{na} runs of A, {nb} of B; medians per build; B/A above 1 means B higher "
      "(better for /s and ratios to the raw baseline, worse for ms, MiB and duplicates)\n")
cols = 9
head = f"{'figure':<{w}}  " + " ".join(f"{'A' + str(i + 1):>{cols}}" for i in range(na)) + f"  {'A median':>{cols}}  " \
    + " ".join(f"{'B' + str(i + 1):>{cols}}" for i in range(nb)) + f"  {'B median':>{cols}}  {'B/A':>6}"
print(head)
print("-" * len(head))
for key, name in zip(order, names):
    unit = key[1]
    a, b = values[key]["A"], values[key]["B"]
    ma, mb = median(a), median(b)
    ratio = f"{mb / ma:6.3f}" if ma and mb is not None and ma != 0 else f"{'-':>6}"
    cells_a = " ".join(f"{fmt(v, unit):>{cols}}" for v in a) + " " * ((cols + 1) * (na - len(a)))
    cells_b = " ".join(f"{fmt(v, unit):>{cols}}" for v in b) + " " * ((cols + 1) * (nb - len(b)))
    print(f"{name:<{w}}  {cells_a}  {fmt(ma, unit):>{cols}}  {cells_b}  {fmt(mb, unit):>{cols}}  {ratio}")
PY
}

if [ "${1:-}" = --table ]; then
  table "${2:?usage: $0 --table OUT}"
  exit 0
fi

[ $# -ge 3 ] || {
  sed -n '2,9p' "$0" >&2
  exit 2
}
a_bin=$(realpath "$1") b_bin=$(realpath "$2") bench=$(realpath "$3")
shift 3
[ "${1:-}" = -- ] && shift
for f in "$a_bin" "$b_bin" "$bench"; do
  [ -x "$f" ] || { echo "not an executable: $f" >&2; exit 2; }
done
command -v python3 >/dev/null || { echo "python3 is needed for the table" >&2; exit 2; }
pairs=${PAIRS:-3}
rest=${REST:-15}
order=${ORDER:-alternate}
out=${OUT:-$(mktemp -d /tmp/hookline-bench-compare.XXXXXX)}
mkdir -p "$out"
export HOOKLINE_NATS_SERVER=${HOOKLINE_NATS_SERVER:-$HOME/.cache/hookline/nats-2.15/bin/nats-server}
[ -x "$HOOKLINE_NATS_SERVER" ] || { echo "no nats-server at $HOOKLINE_NATS_SERVER (set HOOKLINE_NATS_SERVER)" >&2; exit 2; }

describe() { echo "$1 (sha256 $(sha256sum "$1" | cut -c1-12))"; }
echo "${LABEL_A:-$(describe "$a_bin")}" >"$out/label-A"
echo "${LABEL_B:-$(describe "$b_bin")}" >"$out/label-B"
{
  echo "A: $(describe "$a_bin")${ENV_A:+, extra --env $ENV_A}"
  echo "B: $(describe "$b_bin")${ENV_B:+, extra --env $ENV_B}"
  echo "bench: $(describe "$bench") delivery $*"
  echo "nats-server: $HOOKLINE_NATS_SERVER ($("$HOOKLINE_NATS_SERVER" --version))"
  echo "GOMEMLIMIT: ${GOMEMLIMIT:-unset, so the bench gives nats-server its default}"
  echo "$pairs pairs, order $order, ${rest} s rest before each run; output in $out"
  echo "nproc $(nproc); $(uptime)"
} | tee "$out/setup.txt"

failed=0
run() { # index build binary
  local i=$1 build=$2 bin=$3 extra=() kv env_var="ENV_$2"
  shift 3
  for kv in ${!env_var:-}; do extra+=(--env "$kv"); done
  sleep "$rest"
  echo "== run $i: $build ($(uptime | sed 's/.*load/load/'))"
  local start=$SECONDS
  if HOOKLINE_BIN=$bin "$bench" delivery "$@" "${extra[@]}" --json-out "$out/run$i-$build.json" \
    >"$out/run$i-$build.log" 2>&1; then
    echo $((SECONDS - start)) >"$out/run$i-$build.secs"
    echo "   done in $((SECONDS - start)) s"
  else
    failed=$((failed + 1))
    rm -f "$out/run$i-$build.json"
    echo "   FAILED after $((SECONDS - start)) s; its output: $out/run$i-$build.log" >&2
    tail -20 "$out/run$i-$build.log" >&2
  fi
}
opts=("$@")
for i in $(seq 1 "$pairs"); do
  if [ "$order" = abba ] && [ $((i % 2)) -eq 0 ]; then
    run "$i" B "$b_bin" "${opts[@]}"
    run "$i" A "$a_bin" "${opts[@]}"
  else
    run "$i" A "$a_bin" "${opts[@]}"
    run "$i" B "$b_bin" "${opts[@]}"
  fi
done
echo "after: $(uptime)" | tee -a "$out/setup.txt"
echo
table "$out" | tee "$out/table.txt"
[ "$failed" -eq 0 ] || { echo "$failed run(s) failed" >&2; exit 1; }
