#!/usr/bin/env bash
# Build Hookline as the Dockerfile's build stage does, without a Docker
# engine: run the stage's own `cargo build` command (same profile, package,
# binary and features, read from the Dockerfile, not copied), then check
# that the binary it installs answers as the image's ENTRYPOINT and CMD
# would run it. tests/compose.rs checks the rest of the Dockerfile's text.
set -euo pipefail
cd "$(dirname "$0")/.."

# The Dockerfile's instructions with continuation lines joined.
instructions=$(sed -e 's/[[:space:]]*\\$/ /' Dockerfile | awk '
  /^[[:space:]]*#/ && cur == "" { next }
  { cur = cur $0 }
  !/ $/ { if (cur ~ /[^[:space:]]/) print cur; cur = "" }
  END { if (cur != "") print cur }')

build_line=$(grep -E '^RUN .*cargo build' <<<"$instructions" | head -1)
[ -n "$build_line" ] || { echo "Dockerfile: no RUN with cargo build" >&2; exit 1; }
# From `cargo build` to the next `&&`: the command the image runs.
cargo_cmd=$(sed -E 's/.*(cargo build[^&]*).*/\1/' <<<"$build_line" | sed -E 's/[[:space:]]+$//')
# Where `install` takes the binary from (target/<profile>/hookline).
built=$(sed -nE 's/.*install[^&]* (target\/[^ ]*hookline) .*/\1/p' <<<"$build_line")
[ -n "$built" ] || { echo "Dockerfile: the build stage installs no target/.../hookline" >&2; exit 1; }

echo "+ $cargo_cmd" >&2
# shellcheck disable=SC2086  # the Dockerfile's words, split as the shell in the image splits them
$cargo_cmd

[ -x "$built" ] || { echo "$cargo_cmd did not produce $built" >&2; exit 1; }
entrypoint=$(sed -nE 's/^ENTRYPOINT \["([^"]+)".*/\1/p' <<<"$instructions")
cmd=$(sed -nE 's/^CMD \["([^"]+)".*/\1/p' <<<"$instructions")
[ "$entrypoint" = hookline ] || { echo "Dockerfile: ENTRYPOINT is '$entrypoint', not hookline" >&2; exit 1; }
"$built" --version
"$built" "$cmd" --help >/dev/null || { echo "the image's command \`hookline $cmd\` is not a command of $built" >&2; exit 1; }
echo "Dockerfile build stage OK: $built, entrypoint hookline $cmd" >&2
