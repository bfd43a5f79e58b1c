#!/usr/bin/env bash
# make demo: a private PostgreSQL under ./var, generated history, live
# traffic with incidents, the engine and its HTTP endpoints, alerts printed
# as they fire. Ctrl-C stops everything; the next run reuses ./var.
#
#   DEMO_SCALE   payments per day of generated traffic (default 1000000;
#                3000000 is the full load of the spec: make demo FULL=1)
#   DEMO_DAYS    days of history (default 8)
#   DEMO_TPS     live payments per second (default 50)
#   DEMO_PORT    PostgreSQL port (default 55432)
#   DEMO_HTTP    engine HTTP address (default 127.0.0.1:8080)
#   DEMO_SOURCE  postgres (default) or mariadb: the transaction database is a
#                private MariaDB under ./var/mariadb (binlog on, read as a
#                replica) and the sink the private PostgreSQL (make demo
#                SOURCE=mariadb)
#   DEMO_MYSQL_PORT  MariaDB port (default 53306)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VAR="$ROOT/var"
PGDATA="$VAR/pg"
SCALE=${DEMO_SCALE:-1000000}
# The volume rule's "large" threshold scales with the traffic so that the
# same merchants are large at any scale (1e9 KRW/day at 3M payments/day).
LARGE=$(( 1000000000 * SCALE / 3000000 ))
DAYS=${DEMO_DAYS:-8}
TPS=${DEMO_TPS:-0}
PORT=${DEMO_PORT:-55432}
HTTP=${DEMO_HTTP:-127.0.0.1:8080}
DSN="postgres://postgres@127.0.0.1:$PORT/payments?sslmode=disable"
KIND=${DEMO_SOURCE:-postgres}
MYPORT=${DEMO_MYSQL_PORT:-53306}
MYDIR="$VAR/mariadb"
case "$KIND" in
  postgres|mariadb) ;;
  *) echo "DEMO_SOURCE must be postgres or mariadb, got $KIND" >&2; exit 2 ;;
esac

./scripts/ensure-postgres.sh
PGBIN=${RISKWATCH_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
make -s build
mkdir -p "$VAR"

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [ ! -f "$PGDATA/PG_VERSION" ]; then
  echo "== creating a private PostgreSQL cluster in $PGDATA"
  mkdir -p "$PGDATA"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$PGDATA"
  chmod 700 "$PGDATA"
  as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 >/dev/null
  cat >> "$PGDATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$PGDATA'
wal_level = logical
max_replication_slots = 8
max_wal_senders = 8
shared_buffers = 512MB
max_wal_size = 4GB
synchronous_commit = on
CONF
fi
if ! as_pg "$PGBIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
  echo "== starting PostgreSQL on 127.0.0.1:$PORT"
  as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w start >/dev/null
fi

PIDS=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "== stopping"
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
  if [ -f "$MYDIR/mariadbd.pid" ]; then
    kill -TERM "$(cat "$MYDIR/mariadbd.pid")" 2>/dev/null || true
    for _ in $(seq 1 100); do [ -f "$MYDIR/mariadbd.pid" ] || break; sleep 0.1; done
  fi
  echo "== stopped; data kept in $VAR (rm -rf var to start over)"
}
trap cleanup INT TERM EXIT

if ! "$PGBIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -Atc "SELECT 1 FROM pg_database WHERE datname = 'payments'" postgres | grep -q 1; then
  "$PGBIN/psql" -q -h 127.0.0.1 -p "$PORT" -U postgres -c "CREATE DATABASE payments" postgres
fi

