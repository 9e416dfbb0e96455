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
command -v python3 >/dev/null || need_apt+=(python3 python3-pip)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
# The rotation test verifies signatures with the Standard Webhooks reference library.
python3 -c "import standardwebhooks" 2>/dev/null || python3 -m pip install --quiet standardwebhooks
# Svix's receiver library: rotation is verified with it too.
python3 -c "import svix" 2>/dev/null || python3 -m pip install --quiet svix
# The SMTP relay with STARTTLS and AUTH in the e-mail test.
python3 -c "import aiosmtpd" 2>/dev/null || python3 -m pip install --quiet aiosmtpd

# PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres).
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi

# NATS with JetStream on 127.0.0.1:4222 (for `hookline dev`; the tests start
# their own nats-server per test on free ports).
if ! (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; then
  mkdir -p /var/lib/nats-server
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  sleep 1
fi

exec cargo test --workspace --locked "$@"
