#!/usr/bin/env bash
# Run a command with a throwaway PostgreSQL: DATABASE_URL and TEST_POSTGRES_URL point at it.
# The cluster lives in a temporary folder and is stopped and removed however the command ends.
#   scripts/with-postgres.sh [--replica] COMMAND...
# --replica also starts a hot standby of it (streaming replication, scripts/pg.sh standby):
# DATABASE_REPLICA_URL and TEST_POSTGRES_REPLICA_URL point at the standby.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
replica=0
if [ "${1:-}" = "--replica" ]; then replica=1; shift; fi
dir=$(mktemp -d /tmp/voucher-ledger-pg.XXXXXX)
chmod 755 "$dir"
cleanup() {
  [ -d "$dir/standby" ] && { "$here/pg.sh" stop "$dir/standby" || true; }
  "$here/pg.sh" stop "$dir" || true
  rm -rf "$dir"
}
trap cleanup EXIT
url=$("$here/pg.sh" start "$dir" | tail -n 1)
echo "throwaway PostgreSQL at ${url%%@*}@${url#*@}" >&2
export TEST_POSTGRES_URL="$url" DATABASE_URL="$url" LEDGER_REQUIRE_POSTGRES=1
if [ "$replica" = 1 ]; then
  standby_url=$("$here/pg.sh" standby "$dir/standby" "$dir" | tail -n 1)
  echo "hot standby at ${standby_url%%@*}@${standby_url#*@}" >&2
  export TEST_POSTGRES_REPLICA_URL="$standby_url" DATABASE_REPLICA_URL="$standby_url"
fi
"$@"