SINK=""
if [ "$KIND" = mariadb ]; then
  ./scripts/ensure-mariadb.sh
  as_mysql() {
    if [ "$(id -u)" = 0 ]; then runuser -u mysql -- "$@"; else "$@"; fi
  }
  if [ ! -d "$MYDIR/data/mysql" ]; then
    echo "== creating a private MariaDB in $MYDIR"
    mkdir -p "$MYDIR"
    [ "$(id -u)" = 0 ] && chown mysql:mysql "$MYDIR"
    as_mysql mariadb-install-db --no-defaults --datadir="$MYDIR/data" --auth-root-authentication-method=normal \
      --skip-test-db --skip-name-resolve --tmpdir="$MYDIR" >/dev/null
  fi
  if ! mariadb -h 127.0.0.1 -P "$MYPORT" -u root -e 'SELECT 1' >/dev/null 2>&1; then
    echo "== starting MariaDB on 127.0.0.1:$MYPORT (binlog on, row-based)"
    as_mysql mariadbd --no-defaults --datadir="$MYDIR/data" --socket="$MYDIR/mysqld.sock" --pid-file="$MYDIR/mariadbd.pid" \
      --log-error="$MYDIR/error.log" --tmpdir="$MYDIR" --bind-address=127.0.0.1 --port="$MYPORT" --skip-name-resolve \
      --server-id=1 --log-bin="$MYDIR/data/binlog" --binlog-format=ROW --binlog-row-image=FULL --binlog-row-metadata=FULL \
      --character-set-server=utf8mb4 --default-time-zone=+00:00 --innodb-buffer-pool-size=1G \
      --innodb-flush-log-at-trx-commit=2 --max-connections=200 &
    for _ in $(seq 1 300); do
      mariadb -h 127.0.0.1 -P "$MYPORT" -u root -e 'SELECT 1' >/dev/null 2>&1 && break
      sleep 0.2
    done
  fi
  mariadb -h 127.0.0.1 -P "$MYPORT" -u root -e 'CREATE DATABASE IF NOT EXISTS payments'
  SINK="$DSN"
  DSN="mysql://root@127.0.0.1:$MYPORT/payments"
fi

cat > "$VAR/riskwatch.yaml" <<YAML
source:
  dsn: "$DSN"
sink:
  dsn: "$SINK"
http:
  listen: $HTTP
rules:
  volume_drop:
    large_daily_amount: $LARGE
notify:
  receivers:
    - {name: console, type: log}
YAML

bin/riskwatch sim history --dsn "$DSN" --days "$DAYS" --payments-per-day "$SCALE" --large-daily-amount "$LARGE" --truth "$VAR/ground-truth.json"
bin/riskwatch sim live --dsn "$DSN" --tps "$TPS" > "$VAR/sim-live.log" 2>&1 &
PIDS+=($!)
echo "== live traffic with incidents placed to fire in the next minutes (log: var/sim-live.log;"
echo "   what should fire and when: var/ground-truth.json)"
echo "== dashboard: http://$HTTP/   (metrics: http://$HTTP/metrics)"
# A standby: the same configuration on another HTTP port. Started by hand
# in a second terminal, it serves the dashboard and takes over within
# seconds when this engine is killed (docs/standby.md).
STANDBY_HTTP="${HTTP%:*}:$(( ${HTTP##*:} + 1 ))"
sed "s|^  listen: .*|  listen: $STANDBY_HTTP|" "$VAR/riskwatch.yaml" > "$VAR/riskwatch-standby.yaml"
echo "== a standby (second terminal): bin/riskwatch run --config $VAR/riskwatch-standby.yaml"
echo "   dashboard http://$STANDBY_HTTP/; kill -9 the first engine and it takes over (docs/standby.md)"
echo "== Grafana: mount $PWD/deploy/grafana/provisioning as /etc/grafana/provisioning, with"
echo "   RISKWATCH_SINK_HOST=127.0.0.1:$PORT RISKWATCH_SINK_DATABASE=payments RISKWATCH_SINK_SSLMODE=disable"
echo "   RISKWATCH_GRAFANA_USER=postgres RISKWATCH_PROMETHEUS_URL=<a Prometheus scraping http://$HTTP/metrics>"
echo "   (docs/grafana.md; deploy/prometheus has the scrape job and alert rules)"
bin/riskwatch run --config "$VAR/riskwatch.yaml" &
PIDS+=($!)
if command -v curl >/dev/null; then
  ( for _ in $(seq 1 300); do
      if curl -sf "http://$HTTP/readyz" >/dev/null 2>&1; then echo "== dashboard live: http://$HTTP/"; exit 0; fi
      sleep 1
    done ) &
fi
wait "${PIDS[-1]}"
