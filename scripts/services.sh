# Make sure the PostgreSQL and RabbitMQ the tests use are up: start them where they are
# installed but stopped (as on this project's machines), or say clearly what is missing.
set -euo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
rabbit_up() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }

ensure_postgres() {
  pg_up && return 0
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    echo "== starting PostgreSQL" >&2
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    for _ in $(seq 1 30); do pg_up && return 0; sleep 1; done
  fi
  echo "PostgreSQL is not reachable on 127.0.0.1:5432 (set SMARTQ_TEST_POSTGRES_URL)" >&2
  return 1
}

ensure_rabbitmq() {
  rabbit_up && return 0
  if command -v rabbitmq-server >/dev/null; then
    echo "== starting RabbitMQ" >&2
    rabbitmq-server -detached || true
    for _ in $(seq 1 60); do rabbit_up && return 0; sleep 1; done
  fi
  echo "RabbitMQ is not reachable on 127.0.0.1:5672 (set SMARTQ_TEST_RABBITMQ_URL)" >&2
  return 1
}
