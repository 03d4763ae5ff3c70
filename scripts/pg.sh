#!/usr/bin/env bash
# Throwaway PostgreSQL for tests and benchmarks.
#   scripts/pg.sh start DIR   -> prints a DATABASE_URL on stdout (last line)
#   scripts/pg.sh stop DIR
#   scripts/pg.sh kill DIR      -> stop in immediate mode, as a crash would (fault tests)
#   scripts/pg.sh restart DIR   -> start the stopped cluster again on its stored port
#   scripts/pg.sh standby DIR PRIMARY_DIR -> a hot standby of the running cluster in PRIMARY_DIR
#                                 (pg_basebackup, streaming replication); prints its URL
#   scripts/pg.sh promote DIR   -> the standby in DIR becomes a primary (pg_ctl promote)
# Installs the server with apt-get when it is missing. initdb refuses to run as root,
# so as root the cluster is created and run by the `postgres` user in a folder it owns.
set -euo pipefail

cmd=${1:?start|stop|kill|restart|standby|promote}
dir=${2:?state directory}

find_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  command -v initdb >/dev/null 2>&1 && { dirname "$(command -v initdb)"; return 0; }
  return 1
}

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

start() {
  local bin
  if ! bin=$(find_bin); then
    echo "pg.sh: PostgreSQL not found, installing it" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || true
    apt-get install -y -qq postgresql postgresql-contrib >&2
    bin=$(find_bin)
  fi
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  chmod 755 "$dir"
  # The server binaries run as `postgres`, who may not be able to enter the caller's folder.
  cd "$dir"
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home "$dir" postgres
    chown postgres "$dir"
  fi
  if [ -f "$dir/data/postmaster.pid" ]; then stop || true; fi
  rm -rf "$dir/data"
  local port password=ledger
  port=$(free_port)
  as_pg "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  echo "$port" >"$dir/port"
  run_server "$bin"
  as_pg "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -q -c "CREATE USER ledger PASSWORD '$password' SUPERUSER" >&2
  as_pg "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -q -c "CREATE DATABASE ledger OWNER ledger" >&2
  echo "postgresql://ledger:$password@127.0.0.1:$port/ledger"
}

run_server() {
  as_pg "$1/pg_ctl" -D "$dir/data" -l "$dir/data/server.log" -w -t 60 \
    -o "-p $(cat "$dir/port") -k $dir/data -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=256MB" \
    start >&2
}

# kill and restart: the same cluster, data and port, for tests of an outage.
kill_server() {
  local bin
  bin=$(find_bin)
  dir=$(cd "$dir" && pwd)
  cd "$dir"
  as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >&2
}

restart() {
  local bin
  bin=$(find_bin)
  dir=$(cd "$dir" && pwd)
  cd "$dir"
  [ -f "$dir/port" ] || { echo "pg.sh: no cluster in $dir" >&2; exit 1; }
  run_server "$bin"
}

# A hot standby: a base backup of the primary that keeps streaming its WAL (-R writes the
# primary_conninfo and standby.signal), on a port of its own. initdb's trust rules let
# replication connections from 127.0.0.1 in.
standby() {
  local bin primary port
  primary=$(cd "${3:?primary directory}" && pwd)
  bin=$(find_bin)
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  chmod 755 "$dir"
  cd "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  rm -rf "$dir/data"
  port=$(free_port)
  echo "$port" >"$dir/port"
  as_pg "$bin/pg_basebackup" -h 127.0.0.1 -p "$(cat "$primary/port")" -U postgres \
    -D "$dir/data" -R -X stream -c fast >"$dir/basebackup.log" 2>&1 \
    || { cat "$dir/basebackup.log" >&2; exit 1; }
  run_server "$bin"
  echo "postgresql://ledger:ledger@127.0.0.1:$port/ledger"
}

promote() {
  local bin
  bin=$(find_bin)
  dir=$(cd "$dir" && pwd)
  cd "$dir"
  as_pg "$bin/pg_ctl" -D "$dir/data" -w -t 60 promote >&2
}

stop() {
  local bin
  bin=$(find_bin) || return 0
  [ -d "$dir/data" ] || return 0
  cd "$dir"
  as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  kill) kill_server ;;
  restart) restart ;;
  standby) standby "$@" ;;
  promote) promote ;;
  *) echo "usage: $0 start|stop|kill|restart|promote DIR, or standby DIR PRIMARY_DIR" >&2; exit 2 ;;
esac
